package exchange

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/p2p/frame"
	"github.com/medledger/medledger/wallet/envelope"
)

// serve starts a server on h with a fresh handler and penalty recorder.
func serve(t *testing.T, h host.Host, opts ServerOptions) (*testHandler, *penalties) {
	t.Helper()
	handler, pen := newHandler(), newPenalties()
	opts.Penalize = pen.penalize
	stop := Serve(h, testChain, handler, opts)
	t.Cleanup(stop)
	return handler, pen
}

// sendRaw writes raw bytes on a fresh stream (closing its write side) and returns what the server
// answered, or the error that ended the stream.
func sendRaw(t *testing.T, ctx context.Context, from host.Host, to peer.ID, raw []byte) ([]byte, error) {
	t.Helper()
	s, err := from.NewStream(ctx, to, ProtocolID(testChain))
	require.NoError(t, err)
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if _, err := s.Write(raw); err != nil {
		return nil, err
	}
	require.NoError(t, s.CloseWrite())
	return io.ReadAll(s)
}

// sendPush frames and sends p (bypassing the client's own checks) and decodes the push
// response.
func sendPush(t *testing.T, ctx context.Context, from host.Host, to peer.ID, p *PushRequest) *PushResponse {
	t.Helper()
	var buf strings.Builder
	require.NoError(t, frame.Write(&buf, chain.Encode(&Request{Version: MessageVersion, Kind: KindPush, Push: p})))
	out, err := sendRaw(t, ctx, from, to, []byte(buf.String()))
	require.NoError(t, err)
	n, k := binary.Uvarint(out)
	require.Positive(t, k)
	require.Len(t, out[k:], int(n))
	resp, err := decodePushResponse(out[k:])
	require.NoError(t, err)
	return resp
}

func TestProtocolID(t *testing.T) {
	require.Equal(t, "/medledger/abc/blobs/1.0.0", string(ProtocolID("abc")))
}

func TestFetchOKRefusedNotFound(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "blood pressure 120/80", 2)
	handler.records[record] = sl
	key := signingKey(t, 1)

	resp, err := Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, key, record, 1))
	require.NoError(t, err)
	require.Equal(t, StatusOK, resp.Status)
	require.Equal(t, sl.Ciphertext, resp.Ciphertext)
	require.Equal(t, sl.Envelopes, resp.Envelopes)

	resp, err = Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, key, chain.Sum256([]byte("unknown")), 2))
	require.NoError(t, err)
	require.Equal(t, StatusNotFound, resp.Status)
	require.Equal(t, "no such record", resp.Reason)

	handler.fetchFn = func(*chain.AccessRequest) *FetchResponse {
		return &FetchResponse{Status: StatusRefused, Reason: "no consent for TREAT"}
	}
	resp, err = Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, key, record, 3))
	require.NoError(t, err)
	require.Equal(t, StatusRefused, resp.Status)
	require.Equal(t, "no consent for TREAT", resp.Reason)
	require.Empty(t, resp.Ciphertext)

	// A handler answer that does not validate goes out as an error, not as-is.
	handler.fetchFn = func(*chain.AccessRequest) *FetchResponse {
		return &FetchResponse{Status: StatusRefused, Ciphertext: []byte("leak")}
	}
	resp, err = Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, key, record, 4))
	require.NoError(t, err)
	require.Equal(t, StatusError, resp.Status)
	require.Equal(t, int32(4), handler.fetches.Load())
	pen.none(t)
}

func TestFetchBadSignatureNotHandled(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	req := accessRequest(t, signingKey(t, 1), chain.Sum256([]byte("record")), 1)
	req.Nonce++ // no longer what was signed

	resp, err := Fetch(ctx, client, testChain, holder.ID(), req)
	require.NoError(t, err)
	require.Equal(t, StatusError, resp.Status)
	require.Contains(t, resp.Reason, "signature")
	got := pen.next(t, ctx)
	require.Equal(t, client.ID(), got.peer)
	require.ErrorIs(t, got.err, chain.ErrBadSignature)
	require.Zero(t, handler.calls())

	// Signed for another chain.
	other := &chain.AccessRequest{Role: "clinician", Record: chain.Sum256([]byte("record")), RequesterNode: chain.PubKey{1}, Holder: chain.PubKey{2}, Purpose: "TREAT", Nonce: 2}
	other.Sign(signingKey(t, 1), "another-chain")
	resp, err = Fetch(ctx, client, testChain, holder.ID(), other)
	require.NoError(t, err)
	require.Equal(t, StatusError, resp.Status)
	pen.next(t, ctx)
	require.Zero(t, handler.calls())
}

