package reactor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/p2p/frame"
)

// Network is what a Reactor needs from the p2p host.
type Network interface {
	JoinTopic(p2p.TopicConfig) error
	Publish(topic string, data []byte) error
	HandleDirect(p2p.Validator)
	HandleDirectHead(p2p.HeadValidator)
	SendDirect(to peer.ID, data []byte) bool
	SendDirectAll(data []byte) int
	Penalize(p peer.ID, reason error)
	Inbox() <-chan p2p.Delivery
}

// Bounds of the reactor's own state.
const (
	// seenPayloads is how many delivered payload hashes are remembered (32 bytes each, plus
	// the list's overhead: about 2 MiB): a few rounds of votes of a large authority set and
	// the transactions of several full blocks.
	seenPayloads = 16384
	// Hints: at most hintRate a second per peer (bursts of hintBurst), at most hintQueue
	// waiting, and a proposal is decoded for a hint only up to maxHintProposalBytes; votes,
	// which every authority sends each round, carry the news as well.
	hintRate             = 2
	hintBurst            = 4
	hintQueue            = 64
	maxHintProposalBytes = 64 << 10
	// Long direct payloads ignored from their head (a proposal for a far or an old height, a
	// sync answer nobody asked for): at most ignoredLongRate a second per peer, in bursts of
	// ignoredLongBurst; each one beyond earns its sender a strike. Such a payload costs us its
	// stream and the quarter MiB the sender may push before we reset it, whatever we do, and no
	// node can use it: an honest proposer sends a lagging peer at most one proposal per round,
	// and one more per round timeout, and answers only when asked, while a compromised member
	// sending 8 MiB proposals for far heights fifty times a second (the direct protocol's stream
	// rate) cost each honest node six hundredths of a core.
	ignoredLongRate  = 2
	ignoredLongBurst = 10
)

// Config holds the Reactor's optional knobs.
type Config struct {
	Log *slog.Logger     // nil discards
	Now func() time.Time // the clock of the per-peer limits; nil means time.Now
}

// Reactor carries replica messages over a Network and judges what arrives with the replica's
// Gate. It implements the node's Transport; its methods are safe for concurrent use.
type Reactor struct {
	net   Network
	gate  *replica.Gate
	log   *slog.Logger
	now   func() time.Time
	seen  *seenSet
	junk  *junkCounter
	hintL *frame.PeerLimits
	longL *frame.PeerLimits // long direct payloads ignored from their head

	hints chan replica.Inbound
	inbox chan replica.Inbound
	txs   *txBatcher

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	stats counters
}

