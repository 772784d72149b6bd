package node_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
)

// soloHome writes a one-authority testnet and moves its node to ephemeral loopback ports.
func soloHome(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "net")
	if err := testnet.Init(dir, 1, testnet.DefaultBasePort); err != nil {
		t.Fatal(err)
	}
	home := testnet.NodeDir(dir, 0)
	c, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	c.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	c.API.Listen = "127.0.0.1:0"
	if err := os.WriteFile(node.Home(home).ConfigFile(), node.FormatConfig(*c), 0o644); err != nil {
		t.Fatal(err)
	}
	return home
}

type runningNode struct {
	n     *node.Node
	token string
	stop  context.CancelFunc
	done  chan error
}

func start(t *testing.T, home string) *runningNode {
	t.Helper()
	n, err := node.Open(home, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	token, err := node.ReadToken(node.Home(home).TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningNode{n: n, token: token, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	return r
}

func (r *runningNode) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node did not stop within 30 s")
	}
}

func (r *runningNode) get(t *testing.T, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+r.n.APIAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, data)
		}
	}
	return resp.StatusCode
}

func (r *runningNode) waitHeight(t *testing.T, h uint64) node.StatusJSON {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st node.StatusJSON
		if code := r.get(t, "/v1/status", &st); code != http.StatusOK {
			t.Fatalf("status: %d", code)
		}
		if st.Height >= h {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("height %d after 60 s, want %d", st.Height, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNodeRunsStopsAndRestarts(t *testing.T) {
	home := soloHome(t)
	r := start(t, home)
	st := r.waitHeight(t, 1)
	g, err := node.LoadGenesis(node.Home(home).GenesisFile())
	if err != nil {
		t.Fatal(err)
	}
	if st.ChainID != g.ChainID || st.NodeID != r.n.PeerID() || st.Authority == nil || *st.Authority != g.Authorities[0].Key {
		t.Fatalf("status %+v", st)
	}

	// A transaction submitted over HTTP commits.
	// A provider registration: a fresh key may send it with a licence from the testnet's board.
	board, err := node.ReadKeyFile(testnet.LicensingKeyFile(filepath.Dir(home)))
	if err != nil {
		t.Fatal(err)
	}
	pk := mustKey(t)
	var nodeKey chain.PubKey
	copy(nodeKey[:], pk.Public().Address().String())
	lic := chain.Licence{Role: chain.RoleProvider, Subject: pk.Public(), NodeKey: nodeKey, Number: "T-1", NotAfter: time.Now().Add(time.Hour).UnixMilli()}
	lic.Sign(board, g.ChainID)
	patient := chain.NewTx(pk, g.ChainID, chain.TxRegisterMember, 1, &chain.RegisterMember{Licence: lic, EncryptionKey: []byte{1, 2, 3}})
	req, _ := http.NewRequest("POST", "http://"+r.n.APIAddr()+"/v1/txs", strings.NewReader(fmt.Sprintf(`{"tx":%q}`, hex.EncodeToString(patient.Encode()))))
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: %d", resp.StatusCode)
	}
	st = r.waitHeight(t, st.Height+2)
	found := false
	for h := uint64(1); h <= st.Height && !found; h++ {
		var b node.BlockJSON
		if code := r.get(t, fmt.Sprintf("/v1/blocks/%d", h), &b); code != http.StatusOK {
			t.Fatalf("block %d: %d", h, code)
		}
		for _, x := range b.Txs {
			found = found || x == patient.Hash()
		}
	}
	if !found {
		t.Fatal("submitted transaction is in no block")
	}
	r.shutdown(t)

	// The store was closed cleanly: a restart resumes above the old height with the same token.
	r = start(t, home)
	defer r.shutdown(t)
	again := r.waitHeight(t, st.Height+1)
	if again.ChainID != st.ChainID || again.NodeID != st.NodeID {
		t.Fatalf("restart changed identity: %+v", again)
	}
}

func TestOpenFailsCleanly(t *testing.T) {
	home := soloHome(t)
	good, err := os.ReadFile(node.Home(home).ConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	// The API port is taken: Open fails after opening the store and must release it again.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c, err := node.ParseConfig("config", good)
	if err != nil {
		t.Fatal(err)
	}
	c.API.Listen = busy.Addr().String()
	if err := os.WriteFile(node.Home(home).ConfigFile(), node.FormatConfig(*c), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(home, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "API") {
		t.Fatalf("Open with a busy API port: %v", err)
	}
	if err := os.WriteFile(node.Home(home).ConfigFile(), good, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(home, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("reopen after a failed Open: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(node.Home(home).ConfigFile(), []byte("[node]\nauthority_key = \"keys/missing.key\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(home, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("Open with a missing key: %v", err)
	}
	if err := os.WriteFile(node.Home(home).ConfigFile(), []byte("[api]\nlisten = \"127.0.0.1:0\"\n[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(node.Home(home).GenesisFile(), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(home, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "genesis") {
		t.Fatalf("Open with a bad genesis: %v", err)
	}
}

func mustKey(t *testing.T) chain.PrivKey {
	t.Helper()
	k, err := chain.PrivKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
