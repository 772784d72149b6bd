package store_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/storetest"
)

// memoryBackend runs the shared suite on Memory: a restart is a crash clone.
type memoryBackend struct{}

func (memoryBackend) Open(_ *testing.T, opts store.Options) store.Store {
	return store.NewMemoryWith(opts)
}

func (memoryBackend) Restart(t *testing.T, s store.Store) store.Store {
	c := s.(*store.Memory).CrashClone()
	require.NoError(t, s.Close())
	return c
}

func (memoryBackend) FailAfterWrites(_ *testing.T, s store.Store, n int) {
	s.(*store.Memory).FailAfterWrites(n)
}

func TestMemory(t *testing.T) { storetest.Run(t, memoryBackend{}) }

// refChain commits the same n blocks as powerLossChain into a fresh store and returns the state
// root after each height.
func refRoots(t *testing.T, seed uint64, n int) []chain.Hash {
	m := store.NewMemory()
	root, err := m.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed))
	require.NoError(t, err)
	roots := []chain.Hash{root}
	for range n {
		require.NoError(t, storetest.Extend(m, seed, 1, storetest.CrashSpec))
		roots = append(roots, m.StateRoot())
	}
	return roots
}

// TestPowerLossSyncNone: without syncs, a power loss keeps the durable writes and some prefix of
// the rest. Whatever the prefix, the store opens at some height it really committed, with that
// height's state; the sign state, always synced, survives whole.
func TestPowerLossSyncNone(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	const n = 12
	roots := refRoots(t, 5, n+1)
	m := store.NewMemoryWith(store.Options{Sync: store.SyncNone})
	_, err := m.InitGenesis(storetest.Genesis(5), storetest.GenesisState(5))
	require.NoError(t, err)
	require.NoError(t, storetest.Extend(m, 5, 4, storetest.CrashSpec))
	require.NoError(t, m.SaveSignState([]byte("signed at 5"), nil)) // makes heights 0..4 durable too
	require.NoError(t, storetest.Extend(m, 5, n-4, storetest.CrashSpec))

	unsynced := -1
	m.PowerLossClone(func(u int) int { unsynced = u; return 0 }).Close()
	require.Positive(t, unsynced)
	heights := map[uint64]int{}
	for keep := 0; keep <= unsynced; keep += 1 + r.IntN(max(1, unsynced/40)) {
		c := m.PowerLossClone(func(int) int { return keep })
		h := c.Height()
		require.GreaterOrEqual(t, h, uint64(4), "keep %d of %d: synced commits lost", keep, unsynced)
		require.Equal(t, roots[h], c.StateRoot(), "keep %d of %d", keep, unsynced)
		rec, _, err := c.SignState()
		require.NoError(t, err)
		require.Equal(t, []byte("signed at 5"), rec)
		// It goes on like a store that never lost power.
		require.NoError(t, storetest.Extend(c, 5, 1, storetest.CrashSpec))
		require.Equal(t, roots[h+1], c.StateRoot())
		heights[h]++
		require.NoError(t, c.Close())
	}
	all := m.PowerLossClone(func(u int) int { return u })
	require.Equal(t, uint64(n), all.Height(), "keeping every write keeps every commit")
	require.Equal(t, uint64(4), m.PowerLossClone(nil).Height(), "keeping none keeps the synced ones")
	t.Logf("%d unsynced writes; recovered heights %v", unsynced, heights)
	require.Greater(t, len(heights), 2, "power loss should land at several heights")
}

// TestPowerLossOutOfOrderSyncNone: a real disk under SyncNone can keep a commit marker and lose a
// block written before it. Recovery finds the first damaged block above the synced height and
// rolls back below it; the store goes on from there like one that never lost power. Losing a block
// the sign state's sync covered cannot happen, and losing nothing rolls nothing back.
func TestPowerLossOutOfOrderSyncNone(t *testing.T) {
	const n = 10
	roots := refRoots(t, 5, n+1)
	m := store.NewMemoryWith(store.Options{Sync: store.SyncNone})
	_, err := m.InitGenesis(storetest.Genesis(5), storetest.GenesisState(5))
	require.NoError(t, err)
	require.NoError(t, storetest.Extend(m, 5, 3, storetest.CrashSpec))
	require.NoError(t, m.SaveSignState([]byte("signed at 3"), nil)) // syncs heights 0..3
	require.NoError(t, storetest.Extend(m, 5, n-3, storetest.CrashSpec))

	for _, lost := range []uint64{4, 7, n} {
		c := m.PowerLossCloneLosing(func(k []byte) bool { return store.IsBlockChunkOf(k, lost) })
		require.Equal(t, lost-1, c.Height(), "losing block %d", lost)
		from, to, ok := c.RolledBack()
		require.True(t, ok)
		require.Equal(t, [2]uint64{n, lost - 1}, [2]uint64{from, to})
		require.Equal(t, roots[lost-1], c.StateRoot())
		for h := uint64(1); h < lost; h++ {
			_, err := c.Block(h)
			require.NoError(t, err, "block %d", h)
		}
		require.NoError(t, storetest.CheckLatestState(refAt(t, lost-1), c, storetest.StateKeys()))
		require.NoError(t, storetest.Extend(c, 5, 2, storetest.CrashSpec), "it goes on after the roll-back")
		require.Equal(t, roots[lost+1], c.StateRoot())
		require.NoError(t, c.Close())
	}
	c := m.PowerLossCloneLosing(func([]byte) bool { return false })
	require.Equal(t, uint64(n), c.Height())
	_, _, ok := c.RolledBack()
	require.False(t, ok)
}

