package state

import (
	"bytes"
	"fmt"
	"slices"
)

// View reads committed state. Get returns (nil, nil) for an absent key. Implementations are the
// store's state tree (Badger or memory); the state machine never writes through a View.
type View interface {
	Get(key []byte) ([]byte, error)
}

// Change sets Key to Value, or deletes Key when Delete is true.
type Change struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// ChangeSet is the state machine's output for one block: changes sorted by key, at most one per
// key. The store applies it to the authenticated tree in this order, so every node computes the
// same root.
type ChangeSet struct {
	Changes []Change
}

// Validate checks order and uniqueness.
func (cs *ChangeSet) Validate() error {
	for i := 1; i < len(cs.Changes); i++ {
		if bytes.Compare(cs.Changes[i-1].Key, cs.Changes[i].Key) >= 0 {
			return fmt.Errorf("state: change set not sorted or has a duplicate key at %d", i)
		}
	}
	return nil
}

// Overlay is a View with pending writes on top, used while a block executes so that each
// transaction sees the effects of the ones before it. A journal makes Snapshot and Revert cheap,
// so undoing a failed transaction costs only what it wrote.
type Overlay struct {
	base    View
	pending map[string]*Change
	journal []undo
}

type undo struct {
	key  string
	prev *Change // nil when the key had no pending write
}

// NewOverlay starts an empty overlay over base.
func NewOverlay(base View) *Overlay {
	return &Overlay{base: base, pending: make(map[string]*Change)}
}

// Get reads through pending writes to the base.
func (o *Overlay) Get(key []byte) ([]byte, error) {
	if c, ok := o.pending[string(key)]; ok {
		if c.Delete {
			return nil, nil
		}
		return c.Value, nil
	}
	return o.base.Get(key)
}

func (o *Overlay) put(c *Change) {
	k := string(c.Key)
	o.journal = append(o.journal, undo{key: k, prev: o.pending[k]})
	o.pending[k] = c
}

// Set records a write.
func (o *Overlay) Set(key, value []byte) {
	o.put(&Change{Key: slices.Clone(key), Value: slices.Clone(value)})
}

// Delete records a deletion.
func (o *Overlay) Delete(key []byte) {
	o.put(&Change{Key: slices.Clone(key), Delete: true})
}

// Snapshot marks the current point for Revert.
func (o *Overlay) Snapshot() int { return len(o.journal) }

// Revert undoes every write made since the snapshot.
func (o *Overlay) Revert(snapshot int) {
	for i := len(o.journal) - 1; i >= snapshot; i-- {
		u := o.journal[i]
		if u.prev == nil {
			delete(o.pending, u.key)
		} else {
			o.pending[u.key] = u.prev
		}
	}
	o.journal = o.journal[:snapshot]
}

// ChangeSet returns the pending writes, sorted.
func (o *Overlay) ChangeSet() ChangeSet {
	out := make([]Change, 0, len(o.pending))
	for _, c := range o.pending {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Change) int { return bytes.Compare(a.Key, b.Key) })
	return ChangeSet{Changes: out}
}
