package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
)

// topicKind is what a gossip topic carries.
type topicKind int

const (
	topicTxs topicKind = iota
	topicProposals
	topicVotes
	numTopics
)

func (k topicKind) String() string {
	switch k {
	case topicTxs:
		return "txs"
	case topicProposals:
		return "proposals"
	case topicVotes:
		return "votes"
	}
	return fmt.Sprintf("topic-%d", int(k))
}

// topicName names a topic by network and version: /medledger/<chainID>/<kind>/1.
func topicName(chainID string, k topicKind) string {
	return "/medledger/" + chainID + "/" + k.String() + "/1"
}

// TopicNames returns the gossip topics of network chainID, for operators and tests.
func TopicNames(chainID string) []string {
	names := make([]string, numTopics)
	for k := range numTopics {
		names[k] = topicName(chainID, k)
	}
	return names
}

// Size limits of gossip payloads (the replica.Message encoding), checked before anything is decoded.
const (
	// MaxPubsubMessageBytes is pubsub's own limit on one RPC frame (WithMaxMessageSize): the
	// signed envelope around a payload must fit in it too.
	MaxPubsubMessageBytes = 1 << 20
	// pubsubEnvelopeBytes is room left for the envelope (author, sequence number, topic,
	// signature, protobuf framing: about 200 bytes in practice).
	pubsubEnvelopeBytes = 4 << 10
	// MaxGossipProposalBytes bounds a proposal+block on the proposals topic. Larger proposals
	// go to every connected peer over the direct protocol instead.
	MaxGossipProposalBytes = MaxPubsubMessageBytes - pubsubEnvelopeBytes
	// MaxGossipVoteBytes bounds a vote message (a vote encodes to under 200 bytes).
	MaxGossipVoteBytes = 1 << 10
	// MaxGossipTxBytes bounds a transaction message: the largest transaction plus the message wrapper.
	MaxGossipTxBytes = chain.MaxTxBytes + 1<<10
)

func (k topicKind) maxBytes() int {
	switch k {
	case topicTxs:
		return MaxGossipTxBytes
	case topicVotes:
		return MaxGossipVoteBytes
	}
	return MaxGossipProposalBytes
}

// kindOf returns the topic a message belongs on; ok is false for sync messages, which never
// travel over gossip.
func kindOf(m *replica.Message) (topicKind, bool) {
	switch {
	case m.Tx != nil:
		return topicTxs, true
	case m.Proposal != nil:
		return topicProposals, true
	case m.Vote != nil:
		return topicVotes, true
	}
	return 0, false
}

// Errors of message checks; all wrap into a Reject on gossip and a strike on the direct protocol.
var (
	errTooLarge  = errors.New("p2p: message too large")
	errWrongKind = errors.New("p2p: wrong message kind")
)

// checkGossip is the typed core of every topic validator: the size cap, then decoding (form),
// then the kind, then the signature. It returns the decoded message or why it is invalid.
// A proposal's block must hash to what the proposer signed; the block's transactions are the
// state machine's to verify (a block may hold many thousands).
func checkGossip(chainID string, k topicKind, data []byte) (*replica.Message, error) {
	if len(data) > k.maxBytes() {
		return nil, fmt.Errorf("%w: %d bytes on %s, limit %d", errTooLarge, len(data), k, k.maxBytes())
	}
	m, err := replica.DecodeMessage(data)
	if err != nil {
		return nil, err
	}
	if got, ok := kindOf(m); !ok || got != k {
		return nil, fmt.Errorf("%w: %s on %s", errWrongKind, m.Kind(), k)
	}
	return m, checkSignatures(chainID, m)
}

