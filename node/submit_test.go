package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
)

// observations is a FHIR Bundle of n Observations of one patient.
func observations(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType": "Bundle", "type": "collection", "entry": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"fullUrl": "https://ehr.example.org/fhir/Observation/obs-%d", "resource": {"resourceType": "Observation", "id": "obs-%d", "status": "final",
			"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
			"subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2024-03-01T09:15:00+01:00",
			"valueQuantity": {"value": %d, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}}`, i, i, 60+i%40)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// An import of more anchor transactions than the mempool takes from one signer at once does not
// fail: each refused chunk waits for the next commit and is submitted again, within the
// caller's deadline. Both ways the pool says "not now" to this node's own backlog are covered:
// the signer's byte quota (ErrSignerFull) and its nonce window (ErrNonceGap, since the next free
// nonce lies beyond it).
func TestImportWaitsForRoomInTheMempool(t *testing.T) {
	for _, c := range []struct {
		name    string
		mempool replica.MempoolConfig
	}{
		{"signer bytes", replica.MempoolConfig{MaxSignerBytes: 12 << 10}},
		{"nonce window", replica.MempoolConfig{NonceWindow: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newRecFixtureWith(t, c.mempool)
			r := f.start()
			p := f.newPatient("alice", true)
			const n = 3*chain.MaxAnchorsPerTx + 1 // four anchor transactions
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := r.Import(ctx, p.id(), observations(n))
			require.NoError(t, err)
			require.Len(t, out, n)
			for _, rec := range out {
				require.NotNil(t, f.record(rec.ID), "record %s not anchored", rec.ID.Short())
			}
		})
	}
}

// soloRunner runs a one-authority chain with the given mempool bounds, its commit hub wired to
// the runner's hooks.
func soloRunner(t *testing.T, mempool replica.MempoolConfig) (*Runner, *commitHub, *chain.Genesis, chain.PrivKey) {
	t.Helper()
	key := testKey(t, "solo-authority")
	params := chain.DefaultParams()
	params.TimeoutProposeMs, params.TimeoutVoteMs, params.TimeoutDeltaMs, params.BlockIntervalMs = 400, 200, 100, 20
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: "submit-test", TimeMs: time.Now().UnixMilli(),
		Authorities: []chain.Authority{{Key: key.Public(), Name: "solo"}}, LicensingAuthorities: []chain.Authority{}, Params: params,
	}
	rep, err := replica.New(replica.Config{Genesis: g, Key: &key, Mempool: mempool}, store.NewMemory())
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	hub := newCommitHub()
	runner := NewRunner(rep, NewBus(log).Join("solo"), log, time.Now, Hooks{Committed: hub.committed, Dropped: hub.dropped})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	return runner, hub, g, key
}

// A caller waiting for a transaction that leaves the mempool uncommitted learns why at once,
// rather than waiting for a commit that will never come. Here: nonce 2 with nothing at nonce 1
// is admitted but never executable, and expires after two blocks.
func TestDroppedTransactionReachesItsWaiter(t *testing.T) {
	runner, hub, g, key := soloRunner(t, replica.MempoolConfig{TTLBlocks: 2})
	tx := chain.NewTx(key, g.ChainID, chain.TxRegisterPatient, 2, &chain.RegisterPatient{EncryptionKey: []byte("k")})
	ch, cancel := hub.expect(tx.Hash())
	defer cancel()
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	_, err := runner.Submit(ctx, tx)
	require.NoError(t, err)
	_, err = waitCommit(ctx, ch)
	require.ErrorIs(t, err, ErrTxDropped)
	require.Contains(t, err.Error(), "expired")
}

// POST /v1/txs?wait=commit answers 409 with the reason as soon as the transaction is dropped.
func TestAPIWaitCommitReportsDrop(t *testing.T) {
	runner, hub, g, key := soloRunner(t, replica.MempoolConfig{TTLBlocks: 2})
	api := NewAPI(runner, NodeInfo{ChainID: g.ChainID}, testToken, 4096, 1<<20, slog.New(slog.DiscardHandler))
	api.commits = hub
	tx := chain.NewTx(key, g.ChainID, chain.TxRegisterPatient, 2, &chain.RegisterPatient{EncryptionKey: []byte("k")})
	req := httptest.NewRequest("POST", "/v1/txs?wait=commit", bytes.NewReader(txBody(tx)))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "expired") {
		t.Fatalf("got %d %s, want 409 naming the expiry", rec.Code, rec.Body)
	}
}

// refusingBackend refuses every submission with err.
type refusingBackend struct{ err error }

func (b refusingBackend) Submit(context.Context, *chain.Tx) (chain.Hash, error) {
	return chain.Hash{}, b.err
}
func (refusingBackend) Query(context.Context, func(*replica.Replica)) error { return nil }
func (refusingBackend) Chain() store.Store                                  { return store.NewMemory() }

// Refusals about the node's load are 503 (retry later), one at a time and in a batch, where
// they are per-transaction errors rather than a failure of the whole batch.
func TestAPILoadRefusalsAre503(t *testing.T) {
	tx := chain.NewTx(testKey(t, "x"), "api-test", chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: []byte{1}})
	for _, refusal := range []error{replica.ErrMempoolFull, replica.ErrSignerFull, replica.ErrRegistrationsFull} {
		api := NewAPI(refusingBackend{refusal}, NodeInfo{ChainID: "api-test"}, testToken, 4096, 1<<20, slog.New(slog.DiscardHandler))
		req := httptest.NewRequest("POST", "/v1/txs", bytes.NewReader(txBody(tx)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "retry") {
			t.Errorf("%v: got %d %s, want 503 saying when to retry", refusal, rec.Code, rec.Body)
		}
		batch, err := json.Marshal(map[string][]string{"txs": {fmt.Sprintf("%x", tx.Encode())}})
		require.NoError(t, err)
		req = httptest.NewRequest("POST", "/v1/txs/batch", bytes.NewReader(batch))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec = httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var res BatchResult
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &res) != nil || len(res.Errors) != 1 {
			t.Errorf("%v in a batch: got %d %s, want 200 with one per-transaction error", refusal, rec.Code, rec.Body)
		}
	}
}

func TestSubmitStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{replica.ErrMempoolFull, http.StatusServiceUnavailable},
		{replica.ErrSignerFull, http.StatusServiceUnavailable},
		{replica.ErrRegistrationsFull, http.StatusServiceUnavailable},
		{fmt.Errorf("%w: x: %w", ErrTxDropped, replica.ErrRefusedByState), http.StatusConflict},
		{replica.ErrStaleNonce, http.StatusConflict},
		{replica.ErrNonceGap, http.StatusConflict},
		{replica.ErrNotMember, http.StatusUnprocessableEntity},
		{replica.ErrRefusedByState, http.StatusUnprocessableEntity},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		if got := submitStatus(fmt.Errorf("submit: %w", c.err)); got != c.code {
			t.Errorf("%v: %d, want %d", c.err, got, c.code)
		}
	}
}
