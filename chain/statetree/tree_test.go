package statetree

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/stretchr/testify/require"
	"math/rand/v2"
	"testing"

	iavldb "github.com/cosmos/iavl/db"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

func changeSet(kv ...string) state.ChangeSet {
	var cs state.ChangeSet
	for i := 0; i < len(kv); i += 2 {
		c := state.Change{Key: []byte(kv[i])}
		if kv[i+1] == "" {
			c.Delete = true
		} else {
			c.Value = []byte(kv[i+1])
		}
		cs.Changes = append(cs.Changes, c)
	}
	return cs
}

// randomChangeSets derives n sorted change sets from seed, with overwrites and deletes.
func randomChangeSets(seed uint64, n int) []state.ChangeSet {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]state.ChangeSet, n)
	for i := range out {
		seen := map[int]bool{}
		var keys []int
		for range 1 + r.IntN(20) {
			k := r.IntN(200)
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		var kv []string
		for _, k := range sortedInts(keys) {
			v := ""
			if r.IntN(5) > 0 {
				v = fmt.Sprintf("v%d-%d", i, r.IntN(1000))
			}
			kv = append(kv, fmt.Sprintf("k%03d", k), v)
		}
		out[i] = changeSet(kv...)
	}
	return out
}

func sortedInts(s []int) []int {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func TestEmptyTree(t *testing.T) {
	tr, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	require.Equal(t, NoVersion, tr.Version())
	require.Equal(t, EmptyRoot, tr.Root())
	v, err := tr.Get([]byte("a"))
	require.NoError(t, err)
	require.Nil(t, v)
	_, err = tr.ViewAt(0)
	require.Error(t, err)
	_, err = tr.Prove(0, []byte("a"))
	require.Error(t, err)

	// An empty genesis is version 0 with the empty root, and absence is provable against it.
	root, ver, err := tr.Commit(state.ChangeSet{})
	require.NoError(t, err)
	require.Equal(t, int64(0), ver)
	require.Equal(t, EmptyRoot, root)
	p, err := tr.Prove(0, []byte("a"))
	require.NoError(t, err)
	require.False(t, p.Exists)
	require.NoError(t, VerifyProof(EmptyRoot, p))
	require.Error(t, VerifyProof(root2(t), p), "an empty commitment proves nothing against a non-empty root")
	p.Exists = true
	require.Error(t, VerifyProof(EmptyRoot, p))
}

func root2(t *testing.T) chain.Hash {
	tr, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	r, _, err := tr.Commit(changeSet("x", "y"))
	require.NoError(t, err)
	return r
}

func TestDeterministicRoots(t *testing.T) {
	sets := randomChangeSets(7, 50)
	a, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	b, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	for i, cs := range sets {
		ra, va, err := a.Commit(cs)
		require.NoError(t, err)
		rb, vb, err := b.Commit(cs)
		require.NoError(t, err)
		require.Equal(t, int64(i), va)
		require.Equal(t, va, vb)
		require.Equal(t, ra, rb, "version %d", i)
		require.Equal(t, ra, a.Root())
	}
	// A different history gives a different root.
	c, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	for _, cs := range randomChangeSets(8, 50) {
		_, _, err := c.Commit(cs)
		require.NoError(t, err)
	}
	require.NotEqual(t, a.Root(), c.Root())
}

func TestCommitRejectsBadChangeSets(t *testing.T) {
	tr, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	_, _, err = tr.Commit(changeSet("b", "1", "a", "2"))
	require.Error(t, err)
	_, _, err = tr.Commit(changeSet("", "1"))
	require.Error(t, err)
	require.Equal(t, NoVersion, tr.Version())
	_, v, err := tr.Commit(changeSet("a", "1"))
	require.NoError(t, err)
	require.Equal(t, int64(0), v)
}

// model replays change sets into plain maps, one per version.
func model(sets []state.ChangeSet) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	for _, cs := range sets {
		next := make(map[string]string, len(cur))
		for k, v := range cur {
			next[k] = v
		}
		for _, c := range cs.Changes {
			if c.Delete {
				delete(next, string(c.Key))
			} else {
				next[string(c.Key)] = string(c.Value)
			}
		}
		out = append(out, next)
		cur = next
	}
	return out
}

func checkProofs(t *testing.T, tr *Tree, roots []chain.Hash, want []map[string]string) {
	t.Helper()
	for ver := range want {
		view, err := tr.ViewAt(int64(ver))
		require.NoError(t, err)
		for k := range 205 {
			key := []byte(fmt.Sprintf("k%03d", k))
			wantV, ok := want[ver][string(key)]
			got, err := view.Get(key)
			require.NoError(t, err)
			if ok {
				require.Equal(t, wantV, string(got))
			} else {
				require.Nil(t, got)
			}
			if k%7 != 0 && k < 200 {
				continue // proofs are slower; a sample per version is enough
			}
			p, err := tr.Prove(int64(ver), key)
			require.NoError(t, err)
			require.Equal(t, ok, p.Exists, "version %d key %s", ver, key)
			require.NoError(t, VerifyProof(roots[ver], p), "version %d key %s", ver, key)
			if ver > 0 && roots[ver] != roots[ver-1] {
				require.Error(t, VerifyProof(roots[ver-1], p), "proof must not verify against another root")
			}
		}
	}
}