// New joins the consensus topics on net, sets the direct protocol's validator and starts
// moving accepted messages to Inbox. gate is the replica's (Replica.Gate). Close stops it.
func New(net Network, gate *replica.Gate, cfg Config) (*Reactor, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reactor{
		net: net, gate: gate, log: cfg.Log, now: cfg.Now,
		seen:  newSeenSet(seenPayloads),
		junk:  newJunkCounter(cfg.Now),
		hintL: frame.NewPeerLimits(hintRate, hintBurst),
		longL: frame.NewPeerLimits(ignoredLongRate, ignoredLongBurst),
		hints: make(chan replica.Inbound, hintQueue),
		inbox: make(chan replica.Inbound),
	}
	for _, t := range []struct {
		name string
		max  int
		rt   route
	}{
		{TopicTxs, MaxGossipTxBytes, viaTxs}, // open to candidates: a new practice registers over it
		{TopicProposals, MaxGossipProposalBytes, viaProposals},
		{TopicVotes, MaxGossipVoteBytes, viaVotes},
	} {
		if err := net.JoinTopic(p2p.TopicConfig{Name: t.name, Version: TopicVersion, MaxBytes: t.max, Validate: r.validator(t.rt), Candidates: t.rt == viaTxs}); err != nil {
			return nil, err
		}
	}
	net.HandleDirect(r.validator(viaDirect))
	net.HandleDirectHead(r.headValidator)
	r.txs = newTxBatcher(func(data []byte) {
		if err := net.Publish(TopicTxs, data); err != nil {
			r.log.Debug("reactor: publish", "kind", "txs", "err", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go r.pump(ctx)
	return r, nil
}

// Close stops moving messages to Inbox. The Network stays the caller's to close.
func (r *Reactor) Close() {
	r.once.Do(func() {
		r.txs.close()
		r.cancel()
		r.wg.Wait()
	})
}

// Inbox returns the channel of judged messages and hints. It is never closed.
func (r *Reactor) Inbox() <-chan replica.Inbound { return r.inbox }

// Broadcast sends m to the network without blocking: transactions (in batches, see
// txBatcher), proposals and votes on their topic, a proposal over the gossip limit directly to every connected peer. Sync
// messages are not broadcast (use Send).
func (r *Reactor) Broadcast(m *replica.Message) {
	if m.Tx != nil {
		r.txs.add(m.Tx)
		return
	}
	data := m.Encode()
	var topic string
	var limit int
	switch {
	case m.Tx != nil:
		topic, limit = TopicTxs, MaxGossipTxBytes
	case m.Proposal != nil:
		topic, limit = TopicProposals, MaxGossipProposalBytes
	case m.Vote != nil:
		topic, limit = TopicVotes, MaxGossipVoteBytes
	default:
		r.log.Error("reactor: broadcast of a message that is not gossiped", "kind", m.Kind())
		return
	}
	if len(data) > limit {
		if m.Proposal == nil {
			r.log.Error("reactor: message too large to broadcast", "kind", m.Kind(), "bytes", len(data))
			return
		}
		r.stats.bigProposals.Add(1)
		r.net.SendDirectAll(data)
		return
	}
	if err := r.net.Publish(topic, data); err != nil {
		r.log.Debug("reactor: publish", "kind", m.Kind(), "err", err)
	}
}

// Resend sends m, which this node sent before, directly to every connected peer: gossip would
// drop it as a payload it has seen, and the peers that need it again are those that missed it
// or restarted. A peer that has it drops it by its hash before any check.
func (r *Reactor) Resend(m *replica.Message) {
	r.stats.resends.Add(1)
	r.net.SendDirectAll(m.Encode())
}

// Send sends m directly to one peer (sync requests and answers).
func (r *Reactor) Send(to replica.PeerID, m *replica.Message) {
	p, err := peer.Decode(string(to))
	if err != nil {
		r.log.Error("reactor: send to an invalid peer id", "peer", to, "err", err)
		return
	}
	r.net.SendDirect(p, m.Encode())
}

// Penalize reports a peer whose message the replica found invalid.
func (r *Reactor) Penalize(to replica.PeerID, reason error) {
	p, err := peer.Decode(string(to))
	if err != nil {
		return
	}
	r.net.Penalize(p, reason)
}

// PeerID names a libp2p peer as the replica does.
func PeerID(p peer.ID) replica.PeerID { return replica.PeerID(p.String()) }

// validator adapts judge to the p2p host and acts on its side notes: hints for messages from
// ahead, strikes for junk.
func (r *Reactor) validator(rt route) p2p.Validator {
	return func(from peer.ID, data []byte) (p2p.Verdict, any) {
		j := judge(r.gate, r.seen, rt, data)
		switch {
		case j.verdict == p2p.Accept:
			r.stats.accepted.Add(1)
			if rt == viaDirect && j.in.Msg.Vote != nil {
				r.relayVote(data)
			}
			if j.junk && r.junk.add(from) {
				r.stats.junkStrikes.Add(1)
				r.net.Penalize(from, fmt.Errorf("reactor: %d junk transactions within %v, the last: %w", junkPerStrike, junkWindow, j.err))
			}
			return p2p.Accept, &j
		case j.dedup:
			r.stats.duplicates.Add(1)
		case j.ahead:
			r.hint(from, j, data)
		case j.junk:
			if r.junk.add(from) {
				r.stats.junkStrikes.Add(1)
				r.net.Penalize(from, fmt.Errorf("reactor: %d junk transactions within %v, the last: %w", junkPerStrike, junkWindow, j.err))
			}
		case j.verdict == p2p.Reject:
			r.stats.rejected.Add(1)
			r.log.Debug("reactor: rejected", "via", rt, "from", from, "err", j.err)
		}
		return j.verdict, nil
	}
}

// relayVote publishes on the votes topic a vote that arrived directly and passed the Gate. Votes
// reach the peers that did not get them from their signer through gossip; one sent only
// directly would otherwise stay with the peer it was sent to, and an authority that signs two
// votes for one round and sends each to different peers would never have both reach one node,
// which is what turns an equivocation into evidence. Pubsub names a message by its payload, so
// a vote the peers have seen (a re-send's usual case) goes no further than its first hop.
func (r *Reactor) relayVote(data []byte) {
	r.stats.relayedVotes.Add(1)
	if err := r.net.Publish(TopicVotes, data); err != nil {
		r.log.Debug("reactor: relay a direct vote", "err", err)
	}
}

// headValidator judges a long direct payload from its head (judgeHead) and acts as validator
// does on the verdict; an ignored one counts against its sender's allowance of them
// (ignoredLongRate). A proposal from ahead gives no hint here: hints carry only proposals small
// enough to decode (maxHintProposalBytes), and the sender's votes carry the news too.
func (r *Reactor) headValidator(from peer.ID, head []byte, size int) p2p.Verdict {
	j, ok := judgeHead(r.gate, PeerID(from), head)
	if !ok {
		return p2p.Accept
	}
	r.stats.headJudged.Add(1)
	if j.verdict == p2p.Ignore && !r.longL.Allow(from, r.now()) {
		r.stats.longStrikes.Add(1)
		r.net.Penalize(from, fmt.Errorf("reactor: more than %d long direct payloads a second that nobody can use, the last %d bytes: %s", ignoredLongRate, size, ignoredWhat(j)))
	}
	switch {
	case j.ahead:
		r.stats.hintsDropped.Add(1)
	case j.verdict == p2p.Reject:
		r.stats.rejected.Add(1)
		r.log.Debug("reactor: rejected from its head", "from", from, "bytes", size, "err", j.err)
	}
	return j.verdict
}

// ignoredWhat names an ignored long payload for a strike's reason.
func ignoredWhat(j judgement) string {
	if j.err != nil {
		return j.err.Error()
	}
	return fmt.Sprintf("a proposal for height %d", j.height)
}

// hint hands a message from a peer that is ahead to the replica, within the per-peer rate,
// so that it asks for blocks. The message is neither verified nor relayed: the replica only
// notes the height (and verifies whatever blocks it is then sent against their certificates).
func (r *Reactor) hint(from peer.ID, j judgement, data []byte) {
	if !r.hintL.Allow(from, r.now()) {
		r.stats.hintsDropped.Add(1)
		return
	}
	m := j.msg
	if m == nil {
		if len(data) > maxHintProposalBytes {
			r.stats.hintsDropped.Add(1)
			return
		}
		var err error
		if m, err = replica.DecodeMessage(data); err != nil {
			return
		}
	}
	select {
	case r.hints <- replica.Inbound{From: PeerID(from), Msg: m, Size: len(data)}:
		r.stats.hints.Add(1)
	default:
		r.stats.hintsDropped.Add(1)
	}
}

// pump moves what the host accepted, and hints, to Inbox. A payload's hash joins seen once the
// host hands it over, so one the host had to drop for its inbox bounds can still arrive again;
// and only for the height being decided (or a transaction): the replica buffers the next
// height's messages within bounds and may drop one, which a re-send must then be able to
// replace.
func (r *Reactor) pump(ctx context.Context) {
	defer r.wg.Done()
	in := r.net.Inbox()
	for {
		var next replica.Inbound
		select {
		case <-ctx.Done():
			return
		case d := <-in:
			j, ok := d.Value.(*judgement)
			if !ok {
				r.log.Error("reactor: delivery without a judgement", "topic", d.Topic, "from", d.From)
				continue
			}
			if m := j.in.Msg; m.Tx != nil || ((m.Proposal != nil || m.Vote != nil) && j.height <= r.gate.Height()) {
				r.seen.add(j.key)
			}
			next = j.in
			next.From = PeerID(d.From)
		case next = <-r.hints:
		}
		select {
		case r.inbox <- next:
		case <-ctx.Done():
			return
		}
	}
}

// Stats are the reactor's counters, for metrics and tests.
type Stats struct {
	Accepted     uint64 // payloads the Gate accepted
	Rejected     uint64 // payloads rejected (the host strikes the sender)
	Duplicates   uint64 // payloads dropped by their hash before any check
	Hints        uint64 // messages from ahead handed to the replica
	HintsDropped uint64 // messages from ahead beyond the per-peer rate or the queue
	JunkStrikes  uint64 // strikes for ignored junk
	BigProposals uint64 // proposals sent directly for being over the gossip limit
	Resends      uint64 // messages re-sent directly
	HeadJudged   uint64 // long direct payloads ignored or rejected from their head, unread
	RelayedVotes uint64 // votes that arrived directly, published on the votes topic
	LongStrikes  uint64 // strikes for long direct payloads ignored beyond ignoredLongRate
}

type counters struct {
	accepted, rejected, duplicates, hints, hintsDropped, junkStrikes, bigProposals, resends, headJudged,
	relayedVotes, longStrikes atomic.Uint64
}

// Stats returns a snapshot of the reactor's counters.
func (r *Reactor) Stats() Stats {
	c := &r.stats
	return Stats{
		Accepted: c.accepted.Load(), Rejected: c.rejected.Load(), Duplicates: c.duplicates.Load(),
		Hints: c.hints.Load(), HintsDropped: c.hintsDropped.Load(), JunkStrikes: c.junkStrikes.Load(),
		BigProposals: c.bigProposals.Load(), Resends: c.resends.Load(), HeadJudged: c.headJudged.Load(),
		RelayedVotes: c.relayedVotes.Load(), LongStrikes: c.longStrikes.Load(),
	}
}
