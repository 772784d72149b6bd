package badger

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain/store"
)

// vlogBytes is the total size of the value-log files in dir.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var n int64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".vlog") {
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // garbage collection deleted it meanwhile
			}
			require.NoError(t, err)
			n += info.Size()
		}
	}
	return n
}

// TestValueLogGC overwrites and deletes large values (they live in the value log) until almost
// all of it is garbage, and requires the store's own garbage-collection goroutine to give the
// space back, under both sync policies; the live values stay readable, also after reopening.
func TestValueLogGC(t *testing.T) {
	for _, policy := range []store.SyncPolicy{store.SyncEveryCommit, store.SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Store: store.Options{Sync: policy}, MemTableSize: 1 << 20, ValueLogFileSize: 1 << 20, GCInterval: -1}
			s, err := Open(dir, opts)
			require.NoError(t, err)
			value := func(round, key int) []byte {
				return bytes.Repeat(fmt.Appendf(nil, "%d/%d;", round, key), 200_000/8)
			}
			const keys, rounds = 4, 40
			// Keys under "z", which the store's own layout does not use (recovery would delete
			// what looks like block data).
			for round := range rounds {
				for k := range keys {
					require.NoError(t, s.kv.Set(fmt.Appendf(nil, "zbig/%d", k), value(round, k)))
				}
				require.NoError(t, s.kv.Set(fmt.Appendf(nil, "zgone/%d", round), value(round, 9)))
				require.NoError(t, s.kv.Delete(fmt.Appendf(nil, "zgone/%d", round)))
				// Small values fill memtables, so that they are flushed and compacted as on a
				// running node: compaction is where Badger learns what is garbage.
				b := s.kv.NewBatch()
				for i := range 200 {
					require.NoError(t, b.Set(fmt.Appendf(nil, "zfill/%d", i), bytes.Repeat([]byte{byte(round)}, 2000)))
				}
				require.NoError(t, b.Write())
			}
			// Flush the last memtable (by reopening) and compact what is left.
			require.NoError(t, s.Close())
			s, err = Open(dir, opts)
			require.NoError(t, err)
			require.NoError(t, s.kv.db.Flatten(1))
			before := vlogBytes(t, dir)
			require.NoError(t, s.Close())

			// Now the store's goroutine, on a short interval; wait for it with a generous deadline.
			opts.GCInterval = 20 * time.Millisecond
			s, err = Open(dir, opts)
			require.NoError(t, err)
			deadline := time.Now().Add(time.Minute)
			for vlogBytes(t, dir) > before/4 {
				require.True(t, time.Now().Before(deadline), "value log still %d bytes (was %d)", vlogBytes(t, dir), before)
				time.Sleep(10 * time.Millisecond)
			}
			after := vlogBytes(t, dir)
			t.Logf("value log: %d bytes before garbage collection, %d after", before, after)
			require.NoError(t, s.Close())

			s, err = Open(dir, Options{Store: opts.Store, MemTableSize: opts.MemTableSize, ValueLogFileSize: opts.ValueLogFileSize, GCInterval: -1})
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close()) }()
			for k := range keys {
				got, err := s.kv.Get(fmt.Appendf(nil, "zbig/%d", k))
				require.NoError(t, err)
				require.True(t, bytes.Equal(value(rounds-1, k), got), "key %d after garbage collection: %d bytes %.40q", k, len(got), got)
			}
			got, err := s.kv.Get([]byte("zgone/3"))
			require.NoError(t, err)
			require.Nil(t, got)
		})
	}
}
