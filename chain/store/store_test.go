package store

import (
	"bytes"
	"errors"
	"github.com/stretchr/testify/require"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
)

// backend opens a store and "restarts" it: Badger closes and reopens its directory, Memory
// crash-clones.
type backend struct {
	name   string
	open   func(t *testing.T) Store
	reopen func(t *testing.T, s Store) Store
}

func backends() []backend {
	return []backend{
		{
			name: "badger",
			open: func(t *testing.T) Store {
				dir := t.TempDir()
				s, err := OpenBadger(dir, Options{Sync: SyncNone, MemTableSize: 4 << 20})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				badgerDirs[s] = dir
				return s
			},
			reopen: func(t *testing.T, s Store) Store {
				dir := badgerDirs[s.(*Badger)]
				require.NoError(t, s.Close())
				s2, err := OpenBadger(dir, Options{Sync: SyncEveryCommit, MemTableSize: 4 << 20})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s2.Close() })
				badgerDirs[s2] = dir
				return s2
			},
		},
		{
			name: "memory",
			open: func(*testing.T) Store { return NewMemory() },
			reopen: func(t *testing.T, s Store) Store {
				c := s.(*Memory).CrashClone()
				require.NoError(t, s.Close())
				return c
			},
		},
	}
}

var badgerDirs = map[*Badger]string{}

func coreOf(s Store) *core {
	switch s := s.(type) {
	case *Badger:
		return s.core
	case *Memory:
		return s.core
	}
	panic("unknown store")
}

func forEachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) { f(t, be) })
	}
}

func initStore(t *testing.T, s Store) chain.Hash {
	root, err := s.InitGenesis(testGenesis(1), testGenesisState(1))
	require.NoError(t, err)
	return root
}

func TestEmptyStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		require.Equal(t, uint64(0), s.Height())
		require.Equal(t, statetree.EmptyRoot, s.StateRoot())
		_, err := s.Genesis()
		require.True(t, errors.Is(err, ErrNotFound))
		_, err = s.Block(1)
		require.True(t, errors.Is(err, ErrNotFound))
		_, err = s.StateAt(0)
		require.True(t, errors.Is(err, ErrNotFound))
		v, err := s.State().Get([]byte("x"))
		require.NoError(t, err)
		require.Nil(t, v)
		ss, err := s.SignState()
		require.NoError(t, err)
		require.Nil(t, ss)
		b, cert, cs := genBlock(1, 1, chain.Hash{}, statetree.EmptyRoot, crashSpec)
		_, err = s.Commit(b, cert, cs)
		require.Error(t, err, "commit before genesis")
	})
}

func TestCommitReadAndReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		genRoot := initStore(t, s)
		_, err := s.InitGenesis(testGenesis(1), testGenesisState(1))
		require.Error(t, err, "second genesis")
		g, err := s.Genesis()
		require.NoError(t, err)
		require.Equal(t, testGenesis(1).Hash(), g.Hash())

		roots := []chain.Hash{genRoot}
		var blocks []*chain.Block
		for h := uint64(1); h <= 30; h++ {
			prev := chain.Hash{}
			if h > 1 {
				prev = blocks[h-2].Hash()
			}
			b, cert, cs := genBlock(9, h, prev, s.StateRoot(), crashSpec)
			root, err := s.Commit(b, cert, cs)
			require.NoError(t, err)
			require.Equal(t, root, s.StateRoot())
			roots = append(roots, root)
			blocks = append(blocks, b)
		}
		check := func(s Store) {
			require.Equal(t, uint64(30), s.Height())
			require.Equal(t, roots[30], s.StateRoot())
			for h := uint64(1); h <= 30; h++ {
				b, err := s.Block(h)
				require.NoError(t, err)
				require.True(t, bytes.Equal(blocks[h-1].Encode(), b.Encode()), "block %d", h)
				cert, err := s.Cert(h)
				require.NoError(t, err)
				require.Equal(t, b.Hash(), cert.BlockHash)
				got, err := s.HeightOf(b.Hash())
				require.NoError(t, err)
				require.Equal(t, h, got)
				for i, tx := range b.Txs {
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
			require.True(t, errors.Is(err, ErrNotFound))
			_, err = s.Block(0)
			require.True(t, errors.Is(err, ErrNotFound))
			_, err = s.HeightOf(chain.Hash{1})
			require.True(t, errors.Is(err, ErrNotFound))
			_, _, err = s.TxLocation(chain.Hash{1})
			require.True(t, errors.Is(err, ErrNotFound))
			_, err = s.StateAt(31)
			require.True(t, errors.Is(err, ErrNotFound))
			v, err := s.State().Get([]byte("genesis/b"))
			require.NoError(t, err)
			require.Equal(t, []byte("b"), v)
		}
		check(s)
		s = be.reopen(t, s)
		check(s)
		require.NoError(t, extend(s, 9, 3, crashSpec))
		require.Equal(t, uint64(33), s.Height())
	})
}

