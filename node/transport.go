package node

import (
	"github.com/medledger/medledger/consensus/replica"
)

// Transport carries replica messages between nodes. Sends are best effort: consensus survives
// lost messages, so a full queue drops rather than blocks the node's loop. consensus/reactor
// implements it over libp2p, Bus in process.
type Transport interface {
	// Broadcast sends a transaction, proposal or vote to the network.
	Broadcast(m *replica.Message)
	// Resend sends a message this node sent before to every peer again, directly: gossip
	// drops a payload it has seen.
	Resend(m *replica.Message)
	// Send sends a message to one peer (sync requests and answers).
	Send(to replica.PeerID, m *replica.Message)
	Inbox() <-chan replica.Inbound
	// Penalize reports a peer that sent invalid input.
	Penalize(peer replica.PeerID, reason error)
}
