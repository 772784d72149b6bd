package p2p

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Size limits of gossip payloads.
const (
	// MaxPubsubMessageBytes is pubsub's own limit on one RPC frame (WithMaxMessageSize): the
	// envelope around a payload must fit in it too.
	MaxPubsubMessageBytes = 1 << 20
	// pubsubEnvelopeBytes is room left for the envelope (topic, protobuf framing: well under a
	// hundred bytes without signatures).
	pubsubEnvelopeBytes = 4 << 10
	// MaxGossipBytes bounds any topic's payloads; larger payloads travel over the direct
	// protocol.
	MaxGossipBytes = MaxPubsubMessageBytes - pubsubEnvelopeBytes
)

// Publish queue bounds: payloads waiting for pubsub, by count and by bytes.
const (
	publishQueueSize  = 1024
	publishQueueBytes = 32 << 20
)

// topicValidationBytes bounds the payload bytes one topic's validators hold at once: a topic
// validates at most topicValidationBytes / MaxBytes payloads concurrently (at least 16, at
// most pubsub's default of 1024); pubsub drops what arrives beyond that, without blame.
const topicValidationBytes = 64 << 20

func validationConcurrency(maxBytes int) int {
	return min(max(topicValidationBytes/maxBytes, 16), 1024)
}

// Errors of Publish.
var (
	ErrTooLarge  = errors.New("p2p: payload too large")
	ErrQueueFull = errors.New("p2p: queue full")
)

// TopicName names a gossip topic by network, noun and version: /medledger/<chainID>/<name>/<version>.
func TopicName(chainID, name string, version int) string {
	return "/medledger/" + chainID + "/" + name + "/" + strconv.Itoa(version)
}

// TopicConfig describes a gossip topic a caller joins.
type TopicConfig struct {
	Name    string // a short noun, e.g. "votes"; namespaced by network (see TopicName)
	Version int
	// MaxBytes bounds a payload, checked before the validator runs (a larger one is rejected);
	// at most MaxGossipBytes.
	MaxBytes int
	// Validate judges every payload from another peer. Our own payloads are not judged.
	Validate Validator
	// Candidates opens the topic to candidates (see Class): they may publish on it and
	// receive it. For the transaction topic, over which a new practice registers; every other
	// topic is the members' alone.
	Candidates bool
}

// topic is a joined gossip topic.
type topic struct {
	name     string // short name
	full     string
	maxBytes int
	validate Validator
	ps       *pubsub.Topic
	sub      *pubsub.Subscription
	// verdicts counts the validator's answers to other peers' payloads (TopicVerdicts).
	accepted, ignored, rejected atomic.Uint64
}

// JoinTopic joins a gossip topic, with the validator every payload from another peer must
// pass, and delivers what it accepts to the inbox. Join every topic once, before publishing.
func (h *Host) JoinTopic(c TopicConfig) error {
	if c.Name == "" || c.Version <= 0 || c.Validate == nil {
		return fmt.Errorf("p2p: topic %q: name, version and validator are required", c.Name)
	}
	if c.MaxBytes <= 0 || c.MaxBytes > MaxGossipBytes {
		return fmt.Errorf("p2p: topic %q: payload limit %d outside 1..%d", c.Name, c.MaxBytes, MaxGossipBytes)
	}
	t := &topic{name: c.Name, full: TopicName(h.chainID, c.Name, c.Version), maxBytes: c.MaxBytes, validate: c.Validate}
	h.topicsMu.Lock()
	defer h.topicsMu.Unlock()
	if h.ctx.Err() != nil {
		return errClosed
	}
	if h.topics[t.name] != nil {
		return fmt.Errorf("p2p: topic %q joined twice", c.Name)
	}
	if c.Candidates {
		h.openTopics.Store(t.full, true)
	}
	if err := h.ps.RegisterTopicValidator(t.full, h.topicValidator(t), pubsub.WithValidatorConcurrency(validationConcurrency(t.maxBytes))); err != nil {
		return fmt.Errorf("p2p: validator for %s: %w", t.full, err)
	}
	var err error
	if t.ps, err = h.ps.Join(t.full); err != nil {
		return fmt.Errorf("p2p: join %s: %w", t.full, err)
	}
	if err := t.ps.SetScoreParams(topicScoreParams()); err != nil {
		return fmt.Errorf("p2p: score parameters of %s: %w", t.full, err)
	}
	if t.sub, err = t.ps.Subscribe(pubsub.WithBufferSize(1024)); err != nil {
		return fmt.Errorf("p2p: subscribe %s: %w", t.full, err)
	}
	h.topics[t.name] = t
	h.wg.Add(1)
	go h.readTopic(t)
	return nil
}

