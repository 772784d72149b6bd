package consensus

import (
	"testing"

	"github.com/medledger/medledger/chain"
	"pgregory.net/rapid"
)

// The vote arithmetic against a deliberately naive reference, in the manner of etcd-io/raft's
// quorum/quick_test.go: the reference spells the definitions out with loops and fractions.

func naiveFaulty(n int) int {
	f := 0
	for 3*(f+1)+1 <= n {
		f++
	}
	return f
}

func naiveQuorum(n, c int) bool { return 3*c > 2*n }

func TestQuorumMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, chain.MaxAuthorities).Draw(t, "n")
		c := rapid.IntRange(0, n).Draw(t, "c")
		if quorum(n, c) != naiveQuorum(n, c) {
			t.Fatalf("quorum(%d, %d) = %v", n, c, quorum(n, c))
		}
		if honestWitness(n, c) != (c > naiveFaulty(n)) {
			t.Fatalf("honestWitness(%d, %d) = %v, f = %d", n, c, honestWitness(n, c), naiveFaulty(n))
		}
		// Two quorums share at least f+1 authorities, so they share an honest one.
		q := chain.QuorumOf(n)
		if !honestWitness(n, 2*q-n) {
			t.Fatalf("n=%d: quorums of %d overlap in %d, not enough", n, q, 2*q-n)
		}
	})
}

func TestTallyMatchesNaive(t *testing.T) {
	hashes := []chain.Hash{{}, {1}, {2}}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 10).Draw(t, "n")
		votes := rapid.SliceOfN(rapid.IntRange(0, len(hashes)-1), 0, n).Draw(t, "votes")
		var tl tally
		for _, v := range votes {
			tl.add(hashes[v], true)
		}
		if tl.voters != len(votes) {
			t.Fatalf("voters %d, want %d", tl.voters, len(votes))
		}
		var want chain.Hash
		found := false
		for _, h := range hashes {
			c := 0
			for _, v := range votes {
				if hashes[v] == h {
					c++
				}
			}
			if tl.count(h) != c {
				t.Fatalf("count(%x) = %d, want %d", h[:1], tl.count(h), c)
			}
			if naiveQuorum(n, c) {
				want, found = h, true
			}
		}
		got, ok := tl.majority(n)
		if ok != found || got != want {
			t.Fatalf("majority = %x %v, want %x %v", got[:1], ok, want[:1], found)
		}
	})
}

func TestSkipRoundMatchesNaive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 20).Draw(t, "n")
		rounds := rapid.SliceOfN(rapid.Uint32Range(0, 12), 0, n).Draw(t, "rounds")
		f := naiveFaulty(n)
		// Naive: the highest r such that more than f of the rounds are >= r.
		want, wantOK := uint32(0), false
		for r := uint32(0); r <= 12; r++ {
			c := 0
			for _, x := range rounds {
				if x >= r {
					c++
				}
			}
			if c > f {
				want, wantOK = r, true
			}
		}
		got, ok := skipRound(n, rounds)
		if ok != wantOK || (ok && got != want) {
			t.Fatalf("skipRound(%d, %v) = %d %v, want %d %v", n, rounds, got, ok, want, wantOK)
		}
	})
}
