package frame

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Server serves request streams, one framed request and one framed answer each, the same way
// for every protocol that uses it (the record exchange, the wallet protocol): a per-peer rate
// limit before a byte is read; a deadline, and a reset when it passes or the server stops, so
// that no read or write outlives them even on transports that ignore deadlines; a bounded
// frame; a sender fault (a frame over its bound, a malformed length) penalized.
type Server struct {
	cfg     ServerConfig
	limiter *PeerLimits

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// ServerConfig configures a Server. Rate and Burst bound each peer's streams; Timeout bounds a
// stream. Penalize (nil: none) is told of a peer's sender faults, and of its streams over the
// rate limit with RateLimited unless that is nil. Now is the clock (nil: time.Now).
type ServerConfig struct {
	Rate        float64
	Burst       int
	Timeout     time.Duration
	Penalize    func(peer.ID, error)
	RateLimited error
	Now         func() time.Time
}

// Handler answers one request's body from peer from; nil resets the stream (after the
// handler has penalized what deserves it). ctx ends with the stream's deadline or the server.
type Handler func(ctx context.Context, from peer.ID, body []byte) []byte

// NewServer makes a Server; Close stops it.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Penalize == nil {
		cfg.Penalize = func(peer.ID, error) {}
	}
	s := &Server{cfg: cfg, limiter: NewPeerLimits(cfg.Rate, cfg.Burst)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close refuses new streams, resets those being served and waits for their handlers to return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// enter registers a stream being served, unless the server has stopped.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Serve serves one stream: a request of at most limit bytes, answered by h.
func (s *Server) Serve(st network.Stream, limit int, h Handler) {
	if !s.enter() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	from := st.Conn().RemotePeer()
	if !s.limiter.Allow(from, s.cfg.Now()) {
		_ = st.Reset()
		if s.cfg.RateLimited != nil {
			s.cfg.Penalize(from, s.cfg.RateLimited)
		}
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	stopReset := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stopReset()
	if err := st.SetDeadline(s.cfg.Now().Add(s.cfg.Timeout)); err != nil {
		_ = st.Reset()
		return
	}
	body, err := Read(st, limit)
	if err != nil {
		_ = st.Reset()
		if fault := (*SenderFault)(nil); errors.As(err, &fault) {
			s.cfg.Penalize(from, err)
		}
		return
	}
	_ = st.CloseRead()
	out := h(ctx, from, body)
	if out == nil {
		_ = st.Reset()
		return
	}
	if err := Write(st, out); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}
