package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
	"github.com/medledger/medledger/chain/store"
)

// Backend is a store implementation under test.
type Backend interface {
	// Open opens a new, empty store with opts; the test's cleanup closes it.
	Open(t *testing.T, opts store.Options) store.Store
	// Restart closes s and opens what it stored again with the same options, as after the process
	// was killed: every write that returned survives, and recovery runs.
	Restart(t *testing.T, s store.Store) store.Store
	// FailAfterWrites makes s die after n more key-value writes, as store.Memory.FailAfterWrites
	// and FaultyKV do.
	FailAfterWrites(t *testing.T, s store.Store, n int)
}

// Run runs the suite against b. Every test runs under both sync policies.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		f    func(*testing.T, Backend, store.Options)
	}{
		{"EmptyStore", testEmptyStore},
		{"CommitReadAndRestart", testCommitReadAndRestart},
		{"CommitRejections", testCommitRejections},
		{"TxIndexKeepsFirstLocation", testTxIndexKeepsFirstLocation},
		{"BigBlockSpansTransactions", testBigBlockSpansTransactions},
		{"ClosedStoreErrors", testClosedStoreErrors},
		{"TornCommitAtEveryWrite", func(t *testing.T, b Backend, o store.Options) { testTornCommit(t, b, o) }},
		{"TornCommitAtEveryWritePruned", func(t *testing.T, b Backend, o store.Options) {
			o.KeepVersions = 2
			testTornCommit(t, b, o)
		}},
		{"TornGenesisAtEveryWrite", testTornGenesis},
		{"Pruning", testPruning},
		{"SignStateSaveAndRestart", testSignStateSaveAndRestart},
		{"SignStateBounds", testSignStateBounds},
		{"TornSignStateAtEveryWrite", testTornSignState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []store.SyncPolicy{store.SyncEveryCommit, store.SyncNone} {
				t.Run(p.String(), func(t *testing.T) { tc.f(t, b, store.Options{Sync: p}) })
			}
		})
	}
}

func initStore(t *testing.T, s store.Store) chain.Hash {
	t.Helper()
	root, err := s.InitGenesis(Genesis(1), GenesisState(1))
	require.NoError(t, err)
	return root
}

func testEmptyStore(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	require.Equal(t, uint64(0), s.Height())
	require.Equal(t, statetree.EmptyRoot, s.StateRoot())
	_, err := s.Genesis()
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.Block(1)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.StateAt(0)
	require.ErrorIs(t, err, store.ErrNotFound)
	v, err := s.State().Get([]byte("x"))
	require.NoError(t, err)
	require.Nil(t, v)
	rec, blocks, err := s.SignState()
	require.NoError(t, err)
	require.Nil(t, rec)
	require.Empty(t, blocks)
	blk, cert, cs := GenBlock(1, 1, chain.Hash{}, statetree.EmptyRoot, CrashSpec)
	_, err = s.Commit(blk, cert, cs)
	require.Error(t, err, "commit before genesis")
}