func (h *Host) topic(name string) *topic {
	h.topicsMu.Lock()
	defer h.topicsMu.Unlock()
	return h.topics[name]
}

// Publish queues data for the joined topic name without blocking. Pubsub names a message by
// the hash of its payload and drops a payload it has seen in the last two minutes, ours
// included: a payload published again is the same message, neither re-verified nor
// re-forwarded by anyone. To reach peers again, send directly (SendDirectAll).
func (h *Host) Publish(name string, data []byte) error {
	t := h.topic(name)
	if t == nil {
		return fmt.Errorf("p2p: publish on %q: topic not joined", name)
	}
	if len(data) > t.maxBytes {
		return fmt.Errorf("%w: %d bytes on %s, limit %d", ErrTooLarge, len(data), t.name, t.maxBytes)
	}
	if h.ctx.Err() != nil {
		return errClosed
	}
	if n := h.publishBytes.Add(int64(len(data))); n > publishQueueBytes {
		h.publishBytes.Add(-int64(len(data)))
		h.stats.publishDropped.Add(1)
		return ErrQueueFull
	}
	select {
	case h.publish <- publishJob{topic: t, data: data}:
		return nil
	default:
		h.publishBytes.Add(-int64(len(data)))
		h.stats.publishDropped.Add(1)
		return ErrQueueFull
	}
}

type publishJob struct {
	topic *topic
	data  []byte
}

func (h *Host) publishLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case job := <-h.publish:
			err := job.topic.ps.Publish(h.ctx, job.data)
			h.publishBytes.Add(-int64(len(job.data)))
			if err != nil && h.ctx.Err() == nil {
				h.log.Warn("p2p: publish", "topic", job.topic.name, "err", err)
			}
		}
	}
}

// topicValidator wraps a caller's validator for pubsub: our own payloads pass unjudged (we
// built them), a payload over the topic's limit is rejected before the caller sees it, and a
// Reject also strikes the delivering peer (see Verdict).
func (h *Host) topicValidator(t *topic) pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if from == h.self {
			return pubsub.ValidationAccept
		}
		if !h.topicAllowed(from, t.full) {
			// Not the relayer's fault if it relays what a peer of its class may send; we
			// just do not take it from this peer (see topicAllowed).
			h.stats.gossipIgnored.Add(1)
			t.ignored.Add(1)
			return pubsub.ValidationIgnore
		}
		data := msg.GetData()
		v, value := Reject, any(nil)
		if len(data) <= t.maxBytes {
			v, value = t.validate(from, data)
		}
		switch v {
		case Accept:
			t.accepted.Add(1)
			msg.ValidatorData = value
			return pubsub.ValidationAccept
		case Ignore:
			h.stats.gossipIgnored.Add(1)
			t.ignored.Add(1)
			return pubsub.ValidationIgnore
		}
		h.stats.gossipRejected.Add(1)
		t.rejected.Add(1)
		h.Penalize(from, Invalid(fmt.Errorf("p2p: invalid payload of %d bytes on %s", len(data), t.name)))
		return pubsub.ValidationReject
	}
}

// topicAllowed reports whether peer p may use the topic named full: members every topic,
// candidates the topics opened to them, no one else any. It is gossipsub's peer filter (mesh,
// gossip, grafts), its subscription filter (so our flood-published messages never reach a peer
// on a topic it may not use), and the validators' first check.
func (h *Host) topicAllowed(p peer.ID, full string) bool {
	switch h.adm.class(p) {
	case Member:
		return true
	case Candidate:
		_, open := h.openTopics.Load(full)
		return open
	}
	return false
}

// subFilter is gossipsub's subscription filter: we subscribe to whatever we join; a peer's
// subscriptions count only on topics it may use.
type subFilter struct{ h *Host }

func (f subFilter) CanSubscribe(string) bool { return true }

func (f subFilter) FilterIncomingSubscriptions(p peer.ID, subs []*pubsubpb.RPC_SubOpts) ([]*pubsubpb.RPC_SubOpts, error) {
	out := subs[:0:0]
	for _, s := range subs {
		if f.h.topicAllowed(p, s.GetTopicid()) {
			out = append(out, s)
		}
	}
	return out, nil
}

// readTopic moves accepted gossip into the inbox, skipping our own payloads.
func (h *Host) readTopic(t *topic) {
	defer h.wg.Done()
	for {
		msg, err := t.sub.Next(h.ctx)
		if err != nil {
			return // cancelled
		}
		if msg.ReceivedFrom == h.self {
			continue
		}
		h.deliver(Delivery{From: msg.ReceivedFrom, Topic: t.name, Size: len(msg.GetData()), Value: msg.ValidatorData}, msg.GetData())
	}
}