func TestPushOK(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 2)
	require.NoError(t, Push(ctx, client, testChain, holder.ID(), pushRequest(t, signingKey(t, 2), record, sl)))
	require.Equal(t, sl, handler.records[record])

	// Envelope-only update.
	more := sealed(t, record, "body", 3)
	p := &PushRequest{Record: record, CiphertextHash: sl.CiphertextHash(), Envelopes: more.Envelopes[2:]}
	p.Sign(signingKey(t, 2), testChain)
	require.NoError(t, Push(ctx, client, testChain, holder.ID(), p))
	require.Equal(t, int32(2), handler.pushes.Load())

	// A handler refusal comes back as ErrRefused with its reason.
	handler.pushErr = errors.Join(ErrRefused, errors.New("not a holder of this patient"))
	err := Push(ctx, client, testChain, holder.ID(), pushRequest(t, signingKey(t, 2), record, sl))
	require.ErrorIs(t, err, ErrRefused)
	require.Contains(t, err.Error(), "not a holder of this patient")
	// Any other handler error is an internal error, without its text.
	handler.pushErr = errors.New("disk full at /secret/path")
	err = Push(ctx, client, testChain, holder.ID(), pushRequest(t, signingKey(t, 2), record, sl))
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrRefused)
	require.NotContains(t, err.Error(), "/secret/path")
	pen.none(t)
}

// TestPushBusy: a handler's quota refusal travels as StatusBusy and comes back as ErrBusy.
func TestPushBusy(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	record := chain.Sum256([]byte("record"))
	handler.pushErr = fmt.Errorf("%w: 64 MiB a minute", ErrBusy)
	err := Push(ctx, client, testChain, holder.ID(), pushRequest(t, signingKey(t, 2), record, sealed(t, record, "body", 1)))
	require.ErrorIs(t, err, ErrBusy)
	require.NotErrorIs(t, err, ErrRefused)
	require.Contains(t, err.Error(), "64 MiB a minute")
	pen.none(t)
}

// TestPull: a pull returns the held copy with its envelopes; a copy that does not hash to the
// asked hash is ErrTampered; refusals, absence and quota come back as their errors.
func TestPull(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 3)
	handler.records[record] = sl
	resp, err := Pull(ctx, client, testChain, holder.ID(), &PullRequest{Record: record, CiphertextHash: sl.CiphertextHash()})
	require.NoError(t, err)
	require.Equal(t, sl.Ciphertext, resp.Ciphertext)
	require.Equal(t, sl.Envelopes, resp.Envelopes)

	_, err = Pull(ctx, client, testChain, holder.ID(), &PullRequest{Record: record, CiphertextHash: chain.Sum256([]byte("other"))})
	require.ErrorIs(t, err, ErrTampered)
	_, err = Pull(ctx, client, testChain, holder.ID(), &PullRequest{Record: chain.Sum256([]byte("absent")), CiphertextHash: sl.CiphertextHash()})
	require.ErrorIs(t, err, ErrNotFound)
	for st, want := range map[Status]error{StatusRefused: ErrRefused, StatusBusy: ErrBusy} {
		handler.pullFn = func(*PullRequest) *FetchResponse { return &FetchResponse{Status: st, Reason: "because"} }
		_, err = Pull(ctx, client, testChain, holder.ID(), &PullRequest{Record: record, CiphertextHash: sl.CiphertextHash()})
		require.ErrorIs(t, err, want)
		require.Contains(t, err.Error(), "because")
	}
	_, err = Pull(ctx, client, testChain, holder.ID(), &PullRequest{Record: record})
	require.ErrorIs(t, err, ErrMalformed, "a pull without a hash is not sent")
	require.Equal(t, int32(5), handler.pulls.Load())
	pen.none(t)
}