func testCommitReadAndRestart(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	genRoot := initStore(t, s)
	_, err := s.InitGenesis(Genesis(1), GenesisState(1))
	require.Error(t, err, "second genesis")
	g, err := s.Genesis()
	require.NoError(t, err)
	require.Equal(t, Genesis(1).Hash(), g.Hash())

	roots := []chain.Hash{genRoot}
	var blocks []*chain.Block
	for h := uint64(1); h <= 30; h++ {
		prev := chain.Hash{}
		if h > 1 {
			prev = blocks[h-2].Hash()
		}
		blk, cert, cs := GenBlock(9, h, prev, s.StateRoot(), CrashSpec)
		root, err := s.Commit(blk, cert, cs)
		require.NoError(t, err)
		require.Equal(t, root, s.StateRoot())
		roots = append(roots, root)
		blocks = append(blocks, blk)
	}
	check := func(s store.Store) {
		require.Equal(t, uint64(30), s.Height())
		require.Equal(t, roots[30], s.StateRoot())
		for h := uint64(1); h <= 30; h++ {
			blk, err := s.Block(h)
			require.NoError(t, err)
			require.True(t, bytes.Equal(blocks[h-1].Encode(), blk.Encode()), "block %d", h)
			cert, err := s.Cert(h)
			require.NoError(t, err)
			require.Equal(t, blk.Hash(), cert.BlockHash)
			got, err := s.HeightOf(blk.Hash())
			require.NoError(t, err)
			require.Equal(t, h, got)
			for i, tx := range blk.Txs {
				if i > 5 {
					break
				}
				th, ti, err := s.TxLocation(tx.Hash())
				require.NoError(t, err)
				require.Equal(t, h, th)
				require.Equal(t, i, ti)
			}
			// Header h+1 commits to the state after h: proofs verify against it.
			if h < 30 {
				require.Equal(t, roots[h], blocks[h].Header.StateRoot)
			}
			for _, key := range [][]byte{[]byte("genesis/a"), []byte("k/00042"), []byte("nope")} {
				p, err := s.Prove(h, key)
				require.NoError(t, err)
				require.NoError(t, statetree.VerifyProof(roots[h], p))
				v, err := s.StateAt(h)
				require.NoError(t, err)
				got, err := v.Get(key)
				require.NoError(t, err)
				require.Equal(t, p.Exists, got != nil)
			}
		}
		_, err := s.Block(31)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.Block(0)
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.HeightOf(chain.Hash{1})
		require.ErrorIs(t, err, store.ErrNotFound)
		_, _, err = s.TxLocation(chain.Hash{1})
		require.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.StateAt(31)
		require.ErrorIs(t, err, store.ErrNotFound)
		v, err := s.State().Get([]byte("genesis/b"))
		require.NoError(t, err)
		require.Equal(t, []byte("b"), v)
	}
	check(s)
	s = b.Restart(t, s)
	check(s)
	require.NoError(t, Extend(s, 9, 3, CrashSpec))
	require.Equal(t, uint64(33), s.Height())
}

func testCommitRejections(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	initStore(t, s)
	require.NoError(t, Extend(s, 2, 3, CrashSpec))
	tip, err := TipHash(s)
	require.NoError(t, err)

	blk, cert, cs := GenBlock(2, 5, tip, s.StateRoot(), CrashSpec)
	_, err = s.Commit(blk, cert, cs)
	require.Error(t, err, "height too high")
	blk, cert, cs = GenBlock(2, 3, tip, s.StateRoot(), CrashSpec)
	_, err = s.Commit(blk, cert, cs)
	require.Error(t, err, "height already committed")
	blk, cert, cs = GenBlock(2, 4, chain.Hash{7}, s.StateRoot(), CrashSpec)
	_, err = s.Commit(blk, cert, cs)
	require.Error(t, err, "wrong previous hash")
	blk, cert, cs = GenBlock(2, 4, tip, s.StateRoot(), CrashSpec)
	cert.BlockHash[0] ^= 1
	_, err = s.Commit(blk, cert, cs)
	require.Error(t, err, "certificate for another block")
	_, err = s.Commit(blk, nil, cs)
	require.Error(t, err, "no certificate")
	blk, cert, _ = GenBlock(2, 4, tip, s.StateRoot(), CrashSpec)
	unsorted := state.ChangeSet{Changes: []state.Change{{Key: []byte("b"), Value: []byte("1")}, {Key: []byte("a"), Value: []byte("1")}}}
	_, err = s.Commit(blk, cert, unsorted)
	require.Error(t, err, "unsorted change set")

	// Rejections write nothing: the right block still commits.
	require.Equal(t, uint64(3), s.Height())
	require.NoError(t, Extend(s, 2, 1, CrashSpec))
	require.Equal(t, uint64(4), s.Height())
}

