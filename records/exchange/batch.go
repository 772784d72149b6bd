package exchange

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medledger/medledger/chain"
)

// Batched pushes: an author replicating an import sends many records to the same holder. One
// stream per record cost a stream negotiation, a rate-limit token and a store with its own
// fsyncs for each; a batch carries up to MaxPushBatch records on one stream and the holder
// stores them together. Each record's PushRequest is signed as for a single push, so a batch
// adds no new trust: the holder judges every record on its own and answers one status each.
//
// A separate protocol id, so that a node that does not know it refuses the stream before any
// byte is read (the client then falls back to single pushes).

// PushBatchProtocolID names the batched push protocol of network chainID.
func PushBatchProtocolID(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/blobs-push/1.0.0")
}

// Batch bounds.
const (
	// MaxPushBatch bounds the records of one batch.
	MaxPushBatch = 256
	// MaxPushBatchBytes bounds an encoded PushBatch: as much as one push of the largest
	// record, so a batch commits no more memory than a single push may.
	MaxPushBatchBytes = MaxPushRequestBytes
	// MaxPushBatchResponseBytes bounds an encoded PushBatchResponse.
	MaxPushBatchResponseBytes = MaxPushBatch*MaxPushResponseBytes + 64
)

// PushBatch is several pushes to one holder on one stream.
type PushBatch struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Pushes  []PushRequest
}

// Validate checks the batch's form and every push's (not their signatures).
func (b *PushBatch) Validate() error {
	if b.Version != MessageVersion {
		return fmt.Errorf("%w: push batch version %d (this build understands %d)", chain.ErrUnknownVersion, b.Version, MessageVersion)
	}
	if len(b.Pushes) == 0 || len(b.Pushes) > MaxPushBatch {
		return fmt.Errorf("%w: a push batch carries 1..%d pushes, got %d", ErrMalformed, MaxPushBatch, len(b.Pushes))
	}
	for i := range b.Pushes {
		if err := b.Pushes[i].Validate(); err != nil {
			return fmt.Errorf("push %d: %w", i, err)
		}
	}
	return nil
}

// PushBatchResponse answers a batch: one PushResponse per push, in order.
type PushBatchResponse struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Results []PushResponse
}

// BatchHandler is a Handler that can store several pushes at once (the record service groups
// their writes). Without it the server calls Handler.Push for each.
type BatchHandler interface {
	// PushBatch stores the pushes that it accepts and returns one error per push, as Push
	// would (nil accepts).
	PushBatch(ctx context.Context, from peer.ID, reqs []*PushRequest) []error
}

// handleBatch serves one batched push stream, with the same rate limit, deadline and strikes
// as handleStream: each push is judged alone (signature, ciphertext hash, then the handler).
func (s *server) handleBatch(st network.Stream) {
	s.streams.Serve(st, MaxPushBatchBytes, func(ctx context.Context, from peer.ID, body []byte) []byte {
		var b PushBatch
		err := chain.DecodeCanonical("push batch", body, MaxPushBatchBytes, &b)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		} else {
			err = b.Validate()
		}
		if err != nil {
			s.strike(from, "bad push batch", err)
			return nil
		}
		results := make([]PushResponse, len(b.Pushes))
		var ok []*PushRequest
		var at []int
		for i := range b.Pushes {
			p := &b.Pushes[i]
			err := p.VerifySig(s.chainID)
			if err == nil {
				err = p.CheckCiphertext()
			}
			if err != nil {
				s.strike(from, "bad push", err)
				results[i] = PushResponse{Version: MessageVersion, Status: StatusError, Reason: reason("invalid push: " + err.Error())}
				continue
			}
			ok, at = append(ok, p), append(at, i)
		}
		for j, err := range s.pushAll(ctx, from, ok) {
			results[at[j]] = *s.pushResult(from, ok[j], err)
		}
		return chain.Encode(&PushBatchResponse{Version: MessageVersion, Results: results})
	})
}

// pushAll hands the verified pushes to the handler, in one call if it takes batches; one error
// per push.
func (s *server) pushAll(ctx context.Context, from peer.ID, ok []*PushRequest) []error {
	errs := make([]error, len(ok))
	if len(ok) == 0 {
		return errs
	}
	if bh, is := s.handler.(BatchHandler); is {
		copy(errs, bh.PushBatch(ctx, from, ok))
		return errs
	}
	for i, p := range ok {
		errs[i] = s.handler.Push(ctx, from, p)
	}
	return errs
}

// PushMany sends signed pushes to holder to on one stream and returns one error per push (nil:
// accepted), as Push would. A push that does not validate or whose ciphertext does not match
// its hash is not sent. The second result is an error for the whole batch (the stream failed,
// or the holder does not speak the batch protocol: ErrBatchUnsupported); the per-push errors
// are then nil.
func PushMany(ctx context.Context, h host.Host, chainID string, to peer.ID, reqs []*PushRequest) ([]error, error) {
	errs := make([]error, len(reqs))
	b := PushBatch{Version: MessageVersion}
	var at []int
	for i, req := range reqs {
		if err := req.Validate(); err != nil {
			errs[i] = fmt.Errorf("blobs: push: %w", err)
			continue
		}
		if err := req.CheckCiphertext(); err != nil {
			errs[i] = err
			continue
		}
		b.Pushes, at = append(b.Pushes, *req), append(at, i)
	}
	if len(b.Pushes) == 0 {
		return errs, nil
	}
	if len(b.Pushes) > MaxPushBatch {
		return nil, fmt.Errorf("%w: %d pushes in one batch, limit %d", ErrTooLarge, len(b.Pushes), MaxPushBatch)
	}
	body := chain.Encode(&b)
	if len(body) > MaxPushBatchBytes {
		return nil, fmt.Errorf("%w: push batch of %d bytes, limit %d", ErrTooLarge, len(body), MaxPushBatchBytes)
	}
	out, err := roundTripOn(ctx, h, PushBatchProtocolID(chainID), to, body, MaxPushBatchResponseBytes, 0)
	if err != nil {
		if errors.Is(err, errProtocolUnsupported) {
			err = ErrBatchUnsupported
		}
		return nil, fmt.Errorf("blobs: push batch to %s: %w", to, err)
	}
	var resp PushBatchResponse
	if err := chain.DecodeCanonical("push batch response", out, MaxPushBatchResponseBytes, &resp); err != nil {
		return nil, fmt.Errorf("blobs: push batch to %s: %w: %w", to, ErrMalformed, err)
	}
	if resp.Version != MessageVersion || len(resp.Results) != len(b.Pushes) {
		return nil, fmt.Errorf("blobs: push batch to %s: %w: %d results for %d pushes", to, ErrMalformed, len(resp.Results), len(b.Pushes))
	}
	for j, r := range resp.Results {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("blobs: push batch to %s: %w", to, err)
		}
		errs[at[j]] = pushStatusErr(to, &r)
	}
	return errs, nil
}

// ErrBatchUnsupported: the holder does not speak the batched push protocol; push one by one.
var ErrBatchUnsupported = errors.New("blobs: holder does not accept push batches")
