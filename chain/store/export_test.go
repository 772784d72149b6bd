package store

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
