package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multistream"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/p2p/frame"
)

// Fetch sends a signed access request to holder to and returns its response, whatever its
// status; the error is for requests that could not be sent and responses that could not be read
// or did not validate (those wrap ErrMalformed). Fetch does not check the ciphertext against the
// anchored hash: FetchFrom does.
func Fetch(ctx context.Context, h host.Host, chainID string, to peer.ID, req *chain.AccessRequest) (*FetchResponse, error) {
	return FetchWithin(ctx, h, chainID, to, req, 0)
}

// FetchWithin is Fetch with a deadline for the holder's first byte: a holder that has sent
// nothing firstByte after the request went out is abandoned with an error wrapping ErrStalled
// (zero: no such deadline). The whole exchange stays bounded by ctx and the stream timeout, so
// a caller bounds a holder that starts answering and then trickles with ctx's deadline.
func FetchWithin(ctx context.Context, h host.Host, chainID string, to peer.ID, req *chain.AccessRequest, firstByte time.Duration) (*FetchResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("blobs: fetch: %w", err)
	}
	body := chain.Encode(&Request{Version: MessageVersion, Kind: KindFetch, Fetch: chain.Encode(req)})
	out, err := roundTrip(ctx, h, chainID, to, body, MaxFetchResponseBytes, firstByte)
	if err != nil {
		return nil, fmt.Errorf("blobs: fetch from %s: %w", to, err)
	}
	resp, err := decodeFetchResponse(out)
	if err != nil {
		return nil, fmt.Errorf("blobs: fetch from %s: %w", to, err)
	}
	return resp, nil
}

// Push sends a signed push request to holder to. It returns nil if the holder accepted it; a
// refusal is an error wrapping ErrRefused (ErrNotFound for StatusNotFound) with the holder's
// reason. A ciphertext that does not hash to CiphertextHash is not sent (ErrHashMismatch).
func Push(ctx context.Context, h host.Host, chainID string, to peer.ID, req *PushRequest) error {
	if err := req.Validate(); err != nil {
		return fmt.Errorf("blobs: push: %w", err)
	}
	if err := req.CheckCiphertext(); err != nil {
		return err
	}
	body := chain.Encode(&Request{Version: MessageVersion, Kind: KindPush, Push: req})
	out, err := roundTrip(ctx, h, chainID, to, body, MaxPushResponseBytes, 0)
	if err != nil {
		return fmt.Errorf("blobs: push to %s: %w", to, err)
	}
	resp, err := decodePushResponse(out)
	if err != nil {
		return fmt.Errorf("blobs: push to %s: %w", to, err)
	}
	return pushStatusErr(to, resp)
}

// pushStatusErr is the error a push answered with resp means (nil: accepted).
func pushStatusErr(to peer.ID, resp *PushResponse) error {
	switch resp.Status {
	case StatusOK:
		return nil
	case StatusRefused:
		return fmt.Errorf("%w: push to %s: %s", ErrRefused, to, resp.Reason)
	case StatusNotFound:
		return fmt.Errorf("%w: push to %s: %s", ErrNotFound, to, resp.Reason)
	case StatusBusy:
		return fmt.Errorf("%w: push to %s: %s", ErrBusy, to, resp.Reason)
	}
	return fmt.Errorf("blobs: push to %s failed: %s", to, resp.Reason)
}

// Pull asks holder to for the record of req (a replica repair). It returns the response if
// the holder served a ciphertext that hashes to req.CiphertextHash; otherwise an error wrapping
// ErrRefused, ErrNotFound or ErrBusy with the holder's reason, ErrTampered for a copy that does
// not match, or ErrMalformed for a response that does not validate.
func Pull(ctx context.Context, h host.Host, chainID string, to peer.ID, req *PullRequest) (*FetchResponse, error) {
	req.Version = MessageVersion
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("blobs: pull: %w", err)
	}
	body := chain.Encode(&Request{Version: MessageVersion, Kind: KindPull, Pull: req})
	out, err := roundTrip(ctx, h, chainID, to, body, MaxFetchResponseBytes, 0)
	if err != nil {
		return nil, fmt.Errorf("blobs: pull from %s: %w", to, err)
	}
	resp, err := decodeFetchResponse(out)
	if err != nil {
		return nil, fmt.Errorf("blobs: pull from %s: %w", to, err)
	}
	switch resp.Status {
	case StatusOK:
		if got := chain.Sum256(resp.Ciphertext); got != req.CiphertextHash {
			return nil, fmt.Errorf("%w: %s served %s for record %s, anchored %s", ErrTampered, to, got.Short(), req.Record.Short(), req.CiphertextHash.Short())
		}
		return resp, nil
	case StatusRefused:
		return nil, fmt.Errorf("%w: pull from %s: %s", ErrRefused, to, resp.Reason)
	case StatusNotFound:
		return nil, fmt.Errorf("%w: pull from %s: %s", ErrNotFound, to, resp.Reason)
	case StatusBusy:
		return nil, fmt.Errorf("%w: pull from %s: %s", ErrBusy, to, resp.Reason)
	}
	return nil, fmt.Errorf("blobs: pull from %s failed: %s", to, resp.Reason)
}

