package replica

import (
	"github.com/medledger/medledger/chain"
)

// FutureLimits bound the messages a replica holds for the next height. Zero fields take the
// defaults named in each comment.
type FutureLimits struct {
	MaxBytes     int // 48 MiB in all
	MaxPeerBytes int // 20 MiB from one peer: room for one full proposal and its votes
}

func (l *FutureLimits) defaults() {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 48 << 20
	}
	if l.MaxPeerBytes <= 0 {
		l.MaxPeerBytes = 20 << 20
	}
}

// futureBuffer holds messages for the height after the one being decided, until the replica
// gets there. Only what classifyProposal and classifyVote call classNext enters, so every
// message is signed by a member of that height's set (signatures were checked before), and it
// is bounded by bytes in all and per sending peer, by one proposal per round and proposer, and
// by the votes an authority can sign in the buffered rounds.
type futureBuffer struct {
	limits  FutureLimits
	height  uint64 // the height buffered messages are for
	items   []futureItem
	bytes   int
	perPeer map[PeerID]int
	props   map[proposalKey]bool
	votes   map[chain.PubKey]int
}

type futureItem struct {
	in   Inbound
	size int
}

type proposalKey struct {
	round    uint32
	proposer chain.PubKey
}

// maxFutureVotes bounds one authority's buffered votes: two types in each round it may reach
// early, a few conflicting ones each (see consensus's maxVotesPerAuthority).
const maxFutureVotes = 2 * (roundWindow + 1) * 3

func newFutureBuffer(l FutureLimits) *futureBuffer {
	l.defaults()
	return &futureBuffer{limits: l}
}

// reset empties the buffer and makes it hold messages for height h.
func (f *futureBuffer) reset(h uint64) {
	clear(f.items)
	f.items, f.bytes, f.height = f.items[:0], 0, h
	f.perPeer = make(map[PeerID]int)
	f.props = make(map[proposalKey]bool)
	f.votes = make(map[chain.PubKey]int)
}

// add buffers in (a message for f.height of encoded size size) if the bounds allow; it reports
// whether it did.
func (f *futureBuffer) add(in Inbound, size int) bool {
	m := in.Msg
	if f.bytes+size > f.limits.MaxBytes || f.perPeer[in.From]+size > f.limits.MaxPeerBytes {
		return false
	}
	switch {
	case m.Proposal != nil:
		if m.Proposal.Height != f.height {
			return false
		}
		k := proposalKey{m.Proposal.Round, m.Proposal.Proposer}
		if f.props[k] {
			return false
		}
		f.props[k] = true
	case m.Vote != nil:
		if m.Vote.Height != f.height || f.votes[m.Vote.Authority] >= maxFutureVotes {
			return false
		}
		f.votes[m.Vote.Authority]++
	default:
		return false
	}
	f.items = append(f.items, futureItem{in: in, size: size})
	f.bytes += size
	f.perPeer[in.From] += size
	return true
}

// take removes and returns everything buffered for height h (nothing if the buffer holds
// another height), and makes the buffer hold h+1 next.
func (f *futureBuffer) take(h uint64) []Inbound {
	var out []Inbound
	if f.height == h {
		out = make([]Inbound, len(f.items))
		for i, it := range f.items {
			out[i] = it.in
		}
	}
	f.reset(h + 1)
	return out
}

// Len is the number of buffered messages; Bytes their encoded size.
func (f *futureBuffer) Len() int   { return len(f.items) }
func (f *futureBuffer) Bytes() int { return f.bytes }
