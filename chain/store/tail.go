package store

import (
	"encoding/binary"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// The unsynced tail under SyncNone (docs/storage.md, "Sync policy").
//
// Under SyncNone a power loss keeps whatever the operating system happened to write back, in no
// order across Badger's log files: a commit marker can survive while a block chunk written before
// it is lost. So the store remembers a height up to which everything was synced (keyDurable), and
// recovery checks every block above it; at the first one that does not read back whole, linked
// and matching the state tree, it rolls the store back to the height below and the node fetches
// the rest from its peers again. Commits keep the tail short by syncing every durableEvery blocks.

// keyDurable holds, under SyncNone, a height at or below which every write was synced.
var keyDurable = []byte("md")

// durableEvery bounds the unsynced tail under SyncNone, in commits: one sync per this many blocks
// costs a full node little, and bounds what recovery re-reads after a power loss.
const durableEvery = 64

// RolledBack reports whether recovery on open found a damaged tail left by a power loss under
// SyncNone and rolled the store back: from the height the commit marker named to the one kept.
func (c *Core) RolledBack() (from, to uint64, ok bool) {
	return c.rolledFrom, c.rolledTo, c.rolledFrom != 0
}

func (c *Core) durableHeight() (uint64, bool, error) {
	raw, err := c.kv.Get(keyDurable)
	if err != nil {
		return 0, false, fmt.Errorf("store: read durable height: %w", err)
	}
	if len(raw) != 8 {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(raw), true, nil
}

// checkUnsyncedTail returns the marker recovery should restore: m, or, when a block above the
// durable height is damaged, a marker for the highest height below it whose blocks and state are
// whole. In that case it has already rolled the state tree back, rewritten the marker and wiped
// the latest-value index (recovery rebuilds it).
func (c *Core) checkUnsyncedTail(m marker) (marker, error) {
	d, ok, err := c.durableHeight()
	if err != nil || !ok || d >= m.height {
		return m, err
	}
	v := c.tree.Version()
	if v < int64(d) {
		return m, fmt.Errorf("store: state tree is at version %d, behind the synced height %d: storage is corrupt", v, d)
	}
	keep := c.intactAbove(d, min(m.height, uint64(v)))
	if keep == m.height {
		return m, nil
	}
	if err := c.tree.Rollback(int64(keep)); err != nil {
		return m, fmt.Errorf("store: roll back the unsynced tail to %d: %w", keep, err)
	}
	back := marker{height: keep, root: c.tree.Root()}
	if err := c.kv.Set(keyMarker, back.encode()); err != nil {
		return m, fmt.Errorf("store: roll back the unsynced tail to %d: %w", keep, err)
	}
	if err := c.wipeFlat(); err != nil {
		return m, err
	}
	c.rolledFrom, c.rolledTo = m.height, keep
	return back, nil
}

// intactAbove returns the highest h in [d, top] such that every block in (d, h] reads back whole
// (its chunks, its hash, its certificate), links to the one below, and carries the state root the
// tree holds for the height below it. Block d was synced and is taken as given.
func (c *Core) intactAbove(d, top uint64) uint64 {
	var prev chain.Hash // block 1 links to the zero hash
	if d > 0 {
		meta, err := c.blockMeta(d)
		if err != nil {
			return d
		}
		prev = meta.hash
	}
	for h := d + 1; h <= top; h++ {
		b, err := c.readBlock(h)
		if err != nil || b.Header.PrevHash != prev {
			return h - 1
		}
		if cert, err := c.readCert(h); err != nil || cert.BlockHash != b.Hash() {
			return h - 1
		}
		root, err := c.tree.RootAt(int64(h - 1))
		if err != nil || root != b.Header.StateRoot {
			return h - 1
		}
		prev = b.Hash()
	}
	return top
}

// settleDurable runs at the end of a successful open. Under SyncNone it picks up the durable
// height, or, in a store that has none (new, or written by an older binary), syncs and records
// one. Under SyncEveryCommit every later commit is durable, so a durable height left by an earlier
// SyncNone run is dropped once everything before it is synced.
func (c *Core) settleDurable() error {
	d, ok, err := c.durableHeight()
	if err != nil {
		return err
	}
	if c.opts.Sync == SyncNone {
		if !ok || d > c.height {
			return c.markDurable()
		}
		c.durable = d
		return nil
	}
	if !ok {
		return nil
	}
	if err := c.kv.Sync(); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	if err := c.kv.Delete(keyDurable); err != nil {
		return fmt.Errorf("store: clear durable height: %w", err)
	}
	return nil
}

// markDurable syncs every write so far and records the committed height as durable. The record
// itself is written after the sync: if a power loss takes it, the older one still holds.
func (c *Core) markDurable() error {
	if err := c.kv.Sync(); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	if err := c.kv.Set(keyDurable, binary.BigEndian.AppendUint64(nil, c.height)); err != nil {
		return fmt.Errorf("store: record durable height: %w", err)
	}
	c.durable = c.height
	return nil
}

// syncTail keeps the unsynced tail under SyncNone at most durableEvery commits long, and shorter
// than the pruning window: recovery can only roll back to a state version that is still kept.
func (c *Core) syncTail() error {
	if c.opts.Sync != SyncNone {
		return nil
	}
	every := uint64(durableEvery)
	if k := c.opts.KeepVersions; k > 0 {
		every = max(1, min(every, k-1))
	}
	if c.height-c.durable < every {
		return nil
	}
	return c.markDurable()
}
