package p2p

import (
	"errors"
	"strings"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/medledger/medledger/chain"
)

// Class is what a remote peer is to this node, and so which protocols it may use (see
// allowed and docs/security.md, "Admission").
type Class int

const (
	// Stranger: any libp2p identity the ledger does not know. Identify, ping and the join
	// protocol, for strangerGrace; then it is disconnected and refused for strangerRefusal.
	Stranger Class = iota
	// Candidate: a practice not registered yet that presented a valid licence ticket over the
	// join protocol. Block sync (the direct protocol), the topics open to candidates (the
	// transaction topic), join, identify and ping; no DHT, no consensus topics, no blobs.
	Candidate
	// Member: a registered, active member node whose libp2p key the ledger binds. Everything.
	Member
	// Wallet: a registered patient; the wallet's libp2p key is the patient's signing key.
	// Identify, ping and the wallet protocol.
	Wallet
)

func (c Class) String() string {
	switch c {
	case Stranger:
		return "stranger"
	case Candidate:
		return "candidate"
	case Member:
		return "member"
	case Wallet:
		return "wallet"
	}
	return "class-?"
}

// Admission is what the host asks the node about peers. The host does not read the ledger:
// the node answers from its view of it.
type Admission interface {
	// Class returns p's class on the ledger: Member, Wallet or Stranger (the host itself makes
	// strangers with an accepted ticket Candidates). It is called for every stream and
	// connection, so it must be cheap: an in-memory map the node refreshes after each commit
	// (then it calls Host.Recheck).
	Class(p peer.ID) Class
	// CheckTicket verifies a licence ticket presented by p over the join protocol: issued by
	// a licensing authority named in genesis, not expired, and naming p's public key as its
	// node key. nil admits p as a Candidate.
	CheckTicket(p peer.ID, ticket []byte) error
	// MayProvide reports whether the ledger assigns p as a holder of the blob or record id,
	// so that p may announce it in the DHT.
	MayProvide(p peer.ID, id chain.Hash) bool
}

// OpenAdmission admits every peer as a Member and every ticket and holder: the host behaves
// as it did before admission existed. For networks without a ledger view yet and for tests.
type OpenAdmission struct{}

func (OpenAdmission) Class(peer.ID) Class                 { return Member }
func (OpenAdmission) CheckTicket(peer.ID, []byte) error   { return nil }
func (OpenAdmission) MayProvide(peer.ID, chain.Hash) bool { return true }

// ErrBadTicket is MemAdmission's answer to a ticket it was not given.
var ErrBadTicket = errors.New("p2p: invalid licence ticket")

// MemAdmission is an in-memory Admission the caller fills: classes by peer (Stranger if
// absent), valid tickets by peer, and holders by id. Safe for concurrent use. For tests, and
// for tools that know their peers in advance.
type MemAdmission struct {
	mu      sync.RWMutex
	classes map[peer.ID]Class
	tickets map[peer.ID]string
	holders map[chain.Hash]map[peer.ID]bool
}

// NewMemAdmission returns an empty MemAdmission: everyone is a Stranger.
func NewMemAdmission() *MemAdmission {
	return &MemAdmission{classes: map[peer.ID]Class{}, tickets: map[peer.ID]string{}, holders: map[chain.Hash]map[peer.ID]bool{}}
}

// SetClass sets p's class (Stranger removes it).
func (a *MemAdmission) SetClass(p peer.ID, c Class) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c == Stranger {
		delete(a.classes, p)
		return
	}
	a.classes[p] = c
}

// SetTicket makes ticket the one valid ticket of p.
func (a *MemAdmission) SetTicket(p peer.ID, ticket []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tickets[p] = string(ticket)
}

// SetHolder assigns p as a holder of id.
func (a *MemAdmission) SetHolder(id chain.Hash, p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.holders[id] == nil {
		a.holders[id] = map[peer.ID]bool{}
	}
	a.holders[id][p] = true
}

func (a *MemAdmission) Class(p peer.ID) Class {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.classes[p]
}

func (a *MemAdmission) CheckTicket(p peer.ID, ticket []byte) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if t, ok := a.tickets[p]; !ok || t != string(ticket) {
		return ErrBadTicket
	}
	return nil
}

func (a *MemAdmission) MayProvide(p peer.ID, id chain.Hash) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.holders[id][p]
}

// JoinProtocol names the join protocol of network chainID: a stranger presents its licence
// ticket on it.
func JoinProtocol(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/join/1")
}

// WalletProtocol names the wallet protocol of network chainID, the only one a patient's wallet
// may use besides identify and ping. Nothing serves it yet.
func WalletProtocol(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/wallet/1")
}

// policy says which class may use which protocol, in both directions: a peer may not open a
// stream of a protocol its class lacks, and this host does not open one to it either.
type policy struct {
	join, wallet, direct protocol.ID
}

func newPolicy(chainID string) policy {
	return policy{join: JoinProtocol(chainID), wallet: WalletProtocol(chainID), direct: directProtocol(chainID)}
}

// allowed reports whether a peer of class c may use protocol proto. Members may use anything
// (the DHT, the blob exchange, consensus topics, protocols added later); every other class
// gets a short list, and nothing it does not name.
func (pol policy) allowed(c Class, proto protocol.ID) bool {
	switch proto {
	case identify.ID, identify.IDPush, ping.ID:
		return true
	}
	switch c {
	case Member:
		return true
	case Candidate:
		// Gossipsub itself: which topics a candidate may use is the subscription filter's
		// and the validators' business (see topicAllowed).
		return proto == pol.join || proto == pol.direct || isPubsub(proto)
	case Wallet:
		return proto == pol.wallet
	default:
		return proto == pol.join
	}
}

// isPubsub reports whether proto is one of gossipsub's (or floodsub's) protocol ids.
func isPubsub(proto protocol.ID) bool {
	return strings.HasPrefix(string(proto), "/meshsub/") || proto == pubsub.FloodSubID
}
