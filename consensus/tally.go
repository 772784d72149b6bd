package consensus

import (
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

// tally counts one kind of vote in one round: distinct voters, per block hash (nil votes under
// the zero hash).
type tally struct {
	voters int
	byHash map[chain.Hash]int
}

func (t *tally) add(h chain.Hash) {
	if t.byHash == nil {
		t.byHash = make(map[chain.Hash]int)
	}
	t.voters++
	t.byHash[h]++
}

func (t *tally) count(h chain.Hash) int { return t.byHash[h] }

// majority returns the hash, if any, that more than two thirds of n voted for. At most one hash
// can have a quorum when every voter counts once.
func (t *tally) majority(n int) (chain.Hash, bool) {
	for h, c := range t.byHash {
		if quorum(n, c) {
			return h, true
		}
	}
	return chain.Hash{}, false
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
