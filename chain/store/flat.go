package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain/state"
)

// The latest-value index: every key of the latest committed state under 'f', so that reads of the
// latest state (State, which execution and admission use) are one KV get instead of a walk down
// the IAVL tree through Badger. Older states (StateAt, Prove) still walk the tree.
//
// It is written in the commit's last batch, before the marker, together with 'mf' naming its
// height. A commit interrupted after the tree saved version H+1 may have written part of H+1 to
// the index; recovery (recoverFlat) restores the keys that version changed, which the tree
// lists, from the tree's version H before rolling the tree back. An index that is missing or not
// at the marker's height (a store written before the index existed, or by an older binary) is
// rebuilt from the tree on open.
var (
	prefixFlat = byte('f')
	keyFlat    = []byte("mf") // the index's height: version byte, height (8 bytes BE)
)

const flatVersion = 1

// flatRebuildBatch bounds the entries of one batch when rebuilding the index.
const flatRebuildBatch = 10_000

func flatKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixFlat
	copy(k[1:], key)
	return k
}

func encodeFlatHeight(h uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{flatVersion}, h)
}

// flatHeight reads 'mf'; ok is false when it is absent or of another version.
func (c *Core) flatHeight() (uint64, bool, error) {
	raw, err := c.kv.Get(keyFlat)
	if err != nil {
		return 0, false, fmt.Errorf("store: read latest-value index height: %w", err)
	}
	if len(raw) != 9 || raw[0] != flatVersion {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(raw[1:]), true, nil
}

// batchWriter is the part of a KV batch the commit writes through.
type batchWriter interface {
	Set(key, value []byte) error
	Delete(key []byte) error
}

// stageFlat adds cs to the index and names height h as its height.
func stageFlat(b batchWriter, cs state.ChangeSet, h uint64) error {
	for _, ch := range cs.Changes {
		var err error
		if ch.Delete {
			err = b.Delete(flatKey(ch.Key))
		} else {
			v := ch.Value
			if v == nil {
				v = []byte{} // the KV stores no nil values; an empty value is a value
			}
			err = b.Set(flatKey(ch.Key), v)
		}
		if err != nil {
			return fmt.Errorf("store: write latest-value index: %w", err)
		}
	}
	if err := b.Set(keyFlat, encodeFlatHeight(h)); err != nil {
		return fmt.Errorf("store: write latest-value index: %w", err)
	}
	return nil
}

// undoFlat restores, to their values at version h, the index entries of the keys that tree
// version h+1 changed; the tree must still hold both versions. It leaves the index at height h.
func (c *Core) undoFlat(h uint64) error {
	keys, err := c.tree.ChangedKeys(int64(h + 1))
	if err != nil {
		return fmt.Errorf("store: recover latest-value index: %w", err)
	}
	view, err := c.tree.ViewAt(int64(h))
	if err != nil {
		return fmt.Errorf("store: recover latest-value index: %w", err)
	}
	b := c.kv.NewBatch()
	defer b.Close()
	for _, k := range keys {
		v, err := view.Get(k)
		if err != nil {
			return fmt.Errorf("store: recover latest-value index: %w", err)
		}
		if v == nil {
			err = b.Delete(flatKey(k))
		} else {
			err = b.Set(flatKey(k), v)
		}
		if err != nil {
			return fmt.Errorf("store: recover latest-value index: %w", err)
		}
	}
	if err := b.Set(keyFlat, encodeFlatHeight(h)); err != nil {
		return fmt.Errorf("store: recover latest-value index: %w", err)
	}
	if err := b.Write(); err != nil {
		return fmt.Errorf("store: recover latest-value index: %w", err)
	}
	return nil
}

// wipeFlat deletes the whole index and its height.
func (c *Core) wipeFlat() error {
	it, err := c.kv.Iterator([]byte{prefixFlat}, []byte{prefixFlat + 1})
	if err != nil {
		return fmt.Errorf("store: wipe latest-value index: %w", err)
	}
	var keys [][]byte
	for ; it.Valid(); it.Next() {
		keys = append(keys, it.Key())
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("store: wipe latest-value index: %w", err)
	}
	keys = append(keys, keyFlat)
	for len(keys) > 0 {
		n := min(len(keys), flatRebuildBatch)
		b := c.kv.NewBatch()
		for _, k := range keys[:n] {
			if err := b.Delete(k); err != nil {
				return errors.Join(fmt.Errorf("store: wipe latest-value index: %w", err), b.Close())
			}
		}
		if err := errors.Join(b.Write(), b.Close()); err != nil {
			return fmt.Errorf("store: wipe latest-value index: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// rebuildFlat writes the index from the tree's latest version (height h), in bounded batches,
// then its height; a crash half way leaves no height, so the next open rebuilds again.
func (c *Core) rebuildFlat(h uint64) error {
	if err := c.wipeFlat(); err != nil {
		return err
	}
	b := c.kv.NewBatch()
	n := 0
	err := c.tree.Each(func(k, v []byte) error {
		if err := b.Set(flatKey(k), v); err != nil {
			return err
		}
		if n++; n == flatRebuildBatch {
			if err := errors.Join(b.Write(), b.Close()); err != nil {
				return err
			}
			b, n = c.kv.NewBatch(), 0
		}
		return nil
	})
	if err == nil {
		err = b.Set(keyFlat, encodeFlatHeight(h))
	}
	if err == nil {
		err = b.Write()
	}
	if err = errors.Join(err, b.Close()); err != nil {
		return fmt.Errorf("store: rebuild latest-value index: %w", err)
	}
	return nil
}

// flatView reads the latest-value index while it is at height h; once a commit has moved it on,
// it reads version h from the tree, so that a view stays a snapshot.
type flatView struct {
	c *Core
	h uint64
}

func (v flatView) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, nil
	}
	c := v.c
	c.flatMu.RLock()
	if c.flatOK && c.flatAt == v.h {
		if val, ok := c.latest.get(key); ok {
			c.flatMu.RUnlock()
			return val, nil
		}
		val, err := c.kv.Get(flatKey(key))
		if err == nil {
			c.latest.put(key, val)
		}
		c.flatMu.RUnlock()
		if err != nil {
			return nil, fmt.Errorf("store: state at %d: %w", v.h, err)
		}
		return val, nil
	}
	closed := c.flatClosed
	c.flatMu.RUnlock()
	if closed {
		return nil, errClosed
	}
	tv, err := c.tree.ViewAt(int64(v.h))
	if err != nil {
		return nil, c.treeError(v.h, err)
	}
	return tv.Get(key)
}