func TestProofsCurrentOldAndAfterReopen(t *testing.T) {
	db := iavldb.NewMemDB()
	tr, err := Open(db)
	require.NoError(t, err)
	sets := randomChangeSets(11, 30)
	var roots []chain.Hash
	for _, cs := range sets {
		r, _, err := tr.Commit(cs)
		require.NoError(t, err)
		roots = append(roots, r)
	}
	want := model(sets)
	checkProofs(t, tr, roots, want)
	require.NoError(t, tr.Close())

	tr, err = Open(db)
	require.NoError(t, err)
	require.Equal(t, int64(len(sets)-1), tr.Version())
	require.Equal(t, roots[len(roots)-1], tr.Root())
	checkProofs(t, tr, roots, want)
}

func TestTamperedProofsFail(t *testing.T) {
	tr, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	root, _, err := tr.Commit(changeSet("alice", "consent-1", "bob", "consent-2", "carol", "consent-3"))
	require.NoError(t, err)

	p, err := tr.Prove(0, []byte("bob"))
	require.NoError(t, err)
	require.True(t, p.Exists)
	require.NoError(t, VerifyProof(root, p))

	tamper := func(f func(p *Proof)) *Proof {
		q := *p
		q.Key = bytes.Clone(p.Key)
		q.Value = bytes.Clone(p.Value)
		q.Commitment = bytes.Clone(p.Commitment)
		f(&q)
		return &q
	}
	cases := map[string]*Proof{
		"value":           tamper(func(q *Proof) { q.Value = []byte("consent-X") }),
		"key":             tamper(func(q *Proof) { q.Key = []byte("alice") }),
		"claims absence":  tamper(func(q *Proof) { q.Exists = false; q.Value = nil }),
		"flipped bit":     tamper(func(q *Proof) { q.Commitment[len(q.Commitment)/2] ^= 1 }),
		"truncated":       tamper(func(q *Proof) { q.Commitment = q.Commitment[:len(q.Commitment)-3] }),
		"no commitment":   tamper(func(q *Proof) { q.Commitment = nil }),
		"garbage":         tamper(func(q *Proof) { q.Commitment = []byte{0xff, 0xff, 0xff} }),
		"empty key":       tamper(func(q *Proof) { q.Key = nil }),
		"value, no proof": tamper(func(q *Proof) { q.Exists = false }),
	}
	for name, q := range cases {
		err := VerifyProof(root, q)
		require.Error(t, err, name)
		require.True(t, errors.Is(err, ErrBadProof), name)
	}
	require.Error(t, VerifyProof(root, nil))

	// Absence of a key between two present ones cannot be turned into presence.
	abs, err := tr.Prove(0, []byte("bobby"))
	require.NoError(t, err)
	require.False(t, abs.Exists)
	require.NoError(t, VerifyProof(root, abs))
	abs.Exists, abs.Value = true, []byte("x")
	require.Error(t, VerifyProof(root, abs))
	// An absence proof for one key does not prove absence of another.
	abs2, err := tr.Prove(0, []byte("bobby"))
	require.NoError(t, err)
	abs2.Key = []byte("bob")
	require.Error(t, VerifyProof(root, abs2))
}

func TestRollbackAndRecommit(t *testing.T) {
	db := iavldb.NewMemDB()
	tr, err := Open(db)
	require.NoError(t, err)
	sets := randomChangeSets(3, 10)
	var roots []chain.Hash
	for _, cs := range sets {
		r, _, err := tr.Commit(cs)
		require.NoError(t, err)
		roots = append(roots, r)
	}
	require.Error(t, tr.Rollback(20))
	require.NoError(t, tr.Rollback(5))
	require.Equal(t, int64(5), tr.Version())
	require.Equal(t, roots[5], tr.Root())
	_, err = tr.ViewAt(6)
	require.Error(t, err)
	// Replaying the same change sets gives the same roots; a different one overwrites cleanly.
	r, v, err := tr.Commit(sets[6])
	require.NoError(t, err)
	require.Equal(t, int64(6), v)
	require.Equal(t, roots[6], r)
	r, _, err = tr.Commit(changeSet("zzz", "new"))
	require.NoError(t, err)
	require.NotEqual(t, roots[7], r)
	require.NoError(t, tr.Close())

	tr, err = Open(db)
	require.NoError(t, err)
	require.Equal(t, int64(7), tr.Version())
	require.Equal(t, r, tr.Root())

	require.NoError(t, tr.Rollback(NoVersion))
	require.Equal(t, NoVersion, tr.Version())
	require.Equal(t, EmptyRoot, tr.Root())
	_, v, err = tr.Commit(sets[0])
	require.NoError(t, err)
	require.Equal(t, int64(0), v)
	require.Equal(t, roots[0], tr.Root())
}

