package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain/state"
)

func TestLatestCache(t *testing.T) {
	lc := newLatestCache(64 << 10)
	_, ok := lc.get([]byte("a"))
	require.False(t, ok)

	lc.put([]byte("a"), []byte("1"))
	lc.put([]byte("gone"), nil)
	v, ok := lc.get([]byte("a"))
	require.True(t, ok)
	require.Equal(t, []byte("1"), v)
	v[0] = 'x' // a caller's change must not reach the cache
	v, _ = lc.get([]byte("a"))
	require.Equal(t, []byte("1"), v)
	v, ok = lc.get([]byte("gone"))
	require.True(t, ok, "absent keys are cached too")
	require.Nil(t, v)

	// A commit updates cached keys (set and delete) and leaves uncached ones out.
	lc.apply(state.ChangeSet{Changes: []state.Change{
		{Key: []byte("a"), Delete: true},
		{Key: []byte("gone"), Value: []byte("back")},
		{Key: []byte("new"), Value: []byte("n")},
	}})
	v, ok = lc.get([]byte("a"))
	require.True(t, ok)
	require.Nil(t, v)
	v, _ = lc.get([]byte("gone"))
	require.Equal(t, []byte("back"), v)
	_, ok = lc.get([]byte("new"))
	require.False(t, ok)

	// Values larger than a sixteenth of the budget are not cached.
	lc.put([]byte("big"), make([]byte, 8<<10))
	_, ok = lc.get([]byte("big"))
	require.False(t, ok)

	// The budget holds however many keys are read.
	for i := range 10_000 {
		lc.put(fmt.Appendf(nil, "k%05d", i), make([]byte, 100))
		require.LessOrEqual(t, lc.bytes, lc.limit)
	}
	total := 0
	for k, e := range lc.entries {
		total += entrySize(k, e.val)
	}
	require.Equal(t, total, lc.bytes)

	lc.clear()
	require.Zero(t, lc.bytes)
	_, ok = lc.get([]byte("gone"))
	require.False(t, ok)
}