// TestRequestKindsExclusive: a request carrying the field of another kind does not decode.
func TestRequestKindsExclusive(t *testing.T) {
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 1)
	pull := &PullRequest{Version: MessageVersion, Record: record, CiphertextHash: sl.CiphertextHash()}
	push := pushRequest(t, signingKey(t, 2), record, sl)
	fetch := chain.Encode(accessRequest(t, signingKey(t, 2), record, 1))
	for name, r := range map[string]*Request{
		"pull with push":  {Version: MessageVersion, Kind: KindPull, Pull: pull, Push: push},
		"pull with fetch": {Version: MessageVersion, Kind: KindPull, Pull: pull, Fetch: fetch},
		"pull without":    {Version: MessageVersion, Kind: KindPull},
		"push with pull":  {Version: MessageVersion, Kind: KindPush, Push: push, Pull: pull},
		"fetch with pull": {Version: MessageVersion, Kind: KindFetch, Fetch: fetch, Pull: pull},
	} {
		_, err := DecodeRequest(chain.Encode(r))
		require.ErrorIs(t, err, ErrMalformed, name)
	}
	ok, err := DecodeRequest(chain.Encode(&Request{Version: MessageVersion, Kind: KindPull, Pull: pull}))
	require.NoError(t, err)
	require.Equal(t, KindPull, ok.Kind)
}

func TestPushBadSignatureRefusedAndPenalized(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 1)
	p := pushRequest(t, signingKey(t, 2), record, sl)
	p.Record = chain.Sum256([]byte("another record")) // not what was signed

	err := Push(ctx, client, testChain, holder.ID(), p)
	require.Error(t, err)
	require.Contains(t, err.Error(), "signature")
	got := pen.next(t, ctx)
	require.Equal(t, client.ID(), got.peer)
	require.ErrorIs(t, got.err, chain.ErrBadSignature)
	require.Zero(t, handler.calls())
}

func TestPushWrongHashRefusedAndPenalized(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{})
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 1)
	p := &PushRequest{Record: record, CiphertextHash: chain.Sum256([]byte("something else")), Ciphertext: sl.Ciphertext, Envelopes: sl.Envelopes}
	p.Sign(signingKey(t, 2), testChain) // a valid signature over the wrong hash

	// The client does not even send it...
	require.ErrorIs(t, Push(ctx, client, testChain, holder.ID(), p), ErrHashMismatch)
	// ...and a server refuses it when it arrives anyway.
	resp := sendPush(t, ctx, client, holder.ID(), p)
	require.Equal(t, StatusError, resp.Status)
	require.Contains(t, resp.Reason, "does not match its hash")
	got := pen.next(t, ctx)
	require.ErrorIs(t, got.err, ErrHashMismatch)
	require.Zero(t, handler.calls())
}

func TestGarbageAndOversizedFramesReset(t *testing.T) {
	var huge [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(huge[:], MaxRequestBytes+1)
	notCBOR := append(binary.AppendUvarint(nil, 5), "hello"...)
	cases := map[string][]byte{
		"garbage":            []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
		"oversized prefix":   huge[:n],
		"overlong varint":    {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"truncated body":     append(binary.AppendUvarint(nil, 100), "short"...),
		"empty frame":        {0x00},
		"framed non-CBOR":    notCBOR,
		"framed wrong kind":  framed(chain.Encode(&Request{Version: MessageVersion, Kind: 9, Fetch: []byte{1}})),
		"framed bad version": framed(chain.Encode(&Request{Version: 2, Kind: KindFetch, Fetch: []byte{1}})),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			hosts := newNet(t, 2)
			client, holder := hosts[0], hosts[1]
			handler, pen := serve(t, holder, ServerOptions{})
			out, err := sendRaw(t, ctx, client, holder.ID(), raw)
			require.Error(t, err, "the stream must be reset, got %x", out)
			got := pen.next(t, ctx)
			require.Equal(t, client.ID(), got.peer)
			require.Zero(t, handler.calls())
		})
	}
}

func framed(body []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(body))), body...) }

func TestRateLimitPenalized(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := serve(t, holder, ServerOptions{Rate: 1e-9, Burst: 1})
	record := chain.Sum256([]byte("record"))
	handler.records[record] = sealed(t, record, "body", 1)
	key := signingKey(t, 1)
	_, err := Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, key, record, 1))
	require.NoError(t, err)
	_, err = Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, key, record, 2))
	require.Error(t, err)
	got := pen.next(t, ctx)
	require.ErrorIs(t, got.err, ErrRateLimited)
	require.Equal(t, int32(1), handler.fetches.Load())
}

