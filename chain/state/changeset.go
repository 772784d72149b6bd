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
// transaction sees the effects of the ones before it.
type Overlay struct {
	base    View
	pending map[string]*Change
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

// Set records a write.
func (o *Overlay) Set(key, value []byte) {
	o.pending[string(key)] = &Change{Key: slices.Clone(key), Value: slices.Clone(value)}
}

// Delete records a deletion.
func (o *Overlay) Delete(key []byte) {
	o.pending[string(key)] = &Change{Key: slices.Clone(key), Delete: true}
}

// Snapshot returns a token for Revert: a failed transaction's writes are undone by reverting.
func (o *Overlay) Snapshot() map[string]*Change {
	return maps_clone(o.pending)
}

// Revert restores a snapshot.
func (o *Overlay) Revert(s map[string]*Change) { o.pending = maps_clone(s) }

// ChangeSet returns the pending writes, sorted.
func (o *Overlay) ChangeSet() ChangeSet {
	out := make([]Change, 0, len(o.pending))
	for _, c := range o.pending {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Change) int { return bytes.Compare(a.Key, b.Key) })
	return ChangeSet{Changes: out}
}

func maps_clone(m map[string]*Change) map[string]*Change {
	out := make(map[string]*Change, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
