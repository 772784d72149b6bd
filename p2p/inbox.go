package p2p

import (
	"context"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Verdict is a validator's judgement of one payload. The caller documents, per topic, why its
// validator answers what it answers.
type Verdict int

const (
	// Accept: deliver the payload to the inbox and, on gossip, relay it.
	Accept Verdict = iota
	// Ignore: drop the payload without blame: it is neither delivered nor relayed, and the
	// sender's score is untouched. For payloads of no use now that an honest peer may send.
	Ignore
	// Reject: the sender is at fault. The payload is dropped, pubsub charges the sender an
	// invalid message (P4) on gossip, a direct stream is reset, and the sender gets a strike
	// (see Penalize). An honest peer never sends what a validator rejects: a Reject must not
	// depend on this node's view of the chain.
	Reject
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Ignore:
		return "ignore"
	case Reject:
		return "reject"
	}
	return "verdict-?"
}

// Validator judges a payload from peer from: on gossip the peer that delivered it (messages are
// unsigned at the pubsub layer, and a relayer validated the payload before passing it on, so it
// answers for it), on the direct protocol the peer that opened the stream. Validators run on
// pubsub's and the stream handlers' goroutines, concurrently. With Accept a validator may
// return a value (the decoded payload), which the inbox hands out instead of the bytes.
type Validator func(from peer.ID, data []byte) (Verdict, any)

// Delivery is an accepted payload as the inbox hands it out.
type Delivery struct {
	From  peer.ID
	Topic string // the topic's short name ("votes"); "" for the direct protocol
	Size  int    // the payload's size in bytes, as the inbox bounds counted it
	Data  []byte // the payload, when the validator returned no value
	Value any    // what the validator returned with Accept
}

// InboxLimits bound the payloads accepted and not yet taken from the inbox, in total and per
// delivering peer; beyond them a payload is dropped and counted (consensus recovers lost
// messages). Zero fields take the defaults named in each comment.
type InboxLimits struct {
	Messages  int // in total; 8192
	Bytes     int // in total; 128 MiB
	PeerBytes int // from one peer; 2 × the direct protocol's frame limit, at least 4 MiB
}

func (l *InboxLimits) defaults(maxDirect int) {
	if l.Messages <= 0 {
		l.Messages = 8192
	}
	if l.PeerBytes <= 0 {
		l.PeerBytes = max(2*maxDirect, 4<<20)
	}
	if l.Bytes <= 0 {
		l.Bytes = max(128<<20, l.PeerBytes)
	}
}

// inbox is a FIFO of deliveries bounded by count and bytes, in total and per peer. A pump
// goroutine offers its head on an unbuffered channel, so a payload counts against the bounds
// until the caller has taken it.
type inbox struct {
	lim InboxLimits
	out chan Delivery
	// ready is signalled when the queue may have become non-empty.
	ready chan struct{}

	mu    sync.Mutex
	queue []Delivery
	bytes int
	peers map[peer.ID]int
}

func newInbox(lim InboxLimits) *inbox {
	return &inbox{lim: lim, out: make(chan Delivery), ready: make(chan struct{}, 1), peers: make(map[peer.ID]int)}
}

// put queues d unless that would exceed a bound.
func (b *inbox) put(d Delivery) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) >= b.lim.Messages || b.bytes+d.Size > b.lim.Bytes || b.peers[d.From]+d.Size > b.lim.PeerBytes {
		return false
	}
	b.queue = append(b.queue, d)
	b.bytes += d.Size
	b.peers[d.From] += d.Size
	select {
	case b.ready <- struct{}{}:
	default:
	}
	return true
}

func (b *inbox) head() (Delivery, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		return Delivery{}, false
	}
	return b.queue[0], true
}

// pop removes the head, which only the pump takes, and releases its bytes.
func (b *inbox) pop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.queue[0]
	b.queue[0] = Delivery{}
	b.queue = b.queue[1:]
	b.bytes -= d.Size
	if b.peers[d.From] -= d.Size; b.peers[d.From] <= 0 {
		delete(b.peers, d.From)
	}
}

// usage reports what the inbox holds: messages, bytes, and the bytes from p.
func (b *inbox) usage(p peer.ID) (messages, bytes, peerBytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue), b.bytes, b.peers[p]
}

// pump offers the head of the queue to the caller until ctx ends.
func (b *inbox) pump(ctx context.Context) {
	for {
		d, ok := b.head()
		if !ok {
			select {
			case <-b.ready:
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case b.out <- d:
			b.pop()
		case <-ctx.Done():
			return
		}
	}
}