// refAt is the reference chain replayed to height h.
func refAt(t *testing.T, h uint64) *store.Memory {
	m := store.NewMemory()
	_, err := m.InitGenesis(storetest.Genesis(5), storetest.GenesisState(5))
	require.NoError(t, err)
	require.NoError(t, storetest.Extend(m, 5, int(h), storetest.CrashSpec))
	return m
}

// TestPowerLossSyncEveryCommit: every commit that returned survives.
func TestPowerLossSyncEveryCommit(t *testing.T) {
	m := store.NewMemory()
	_, err := m.InitGenesis(storetest.Genesis(5), storetest.GenesisState(5))
	require.NoError(t, err)
	for h := 1; h <= 6; h++ {
		require.NoError(t, storetest.Extend(m, 5, 1, storetest.CrashSpec))
		unsynced := -1
		c := m.PowerLossClone(func(u int) int { unsynced = u; return 0 })
		require.Zero(t, unsynced)
		require.Equal(t, m.Height(), c.Height())
		require.Equal(t, m.StateRoot(), c.StateRoot())
		require.NoError(t, c.Close())
	}
}

// TestCrashThenPowerLoss: a process crash keeps unsynced writes in the OS, so a power loss after
// the restart can still lose them.
func TestCrashThenPowerLoss(t *testing.T) {
	m := store.NewMemoryWith(store.Options{Sync: store.SyncNone})
	_, err := m.InitGenesis(storetest.Genesis(5), storetest.GenesisState(5))
	require.NoError(t, err)
	require.NoError(t, m.SaveSignState([]byte("s"), nil))
	require.NoError(t, storetest.Extend(m, 5, 3, storetest.CrashSpec))
	c := m.CrashClone()
	require.Equal(t, uint64(3), c.Height())
	require.Equal(t, uint64(0), c.PowerLossClone(nil).Height())
}

// TestFailAfterWritesStops: the write that hits the fault and all later ones fail and change
// nothing; reads go on.
func TestFailAfterWritesStops(t *testing.T) {
	m := store.NewMemory()
	_, err := m.InitGenesis(storetest.Genesis(5), storetest.GenesisState(5))
	require.NoError(t, err)
	m.FailAfterWrites(0)
	err = storetest.Extend(m, 5, 1, storetest.CrashSpec)
	require.ErrorIs(t, err, store.ErrCrashed)
	require.ErrorIs(t, m.SaveSignState([]byte("x"), nil), store.ErrCrashed)
	require.Equal(t, uint64(0), m.Height())
	g, err := m.Genesis()
	require.NoError(t, err)
	require.Equal(t, storetest.Genesis(5).Hash(), g.Hash())
	c := m.CrashClone()
	require.NoError(t, storetest.Extend(c, 5, 1, storetest.CrashSpec), "a restart clears the fault")
}

func ExampleMemory_PowerLossClone() {
	m := store.NewMemoryWith(store.Options{Sync: store.SyncNone})
	_, _ = m.InitGenesis(storetest.Genesis(1), storetest.GenesisState(1))
	_ = storetest.Extend(m, 1, 3, storetest.CrashSpec)
	r := rand.New(rand.NewPCG(1, 2)) // seeded: the simulation reproduces its power losses
	after := m.PowerLossClone(func(unsynced int) int { return r.IntN(unsynced + 1) })
	fmt.Println(after.Height() <= 3)
	// Output: true
}

// A fault armed and then disarmed never fires.
func TestFailAfterWritesDisarms(t *testing.T) {
	m := store.NewMemory()
	m.FailAfterWrites(0)
	m.FailAfterWrites(-1)
	if err := m.SaveSignState([]byte("x"), nil); err != nil {
		t.Fatalf("disarmed fault fired: %v", err)
	}
}
