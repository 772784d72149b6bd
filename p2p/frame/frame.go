// Package frame is the framing shared by MedLedger's libp2p stream protocols (the direct
// protocol and the record blob exchange): a message is one uvarint-length-prefixed frame with a
// named limit, checked before any memory is committed and read into memory reserved with the
// stream's resource scope; and the streams one peer may open are rate-limited per peer.
package frame

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// Errors a frame reader reports inside a *SenderFault.
var (
	ErrTooLarge = errors.New("frame: too large")
	ErrEmpty    = errors.New("frame: empty")
)

// SenderFault is an error that is the remote sender's fault: a frame over its limit, empty, or
// cut off. Other read errors (a timeout, a reset, a local resource limit) are not.
type SenderFault struct{ Err error }

func (f *SenderFault) Error() string { return f.Err.Error() }
func (f *SenderFault) Unwrap() error { return f.Err }

// Write writes data with its uvarint length prefix (in one write for small frames).
func Write(w io.Writer, data []byte) error {
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

// ReadLen reads a frame's uvarint length prefix and checks it against limit byte by byte,
// before any memory is committed to the body. A truncated prefix, a zero length and a length
// over limit are *SenderFault; an error before the first byte is returned as it is (io.EOF
// for a stream closed without a frame).
func ReadLen(r io.ByteReader, limit int) (int, error) {
	var n uint64
	for i := range binary.MaxVarintLen64 {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, &SenderFault{io.ErrUnexpectedEOF}
			}
			return 0, err
		}
		n |= uint64(b&0x7f) << (7 * i)
		if n > uint64(limit) {
			return 0, &SenderFault{fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
		}
		if b < 0x80 {
			if n == 0 {
				return 0, &SenderFault{ErrEmpty}
			}
			return int(n), nil
		}
	}
	return 0, &SenderFault{fmt.Errorf("%w: length prefix too long", ErrTooLarge)}
}

// Read reads one frame of at most limit bytes from s, reserving its memory with the stream's
// resource scope first. Errors that are the sender's fault are *SenderFault.
func Read(s network.Stream, limit int) ([]byte, error) {
	return ReadJudged(s, limit, 0, nil)
}

// ErrRefusedHead is what ReadJudged returns when its judge refused a frame from its head.
var ErrRefusedHead = errors.New("frame: refused from its head")

// ReadJudged is Read with a look at the frame's head first: when the frame is longer than
// headLen bytes it reads only the first headLen (reserving memory for those alone) and asks
// judge, with the frame's full size; if judge says no it returns ErrRefusedHead without reading
// on, so a payload refused from its head costs neither its memory nor its transfer beyond what
// was already in flight. A nil judge, or a frame of at most headLen bytes, is read whole.
func ReadJudged(s network.Stream, limit, headLen int, judge func(head []byte, size int) bool) ([]byte, error) {
	br := bufio.NewReaderSize(s, 16)
	n, err := ReadLen(br, limit)
	if err != nil {
		return nil, err
	}
	var head []byte
	if judge != nil && n > headLen {
		if err := s.Scope().ReserveMemory(headLen, network.ReservationPriorityAlways); err != nil {
			return nil, fmt.Errorf("frame: reserve %d bytes: %w", headLen, err)
		}
		head = make([]byte, headLen)
		_, err := io.ReadFull(br, head)
		s.Scope().ReleaseMemory(headLen)
		if err != nil {
			return nil, bodyError(err)
		}
		if !judge(head, n) {
			return nil, ErrRefusedHead
		}
	}
	if err := s.Scope().ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("frame: reserve %d bytes: %w", n, err)
	}
	defer s.Scope().ReleaseMemory(n)
	body := make([]byte, n)
	copy(body, head)
	if _, err := io.ReadFull(br, body[len(head):]); err != nil {
		return nil, bodyError(err)
	}
	return body, nil
}

// bodyError wraps a failure to read a frame's body; a stream that ends early is the sender's
// fault.
func bodyError(err error) error {
	err = fmt.Errorf("frame: body: %w", err)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &SenderFault{err} // the sender closed mid-frame
	}
	return err
}

// maxTrackedPeers is how many peers' limiters are kept before full ones are forgotten.
const maxTrackedPeers = 1024

// PeerLimits rate-limits events per peer: each peer earns rate tokens a second up to burst.
type PeerLimits struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	peers map[peer.ID]*rate.Limiter
}

// NewPeerLimits allows each peer rate events a second with bursts of burst.
func NewPeerLimits(r float64, burst int) *PeerLimits {
	return &PeerLimits{rate: rate.Limit(r), burst: burst, peers: make(map[peer.ID]*rate.Limiter)}
}

func (l *PeerLimits) limiter(p peer.ID, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.peers[p]
	if !ok {
		if len(l.peers) >= maxTrackedPeers {
			// A limiter that has refilled is indistinguishable from a new one.
			for q, x := range l.peers {
				if x.TokensAt(now) >= float64(l.burst) {
					delete(l.peers, q)
				}
			}
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.peers[p] = lim
	}
	return lim
}

// Allow takes a token from p's bucket at now if it has one.
func (l *PeerLimits) Allow(p peer.ID, now time.Time) bool { return l.limiter(p, now).AllowN(now, 1) }

// Wait blocks until p's bucket has a token (for a sender pacing itself), or ctx ends.
func (l *PeerLimits) Wait(ctx context.Context, p peer.ID) error {
	return l.limiter(p, time.Now()).Wait(ctx)
}
