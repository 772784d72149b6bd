package procnet_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// TestLicensedPracticeJoins: a practice that holds a licence from the genesis licensing
// authority, and nothing else (not in genesis, no member vouching for it, no operator of the
// network acting), starts a full node against a running four-member network. Its licence is its
// ticket: it gets in as a candidate, syncs, gossips its own registration, and once that commits
// the members admit it as a member. A node with a licence for another key is refused.
func TestLicensedPracticeJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	nw := procnettest.New(t, 4)
	procnettest.StartAll(t, nw)
	if _, err := nw.WaitHeight(context.Background(), 0, 3, startTimeout); err != nil {
		t.Fatal(err)
	}
	home := newPracticeHome(t, nw, true)
	cmd := exec.Command(procnettest.Binary(t), "node", "--home", home)
	logf, err := os.Create(filepath.Join(home, "node.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procnet.ChildProcAttr()
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(home, "node.log"))
			t.Logf("---- practice node log: head ----\n%s", head(string(out), 4000))
			t.Logf("---- practice node log: tail ----\n%s", tail(string(out), 3000))
			n0, _ := os.ReadFile(nw.LogPath(0))
			t.Logf("---- node0's p2p lines ----\n%s", tail(grepLines(string(n0), "p2p:"), 4000))
		}
	})
	cfg, err := node.LoadConfig(home)
	require.NoError(t, err)
	api := "http://" + cfg.API.Listen
	start := time.Now()
	var st struct {
		Height             uint64 `json:"height"`
		ProviderRegistered bool   `json:"provider_registered"`
	}
	err = procnet.WaitFor(context.Background(), 90*time.Second, 250*time.Millisecond, "the practice registered and synced", func(ctx context.Context) (bool, error) {
		if err := getJSON(ctx, api, home, "/v1/status", &st); err != nil {
			return false, nil // not up yet
		}
		top, err := nw.Status(ctx, 0)
		if err != nil {
			return false, err
		}
		return st.ProviderRegistered && st.Height+2 >= top.Height, nil
	})
	require.NoError(t, err)
	t.Logf("FIGURE a licensed practice joined: registered and synced to height %d in %s, with no member relaying for it", st.Height, time.Since(start).Round(100*time.Millisecond))
	// The members admit it now: it is among node0's peers.
	pid, err := p2p.PeerIDFromIdentity(filepath.Join(home, "keys", "p2p.key"))
	require.NoError(t, err)
	err = procnet.WaitFor(context.Background(), 30*time.Second, 250*time.Millisecond, "node0 connected to the new member", func(ctx context.Context) (bool, error) {
		_, out, err := nw.Do(ctx, 0, http.MethodGet, "/v1/status", nil, true)
		return err == nil && strings.Contains(string(out), pid), err
	})
	require.NoError(t, err)

	// A licence naming another node key is no ticket: that node never registers or syncs.
	bad := newPracticeHome(t, nw, false)
	cmd2 := exec.Command(procnettest.Binary(t), "node", "--home", bad)
	cmd2.SysProcAttr = procnet.ChildProcAttr()
	require.NoError(t, cmd2.Start())
	t.Cleanup(func() { _ = cmd2.Process.Kill(); _, _ = cmd2.Process.Wait() })
	badCfg, err := node.LoadConfig(bad)
	require.NoError(t, err)
	time.Sleep(15 * time.Second)
	var bst struct {
		Height             uint64 `json:"height"`
		ProviderRegistered bool   `json:"provider_registered"`
	}
	require.NoError(t, getJSON(context.Background(), "http://"+badCfg.API.Listen, bad, "/v1/status", &bst))
	require.False(t, bst.ProviderRegistered, "a node whose licence names another key registered")
	require.Zero(t, bst.Height, "a node whose licence names another key synced")
}

// newPracticeHome writes a full node's home (no authority key) for a practice that is not in
// genesis: the network's genesis, a fresh provider key, a licence from the testnet's licensing
// authority naming its own libp2p key (or, if !ownKey, another one), and node0 as bootstrap peer.
func newPracticeHome(t *testing.T, nw *procnet.Network, ownKey bool) string {
	t.Helper()
	home := t.TempDir()
	base, err := procnet.FreeBasePort(1)
	require.NoError(t, err)
	c := node.DefaultConfig()
	c.Node.Name, c.Node.AuthorityKey = "practice", ""
	c.P2P.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", base)}
	c.API.Listen = fmt.Sprintf("127.0.0.1:%d", base+1)
	peer0, err := p2p.PeerIDFromIdentity(filepath.Join(nw.Home(0), "keys", "p2p.key"))
	require.NoError(t, err)
	c.P2P.Bootstrap = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", nw.P2PPort(0), peer0)}
	require.NoError(t, os.MkdirAll(filepath.Join(home, "keys"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(home, "config.toml"), node.FormatConfig(c), 0o644))
	g, err := os.ReadFile(filepath.Join(nw.Home(0), "genesis.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(home, "genesis.json"), g, 0o644))
	gen, err := nw.Genesis()
	require.NoError(t, err)
	prov, err := chain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, node.WriteKeyFile(node.Resolve(home, c.Records.ProviderKey), prov))
	idKey, err := p2p.LoadOrCreateIdentity(node.Resolve(home, c.P2P.Identity))
	require.NoError(t, err)
	raw, err := idKey.GetPublic().Raw()
	require.NoError(t, err)
	var nodeKey chain.PubKey
	copy(nodeKey[:], raw)
	if !ownKey {
		other, err := chain.GenerateKey(rand.Reader)
		require.NoError(t, err)
		nodeKey = other.Public()
	}
	board, err := node.ReadKeyFile(testnet.LicensingKeyFile(nw.Dir))
	require.NoError(t, err)
	lic := chain.Licence{Role: chain.RoleProvider, Subject: prov.Public(), NodeKey: nodeKey, Number: "PRACTICE-1", Jurisdiction: "TESTNET",
		NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	lic.Sign(board, gen.ChainID)
	require.NoError(t, node.WriteLicenceFile(node.Resolve(home, c.Records.Licence), &lic))
	return home
}

func getJSON(ctx context.Context, base, home, path string, out any) error {
	tok, err := os.ReadFile(filepath.Join(home, "api.token"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func grepLines(s, substr string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
