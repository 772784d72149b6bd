package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/p2p/frame"
)

// Stream timing and rate limits.
const (
	// streamTimeout bounds a whole stream, either side: reading the request, the handler, and
	// writing the response.
	streamTimeout = 30 * time.Second
	// DefaultRate and DefaultBurst limit the streams one peer may open per second.
	DefaultRate  = 20
	DefaultBurst = 40
)

// Handler decides requests that have already decoded, validated and verified: the access
// request's signature under the chain id, or the push's signature and ciphertext hash. It is
// called at most once per stream, with a context that ends with the stream's deadline or when
// the server stops.
type Handler interface {
	// Fetch decides an access request and returns the response to send: StatusOK with the
	// ciphertext and envelopes, StatusRefused or StatusNotFound with a reason, or StatusError. It
	// is where the holder checks consent and journals the access entry (records/journal) before
	// answering. A nil response, or one that does not validate, is sent as StatusError.
	Fetch(ctx context.Context, from peer.ID, req *chain.AccessRequest) *FetchResponse
	// Push stores a pushed record. nil accepts (StatusOK); an error wrapping ErrRefused is sent
	// as StatusRefused with the error's text as the reason, one wrapping ErrNotFound as
	// StatusNotFound, one wrapping ErrBusy as StatusBusy; any other error is logged and sent
	// as StatusError "internal error".
	Push(ctx context.Context, from peer.ID, req *PushRequest) error
	// Pull answers a replica pull like a fetch: StatusOK with the ciphertext and the envelopes
	// held, or a refusal. It is where the holder checks that the ledger assigns the record to
	// the requesting node. A nil or invalid response is sent as StatusError.
	Pull(ctx context.Context, from peer.ID, req *PullRequest) *FetchResponse
}

// ServerOptions configures Serve.
type ServerOptions struct {
	// Log receives the server's diagnostics; nil discards them.
	Log *slog.Logger
	// Penalize is told about peers that sent malformed frames or messages, bad signatures,
	// ciphertexts that do not match their hash, or opened streams beyond the rate limit
	// (ErrRateLimited). It is called from the goroutines serving streams, possibly concurrently.
	// nil ignores them.
	Penalize func(peer.ID, error)
	// Rate and Burst limit the streams one peer may open per second; zero means DefaultRate and
	// DefaultBurst.
	Rate  float64
	Burst int
}

type server struct {
	chainID  string
	handler  Handler
	log      *slog.Logger
	penalize func(peer.ID, error)
	streams  *frame.Server
}

// Serve registers the blob protocol of chainID on h, answering with handler. The returned
// function unregisters it, resets the streams still being served, and waits for their
// handlers to return.
func Serve(h host.Host, chainID string, handler Handler, opts ServerOptions) func() {
	s := &server{chainID: chainID, handler: handler, log: opts.Log, penalize: opts.Penalize}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.penalize == nil {
		s.penalize = func(peer.ID, error) {}
	}
	rate, burst := opts.Rate, opts.Burst
	if rate <= 0 {
		rate = DefaultRate
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	s.streams = frame.NewServer(frame.ServerConfig{Rate: rate, Burst: burst, Timeout: streamTimeout, RateLimited: ErrRateLimited,
		Penalize: func(from peer.ID, err error) { s.strike(from, "stream refused", err) }})
	pid := ProtocolID(chainID)
	h.SetStreamHandler(pid, s.handleStream)
	bpid := PushBatchProtocolID(chainID)
	h.SetStreamHandler(bpid, s.handleBatch)
	var once sync.Once
	return func() {
		once.Do(func() {
			h.RemoveStreamHandler(pid)
			h.RemoveStreamHandler(bpid)
			s.streams.Close()
		})
	}
}

// handleStream serves one request stream (fetch, push or pull). A request that frames but does
// not decode resets the stream (it may not even say which response it expects) and strikes the
// peer; one that decodes but does not verify is answered with StatusError and strikes too.
func (s *server) handleStream(st network.Stream) {
	s.streams.Serve(st, MaxRequestBytes, func(ctx context.Context, from peer.ID, body []byte) []byte {
		req, err := DecodeRequest(body)
		if err != nil {
			s.strike(from, "bad request", err)
			return nil
		}
		var resp any
		switch req.Kind {
		case KindFetch:
			resp = s.fetch(ctx, from, req.Fetch)
		case KindPush:
			resp = s.push(ctx, from, req.Push)
		case KindPull:
			resp = s.answer(from, req.Pull.Record, "pull", s.handler.Pull(ctx, from, req.Pull))
		}
		return chain.Encode(resp)
	})
}

func (s *server) strike(from peer.ID, what string, err error) {
	s.log.Debug("blobs: "+what, "peer", from, "err", err)
	s.penalize(from, err)
}

func (s *server) fetch(ctx context.Context, from peer.ID, data []byte) *FetchResponse {
	ar, err := chain.DecodeAccessRequest(data)
	if err == nil {
		err = ar.VerifySig(s.chainID)
	}
	if err != nil {
		s.strike(from, "bad access request", err)
		return &FetchResponse{Version: MessageVersion, Status: StatusError, Reason: reason("invalid access request: " + err.Error())}
	}
	return s.answer(from, ar.Record, "fetch", s.handler.Fetch(ctx, from, ar))
}

// answer makes a handler's fetch or pull response sendable: versioned, reason fitted, valid.
func (s *server) answer(from peer.ID, record chain.Hash, kind string, resp *FetchResponse) *FetchResponse {
	if resp == nil {
		s.log.Error("blobs: "+kind+" handler returned no response", "peer", from, "record", record)
		return &FetchResponse{Version: MessageVersion, Status: StatusError, Reason: "internal error"}
	}
	out := *resp
	out.Version = MessageVersion
	out.Reason = reason(out.Reason)
	if err := out.Validate(); err != nil {
		s.log.Error("blobs: "+kind+" handler returned an invalid response", "peer", from, "record", record, "err", err)
		return &FetchResponse{Version: MessageVersion, Status: StatusError, Reason: "internal error"}
	}
	return &out
}

func (s *server) push(ctx context.Context, from peer.ID, p *PushRequest) *PushResponse {
	err := p.VerifySig(s.chainID)
	if err == nil {
		err = p.CheckCiphertext()
	}
	if err != nil {
		s.strike(from, "bad push", err)
		return &PushResponse{Version: MessageVersion, Status: StatusError, Reason: reason("invalid push: " + err.Error())}
	}
	return s.pushResult(from, p, s.handler.Push(ctx, from, p))
}

// pushResult is the response to a push the handler answered with err.
func (s *server) pushResult(from peer.ID, p *PushRequest, err error) *PushResponse {
	switch {
	case err == nil:
		return &PushResponse{Version: MessageVersion, Status: StatusOK}
	case errors.Is(err, ErrRefused):
		return &PushResponse{Version: MessageVersion, Status: StatusRefused, Reason: reason(err.Error())}
	case errors.Is(err, ErrNotFound):
		return &PushResponse{Version: MessageVersion, Status: StatusNotFound, Reason: reason(err.Error())}
	case errors.Is(err, ErrBusy):
		return &PushResponse{Version: MessageVersion, Status: StatusBusy, Reason: reason(err.Error())}
	}
	s.log.Error("blobs: push handler", "peer", from, "record", p.Record, "err", err)
	return &PushResponse{Version: MessageVersion, Status: StatusError, Reason: fmt.Sprintf("internal error storing record %s", p.Record.Short())}
}