// TestOpenRepairsHalfSavedVersion simulates a crash inside SaveVersion: the nodes of the next
// version are written but not its root.
func TestOpenRepairsHalfSavedVersion(t *testing.T) {
	for _, partialGenesis := range []bool{false, true} {
		db := iavldb.NewMemDB()
		tr, err := Open(db)
		require.NoError(t, err)
		n := 4
		if partialGenesis {
			n = 1
		}
		sets := randomChangeSets(5, n)
		for _, cs := range sets {
			_, _, err := tr.Commit(cs)
			require.NoError(t, err)
		}
		require.NoError(t, tr.Close())
		// Delete the last version's root key: 's' + version(8) + nonce(4), nonce 1 is the root.
		last := int64(n) // IAVL version of the last commit
		rootKey := append([]byte{'s'}, be64(last)...)
		rootKey = append(rootKey, 0, 0, 0, 1)
		has, err := db.Has(rootKey)
		require.NoError(t, err)
		require.True(t, has)
		require.NoError(t, db.Delete(rootKey))

		tr, err = Open(db)
		require.NoError(t, err)
		require.Equal(t, int64(n-2), tr.Version())
		_, v, err := tr.Commit(sets[n-1])
		require.NoError(t, err)
		require.Equal(t, int64(n-1), v)
	}
}

func be64(v int64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}

// TestPrune deletes old versions: they become ErrNoSuchVersion, newer ones keep their proofs,
// pruning again is a no-op, it survives reopening, and rollback still works above the pruned range.
func TestPrune(t *testing.T) {
	db := iavldb.NewMemDB()
	tr, err := Open(db)
	require.NoError(t, err)
	sets := randomChangeSets(11, 12)
	var roots []chain.Hash
	for _, cs := range sets {
		r, _, err := tr.Commit(cs)
		require.NoError(t, err)
		roots = append(roots, r)
	}
	require.Error(t, tr.Prune(11), "the latest version is never pruned")
	require.NoError(t, tr.Prune(-1))
	require.NoError(t, tr.Prune(5))
	require.NoError(t, tr.Prune(5))
	require.NoError(t, tr.Prune(3), "below what is already pruned")
	for v := int64(0); v <= 5; v++ {
		_, err := tr.ViewAt(v)
		require.ErrorIs(t, err, ErrNoSuchVersion, "version %d", v)
		_, err = tr.Prove(v, []byte("k001"))
		require.ErrorIs(t, err, ErrNoSuchVersion, "version %d", v)
	}
	check := func(tr *Tree) {
		for v := int64(6); v <= 11; v++ {
			p, err := tr.Prove(v, []byte("k042"))
			require.NoError(t, err)
			require.NoError(t, VerifyProof(roots[v], p), "version %d", v)
		}
	}
	check(tr)
	require.NoError(t, tr.Close())
	tr, err = Open(db)
	require.NoError(t, err)
	require.Equal(t, int64(11), tr.Version())
	check(tr)
	_, err = tr.ViewAt(2)
	require.ErrorIs(t, err, ErrNoSuchVersion)
	require.NoError(t, tr.Rollback(8))
	require.Equal(t, roots[8], tr.Root())
	r, _, err := tr.Commit(sets[9])
	require.NoError(t, err)
	require.Equal(t, roots[9], r)
	require.NoError(t, tr.Prune(8))
	_, err = tr.ViewAt(8)
	require.ErrorIs(t, err, ErrNoSuchVersion)
	require.NoError(t, tr.Close())
}

// TestViewsReadDuringCommits reads views and proofs of the latest version while commits run
// (gossip validators and the API read while the replica commits): under -race it caught IAVL's
// immutable trees sharing nodes with the working tree.
func TestViewsReadDuringCommits(t *testing.T) {
	tr, err := Open(iavldb.NewMemDB())
	require.NoError(t, err)
	sets := randomChangeSets(7, 200)
	_, _, err = tr.Commit(sets[0])
	require.NoError(t, err)
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			v, err := tr.ViewAt(tr.Version())
			if err != nil {
				readErr <- err
				return
			}
			key := []byte(fmt.Sprintf("k%03d", i%200))
			if _, err := v.Get(key); err != nil {
				readErr <- err
				return
			}
			if _, err := tr.Prove(tr.Version(), key); err != nil && !errors.Is(err, ErrNoSuchVersion) {
				readErr <- err
				return
			}
		}
	}()
	for _, cs := range sets[1:] {
		_, _, err := tr.Commit(cs)
		require.NoError(t, err)
	}
	close(done)
	require.NoError(t, <-readErr)
}