func testTxIndexKeepsFirstLocation(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	initStore(t, s)
	require.NoError(t, Extend(s, 4, 2, CrashSpec))
	b2, err := s.Block(2)
	require.NoError(t, err)
	dup := b2.Txs[0]
	// Block 3 repeats a transaction of block 2 (it would fail execution; the block is valid).
	blk, _, cs := GenBlock(4, 3, b2.Hash(), s.StateRoot(), CrashSpec)
	blk.Txs = append([]*chain.Tx{dup}, blk.Txs...)
	blk.Header.TxRoot = chain.TxRoot(blk.Txs)
	cert := &chain.CommitCert{Version: chain.CertVersion, Height: 3, BlockHash: blk.Hash()}
	_, err = s.Commit(blk, cert, cs)
	require.NoError(t, err)
	h, i, err := s.TxLocation(dup.Hash())
	require.NoError(t, err)
	require.Equal(t, uint64(2), h)
	require.Equal(t, 0, i)
	h, i, err = s.TxLocation(blk.Txs[1].Hash())
	require.NoError(t, err)
	require.Equal(t, uint64(3), h)
	require.Equal(t, 1, i)
}

func testBigBlockSpansTransactions(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	initStore(t, s)
	// ~3 MB of transactions: several chunks, and several Badger transactions at a small memtable.
	require.NoError(t, Extend(s, 5, 1, BlockSpec{Txs: 10000, TxBytes: 300}))
	s = b.Restart(t, s)
	blk, err := s.Block(1)
	require.NoError(t, err)
	require.Equal(t, 10000, len(blk.Txs))
	h, i, err := s.TxLocation(blk.Txs[9999].Hash())
	require.NoError(t, err)
	require.Equal(t, uint64(1), h)
	require.Equal(t, 9999, i)
}

func testClosedStoreErrors(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	initStore(t, s)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err := s.Block(1)
	require.Error(t, err)
	_, err = s.Genesis()
	require.Error(t, err)
	require.Error(t, s.SaveSignState([]byte("x"), nil))
	_, _, err = s.SignState()
	require.Error(t, err)
	require.Error(t, Extend(s, 1, 1, CrashSpec))
}

// tinySpec and tinyChanges keep a commit to a few dozen key-value writes, so that a crash can be
// tried at every one of them, on disk too.
var tinySpec = BlockSpec{Txs: 2, TxBytes: 40}

func tinyChanges(h uint64) state.ChangeSet {
	// One key set and another deleted, so that recovery of the latest-value index sees both.
	set := state.Change{Key: fmt.Appendf(nil, "t/%d", h%4), Value: fmt.Appendf(nil, "v%d", h)}
	del := state.Change{Key: fmt.Appendf(nil, "t/%d", (h+1)%4), Delete: true}
	if h%4 == 3 {
		return state.ChangeSet{Changes: []state.Change{del, set}}
	}
	return state.ChangeSet{Changes: []state.Change{set, del}}
}

// tinyBlock is block h of chain seed on top of s.
func tinyBlock(t *testing.T, s store.Store, seed uint64) (*chain.Block, *chain.CommitCert, state.ChangeSet) {
	t.Helper()
	prev, err := TipHash(s)
	require.NoError(t, err)
	h := s.Height() + 1
	blk, cert, _ := GenBlock(seed, h, prev, s.StateRoot(), tinySpec)
	return blk, cert, tinyChanges(h)
}

func extendTiny(t *testing.T, s store.Store, seed uint64, n int) {
	t.Helper()
	for range n {
		blk, cert, cs := tinyBlock(t, s, seed)
		_, err := s.Commit(blk, cert, cs)
		require.NoError(t, err)
	}
}

