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

// RoundWindow is how many rounds ahead of its own a node accepts votes and proposals for; a
// driver applies the same bound before handing messages in.
const RoundWindow = roundWindow

// maxVotesPerAuthority bounds the distinct votes kept per authority, round and type. An honest
// authority signs one; keeping a few conflicting ones lets each count for its own value (the
// paper counts messages per value, so an equivocator's votes count for every value they name),
// which is what lets a node that first saw an equivocator's other vote still verify a proof of
// lock relayed to it. The bound keeps an equivocator from growing memory without limit.
const maxVotesPerAuthority = 3

// voteSet holds each authority's distinct votes for one round and type (first one first), and
// their tally.
type voteSet struct {
	byAuthority map[chain.PubKey][]*chain.Vote
	tally       tally
}

// forHash returns the votes for h, one per authority, sorted by authority key.
func (vs *voteSet) forHash(h chain.Hash) []*chain.Vote {
	var out []*chain.Vote
	for _, votes := range vs.byAuthority {
		for _, v := range votes {
			if v.BlockHash == h {
				out = append(out, v)
			}
		}
	}
	slices.SortFunc(out, func(a, b *chain.Vote) int { return bytes.Compare(a.Authority[:], b.Authority[:]) })
	return out
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

// heightVotes is the vote bookkeeping of one height: per (round, type, authority) up to
// maxVotesPerAuthority distinct votes, each counting for its own value; a second, different vote
// is also evidence of equivocation.
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
	prev := vs.byAuthority[v.Authority]
	for _, p := range prev {
		if p.BlockHash == v.BlockHash {
			return false, nil // a re-broadcast
		}
	}
	var ev *chain.Evidence
	if len(prev) > 0 {
		e := chain.NewEvidence(*prev[0], *v)
		if k := e.Key(); !hv.reported[k] {
			hv.reported[k] = true
			ev = e
		}
		if len(prev) >= maxVotesPerAuthority {
			// Full. Junk (a value nobody else voted for) must not crowd out a vote that
			// matters: evict the least supported vote if the new one's value has more support
			// from other authorities. An equivocator spraying random hashes cannot then keep
			// its real vote out of a proof of lock.
			worst, worstSupport := -1, 0
			for i, p := range prev {
				if s := vs.tally.count(p.BlockHash) - 1; worst < 0 || s < worstSupport {
					worst, worstSupport = i, s
				}
			}
			if vs.tally.count(v.BlockHash) <= worstSupport {
				return false, ev
			}
			vs.tally.remove(prev[worst].BlockHash)
			prev = append(prev[:worst:worst], prev[worst+1:]...)
			vs.byAuthority[v.Authority] = prev
			vs.tally.add(v.BlockHash, false)
			vs.byAuthority[v.Authority] = append(prev, v)
			return true, ev
		}
	}
	if vs.byAuthority == nil {
		vs.byAuthority = make(map[chain.PubKey][]*chain.Vote)
	}
	vs.byAuthority[v.Authority] = append(prev, v)
	vs.tally.add(v.BlockHash, len(prev) == 0)
	return true, ev
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

// highestSeen is the highest round any authority of the set has voted in at this height.
func (hv *heightVotes) highestSeen() uint32 {
	var top uint32
	for _, r := range hv.highest {
		top = max(top, r)
	}
	return top
}

// atOrBeyond counts the authorities other than me whose highest vote at this height is in round
// r or later.
func (hv *heightVotes) atOrBeyond(r uint32, me chain.PubKey) int {
	n := 0
	for k, hr := range hv.highest {
		if k != me && hr >= r {
			n++
		}
	}
	return n
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
	for _, v := range hv.get(r, chain.Precommit).forHash(h) {
		c.Sigs = append(c.Sigs, chain.CommitSig{Authority: v.Authority, Sig: v.Sig})
	}
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
	return hv.get(r, t).forHash(h)
}

// has reports whether exactly v (authority, round, type and block) is already counted.
func (hv *heightVotes) hasVote(v *chain.Vote) bool {
	if v.Height != hv.height {
		return false
	}
	rv := hv.rounds[v.Round]
	if rv == nil {
		return false
	}
	for _, p := range rv.of(v.Type).byAuthority[v.Authority] {
		if p.BlockHash == v.BlockHash {
			return true
		}
	}
	return false
}
