package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/medledger/medledger/chain/state"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
)

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type apiFixture struct {
	srv    *httptest.Server
	st     *store.Memory
	runner *Runner
	g      *chain.Genesis
	key    chain.PrivKey
}

func testKey(t *testing.T, name string) chain.PrivKey {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newAPIFixture runs a one-authority chain over a memory store and serves its API.
func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	key := testKey(t, "authority")
	params := chain.DefaultParams()
	params.TimeoutProposeMs, params.TimeoutVoteMs, params.TimeoutDeltaMs, params.BlockIntervalMs = 400, 200, 100, 20
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: "api-test", TimeMs: time.Now().UnixMilli(),
		Authorities: []chain.Authority{{Key: key.Public(), Name: "solo"}}, LicensingAuthorities: testLicensingAuthorities(t), Params: params,
	}
	log := slog.New(slog.DiscardHandler)
	st := store.NewMemory()
	rep, err := replica.New(replica.Config{Genesis: g, Key: &key}, st)
	if err != nil {
		t.Fatal(err)
	}
	runner := NewRunner(rep, NewBus(log).Join("solo"), log, time.Now, Hooks{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	pub := key.Public()
	api := NewAPI(runner, NodeInfo{ChainID: g.ChainID, NodeID: "12D3KooWtest", Authority: &pub, Peers: func() []string { return nil }}, testToken, 4096, 1<<20, log)
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	return &apiFixture{srv: srv, st: st, runner: runner, g: g, key: key}
}

type answer struct {
	code int
	body []byte
}

func (a answer) errorText(t *testing.T) string {
	t.Helper()
	var e ErrorJSON
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("answer %d is not a JSON error: %q (%v)", a.code, a.body, err)
	}
	return e.Error
}

func (f *apiFixture) do(t *testing.T, method, path, token, contentType string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return answer{resp.StatusCode, data}
}

func (f *apiFixture) patientTx(t *testing.T, name string) *chain.Tx {
	return regTx(t, testKey(t, name), f.g.ChainID, []byte(name))
}

func txBody(tx *chain.Tx) []byte {
	return []byte(fmt.Sprintf(`{"tx":%q}`, hex.EncodeToString(tx.Encode())))
}

func TestAPIRequiresToken(t *testing.T) {
	f := newAPIFixture(t)
	for _, tc := range []struct{ name, header, want string }{
		{"missing", "", "missing Authorization"},
		{"wrong", "Bearer " + strings.Repeat("f", 64), "invalid API token"},
		{"not bearer", "Basic " + testToken, "invalid API token"},
		{"prefix of token", "Bearer " + testToken[:32], "invalid API token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.srv.URL+"/v1/status", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			a := answer{resp.StatusCode, data}
			if a.code != http.StatusUnauthorized || !strings.Contains(a.errorText(t), tc.want) {
				t.Fatalf("got %d %s, want 401 mentioning %q", a.code, a.body, tc.want)
			}
		})
	}
}