func TestCommitRejections(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		initStore(t, s)
		require.NoError(t, extend(s, 2, 3, crashSpec))
		tip, err := tipHash(s)
		require.NoError(t, err)

		b, cert, cs := genBlock(2, 5, tip, s.StateRoot(), crashSpec)
		_, err = s.Commit(b, cert, cs)
		require.Error(t, err, "height too high")
		b, cert, cs = genBlock(2, 3, tip, s.StateRoot(), crashSpec)
		_, err = s.Commit(b, cert, cs)
		require.Error(t, err, "height already committed")
		b, cert, cs = genBlock(2, 4, chain.Hash{7}, s.StateRoot(), crashSpec)
		_, err = s.Commit(b, cert, cs)
		require.Error(t, err, "wrong previous hash")
		b, cert, cs = genBlock(2, 4, tip, s.StateRoot(), crashSpec)
		cert.BlockHash[0] ^= 1
		_, err = s.Commit(b, cert, cs)
		require.Error(t, err, "certificate for another block")
		_, err = s.Commit(b, nil, cs)
		require.Error(t, err, "no certificate")
		b, cert, _ = genBlock(2, 4, tip, s.StateRoot(), crashSpec)
		unsorted := state.ChangeSet{Changes: []state.Change{{Key: []byte("b"), Value: []byte("1")}, {Key: []byte("a"), Value: []byte("1")}}}
		_, err = s.Commit(b, cert, unsorted)
		require.Error(t, err, "unsorted change set")

		// Rejections write nothing: the right block still commits.
		require.Equal(t, uint64(3), s.Height())
		require.NoError(t, extend(s, 2, 1, crashSpec))
		require.Equal(t, uint64(4), s.Height())
	})
}

func TestSignStateSurvivesReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		require.NoError(t, s.SaveSignState([]byte("h=1 r=0 prevote")))
		require.NoError(t, s.SaveSignState([]byte("h=1 r=0 precommit")))
		s = be.reopen(t, s)
		got, err := s.SignState()
		require.NoError(t, err)
		require.Equal(t, []byte("h=1 r=0 precommit"), got)
	})
}

func TestTxIndexKeepsFirstLocation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		initStore(t, s)
		require.NoError(t, extend(s, 4, 2, crashSpec))
		b2, err := s.Block(2)
		require.NoError(t, err)
		dup := b2.Txs[0]
		// Block 3 repeats a transaction of block 2 (it would fail execution; the block is valid).
		b, _, cs := genBlock(4, 3, b2.Hash(), s.StateRoot(), crashSpec)
		b.Txs = append([]*chain.Tx{dup}, b.Txs...)
		b.Header.TxRoot = chain.TxRoot(b.Txs)
		cert := &chain.CommitCert{Version: chain.CertVersion, Height: 3, BlockHash: b.Hash()}
		_, err = s.Commit(b, cert, cs)
		require.NoError(t, err)
		h, i, err := s.TxLocation(dup.Hash())
		require.NoError(t, err)
		require.Equal(t, uint64(2), h)
		require.Equal(t, 0, i)
		h, i, err = s.TxLocation(b.Txs[1].Hash())
		require.NoError(t, err)
		require.Equal(t, uint64(3), h)
		require.Equal(t, 1, i)
	})
}

