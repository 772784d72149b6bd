package badger

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/storetest"
)

// testMemTable is small so that commits span several Badger transactions and memtables, and block
// chunks go to the value log.
const testMemTable = 1 << 20

// diskBackend runs the shared suite on Badger: a restart closes and reopens the directory.
type diskBackend struct{}

// testStore remembers where a store lives, and the fault injector under it.
type testStore struct {
	*Store
	dir   string
	opts  Options
	fault *storetest.FaultyKV
}

func openTest(t *testing.T, dir string, opts Options) *testStore {
	t.Helper()
	ts := &testStore{dir: dir, opts: opts}
	s, err := open(dir, opts, func(k store.KV) store.KV {
		ts.fault = storetest.NewFaultyKV(k)
		return ts.fault
	})
	require.NoError(t, err)
	ts.Store = s
	t.Cleanup(func() { _ = s.Close() })
	return ts
}

func (diskBackend) Open(t *testing.T, opts store.Options) store.Store {
	return openTest(t, t.TempDir(), Options{Store: opts, MemTableSize: testMemTable, ValueLogFileSize: 1 << 20, GCInterval: -1})
}

func (diskBackend) Restart(t *testing.T, s store.Store) store.Store {
	ts := s.(*testStore)
	require.NoError(t, ts.Close())
	return openTest(t, ts.dir, ts.opts)
}

func (diskBackend) FailAfterWrites(_ *testing.T, s store.Store, n int) {
	s.(*testStore).fault.FailAfterWrites(n)
}

func TestBadger(t *testing.T) { storetest.Run(t, diskBackend{}) }
