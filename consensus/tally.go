package consensus

import (
	"bytes"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Vote arithmetic, kept apart so that it can be checked against a naive reference
// (tally_test.go). One authority, one vote; n is the size of the authority set.

// quorum reports whether count votes are more than two thirds of n.
func quorum(n, count int) bool { return count >= chain.QuorumOf(n) }

// honestWitness reports whether count distinct authorities include at least one honest one when
// at most f = (n-1)/3 are faulty: count >= f+1.
func honestWitness(n, count int) bool { return count >= (n-1)/3+1 }

// tally counts one kind of vote in one round: distinct voters, and per block hash (nil votes
// under the zero hash) the distinct authorities that voted for it.
type tally struct {
	voters int
	byHash map[chain.Hash]int
}

// add counts a vote for h by an authority that has not voted for h before; newVoter is false for
// an equivocating authority's further votes, which count for their value but not as a voter.
func (t *tally) add(h chain.Hash, newVoter bool) {
	if t.byHash == nil {
		t.byHash = make(map[chain.Hash]int)
	}
	if newVoter {
		t.voters++
	}
	t.byHash[h]++
}

// remove uncounts one vote for h by an authority that keeps other votes (so it stays a voter).
func (t *tally) remove(h chain.Hash) {
	if t.byHash[h] <= 1 {
		delete(t.byHash, h)
		return
	}
	t.byHash[h]--
}

func (t *tally) count(h chain.Hash) int { return t.byHash[h] }

// majority returns the hash, if any, that more than two thirds of n voted for. Two hashes can
// both have a quorum only with more than f equivocators; the smallest is returned then, so the
// outcome never depends on map order.
func (t *tally) majority(n int) (chain.Hash, bool) {
	var best chain.Hash
	found := false
	for h, c := range t.byHash {
		if quorum(n, c) && (!found || bytes.Compare(h[:], best[:]) < 0) {
			best, found = h, true
		}
	}
	return best, found
}

// skipRound returns the highest round r such that at least f+1 of the given per-authority
// highest rounds are >= r: at least one honest authority has reached r, so it is safe and useful
// to jump there. ok is false when fewer than f+1 rounds are given.
func skipRound(n int, highest []uint32) (uint32, bool) {
	need := (n-1)/3 + 1
	if len(highest) < need {
		return 0, false
	}
	s := slices.Clone(highest)
	slices.Sort(s)
	return s[len(s)-need], true
}