// testTornCommit crashes a commit after each of its writes in turn (then after the commit
// returned) and restarts: the store must be at the previous height, with the torn block invisible
// even through the index entries it left, or at the new one, never in between, and must go on
// exactly like a store that never crashed. With pruning on, the crash also lands inside pruning.
func testTornCommit(t *testing.T, b Backend, opts store.Options) {
	const base = 3
	// The references: the chain without the torn block (seed 6 throughout), and with it (block
	// base+1 from seed 66).
	ref := func(torn bool) store.Store {
		m := store.NewMemory()
		initStore(t, m)
		extendTiny(t, m, 6, base)
		if torn {
			extendTiny(t, m, 66, 1)
			extendTiny(t, m, 6, 2)
		} else {
			extendTiny(t, m, 6, 3)
		}
		return m
	}
	clean, withTorn := ref(false), ref(true)
	var before, after int
	for n := 0; ; n++ {
		require.Less(t, n, 10_000, "the commit never completed")
		s := b.Open(t, opts)
		initStore(t, s)
		extendTiny(t, s, 6, base)
		b.FailAfterWrites(t, s, n)
		blk, cert, cs := tinyBlock(t, s, 66)
		_, err := s.Commit(blk, cert, cs)
		if err == nil {
			t.Logf("a commit is %d writes; crashes left the store at the old height %d times, at the new one %d times", n, before, after)
			require.NoError(t, s.Close())
			return
		}
		require.ErrorIs(t, err, store.ErrCrashed)
		s = b.Restart(t, s)
		switch s.Height() {
		case base:
			before++
			require.NoError(t, CheckLatestState(clean, s, StateKeys()), "crash at write %d", n)
			_, err := s.HeightOf(blk.Hash())
			require.ErrorIs(t, err, store.ErrNotFound)
			_, err = s.Block(base + 1)
			require.ErrorIs(t, err, store.ErrNotFound)
			extendTiny(t, s, 6, 3)
			_, _, err = s.TxLocation(blk.Txs[0].Hash())
			require.ErrorIs(t, err, store.ErrNotFound, "write %d: index entry of the torn block must stay invisible", n)
			requireSame(t, clean, s, fmt.Sprintf("crash at write %d, recovered to %d", n, base))
		case base + 1:
			after++
			require.NoError(t, CheckLatestState(withTorn, s, StateKeys()), "crash at write %d", n)
			got, err := s.HeightOf(blk.Hash())
			require.NoError(t, err)
			require.Equal(t, uint64(base+1), got)
			extendTiny(t, s, 6, 2)
			requireSame(t, withTorn, s, fmt.Sprintf("crash at write %d, recovered to %d", n, base+1))
		default:
			t.Fatalf("crash at write %d: recovered to height %d, want %d or %d", n, s.Height(), base, base+1)
		}
		requirePruned(t, s, opts.KeepVersions)
		require.NoError(t, s.Close())
	}
}

// requireSame checks that s holds the same chain and state as ref.
func requireSame(t *testing.T, ref, s store.Store, what string) {
	t.Helper()
	require.Equal(t, ref.Height(), s.Height(), what)
	require.Equal(t, ref.StateRoot(), s.StateRoot(), what)
	for h := uint64(1); h <= ref.Height(); h++ {
		want, err := ref.Block(h)
		require.NoError(t, err)
		got, err := s.Block(h)
		require.NoError(t, err, what)
		require.Equal(t, want.Hash(), got.Hash(), "%s: block %d", what, h)
	}
	require.NoError(t, CheckLatestState(ref, s, StateKeys()), what)
}

// requirePruned checks that exactly the state versions pruning keeps are readable.
func requirePruned(t *testing.T, s store.Store, keep uint64) {
	t.Helper()
	for h := uint64(0); h <= s.Height(); h++ {
		_, err := s.StateAt(h)
		_, perr := s.Prove(h, []byte("t/1"))
		if keep > 0 && h+keep <= s.Height() {
			require.ErrorIs(t, err, store.ErrPruned, "height %d of %d, keeping %d", h, s.Height(), keep)
			require.ErrorIs(t, perr, store.ErrPruned, "height %d of %d, keeping %d", h, s.Height(), keep)
			require.True(t, strings.Contains(err.Error(), "archive"), "the error says where the state is: %v", err)
		} else {
			require.NoError(t, err, "height %d of %d, keeping %d", h, s.Height(), keep)
			require.NoError(t, perr, "height %d of %d, keeping %d", h, s.Height(), keep)
		}
	}
}

