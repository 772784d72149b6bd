package procnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	procnettest.Cleanup()
	os.Exit(code)
}

// Generous deadlines: they bound a hung test, they are not performance assertions.
const (
	startTimeout = 90 * time.Second
	stepTimeout  = 60 * time.Second
)

// TestCrashRestartHalt runs four authority processes through crash, restart, loss of quorum and
// recovery, and checks at every step that no two nodes ever hold different blocks at one height.
func TestCrashRestartHalt(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	ctx := context.Background()
	nw, g := startFour(t, 3)
	// Transactions reach a block through any node.
	submitPatients(t, nw, g, 1, 10)
	waitTxs(t, nw, 2, 10)
	checkAgreement(t, nw, []int{0, 1, 2, 3})

	// A crash of one authority of four leaves a quorum: the other three keep committing.
	if err := nw.Kill(3); err != nil {
		t.Fatal(err)
	}
	h := height(t, nw, 0)
	t.Logf("killed node3 (kill -9) at height %d", h)
	for _, i := range []int{0, 1, 2} {
		if _, err := nw.WaitHeight(ctx, i, h+3, stepTimeout); err != nil {
			t.Fatal(err)
		}
	}

	// Restarted, it fetches the blocks it missed and signs commits again.
	if err := nw.Start(3); err != nil {
		t.Fatal(err)
	}
	h = height(t, nw, 0)
	t.Logf("restarted node3; node0 at height %d", h)
	if _, err := nw.WaitHeight(ctx, 3, h, stepTimeout); err != nil {
		t.Fatal(err)
	}
	key3 := authorityKey(t, nw, g, 3)
	signedAt := waitSignedBy(t, nw, 0, h+1, key3)
	t.Logf("node3 caught up and signed the commit of block %d", signedAt)
	checkAgreement(t, nw, []int{0, 1, 2, 3})

	// With one authority stopped cleanly the other three still commit; with a second one gone,
	// fewer than 2/3 remain and the chain halts without forking.
	if err := nw.Stop(2); err != nil {
		t.Fatalf("SIGTERM node2: %v", err)
	}
	h = height(t, nw, 0)
	if _, err := nw.WaitHeight(ctx, 0, h+2, stepTimeout); err != nil {
		t.Fatal(err)
	}
	if err := nw.Stop(1); err != nil {
		t.Fatalf("SIGTERM node1: %v", err)
	}
	halted := maxHeight(t, nw, []int{0, 3})
	t.Logf("stopped node2 and node1 (SIGTERM); the chain should halt near height %d", halted)
	// Transactions submitted while halted wait in the mempool.
	submitPatients(t, nw, g, 0, 5)
	// Observe for several block intervals: at most the block already precommitted may still land.
	window := 6 * time.Duration(max(g.Params.BlockIntervalMs, 500)) * time.Millisecond
	observe := time.NewTicker(200 * time.Millisecond)
	for end := time.After(window); ; {
		if got := maxHeight(t, nw, []int{0, 3}); got > halted+1 {
			t.Fatalf("height moved from %d to %d with only two of four authorities running", halted, got)
		}
		select {
		case <-observe.C:
			continue
		case <-end:
		}
		break
	}
	observe.Stop()
	halted = maxHeight(t, nw, []int{0, 3})
	checkAgreement(t, nw, []int{0, 3})
	t.Logf("halted at height %d for %s", halted, window)

	// A third authority back: commits resume, and the waiting transactions get in.
	if err := nw.Start(1); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 3} {
		if _, err := nw.WaitHeight(ctx, i, halted+3, stepTimeout); err != nil {
			t.Fatal(err)
		}
	}
	waitTxs(t, nw, 1, 15)
	if err := nw.Start(2); err != nil {
		t.Fatal(err)
	}
	final := height(t, nw, 0) + 2
	for i := range 4 {
		if _, err := nw.WaitHeight(ctx, i, final, stepTimeout); err != nil {
			t.Fatal(err)
		}
	}
	checkAgreement(t, nw, []int{0, 1, 2, 3})
	if err := nw.StopAll(); err != nil {
		t.Fatalf("clean shutdown: %v", err)
	}
}