func TestFetchFrom(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 4)
	client, tamperer, empty, good := hosts[0], hosts[1], hosts[2], hosts[3]
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "the real record", 2)
	want := sl.CiphertextHash()

	bad, _ := serve(t, tamperer, ServerOptions{})
	forged := *sl
	forged.Ciphertext = append([]byte(nil), sl.Ciphertext...)
	forged.Ciphertext[len(forged.Ciphertext)-1] ^= 1
	bad.records[record] = &forged
	serve(t, empty, ServerOptions{})
	goodH, _ := serve(t, good, ServerOptions{})
	goodH.records[record] = sl

	var penalized []peer.ID
	pen := func(p peer.ID, err error) {
		require.ErrorIs(t, err, ErrTampered)
		penalized = append(penalized, p)
	}
	req := accessRequest(t, signingKey(t, 1), record, 1)
	resp, from, err := FetchFrom(ctx, client, testChain, []peer.ID{tamperer.ID(), empty.ID(), good.ID()}, req, want, pen)
	require.NoError(t, err)
	require.Equal(t, good.ID(), from)
	require.Equal(t, sl.Ciphertext, resp.Ciphertext)
	require.Equal(t, []peer.ID{tamperer.ID()}, penalized)

	// Only bad copies: ErrTampered naming the holder.
	penalized = nil
	_, _, err = FetchFrom(ctx, client, testChain, []peer.ID{empty.ID(), tamperer.ID()}, req, want, pen)
	require.ErrorIs(t, err, ErrTampered)
	require.Contains(t, err.Error(), tamperer.ID().String())
	require.Contains(t, err.Error(), "not found")

	// Nobody has it: ErrNotFound.
	_, _, err = FetchFrom(ctx, client, testChain, []peer.ID{empty.ID()}, req, want, pen)
	require.ErrorIs(t, err, ErrNotFound)
	_, _, err = FetchFrom(ctx, client, testChain, nil, req, want, pen)
	require.ErrorIs(t, err, ErrNotFound)

	// A refusal stops at once: the good holder after it is never asked.
	bad.fetchFn = func(*chain.AccessRequest) *FetchResponse {
		return &FetchResponse{Status: StatusRefused, Reason: "consent revoked"}
	}
	before := goodH.fetches.Load()
	_, from, err = FetchFrom(ctx, client, testChain, []peer.ID{tamperer.ID(), good.ID()}, req, want, pen)
	require.ErrorIs(t, err, ErrRefused)
	require.Contains(t, err.Error(), "consent revoked")
	require.Equal(t, tamperer.ID(), from)
	require.Equal(t, before, goodH.fetches.Load())
}

func TestFetchFromSkipsUnreachable(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 3)
	client, silent, good := hosts[0], hosts[1], hosts[2] // silent does not serve the protocol
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 1)
	h, _ := serve(t, good, ServerOptions{})
	h.records[record] = sl
	resp, from, err := FetchFrom(ctx, client, testChain, []peer.ID{silent.ID(), good.ID()},
		accessRequest(t, signingKey(t, 1), record, 1), sl.CiphertextHash(), nil)
	require.NoError(t, err)
	require.Equal(t, good.ID(), from)
	require.Equal(t, sl.Ciphertext, resp.Ciphertext)
}

func TestStopServer(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 2)
	client, holder := hosts[0], hosts[1]
	handler, pen := newHandler(), newPenalties()
	release := make(chan struct{})
	handler.fetchFn = func(*chain.AccessRequest) *FetchResponse {
		<-release
		return &FetchResponse{Status: StatusNotFound}
	}
	stop := Serve(holder, testChain, handler, ServerOptions{Penalize: pen.penalize})
	errc := make(chan error, 1)
	go func() {
		_, err := Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, signingKey(t, 1), chain.Sum256([]byte("r")), 1))
		errc <- err
	}()
	select {
	case <-handler.called:
	case <-ctx.Done():
		t.Fatal("handler not called")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(release)
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("stop did not return")
	}
	select {
	case <-errc:
	case <-ctx.Done():
		t.Fatal("fetch did not return")
	}
	// After stop the protocol is gone.
	_, err := Fetch(ctx, client, testChain, holder.ID(), accessRequest(t, signingKey(t, 1), chain.Sum256([]byte("r")), 2))
	require.Error(t, err)
}

