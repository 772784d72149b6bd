package store_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/storetest"
)

func commitTo(t *testing.T, s *store.Memory, n int) {
	t.Helper()
	require.NoError(t, storetest.Extend(s, 3, n, storetest.BlockSpec{Txs: 2, TxBytes: 20}))
}

func newFlatStore(t *testing.T) *store.Memory {
	t.Helper()
	s := store.NewMemory()
	_, err := s.InitGenesis(storetest.Genesis(3), storetest.GenesisState(3))
	require.NoError(t, err)
	commitTo(t, s, 20)
	return s
}

// A store without the index (written before it existed) or whose index an older binary left
// behind its commits gets it rebuilt on open.
func TestFlatIndexRebuilt(t *testing.T) {
	ref := newFlatStore(t)
	for name, damage := range map[string]func(*store.Memory){
		"missing": func(s *store.Memory) {
			require.NoError(t, s.WipeFlat())
		},
		"behind": func(s *store.Memory) {
			require.NoError(t, s.SetFlatRaw([]byte("k/00001"), []byte("stale"), s.Height()-1))
			require.NoError(t, s.SetFlatRaw([]byte("zz/not-in-state"), []byte("stale"), s.Height()-1))
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newFlatStore(t)
			damage(s)
			s = s.CrashClone()
			require.NoError(t, storetest.CheckLatestState(ref, s, append(storetest.StateKeys(), []byte("zz/not-in-state"))))
			h, ok, err := s.FlatHeight()
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, s.Height(), h)
		})
	}
}

// A view of the latest state stays a snapshot when a commit moves the index on.
func TestFlatViewIsSnapshot(t *testing.T) {
	s := store.NewMemory()
	_, err := s.InitGenesis(storetest.Genesis(3), storetest.GenesisState(3))
	require.NoError(t, err)
	key := []byte("snap")
	commit := func(cs state.ChangeSet) {
		prev, err := storetest.TipHash(s)
		require.NoError(t, err)
		b, cert, _ := storetest.GenBlock(3, s.Height()+1, prev, s.StateRoot(), storetest.BlockSpec{Txs: 1})
		_, err = s.Commit(b, cert, cs)
		require.NoError(t, err)
	}
	commit(state.ChangeSet{Changes: []state.Change{{Key: key, Value: []byte("one")}}})
	v1 := s.State()
	commit(state.ChangeSet{Changes: []state.Change{{Key: key, Value: []byte("two")}}})
	v2 := s.State()
	commit(state.ChangeSet{Changes: []state.Change{{Key: key, Delete: true}}})
	for _, c := range []struct {
		v    state.View
		want []byte
	}{{v1, []byte("one")}, {v2, []byte("two")}, {s.State(), nil}} {
		got, err := c.v.Get(key)
		require.NoError(t, err)
		require.Equal(t, c.want, got)
	}
	got, err := s.State().Get(nil)
	require.NoError(t, err)
	require.Nil(t, got)
	require.NoError(t, s.Close())
	_, err = v2.Get(key)
	require.ErrorIs(t, err, store.ErrClosed)
}

// Reads of the latest state, which the cache in front of the index answers once a key was read,
// follow every commit's sets and deletes: checked against the tree's version after each commit.
func TestLatestStateFollowsCommits(t *testing.T) {
	s := store.NewMemory()
	_, err := s.InitGenesis(storetest.Genesis(3), storetest.GenesisState(3))
	require.NoError(t, err)
	keys := make([][]byte, 12)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "lat/%02d", i)
	}
	r := rand.New(rand.NewPCG(5, 5))
	for range 60 {
		var cs state.ChangeSet
		for _, k := range keys { // keys are sorted, as a change set must be
			switch r.IntN(4) {
			case 0:
				cs.Changes = append(cs.Changes, state.Change{Key: k, Value: fmt.Appendf(nil, "v%d", r.IntN(1000))})
			case 1:
				cs.Changes = append(cs.Changes, state.Change{Key: k, Delete: true})
			}
		}
		prev, err := storetest.TipHash(s)
		require.NoError(t, err)
		b, cert, _ := storetest.GenBlock(3, s.Height()+1, prev, s.StateRoot(), storetest.BlockSpec{Txs: 1})
		_, err = s.Commit(b, cert, cs)
		require.NoError(t, err)
		tree, err := s.StateAt(s.Height())
		require.NoError(t, err)
		for _, k := range keys {
			want, err := tree.Get(k)
			require.NoError(t, err)
			got, err := s.State().Get(k)
			require.NoError(t, err)
			require.Equal(t, want, got, "key %s at %d", k, s.Height())
		}
	}
}