func testTornGenesis(t *testing.T, b Backend, opts store.Options) {
	for n := 0; ; n++ {
		require.Less(t, n, 10_000, "InitGenesis never completed")
		s := b.Open(t, opts)
		b.FailAfterWrites(t, s, n)
		root, err := s.InitGenesis(Genesis(3), GenesisState(3))
		if err == nil {
			t.Logf("genesis is %d writes", n)
			require.NoError(t, s.Close())
			return
		}
		require.ErrorIs(t, err, store.ErrCrashed)
		s = b.Restart(t, s)
		if _, err := s.Genesis(); errors.Is(err, store.ErrNotFound) {
			require.Equal(t, statetree.EmptyRoot, s.StateRoot(), "crash at write %d", n)
			root = initStore(t, s)
		} else {
			require.NoError(t, err)
			require.NotEqual(t, statetree.EmptyRoot, s.StateRoot())
		}
		require.Equal(t, root, s.StateRoot())
		extendTiny(t, s, 1, 2)
		require.NoError(t, s.Close())
	}
}

func testPruning(t *testing.T, b Backend, opts store.Options) {
	opts.KeepVersions = 3
	s := b.Open(t, opts)
	roots := []chain.Hash{initStore(t, s)}
	requirePruned(t, s, 3)
	for range 10 {
		extendTiny(t, s, 8, 1)
		roots = append(roots, s.StateRoot())
		requirePruned(t, s, 3)
	}
	for h := uint64(8); h <= 10; h++ {
		p, err := s.Prove(h, []byte("t/2"))
		require.NoError(t, err)
		require.NoError(t, statetree.VerifyProof(roots[h], p))
	}
	s = b.Restart(t, s)
	requirePruned(t, s, 3)
	// Blocks and certificates are never pruned.
	for h := uint64(1); h <= 10; h++ {
		_, err := s.Block(h)
		require.NoError(t, err)
		_, err = s.Cert(h)
		require.NoError(t, err)
	}
	extendTiny(t, s, 8, 2)
	requirePruned(t, s, 3)
}

// signBlocks makes sign blocks of the given sizes (content derived from the size and tag), and
// counts how often each is encoded.
func signBlocks(encoded map[chain.Hash]int, tag string, sizes ...int) ([]store.SignBlock, map[chain.Hash][]byte) {
	var out []store.SignBlock
	want := map[chain.Hash][]byte{}
	for i, n := range sizes {
		enc := bytes.Repeat(fmt.Appendf(nil, "%s-%d-%d|", tag, i, n), n/8+1)[:n]
		h := chain.Sum256(enc)
		want[h] = enc
		out = append(out, store.SignBlock{Hash: h, Encode: func() []byte {
			if encoded != nil {
				encoded[h]++
			}
			return bytes.Clone(enc)
		}})
	}
	return out, want
}

func requireSignState(t *testing.T, s store.Store, record []byte, blocks map[chain.Hash][]byte, what string) {
	t.Helper()
	gotRec, gotBlocks, err := s.SignState()
	require.NoError(t, err, what)
	require.Equal(t, record, gotRec, what)
	require.Equal(t, len(blocks), len(gotBlocks), what)
	for h, enc := range blocks {
		require.True(t, bytes.Equal(enc, gotBlocks[h]), "%s: block %s", what, h.Short())
	}
}

func testSignStateSaveAndRestart(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	encoded := map[chain.Hash]int{}
	// Sizes around the chunking, and one block as large as a block may be.
	ab, abWant := signBlocks(encoded, "ab", 70_000, 1, store.MaxSignBlockBytes)
	require.NoError(t, s.SaveSignState([]byte("h=1 r=0 propose"), ab))
	requireSignState(t, s, []byte("h=1 r=0 propose"), abWant, "first save")
	// Same blocks, new record: nothing is encoded again.
	require.NoError(t, s.SaveSignState([]byte("h=1 r=0 prevote"), ab))
	for h, n := range encoded {
		require.Equal(t, 1, n, "block %s encoded again", h.Short())
	}
	s = b.Restart(t, s)
	requireSignState(t, s, []byte("h=1 r=0 prevote"), abWant, "after restart")
	// Keep one block, add one, drop two: the dropped ones are gone, the kept one not rewritten.
	next, nextWant := signBlocks(encoded, "c", 131_072)
	next = append(next, ab[0])
	nextWant[ab[0].Hash] = abWant[ab[0].Hash]
	require.NoError(t, s.SaveSignState([]byte("h=2 r=0 precommit"), next))
	require.Equal(t, 1, encoded[ab[0].Hash])
	requireSignState(t, s, []byte("h=2 r=0 precommit"), nextWant, "after replacing blocks")
	s = b.Restart(t, s)
	requireSignState(t, s, []byte("h=2 r=0 precommit"), nextWant, "after replacing blocks and restart")
	// A record without blocks, and an empty record.
	require.NoError(t, s.SaveSignState([]byte("h=3"), nil))
	requireSignState(t, s, []byte("h=3"), nil, "no blocks")
	require.NoError(t, s.SaveSignState(nil, nil))
	requireSignState(t, s, []byte{}, nil, "empty record")
}