// A holder that answers nothing within the first-byte deadline is abandoned with ErrStalled,
// long before the stream timeout; one that answers in time is read whole.
func TestFetchWithinStalledHolder(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 3)
	client, prompt, staller := hosts[0], hosts[1], hosts[2]
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "blood pressure 120/80", 1)
	release := make(chan struct{})
	defer close(release)
	stalling := newHandler()
	stalling.fetchFn = func(*chain.AccessRequest) *FetchResponse {
		<-release
		return &FetchResponse{Status: StatusOK, Ciphertext: sl.Ciphertext, Envelopes: sl.Envelopes}
	}
	t.Cleanup(Serve(staller, testChain, stalling, ServerOptions{})) // after release is closed
	handler, _ := serve(t, prompt, ServerOptions{})
	handler.records[record] = sl
	key := signingKey(t, 1)

	// The near miss: a prompt holder under a deadline of the same order.
	resp, err := FetchWithin(ctx, client, testChain, prompt.ID(), accessRequest(t, key, record, 1), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, StatusOK, resp.Status)

	_, err = FetchWithin(ctx, client, testChain, staller.ID(), accessRequest(t, key, record, 2), 100*time.Millisecond)
	require.ErrorIs(t, err, ErrStalled)
	require.NoError(t, ctx.Err(), "the stall cost the whole test deadline")
}

// TestPushMany: a batch travels on one stream and gets one result per push; a push with a bad
// signature is refused alone (and struck), the others are stored; a holder without the batch
// protocol is reported as ErrBatchUnsupported.
func TestPushMany(t *testing.T) {
	ctx := testCtx(t)
	hosts := newNet(t, 3)
	client, holder, silent := hosts[0], hosts[1], hosts[2]
	handler, pen := serve(t, holder, ServerOptions{})
	key := signingKey(t, 2)
	var reqs []*PushRequest
	var sls []*envelope.Sealed
	for i := range 4 {
		record := chain.Sum256(fmt.Appendf(nil, "record %d", i))
		sl := sealed(t, record, fmt.Sprintf("body %d", i), 2)
		reqs, sls = append(reqs, pushRequest(t, key, record, sl)), append(sls, sl)
	}
	reqs[2].Record = chain.Sum256([]byte("not what was signed"))
	errs, err := PushMany(ctx, client, testChain, holder.ID(), reqs)
	require.NoError(t, err)
	require.Len(t, errs, 4)
	for i, e := range errs {
		if i == 2 {
			require.Error(t, e)
			continue
		}
		require.NoError(t, e)
		require.Equal(t, sls[i], handler.records[reqs[i].Record])
	}
	require.Equal(t, int32(3), handler.pushes.Load())
	got := pen.next(t, ctx)
	require.ErrorIs(t, got.err, chain.ErrBadSignature)
	pen.none(t)

	// Handler answers come back per push.
	handler.pushErr = fmt.Errorf("%w: 64 MiB a minute", ErrBusy)
	errs, err = PushMany(ctx, client, testChain, holder.ID(), []*PushRequest{reqs[0], reqs[1]})
	require.NoError(t, err)
	for _, e := range errs {
		require.ErrorIs(t, e, ErrBusy)
	}

	_, err = PushMany(ctx, client, testChain, silent.ID(), reqs[:1])
	require.ErrorIs(t, err, ErrBatchUnsupported)
}

func TestPushBatchOversizedRefused(t *testing.T) {
	b := PushBatch{Version: MessageVersion}
	require.ErrorIs(t, b.Validate(), ErrMalformed)
	record := chain.Sum256([]byte("record"))
	p := pushRequest(t, signingKey(t, 2), record, sealed(t, record, "body", 1))
	for range MaxPushBatch + 1 {
		b.Pushes = append(b.Pushes, *p)
	}
	require.ErrorIs(t, b.Validate(), ErrMalformed)
	b.Pushes = b.Pushes[:MaxPushBatch]
	require.NoError(t, b.Validate())
}