// TestTornCommitIgnored writes a block's data (and optionally its state version) without the
// commit marker, as a crash in the middle of Commit would leave it, then restarts: the torn
// block must be invisible and a different block must commit at its height.
func TestTornCommitIgnored(t *testing.T) {
	for _, withState := range []bool{false, true} {
		forEachBackend(t, func(t *testing.T, be backend) {
			s := be.open(t)
			initStore(t, s)
			require.NoError(t, extend(s, 6, 5, crashSpec))
			root5 := s.StateRoot()
			tip, err := tipHash(s)
			require.NoError(t, err)

			torn, tornCert, tornCS := genBlock(66, 6, tip, root5, blockSpec{txs: 50, txBytes: 100})
			c := coreOf(s)
			require.NoError(t, c.writeBlock(torn, torn.Hash(), tornCert))
			if withState {
				_, _, err := c.tree.Commit(tornCS)
				require.NoError(t, err)
			}
			s = be.reopen(t, s)
			require.Equal(t, uint64(5), s.Height())
			require.Equal(t, root5, s.StateRoot())
			_, err = s.Block(6)
			require.True(t, errors.Is(err, ErrNotFound))
			_, err = s.HeightOf(torn.Hash())
			require.True(t, errors.Is(err, ErrNotFound))
			_, _, err = s.TxLocation(torn.Txs[0].Hash())
			require.True(t, errors.Is(err, ErrNotFound))

			// A different block 6 overwrites the torn one.
			require.NoError(t, extend(s, 6, 1, crashSpec))
			b6, err := s.Block(6)
			require.NoError(t, err)
			require.NotEqual(t, torn.Hash(), b6.Hash())
			_, _, err = s.TxLocation(torn.Txs[0].Hash())
			require.True(t, errors.Is(err, ErrNotFound), "index entry of the torn block must stay invisible")
			_, err = s.HeightOf(torn.Hash())
			require.True(t, errors.Is(err, ErrNotFound))
			h, _, err := s.TxLocation(b6.Txs[0].Hash())
			require.NoError(t, err)
			require.Equal(t, uint64(6), h)

			// Same result as a store that never saw the torn write.
			ref := NewMemory()
			_, err = ref.InitGenesis(testGenesis(1), testGenesisState(1))
			require.NoError(t, err)
			require.NoError(t, extend(ref, 6, 6, crashSpec))
			require.Equal(t, ref.StateRoot(), s.StateRoot())
		})
	}
}

func TestTornGenesisIgnored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		c := coreOf(s)
		require.NoError(t, c.kv.Set(keyGenesis, chain.Encode(testGenesis(3))))
		_, _, err := c.tree.Commit(testGenesisState(3))
		require.NoError(t, err)
		s = be.reopen(t, s)
		_, err = s.Genesis()
		require.True(t, errors.Is(err, ErrNotFound))
		require.Equal(t, statetree.EmptyRoot, s.StateRoot())
		initStore(t, s)
		require.NoError(t, extend(s, 1, 2, crashSpec))
	})
}

func TestBigBlockSpansTransactions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		initStore(t, s)
		// ~3 MB of transactions: several chunks and several Badger transactions at a 4 MiB memtable.
		require.NoError(t, extend(s, 5, 1, blockSpec{txs: 10000, txBytes: 300}))
		s = be.reopen(t, s)
		b, err := s.Block(1)
		require.NoError(t, err)
		require.Equal(t, 10000, len(b.Txs))
		h, i, err := s.TxLocation(b.Txs[9999].Hash())
		require.NoError(t, err)
		require.Equal(t, uint64(1), h)
		require.Equal(t, 9999, i)
	})
}

func TestClosedStoreErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		s := be.open(t)
		initStore(t, s)
		require.NoError(t, s.Close())
		require.NoError(t, s.Close())
		_, err := s.Block(1)
		require.Error(t, err)
		_, err = s.Genesis()
		require.Error(t, err)
		require.Error(t, s.SaveSignState([]byte("x")))
		require.Error(t, extend(s, 1, 1, crashSpec))
	})
}