// deliver queues d, with data unless the validator gave a value, dropping it beyond the
// inbox's bounds.
func (h *Host) deliver(d Delivery, data []byte) {
	if d.Value == nil {
		d.Data = data
	}
	if h.inbox.put(d) {
		h.stats.delivered.Add(1)
		return
	}
	if n := h.stats.inboxDropped.Add(1); n&(n-1) == 0 { // log at powers of two
		msgs, bytes, peerBytes := h.inbox.usage(d.From)
		h.log.Warn("p2p: inbox full, dropping messages", "dropped", n, "messages", msgs, "bytes", bytes, "from", d.From, "peer_bytes", peerBytes)
	}
}

// Peer score thresholds. A peer's score is the sum of its topic scores (each capped by
// TopicScoreCap in total) and the application score (strikes from Penalize):
//
//   - below gossipThreshold (-100) we stop gossiping (IHAVE/IWANT) with the peer;
//   - below publishThreshold (-200) we stop flood-publishing our messages to it;
//   - below graylistThreshold (-400) we ignore every RPC it sends, and the host disconnects
//     and refuses it like a peer with too many strikes (refuseGraylisted).
//
// With invalidMessageWeight -20 and the counter squared, three invalid messages put a peer
// below the gossip threshold, four below the publish threshold and five on the gray list;
// the counter decays to nothing in about an hour. Penalize strikes cost appStrikeWeight each,
// so the 20 strikes that close a peer also take it below the publish threshold.
const (
	gossipThreshold      = -100
	publishThreshold     = -200
	graylistThreshold    = -400
	invalidMessageWeight = -20
	appStrikeWeight      = -10
)

// scoreParams are the peer score parameters: per topic (topicScoreParams, set as each topic is
// joined) positive credit for time in the mesh and for first deliveries, a strong penalty for
// invalid messages, and no mesh delivery penalties (P3, P3b): those punish a peer for not
// forwarding enough, and on a permissioned chain with bursty traffic a node that is merely
// behind or idle would charge honest peers for its own silence. IP colocation (P6) is off:
// authorities are few and known, and testnets share 127.0.0.1.
func scoreParams(appScore func(peer.ID) float64) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	params := &pubsub.PeerScoreParams{
		Topics:            map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap:     50, // honest credit cannot outweigh more than a few invalid messages
		AppSpecificScore:  appScore,
		AppSpecificWeight: 1,
		// P7: gossip misbehaviour (broken IWANT promises, re-grafting during backoff); mild,
		// because a slow node may break a promise now and then.
		BehaviourPenaltyWeight:    -1,
		BehaviourPenaltyThreshold: 10,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:             pubsub.DefaultDecayInterval,
		DecayToZero:               pubsub.DefaultDecayToZero,
		// Remember a disconnected peer's score, so reconnecting does not wash it clean.
		RetainScore: 30 * time.Minute,
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:             gossipThreshold,
		PublishThreshold:            publishThreshold,
		GraylistThreshold:           graylistThreshold,
		AcceptPXThreshold:           100, // unreachable: peer exchange is off anyway
		OpportunisticGraftThreshold: 1,
	}
	return params, thresholds
}

// topicScoreParams are every topic's score parameters (see scoreParams).
func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight: 1,
		// P1: up to +10 after an hour in the mesh.
		TimeInMeshWeight:  10.0 / 3600,
		TimeInMeshQuantum: time.Second,
		TimeInMeshCap:     3600,
		// P2: +1 per first delivery, at most +20, forgotten over ten minutes.
		FirstMessageDeliveriesWeight: 1,
		FirstMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:    20,
		// P3 and P3b off: see scoreParams.
		// P4: invalid messages, squared.
		InvalidMessageDeliveriesWeight: invalidMessageWeight,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// TopicVerdicts are the validator's answers on one topic to payloads from other peers.
type TopicVerdicts struct {
	Topic                       string // the short name
	Accepted, Ignored, Rejected uint64
}

// TopicVerdicts returns, per joined topic, how many payloads from other peers were accepted,
// ignored and rejected since the host started, sorted by topic.
func (h *Host) TopicVerdicts() []TopicVerdicts {
	h.topicsMu.Lock()
	defer h.topicsMu.Unlock()
	out := make([]TopicVerdicts, 0, len(h.topics))
	for _, t := range h.topics {
		out = append(out, TopicVerdicts{Topic: t.name, Accepted: t.accepted.Load(), Ignored: t.ignored.Load(), Rejected: t.rejected.Load()})
	}
	slices.SortFunc(out, func(a, b TopicVerdicts) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}
