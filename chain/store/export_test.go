package store

import "bytes"

// Test hooks into the latest-value index (flat.go) for the external test package.

func (m *Memory) WipeFlat() error { return m.Core.wipeFlat() }

func (m *Memory) SetFlatRaw(key, value []byte, height uint64) error {
	if err := m.kv.Set(flatKey(key), value); err != nil {
		return err
	}
	return m.kv.Set(keyFlat, encodeFlatHeight(height))
}

func (m *Memory) FlatHeight() (uint64, bool, error) { return m.Core.flatHeight() }

var ErrClosed = errClosed

// PowerLossCloneLosing is a power loss that keeps every unsynced write except those lose picks by
// key: the out-of-order loss a disk shows when a later page was written back and an earlier one
// was not.
func (m *Memory) PowerLossCloneLosing(lose func(key []byte) bool) *Memory {
	return m.reopen("power-loss clone", func() *memKV {
		m.kv.mu.Lock()
		defer m.kv.mu.Unlock()
		t := m.kv.durable.Clone()
		for _, op := range m.kv.unsynced {
			if !lose(op.k) {
				applyOp(t, op)
			}
		}
		return &memKV{t: t, policy: m.kv.policy, durable: t.Clone(), failAfter: -1}
	})
}

// IsBlockChunkOf reports whether key holds a piece of the block at height h.
func IsBlockChunkOf(key []byte, h uint64) bool {
	return len(key) == 13 && bytes.Equal(key[:9], heightKey(pBlockChunk, h))
}
