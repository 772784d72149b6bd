package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medledger/medledger/consensus/replica"
)

// directProtocol names the direct stream protocol of network chainID.
func directProtocol(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/direct/1.0.0")
}

// Direct protocol limits.
const (
	// MaxDirectMessageBytes bounds one frame: the largest replica message (a full block, or a
	// sync batch).
	MaxDirectMessageBytes = replica.MaxMessageBytes
	// directReadTimeout bounds reading one frame, directWriteTimeout writing one.
	directReadTimeout  = 30 * time.Second
	directWriteTimeout = 30 * time.Second
	// directRate and directBurst limit the streams one peer may open per second (a catching-up
	// node asks for one batch at a time; a big proposal is one stream per round).
	directRate  = 50
	directBurst = 100
)

var errRateLimited = errors.New("p2p: direct protocol rate limit")

// writeFrame writes data with its uvarint length prefix.
func writeFrame(w io.Writer, data []byte) error {
	var prefix [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(prefix[:], uint64(len(data)))
	if _, err := w.Write(prefix[:n]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// readFrameLen reads a frame's uvarint length prefix and checks it against limit byte by byte,
// before any memory is committed to the body. A truncated prefix is io.ErrUnexpectedEOF.
func readFrameLen(r io.ByteReader, limit int) (int, error) {
	var n uint64
	for i := range binary.MaxVarintLen64 {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n |= uint64(b&0x7f) << (7 * i)
		if n > uint64(limit) {
			return 0, fmt.Errorf("%w: frame of more than %d bytes", errTooLarge, limit)
		}
		if b < 0x80 {
			if n == 0 {
				return 0, errEmptyFrame
			}
			return int(n), nil
		}
	}
	return 0, fmt.Errorf("%w: frame length prefix too long", errTooLarge)
}

var errEmptyFrame = errors.New("p2p: empty frame")

// handleDirect is the typed core of the direct protocol: given the body of one frame, it returns
// the message to deliver or why the sender is at fault. Every kind may arrive directly (sync
// requests and responses, proposals too large for gossip, anything Send was asked to carry), and
// the kinds that carry a signature must verify under chainID.
func handleDirect(chainID string, body []byte) (*replica.Message, error) {
	m, err := replica.DecodeMessage(body)
	if err != nil {
		return nil, err
	}
	if err := checkSignatures(chainID, m); err != nil {
		return nil, err
	}
	return m, nil
}

// handleStream serves one inbound direct stream: rate limit (before reading a byte), deadline,
// bounded length prefix, memory reserved with the resource manager, then handleDirect. Any
// failure resets the stream; a malformed frame or message also strikes the peer.
func (h *Host) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	if !h.limiter.allow(from, h.now()) {
		h.stats.directRateLimited.Add(1)
		_ = s.Reset()
		return
	}
	if err := s.SetReadDeadline(h.now().Add(directReadTimeout)); err != nil {
		_ = s.Reset()
		return
	}
	m, err := h.readDirect(s)
	if err != nil {
		_ = s.Reset()
		var fault *peerFault
		if errors.As(err, &fault) {
			h.stats.directRejected.Add(1)
			h.Penalize(replica.PeerID(from.String()), fault.err)
		}
		return
	}
	_ = s.Close()
	h.deliver(from, m)
}

// peerFault marks errors that are the remote peer's fault (not a timeout or a local limit).
type peerFault struct{ err error }

func (f *peerFault) Error() string { return f.err.Error() }
func (f *peerFault) Unwrap() error { return f.err }

func (h *Host) readDirect(s network.Stream) (*replica.Message, error) {
	br := bufio.NewReaderSize(s, 16)
	n, err := readFrameLen(br, MaxDirectMessageBytes)
	if err != nil {
		if errors.Is(err, errTooLarge) || errors.Is(err, errEmptyFrame) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &peerFault{err}
		}
		return nil, err
	}
	if err := s.Scope().ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("p2p: reserve %d bytes: %w", n, err)
	}
	defer s.Scope().ReleaseMemory(n)
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		err = fmt.Errorf("p2p: frame body: %w", err)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &peerFault{err} // the sender closed mid-frame
		}
		return nil, err
	}
	m, err := handleDirect(h.chainID, body)
	if err != nil {
		return nil, &peerFault{err}
	}
	return m, nil
}

// tokenBuckets rate-limits events per peer: each peer earns rate tokens a second up to burst.
type tokenBuckets struct {
	rate, burst float64
	mu          sync.Mutex
	peers       map[peer.ID]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newTokenBuckets(rate, burst float64) *tokenBuckets {
	return &tokenBuckets{rate: rate, burst: burst, peers: make(map[peer.ID]*bucket)}
}

// allow takes a token from p's bucket if it has one.
func (t *tokenBuckets) allow(p peer.ID, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.peers[p]
	if !ok {
		if len(t.peers) >= 1024 {
			t.prune(now)
		}
		b = &bucket{tokens: t.burst, last: now}
		t.peers[p] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(t.burst, b.tokens+dt*t.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune forgets peers whose bucket has refilled: they are indistinguishable from new ones.
func (t *tokenBuckets) prune(now time.Time) {
	for p, b := range t.peers {
		if b.tokens+now.Sub(b.last).Seconds()*t.rate >= t.burst {
			delete(t.peers, p)
		}
	}
}