// checkSignatures verifies what a message's sender signed, for the kinds that carry a signature.
// Sync responses are verified against commit certificates by the node, which knows the
// authority sets.
func checkSignatures(chainID string, m *replica.Message) error {
	switch {
	case m.Tx != nil:
		return m.Tx.VerifySig(chainID)
	case m.Vote != nil:
		return m.Vote.VerifySig(chainID)
	case m.Proposal != nil:
		if m.Block.Header.ChainID != chainID {
			return fmt.Errorf("p2p: block for chain %q, this is %q", m.Block.Header.ChainID, chainID)
		}
		if h := m.Block.Hash(); h != m.Proposal.BlockHash {
			return fmt.Errorf("p2p: proposal names block %s, carries %s", m.Proposal.BlockHash.Short(), h.Short())
		}
		return m.Proposal.VerifySig(chainID)
	}
	return nil
}

// validator returns the one validator of topic k. Its outcomes:
//
//   - Accept a message we publish ourselves (received from ourselves): we built it, and
//     validating it again would only cost a signature check.
//   - Our own messages relayed back never reach the validator: message ids are content
//     hashes, and pubsub drops ids it has seen, ours included.
//   - Reject anything over the topic's size cap, that does not decode, that carries another
//     kind than the topic's, or whose signature (under this chain id) does not verify: an
//     honest peer validates before relaying, so the peer that sent it is at fault, and pubsub
//     charges it an invalid delivery in the peer score (P4).
//   - Accept the rest. The decoded message rides along as ValidatorData so it is decoded once.
//
// Nothing here depends on our view of the chain (height, round, mempool): a node that is behind
// judges messages exactly as one that is up to date, so it never punishes honest peers.
func (h *Host) validator(k topicKind) pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if from == h.self {
			return pubsub.ValidationAccept
		}
		data := msg.GetData()
		if len(data) < gossipNonceBytes {
			h.stats.gossipRejected.Add(1)
			return pubsub.ValidationReject
		}
		m, err := checkGossip(h.chainID, k, data[gossipNonceBytes:])
		if err != nil {
			h.stats.gossipRejected.Add(1)
			h.log.Debug("p2p: rejected gossip", "topic", k.String(), "from", from, "err", err)
			return pubsub.ValidationReject
		}
		msg.ValidatorData = m
		return pubsub.ValidationAccept
	}
}

// Peer score thresholds. A peer's score is the sum of its topic scores (each capped by
// TopicScoreCap in total) and the application score (strikes from Penalize):
//
//   - below gossipThreshold (-100) we stop gossiping (IHAVE/IWANT) with the peer;
//   - below publishThreshold (-200) we stop flood-publishing our messages to it;
//   - below graylistThreshold (-400) we ignore every RPC it sends.
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

// scoreParams are the peer score parameters: positive credit for time in the mesh and for first
// deliveries, a strong penalty for invalid messages, and no mesh delivery penalties (P3, P3b):
// those punish a peer for not forwarding enough, and on a permissioned chain with bursty traffic
// a node that is merely behind or idle would charge honest peers for its own silence.
// IP colocation (P6) is off: authorities are few and known, and testnets share 127.0.0.1.
func scoreParams(chainID string, appScore func(peer.ID) float64) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	topics := make(map[string]*pubsub.TopicScoreParams, numTopics)
	for k := range numTopics {
		topics[topicName(chainID, k)] = &pubsub.TopicScoreParams{
			TopicWeight: 1,
			// P1: up to +10 after an hour in the mesh.
			TimeInMeshWeight:  10.0 / 3600,
			TimeInMeshQuantum: time.Second,
			TimeInMeshCap:     3600,
			// P2: +1 per first delivery, at most +20, forgotten over ten minutes.
			FirstMessageDeliveriesWeight: 1,
			FirstMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(10 * time.Minute),
			FirstMessageDeliveriesCap:    20,
			// P3 and P3b off: see above.
			// P4: invalid messages, squared.
			InvalidMessageDeliveriesWeight: invalidMessageWeight,
			InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
		}
	}
	params := &pubsub.PeerScoreParams{
		Topics:            topics,
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