func TestAPIRejectsBadRequestsWithReasons(t *testing.T) {
	f := newAPIFixture(t)
	good := f.patientTx(t, "p")
	badSig := *good
	badSig.Sig[0] ^= 1
	otherChain := chain.NewTx(testKey(t, "p"), "other-chain", chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: []byte{1}})
	hugeTx := fmt.Sprintf(`{"tx":%q}`, strings.Repeat("ab", 4096))
	manyTxs := `{"txs":[` + strings.Repeat(`"",`, MaxBatchTxs) + `""]}`
	for _, tc := range []struct {
		name, method, path, ctype string
		body                      string
		code                      int
		want                      string
	}{
		{"malformed json", "POST", "/v1/txs", "", `{"tx":`, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/txs", "", `{"tx":"00","extra":1}`, 400, "unknown field"},
		{"trailing data", "POST", "/v1/txs", "", `{"tx":"00"} {}`, 400, "data after"},
		{"missing tx", "POST", "/v1/txs", "", `{}`, 400, `missing "tx"`},
		{"bad hex", "POST", "/v1/txs", "", `{"tx":"zz"}`, 400, "not hex"},
		{"not a tx", "POST", "/v1/txs", "", `{"tx":"a0"}`, 400, "does not decode"},
		{"cbor garbage", "POST", "/v1/txs", "application/cbor", "\xff\x00", 400, "does not decode"},
		{"oversized", "POST", "/v1/txs", "", hugeTx, 413, "limit"},
		{"bad signature", "POST", "/v1/txs", "", string(txBody(&badSig)), 400, "signature"},
		{"other chain", "POST", "/v1/txs", "", string(txBody(otherChain)), 400, `chain "other-chain"`},
		{"unknown height", "GET", "/v1/blocks/999999", "", "", 404, "no block at height 999999"},
		{"height zero", "GET", "/v1/blocks/0", "", "", 400, "positive decimal"},
		{"bad height", "GET", "/v1/blocks/abc", "", "", 400, `height "abc"`},
		{"negative height", "GET", "/v1/blocks/-1", "", "", 400, "positive decimal"},
		{"unknown endpoint", "GET", "/v1/nothing", "", "", 404, "no endpoint"},
		{"wrong method", "GET", "/v1/txs", "", "", 405, "GET is not allowed on /v1/txs: use POST"},
		{"batch malformed", "POST", "/v1/txs/batch", "", `{"txs":"x"}`, 400, "malformed JSON"},
		{"batch too many", "POST", "/v1/txs/batch", "", manyTxs, 413, "limit 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, tc.method, tc.path, testToken, tc.ctype, []byte(tc.body))
			if a.code != tc.code || !strings.Contains(a.errorText(t), tc.want) {
				t.Fatalf("got %d %s, want %d mentioning %q", a.code, a.body, tc.code, tc.want)
			}
		})
	}
}

func TestAPISubmitCommitsAndShowsBlock(t *testing.T) {
	f := newAPIFixture(t)
	tx := f.patientTx(t, "alice")
	a := f.do(t, "POST", "/v1/txs", testToken, "", txBody(tx))
	if a.code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", a.code, a.body)
	}
	var acc TxAccepted
	if err := json.Unmarshal(a.body, &acc); err != nil || acc.Hash != tx.Hash() {
		t.Fatalf("submit answered %s (%v), want hash %s", a.body, err, tx.Hash())
	}
	// The same transaction again is a conflict, not a crash or a second copy.
	if a := f.do(t, "POST", "/v1/txs", testToken, "application/cbor", tx.Encode()); a.code != http.StatusConflict && a.code != http.StatusAccepted {
		t.Fatalf("resubmit: %d %s", a.code, a.body)
	}

	height := f.waitCommitted(t, tx.Hash())
	a = f.do(t, "GET", fmt.Sprintf("/v1/blocks/%d", height), testToken, "", nil)
	if a.code != http.StatusOK {
		t.Fatalf("block: %d %s", a.code, a.body)
	}
	var b BlockJSON
	if err := json.Unmarshal(a.body, &b); err != nil {
		t.Fatal(err)
	}
	want, err := f.st.Block(height)
	if err != nil {
		t.Fatal(err)
	}
	if b.Height != height || b.Hash != want.Hash() || b.TxCount != len(want.Txs) || len(b.Txs) != b.TxCount {
		t.Fatalf("block answer %+v does not match stored block %s", b, want.Hash())
	}
	found := false
	for _, h := range b.Txs {
		found = found || h == tx.Hash()
	}
	if !found || len(b.Commit.Signers) != 1 || b.Commit.Signers[0] != f.key.Public() {
		t.Fatalf("block %d: txs %v, signers %v", height, b.Txs, b.Commit.Signers)
	}
	if _, err := time.Parse(time.RFC3339, b.Time); err != nil {
		t.Fatalf("block time %q: %v", b.Time, err)
	}

	a = f.do(t, "GET", "/v1/status", testToken, "", nil)
	var st StatusJSON
	if err := json.Unmarshal(a.body, &st); err != nil || a.code != http.StatusOK {
		t.Fatalf("status: %d %s (%v)", a.code, a.body, err)
	}
	if st.ChainID != f.g.ChainID || st.NodeID != "12D3KooWtest" || st.Height < height || st.LastBlockHash == nil ||
		st.Authority == nil || *st.Authority != f.key.Public() || len(st.Authorities) != 1 || st.Authorities[0].Name != "solo" || st.Peers == nil {
		t.Fatalf("status %s", a.body)
	}
	var raw map[string]any
	if err := json.Unmarshal(a.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"chain_id", "node_id", "authority", "height", "last_block_hash", "last_block_time", "round", "authorities", "peers", "mempool"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status lacks %q", k)
		}
	}
}