func testSignStateBounds(t *testing.T, b Backend, opts store.Options) {
	s := b.Open(t, opts)
	require.NoError(t, s.SaveSignState([]byte("ok"), nil))
	tooMany, _ := signBlocks(nil, "x", 1, 2, 3, 4, 5)
	require.Error(t, s.SaveSignState([]byte("r"), tooMany))
	require.Error(t, s.SaveSignState(make([]byte, store.MaxSignRecordBytes+1), nil))
	big := []store.SignBlock{{Hash: chain.Hash{1}, Encode: func() []byte { return make([]byte, store.MaxSignBlockBytes+1) }}}
	require.Error(t, s.SaveSignState([]byte("r"), big))
	empty := []store.SignBlock{{Hash: chain.Hash{2}, Encode: func() []byte { return nil }}}
	require.Error(t, s.SaveSignState([]byte("r"), empty))
	one, _ := signBlocks(nil, "y", 10)
	require.Error(t, s.SaveSignState([]byte("r"), append(one, one[0])), "a block listed twice")
	require.Error(t, s.SaveSignState([]byte("r"), []store.SignBlock{{Hash: chain.Hash{3}}}), "no encoder")
	// A refused save changes nothing.
	requireSignState(t, s, []byte("ok"), nil, "after refusals")
}

// testTornSignState crashes SaveSignState after each of its writes: a restart finds the previous
// sign state or the new one, whole, and the next save works.
func testTornSignState(t *testing.T, b Backend, opts store.Options) {
	first, firstWant := signBlocks(nil, "a", 70_000, 1_000)
	second, secondWant := signBlocks(nil, "b", 140_000, 5)
	second = append(second, first[1])
	secondWant[first[1].Hash] = firstWant[first[1].Hash]
	third, thirdWant := signBlocks(nil, "c", 65_536)
	var old, fresh int
	for n := 0; ; n++ {
		require.Less(t, n, 10_000, "SaveSignState never completed")
		s := b.Open(t, opts)
		require.NoError(t, s.SaveSignState([]byte("first"), first))
		b.FailAfterWrites(t, s, n)
		err := s.SaveSignState([]byte("second"), second)
		if err == nil {
			t.Logf("a sign state save is %d writes; crashes kept the old one %d times, the new one %d times", n, old, fresh)
			require.NoError(t, s.Close())
			return
		}
		require.ErrorIs(t, err, store.ErrCrashed)
		s = b.Restart(t, s)
		rec, _, err := s.SignState()
		require.NoError(t, err, "crash at write %d", n)
		switch string(rec) {
		case "first":
			old++
			requireSignState(t, s, []byte("first"), firstWant, fmt.Sprintf("crash at write %d", n))
		case "second":
			fresh++
			requireSignState(t, s, []byte("second"), secondWant, fmt.Sprintf("crash at write %d", n))
		default:
			t.Fatalf("crash at write %d: sign record %q", n, rec)
		}
		require.NoError(t, s.SaveSignState([]byte("third"), third))
		s = b.Restart(t, s)
		requireSignState(t, s, []byte("third"), thirdWant, fmt.Sprintf("crash at write %d, then a save", n))
		require.NoError(t, s.Close())
	}
}
