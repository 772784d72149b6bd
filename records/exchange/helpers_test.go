package exchange

import (
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

const testChain = "medledger-test"

// testTimeout bounds every network test.
const testTimeout = 20 * time.Second

func testRand(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func signingKey(t testing.TB, seed byte) chain.PrivKey {
	t.Helper()
	var s [32]byte
	s[0] = seed
	k, err := chain.PrivKeyFromSeed(s[:])
	require.NoError(t, err)
	return k
}

// sealed seals a record body for n fresh recipients.
func sealed(t testing.TB, record chain.Hash, body string, n int) *envelope.Sealed {
	t.Helper()
	var rs []envelope.Recipient
	for i := range n {
		k, err := envelope.GenerateKey(testRand(uint64(1000 + i)))
		require.NoError(t, err)
		rs = append(rs, envelope.Recipient{Key: k.Public()})
	}
	s, err := envelope.Seal(testRand(7), []byte(body), envelope.Context{ChainID: testChain, RecordID: record, Version: 1}, rs)
	require.NoError(t, err)
	return s
}

func accessRequest(t testing.TB, key chain.PrivKey, record chain.Hash, nonce uint64) *chain.AccessRequest {
	t.Helper()
	r := &chain.AccessRequest{Role: "clinician", Record: record, RequesterNode: chain.PubKey{1}, Holder: chain.PubKey{2}, Purpose: "TREAT", IssuedMs: 1_700_000_000_000, Nonce: nonce}
	r.Sign(key, testChain)
	return r
}

func pushRequest(t testing.TB, key chain.PrivKey, record chain.Hash, s *envelope.Sealed) *PushRequest {
	t.Helper()
	p := &PushRequest{Record: record, CiphertextHash: s.CiphertextHash(), Ciphertext: s.Ciphertext, Envelopes: s.Envelopes}
	p.Sign(key, testChain)
	return p
}

// newNet returns n connected mock hosts (no real network).
func newNet(t *testing.T, n int) []host.Host {
	t.Helper()
	mn, err := mocknet.FullMeshConnected(n)
	require.NoError(t, err)
	t.Cleanup(func() { _ = mn.Close() })
	return mn.Hosts()
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testHandler serves fetches with fetchFn (or from records) and stores pushes.
type testHandler struct {
	mu      sync.Mutex
	records map[chain.Hash]*envelope.Sealed // by record id
	fetchFn func(*chain.AccessRequest) *FetchResponse
	pushErr error
	pullFn  func(*PullRequest) *FetchResponse
	fetches atomic.Int32
	pushes  atomic.Int32
	pulls   atomic.Int32
	called  chan struct{} // receives on every handler call, if not nil
}

func newHandler() *testHandler {
	return &testHandler{records: make(map[chain.Hash]*envelope.Sealed), called: make(chan struct{}, 64)}
}

func (h *testHandler) Fetch(_ context.Context, _ peer.ID, req *chain.AccessRequest) *FetchResponse {
	h.fetches.Add(1)
	h.called <- struct{}{}
	if h.fetchFn != nil {
		return h.fetchFn(req)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.records[req.Record]
	if !ok {
		return &FetchResponse{Status: StatusNotFound, Reason: "no such record"}
	}
	return &FetchResponse{Status: StatusOK, Ciphertext: s.Ciphertext, Envelopes: s.Envelopes}
}

func (h *testHandler) Push(_ context.Context, _ peer.ID, req *PushRequest) error {
	h.pushes.Add(1)
	h.called <- struct{}{}
	if h.pushErr != nil {
		return h.pushErr
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records[req.Record] = &envelope.Sealed{Ciphertext: req.Ciphertext, Envelopes: req.Envelopes}
	return nil
}

// Pull serves a held record with all its envelopes, or what pullFn says.
func (h *testHandler) Pull(_ context.Context, _ peer.ID, req *PullRequest) *FetchResponse {
	h.pulls.Add(1)
	h.called <- struct{}{}
	if h.pullFn != nil {
		return h.pullFn(req)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.records[req.Record]
	if !ok {
		return &FetchResponse{Status: StatusNotFound, Reason: "no such record"}
	}
	return &FetchResponse{Status: StatusOK, Ciphertext: s.Ciphertext, Envelopes: s.Envelopes}
}

func (h *testHandler) calls() int { return int(h.fetches.Load() + h.pushes.Load() + h.pulls.Load()) }

// penalties records Penalize calls.
type penalties struct {
	ch chan penalty
}

type penalty struct {
	peer peer.ID
	err  error
}

func newPenalties() *penalties { return &penalties{ch: make(chan penalty, 64)} }

func (p *penalties) penalize(id peer.ID, err error) { p.ch <- penalty{id, err} }

// next waits (bounded by ctx) for the next penalty.
func (p *penalties) next(t *testing.T, ctx context.Context) penalty {
	t.Helper()
	select {
	case got := <-p.ch:
		return got
	case <-ctx.Done():
		t.Fatal("no penalty before the test's deadline")
		return penalty{}
	}
}

// none checks that no penalty is pending.
func (p *penalties) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-p.ch:
		t.Fatalf("unexpected penalty for %s: %v", got.peer, got.err)
	default:
	}
}