func TestAPIBatch(t *testing.T) {
	f := newAPIFixture(t)
	t1, t2 := f.patientTx(t, "b1"), f.patientTx(t, "b2")
	bad := *f.patientTx(t, "b3")
	bad.Sig[5] ^= 1
	body, _ := json.Marshal(map[string][]string{"txs": {hex.EncodeToString(t1.Encode()), "zz", hex.EncodeToString(bad.Encode()), hex.EncodeToString(t2.Encode())}})
	a := f.do(t, "POST", "/v1/txs/batch", testToken, "", body)
	var res BatchResult
	if err := json.Unmarshal(a.body, &res); err != nil || a.code != http.StatusOK {
		t.Fatalf("batch: %d %s (%v)", a.code, a.body, err)
	}
	if res.Accepted != 2 || len(res.Hashes) != 2 || res.Hashes[0] != t1.Hash() || res.Hashes[1] != t2.Hash() ||
		len(res.Errors) != 2 || res.Errors[0].Index != 1 || res.Errors[1].Index != 2 || !strings.Contains(res.Errors[1].Error, "signature") {
		t.Fatalf("batch result %s", a.body)
	}
	f.waitCommitted(t, t2.Hash())
}

// waitCommitted polls the store (through the runner) until the transaction is in a block.
func (f *apiFixture) waitCommitted(t *testing.T, h chain.Hash) uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var height uint64
		var err error
		if qerr := f.runner.Query(context.Background(), func(rep *replica.Replica) { height, _, err = rep.Store().TxLocation(h) }); qerr != nil {
			t.Fatal(qerr)
		}
		if err == nil {
			return height
		}
		if time.Now().After(deadline) {
			t.Fatalf("transaction %s not committed after 30 s: %v", h.Short(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fullBackend refuses every submission as a full mempool would.
type fullBackend struct{}

func (fullBackend) Submit(context.Context, *chain.Tx) (chain.Hash, error) {
	return chain.Hash{}, replica.ErrMempoolFull
}
func (fullBackend) Query(context.Context, func(*replica.Replica)) error { return nil }
func (fullBackend) Chain() store.Store                                  { return store.NewMemory() }

func TestAPIMempoolFullIs503(t *testing.T) {
	api := NewAPI(fullBackend{}, NodeInfo{ChainID: "api-test"}, testToken, 4096, 1<<20, slog.New(slog.DiscardHandler))
	tx := chain.NewTx(testKey(t, "x"), "api-test", chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: []byte{1}})
	req := httptest.NewRequest("POST", "/v1/txs", bytes.NewReader(txBody(tx)))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "mempool full") {
		t.Fatalf("got %d %s, want 503 mempool full", rec.Code, rec.Body)
	}
}

// TestReadsDoNotWaitForTheReplica holds the replica's goroutine busy (as a long block execution
// would) and reads a block over the API and the state through the record service's ledger:
// both answer, because reads of the committed chain go to the store, not through the replica.
func TestReadsDoNotWaitForTheReplica(t *testing.T) {
	f := newAPIFixture(t)
	deadline := time.Now().Add(10 * time.Second)
	for f.runner.Chain().Height() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no block committed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	release := make(chan struct{})
	busy := make(chan struct{})
	go func() {
		_ = f.runner.Query(context.Background(), func(*replica.Replica) { close(busy); <-release })
	}()
	<-busy
	defer close(release)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l := newLedger(f.runner, newCommitHub())
	if err := l.View(ctx, func(view state.View) error {
		h, _, err := state.Tip(view)
		if err == nil && h < 1 {
			err = fmt.Errorf("tip %d", h)
		}
		return err
	}); err != nil {
		t.Fatalf("state view while the replica is busy: %v", err)
	}
	if b, err := l.Block(ctx, 1); err != nil || b == nil {
		t.Fatalf("block 1 while the replica is busy: %v %v", b, err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/v1/blocks/1", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/blocks/1 while the replica is busy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/blocks/1: %d", resp.StatusCode)
	}
}