// roundTrip opens a stream to to, sends one request frame, and reads one response frame of at
// most limit bytes. Any failure resets the stream; so does ctx ending, and, with firstByte > 0,
// no byte of the answer firstByte after the request was sent (a timer, not a stream deadline:
// some transports ignore deadlines).
func roundTrip(ctx context.Context, h host.Host, chainID string, to peer.ID, body []byte, limit int, firstByte time.Duration) ([]byte, error) {
	return roundTripOn(ctx, h, ProtocolID(chainID), to, body, limit, firstByte)
}

// errProtocolUnsupported: the peer does not speak the protocol asked for.
var errProtocolUnsupported = errors.New("protocol not supported by the peer")

// roundTripOn is roundTrip on protocol pid.
func roundTripOn(ctx context.Context, h host.Host, pid protocol.ID, to peer.ID, body []byte, limit int, firstByte time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, to, pid)
	if err != nil {
		if errors.Is(err, multistream.ErrNotSupported[protocol.ID]{}) {
			err = fmt.Errorf("%w: %w", errProtocolUnsupported, err)
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	stopReset := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stopReset()
	fail := func(what string, err error) ([]byte, error) {
		_ = s.Reset()
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	deadline, _ := ctx.Deadline() // set: WithTimeout
	if err := s.SetDeadline(deadline); err != nil {
		return fail("set deadline", err)
	}
	if err := frame.Write(s, body); err != nil {
		return fail("send request", err)
	}
	if err := s.CloseWrite(); err != nil {
		return fail("close request", err)
	}
	rd := &firstByteReader{Stream: s}
	if firstByte > 0 {
		stall := time.AfterFunc(firstByte, func() {
			if !rd.got.Load() {
				rd.stalled.Store(true)
				_ = s.Reset()
			}
		})
		defer stall.Stop()
	}
	out, err := frame.Read(rd, limit)
	if err != nil {
		if rd.stalled.Load() && ctx.Err() == nil {
			_ = s.Reset()
			return nil, fmt.Errorf("%w: no answer within %s", ErrStalled, firstByte)
		}
		if fault := (*frame.SenderFault)(nil); errors.As(err, &fault) {
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return fail("read response", err)
	}
	_ = s.Close()
	return out, nil
}

// firstByteReader notes when the first byte of an answer arrives.
type firstByteReader struct {
	network.Stream
	got     atomic.Bool
	stalled atomic.Bool
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	n, err := f.Stream.Read(p)
	if n > 0 {
		f.got.Store(true)
	}
	return n, err
}

// FetchFrom asks holders in order for the record of req with the same signed request, and
// returns the first response whose ciphertext hashes to want, with the holder that served it.
// A holder that does not have the record, cannot be reached or answers with an error is skipped;
// one that serves a ciphertext not hashing to want, or a malformed response, is penalized (if
// penalize is not nil) and skipped. A refusal stops at once with an error wrapping ErrRefused and
// the holder's reason. When every holder has been tried the error wraps ErrTampered if a holder
// served a bad copy, otherwise ErrNotFound, and lists what each holder said.
func FetchFrom(ctx context.Context, h host.Host, chainID string, holders []peer.ID, req *chain.AccessRequest,
	want chain.Hash, penalize func(peer.ID, error)) (*FetchResponse, peer.ID, error) {
	if penalize == nil {
		penalize = func(peer.ID, error) {}
	}
	var (
		said     []string
		tampered bool
	)
	for _, holder := range holders {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("blobs: fetch record %s: %w", req.Record.Short(), err)
		}
		resp, err := Fetch(ctx, h, chainID, holder, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", fmt.Errorf("blobs: fetch record %s: %w", req.Record.Short(), context.Cause(ctx))
			}
			if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
				penalize(holder, err)
			}
			said = append(said, fmt.Sprintf("%s: %v", holder, err))
			continue
		}
		switch resp.Status {
		case StatusOK:
			if got := chain.Sum256(resp.Ciphertext); got != want {
				err := fmt.Errorf("%w: %s served %s for record %s, anchored %s", ErrTampered, holder, got.Short(), req.Record.Short(), want.Short())
				penalize(holder, err)
				tampered = true
				said = append(said, fmt.Sprintf("%s: tampered (ciphertext hashes to %s)", holder, got.Short()))
				continue
			}
			return resp, holder, nil
		case StatusRefused:
			return nil, holder, fmt.Errorf("%w: %s refused record %s: %s", ErrRefused, holder, req.Record.Short(), resp.Reason)
		default:
			said = append(said, fmt.Sprintf("%s: %s: %s", holder, resp.Status, resp.Reason))
		}
	}
	sentinel := ErrNotFound
	if tampered {
		sentinel = ErrTampered
	}
	if len(holders) == 0 {
		said = append(said, "no holders")
	}
	return nil, "", fmt.Errorf("%w: record %s from %d holders: %s", sentinel, req.Record.Short(), len(holders), strings.Join(said, "; "))
}
