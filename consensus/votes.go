package consensus

import (
	"bytes"
	"slices"

	"github.com/medledger/medledger/chain"
)

// roundWindow bounds memory: votes more than this many rounds ahead of the current round are
// not stored, only the round they name is remembered per authority (enough to decide a round
// skip). Their senders re-broadcast periodically, so nothing is lost once the engine catches up.
const roundWindow = 8

// voteSet holds the first vote of each authority for one round and type, and their tally.
type voteSet struct {
	first map[chain.PubKey]*chain.Vote
	tally tally
}

// roundVotes are the prevotes and precommits of one round.
type roundVotes struct {
	prevotes, precommits voteSet
}

func (r *roundVotes) of(t chain.VoteType) *voteSet {
	if t == chain.Prevote {
		return &r.prevotes
	}
	return &r.precommits
}

// heightVotes is the vote bookkeeping of one height: per (round, type, authority) the first
// vote, which is the one that counts; a second, different vote is evidence of equivocation.
type heightVotes struct {
	height   uint64
	set      *chain.AuthoritySet
	rounds   map[uint32]*roundVotes
	highest  map[chain.PubKey]uint32 // highest round each authority voted in at this height
	reported map[chain.Hash]bool     // Evidence.Key of offences already reported
}

func newHeightVotes(height uint64, set *chain.AuthoritySet) *heightVotes {
	return &heightVotes{
		height:   height,
		set:      set,
		rounds:   make(map[uint32]*roundVotes),
		highest:  make(map[chain.PubKey]uint32),
		reported: make(map[chain.Hash]bool),
	}
}

// add records v, whose signature the caller has verified. It reports whether v was stored (a new
// vote that counts) and, for a conflicting second vote of an offence not yet reported, evidence.
// Votes for other heights, from non-members or of an unknown type are dropped. Votes for rounds
// beyond current+roundWindow only update the authority's highest round.
func (hv *heightVotes) add(v *chain.Vote, current uint32) (bool, *chain.Evidence) {
	if v == nil || v.Validate() != nil || v.Height != hv.height || !hv.set.Contains(v.Authority) {
		return false, nil
	}
	if r, ok := hv.highest[v.Authority]; !ok || v.Round > r {
		hv.highest[v.Authority] = v.Round
	}
	if uint64(v.Round) > uint64(current)+roundWindow {
		return false, nil
	}
	rv := hv.rounds[v.Round]
	if rv == nil {
		rv = &roundVotes{}
		hv.rounds[v.Round] = rv
	}
	vs := rv.of(v.Type)
	if prev, ok := vs.first[v.Authority]; ok {
		if prev.BlockHash == v.BlockHash {
			return false, nil // a re-broadcast
		}
		ev := chain.NewEvidence(*prev, *v)
		if k := ev.Key(); !hv.reported[k] {
			hv.reported[k] = true
			return false, ev
		}
		return false, nil
	}
	if vs.first == nil {
		vs.first = make(map[chain.PubKey]*chain.Vote)
	}
	vs.first[v.Authority] = v
	vs.tally.add(v.BlockHash)
	return true, nil
}

func (hv *heightVotes) get(r uint32, t chain.VoteType) *voteSet {
	rv := hv.rounds[r]
	if rv == nil {
		return &voteSet{}
	}
	return rv.of(t)
}

// voters is the number of distinct authorities with a vote of type t in round r.
func (hv *heightVotes) voters(r uint32, t chain.VoteType) int { return hv.get(r, t).tally.voters }

// has reports whether more than two thirds voted for h with type t in round r.
func (hv *heightVotes) has(r uint32, t chain.VoteType, h chain.Hash) bool {
	return quorum(hv.set.Size(), hv.get(r, t).tally.count(h))
}

// skipTarget is the highest round that at least f+1 authorities have voted in or beyond.
func (hv *heightVotes) skipTarget() (uint32, bool) {
	rs := make([]uint32, 0, len(hv.highest))
	for _, r := range hv.highest {
		rs = append(rs, r)
	}
	return skipRound(hv.set.Size(), rs)
}

// committed returns a round and block hash that more than two thirds precommitted, if any,
// preferring the lowest round (all such hashes are equal unless more than f are faulty).
func (hv *heightVotes) committed() (uint32, chain.Hash, bool) {
	rounds := make([]uint32, 0, len(hv.rounds))
	for r := range hv.rounds {
		rounds = append(rounds, r)
	}
	slices.Sort(rounds)
	for _, r := range rounds {
		if h, ok := hv.rounds[r].precommits.tally.majority(hv.set.Size()); ok && !h.IsZero() {
			return r, h, true
		}
	}
	return 0, chain.Hash{}, false
}

// cert builds the commit certificate from exactly the precommits for h in round r, sorted by
// authority key so that every node derives the same bytes from the same votes.
func (hv *heightVotes) cert(r uint32, h chain.Hash) *chain.CommitCert {
	c := &chain.CommitCert{Version: chain.CertVersion, Height: hv.height, Round: r, BlockHash: h}
	for _, v := range hv.get(r, chain.Precommit).first {
		if v.BlockHash == h {
			c.Sigs = append(c.Sigs, chain.CommitSig{Authority: v.Authority, Sig: v.Sig})
		}
	}
	slices.SortFunc(c.Sigs, func(a, b chain.CommitSig) int { return bytes.Compare(a.Authority[:], b.Authority[:]) })
	return c
}

// wants reports whether some round has f+1 votes of either type for h: at least one honest
// authority found the block valid, so its body is worth keeping even from a second proposal.
func (hv *heightVotes) wants(h chain.Hash) bool {
	n := hv.set.Size()
	for _, rv := range hv.rounds {
		if honestWitness(n, rv.prevotes.tally.count(h)) || honestWitness(n, rv.precommits.tally.count(h)) {
			return true
		}
	}
	return false
}

// pol returns the prevotes for h in round r, the proof of lock a proposal with POLRound r relies
// on. The proposer relays them with the proposal: without that, nodes that missed them in round r
// could refuse the proposal forever while the locked nodes refuse everything else.
func (hv *heightVotes) pol(r uint32, h chain.Hash) []*chain.Vote {
	return hv.votesFor(r, chain.Prevote, h)
}

// votesFor returns the counted votes of type t for h in round r, sorted by authority so that
// output never depends on map order.
func (hv *heightVotes) votesFor(r uint32, t chain.VoteType, h chain.Hash) []*chain.Vote {
	var out []*chain.Vote
	for _, v := range hv.get(r, t).first {
		if v.BlockHash == h {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *chain.Vote) int { return bytes.Compare(a.Authority[:], b.Authority[:]) })
	return out
}