// TestBadInput sends malformed API requests, a transaction with a bad signature and garbage on a
// node's p2p port, and checks that each is refused with a reason and that the network keeps
// committing.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	ctx := context.Background()
	nw, g := startFour(t, 2)

	good := patientTx(t, nw, g)
	badSig := patientTx(t, nw, g)
	badSig.Sig[0] ^= 0x01
	wrongChain := chain.NewTx(mustKey(t), g.ChainID+"-other", chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: []byte("k")})
	txBody := func(b []byte) []byte { return []byte(`{"tx":"` + hex.EncodeToString(b) + `"}`) }
	huge := bytes.Repeat([]byte("a"), 8<<20)

	cases := []struct {
		name, method, path string
		body               []byte
		noAuth             bool
		token              string
		want               int // exact code, or 0 for any 4xx
	}{
		{"no token", http.MethodGet, "/v1/status", nil, true, "", http.StatusUnauthorized},
		{"wrong token", http.MethodGet, "/v1/status", nil, false, "00ff", http.StatusUnauthorized},
		{"height not a number", http.MethodGet, "/v1/blocks/abc", nil, false, "", http.StatusBadRequest},
		{"height not yet committed", http.MethodGet, "/v1/blocks/999999999", nil, false, "", http.StatusNotFound},
		{"body not JSON", http.MethodPost, "/v1/txs", []byte("{not json"), false, "", http.StatusBadRequest},
		{"tx not hex", http.MethodPost, "/v1/txs", []byte(`{"tx":"zz"}`), false, "", http.StatusBadRequest},
		{"tx missing", http.MethodPost, "/v1/txs", []byte(`{}`), false, "", http.StatusBadRequest},
		{"tx not CBOR", http.MethodPost, "/v1/txs", txBody([]byte{0xff, 0x00, 0x13}), false, "", http.StatusBadRequest},
		{"tx bad signature", http.MethodPost, "/v1/txs", txBody(badSig.Encode()), false, "", http.StatusBadRequest},
		{"tx for another chain", http.MethodPost, "/v1/txs", txBody(wrongChain.Encode()), false, "", http.StatusBadRequest},
		{"body too large", http.MethodPost, "/v1/txs", huge, false, "", 0},
		{"batch not a list", http.MethodPost, "/v1/txs/batch", []byte(`{"txs":"x"}`), false, "", http.StatusBadRequest},
	}
	for _, c := range cases {
		code, body, err := doAs(ctx, nw, 0, c.method, c.path, c.body, !c.noAuth, c.token)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if code/100 != 4 || (c.want != 0 && code != c.want) {
			t.Errorf("%s: %s %s answered %d %q, want %s", c.name, c.method, c.path, code, truncate(body), wantText(c.want))
			continue
		}
		reason := errorReason(body)
		if reason == "" {
			t.Errorf("%s: %d without a reason: %q", c.name, code, truncate(body))
			continue
		}
		t.Logf("%s: %d %s", c.name, code, reason)
	}

	// A batch with one good and one badly signed transaction accepts the good one only.
	res, err := nw.Submit(ctx, 1, []*chain.Tx{good, badSig})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || len(res.Errors) == 0 {
		t.Errorf("batch of one good and one bad tx: accepted %d, errors %s", res.Accepted, res.Errors)
	}

	// Garbage on a node's p2p port (TCP and QUIC) is dropped; the node stays up and in consensus.
	h := height(t, nw, 0)
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	for k, prefix := range [][]byte{nil, []byte("/multistream/1.0.0\n"), []byte("\x13/multistream/1.0.0\n\xff\xff\xff\xff")} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(nw.P2PPort(0))), 5*time.Second)
		if err != nil {
			t.Fatalf("dial p2p port: %v", err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(prefix)
		c.Write(junk[:1024<<k])
		c.Close()
		u, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(nw.P2PPort(0))))
		if err != nil {
			t.Fatalf("dial p2p UDP port: %v", err)
		}
		u.Write(junk[:1200])
		u.Close()
	}
	for i := range 4 {
		if _, err := nw.WaitHeight(ctx, i, h+3, stepTimeout); err != nil {
			t.Fatal(err)
		}
	}
	if !nw.Running(0) {
		t.Fatal("node0 exited after garbage on its p2p port")
	}
	waitTxs(t, nw, 0, 1) // the good transaction from the batch
	checkAgreement(t, nw, []int{0, 1, 2, 3})
}

func wantText(code int) string {
	if code == 0 {
		return "a 4xx"
	}
	return strconv.Itoa(code)
}

