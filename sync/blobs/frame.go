package blobs

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
)

// Stream timing and rate limits.
const (
	// streamTimeout bounds a whole stream, either side: reading the request, the handler, and
	// writing the response.
	streamTimeout = 30 * time.Second
	// DefaultRate and DefaultBurst limit the streams one peer may open per second.
	DefaultRate  = 20
	DefaultBurst = 40
	// maxTrackedPeers is how many rate-limit buckets are kept before refilled ones are pruned.
	maxTrackedPeers = 1024
)

// writeFrame writes data with its uvarint length prefix.
func writeFrame(w io.Writer, data []byte) error {
	var prefix [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(prefix[:], uint64(len(data)))
	if len(data) <= 64<<10 {
		_, err := w.Write(append(prefix[:n:n], data...))
		return err
	}
	if _, err := w.Write(prefix[:n]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// errFrame marks framing errors that are the sender's fault (as opposed to a timeout, a reset
// or a local limit).
type errFrame struct{ err error }

func (e *errFrame) Error() string { return e.err.Error() }
func (e *errFrame) Unwrap() error { return e.err }

// readFrameLen reads a frame's uvarint length prefix and checks it against limit byte by byte,
// before any memory is committed to the body. A truncated prefix is io.ErrUnexpectedEOF.
func readFrameLen(r io.ByteReader, limit int) (int, error) {
	var n uint64
	for i := range binary.MaxVarintLen64 {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, &errFrame{io.ErrUnexpectedEOF}
			}
			return 0, err
		}
		n |= uint64(b&0x7f) << (7 * i)
		if n > uint64(limit) {
			return 0, &errFrame{fmt.Errorf("%w: frame of more than %d bytes", ErrTooLarge, limit)}
		}
		if b < 0x80 {
			if n == 0 {
				return 0, &errFrame{fmt.Errorf("%w: empty frame", ErrMalformed)}
			}
			return int(n), nil
		}
	}
	return 0, &errFrame{fmt.Errorf("%w: frame length prefix too long", ErrMalformed)}
}

// readFrame reads one frame of at most limit bytes from s, reserving its memory with the
// stream's resource scope first. Errors that are the sender's fault are *errFrame.
func readFrame(s network.Stream, limit int) ([]byte, error) {
	br := bufio.NewReaderSize(s, 16)
	n, err := readFrameLen(br, limit)
	if err != nil {
		return nil, err
	}
	if err := s.Scope().ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("blobs: reserve %d bytes: %w", n, err)
	}
	defer s.Scope().ReleaseMemory(n)
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		err = fmt.Errorf("blobs: frame body: %w", err)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &errFrame{err} // the sender closed mid-frame
		}
		return nil, err
	}
	return body, nil
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
		if len(t.peers) >= maxTrackedPeers {
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
