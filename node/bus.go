package node

import (
	"log/slog"
	"sync"

	"github.com/medledger/medledger/consensus/replica"
)

// Bus connects nodes in one process. Messages are encoded and decoded on the way, exactly as on a
// network, so a node never shares memory with another.
type Bus struct {
	mu    sync.RWMutex
	peers map[replica.PeerID]chan replica.Inbound
	log   *slog.Logger
}

// NewBus returns an empty bus.
func NewBus(log *slog.Logger) *Bus {
	return &Bus{peers: make(map[replica.PeerID]chan replica.Inbound), log: log}
}

// Join attaches a node under id and returns its transport.
func (b *Bus) Join(id replica.PeerID) Transport {
	ch := make(chan replica.Inbound, 4096)
	b.mu.Lock()
	b.peers[id] = ch
	b.mu.Unlock()
	return &busTransport{bus: b, id: id, inbox: ch}
}

type busTransport struct {
	bus   *Bus
	id    replica.PeerID
	inbox chan replica.Inbound
}

func (t *busTransport) Inbox() <-chan replica.Inbound { return t.inbox }

func (t *busTransport) Broadcast(m *replica.Message) {
	data := m.Encode()
	t.bus.mu.RLock()
	defer t.bus.mu.RUnlock()
	for id, ch := range t.bus.peers {
		if id != t.id {
			t.deliver(ch, data)
		}
	}
}

// Resend is Broadcast: the bus drops nothing as seen.
func (t *busTransport) Resend(m *replica.Message) { t.Broadcast(m) }

func (t *busTransport) Send(to replica.PeerID, m *replica.Message) {
	t.bus.mu.RLock()
	defer t.bus.mu.RUnlock()
	if ch, ok := t.bus.peers[to]; ok {
		t.deliver(ch, m.Encode())
	}
}

func (t *busTransport) deliver(ch chan replica.Inbound, data []byte) {
	msg, err := replica.DecodeMessage(data)
	if err != nil {
		t.bus.log.Error("bus: own message does not decode", "err", err)
		return
	}
	select {
	case ch <- replica.Inbound{From: t.id, Msg: msg}:
	default: // the receiver is overloaded; consensus recovers from the loss
	}
}

func (t *busTransport) Penalize(peer replica.PeerID, reason error) {
	t.bus.log.Warn("invalid message", "peer", peer, "err", reason)
}