func truncate(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// errorReason extracts the message of a JSON error body ("error", "message" or "reason").
func errorReason(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	for _, k := range []string{"error", "message", "reason"} {
		switch v := m[k].(type) {
		case string:
			if v != "" {
				return v
			}
		case map[string]any:
			if s, ok := v["message"].(string); ok && s != "" {
				return s
			}
		}
	}
	return ""
}

// doAs sends a request with an explicit token, or through nw.Do (the node's own token when auth
// is true) when token is empty.
func doAs(ctx context.Context, nw *procnet.Network, i int, method, path string, body []byte, auth bool, token string) (int, []byte, error) {
	if token == "" {
		return nw.Do(ctx, i, method, path, body, auth)
	}
	addr, err := nw.APIAddr(i)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}

func mustKey(t *testing.T) chain.PrivKey {
	t.Helper()
	k, err := chain.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// patientTx is a fresh patient's registration enrolled by node0's provider (waiting until that
// provider is registered: patients need an active provider's co-signature).
func patientTx(t *testing.T, nw *procnet.Network, g *chain.Genesis) *chain.Tx {
	enc := make([]byte, 32)
	rand.Read(enc)
	k := mustKey(t)
	return chain.NewTx(k, g.ChainID, chain.TxRegisterPatient, 1, enrolment(t, nw, g, 0, k, enc))
}

// enrolment co-signs patient's registration with node i's provider key, once that provider is
// registered.
func enrolment(t *testing.T, nw *procnet.Network, g *chain.Genesis, i int, patient chain.PrivKey, enc []byte) *chain.RegisterPatient {
	t.Helper()
	(&phiClient{t: t, nw: nw, g: g}).waitProvider(i)
	e, err := node.ReadKeyFile(node.Resolve(nw.Home(i), node.DefaultConfig().Records.ProviderKey))
	if err != nil {
		t.Fatal(err)
	}
	return chain.NewEnrolment(e, e.Public().Address(), g.ChainID, patient.Public(), enc)
}

// submitPatients registers n fresh patients through node i.
func submitPatients(t *testing.T, nw *procnet.Network, g *chain.Genesis, i, n int) {
	t.Helper()
	txs := make([]*chain.Tx, n)
	for k := range txs {
		txs[k] = patientTx(t, nw, g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := nw.Submit(ctx, i, txs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != n {
		t.Fatalf("node%d accepted %d of %d registrations: %s", i, res.Accepted, n, res.Errors)
	}
}

// waitTxs waits until node i's blocks hold at least n transactions in total.
func waitTxs(t *testing.T, nw *procnet.Network, i, n int) {
	t.Helper()
	var next uint64 = 1
	total := 0
	err := procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, fmt.Sprintf("%d transactions committed on node%d", n, i), func(ctx context.Context) (bool, error) {
		st, err := nw.Status(ctx, i)
		if err != nil {
			return false, err
		}
		for ; next <= st.Height; next++ {
			b, err := nw.Block(ctx, i, next)
			if err != nil {
				return false, err
			}
			total += b.TxCount
		}
		return total >= n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func height(t *testing.T, nw *procnet.Network, i int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := nw.Status(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	return st.Height
}

func maxHeight(t *testing.T, nw *procnet.Network, nodes []int) uint64 {
	t.Helper()
	var m uint64
	for _, i := range nodes {
		m = max(m, height(t, nw, i))
	}
	return m
}

// checkAgreement compares every block hash, from height 1 to the lowest height among nodes, and
// that each node's status agrees with its own block at its height.
func checkAgreement(t *testing.T, nw *procnet.Network, nodes []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	low := uint64(1<<63 - 1)
	for _, i := range nodes {
		low = min(low, height(t, nw, i))
	}
	for h := uint64(1); h <= low; h++ {
		var first *procnet.Block
		for _, i := range nodes {
			b, err := nw.Block(ctx, i, h)
			if err != nil {
				t.Fatalf("node%d block %d: %v", i, h, err)
			}
			if b.Height != h || b.Hash == "" {
				t.Fatalf("node%d block %d: answered height %d hash %q", i, h, b.Height, b.Hash)
			}
			if first == nil {
				first = b
			} else if b.Hash != first.Hash {
				t.Fatalf("fork at height %d: node%d has %s, node%d has %s", h, nodes[0], first.Hash, i, b.Hash)
			}
		}
	}
	t.Logf("nodes %v agree on blocks 1..%d", nodes, low)
}

// authorityKey is node i's authority key: from its status if it names one, else genesis order.
func authorityKey(t *testing.T, nw *procnet.Network, g *chain.Genesis, i int) chain.PubKey {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := nw.Status(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := keyIn(st.Authority); ok {
		return k
	}
	return g.Authorities[i].Key
}

func keyIn(raw json.RawMessage) (chain.PubKey, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		k, err := chain.ParsePubKey(s)
		return k, err == nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) == nil {
		for _, f := range []string{"key", "pubkey", "public_key"} {
			if k, ok := keyIn(m[f]); ok {
				return k, true
			}
		}
	}
	return chain.PubKey{}, false
}

// waitSignedBy waits for a block at height from or above, on node i, whose commit key signed.
func waitSignedBy(t *testing.T, nw *procnet.Network, i int, from uint64, key chain.PubKey) uint64 {
	t.Helper()
	next, found := from, uint64(0)
	err := procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, fmt.Sprintf("a commit signed by %s", key.Short()), func(ctx context.Context) (bool, error) {
		st, err := nw.Status(ctx, i)
		if err != nil {
			return false, err
		}
		for ; next <= st.Height; next++ {
			b, err := nw.Block(ctx, i, next)
			if err != nil {
				return false, err
			}
			if b.SignedBy(key) {
				found = next
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// startFour starts a four-authority network and waits until every node has committed height.
func startFour(t *testing.T, height uint64) (*procnet.Network, *chain.Genesis) {
	t.Helper()
	nw := procnettest.New(t, 4)
	g, err := nw.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	procnettest.StartAll(t, nw)
	for i := range 4 {
		if _, err := nw.WaitHeight(context.Background(), i, height, startTimeout); err != nil {
			t.Fatal(err)
		}
		t.Logf("up: %s", procnettest.Describe(nw, i))
	}
	return nw, g
}
