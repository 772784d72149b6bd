package node

import (
	"github.com/medledger/medledger/consensus/replica"
)

// Transport carries replica messages between nodes. Sends are best effort: consensus survives
// lost messages, so a full queue drops rather than blocks the node's loop.
type Transport interface {
	Broadcast(m *replica.Message)
	Send(to replica.PeerID, m *replica.Message)
	Inbox() <-chan replica.Inbound
	// Penalize reports a peer that sent invalid input.
	Penalize(peer replica.PeerID, reason error)
}
