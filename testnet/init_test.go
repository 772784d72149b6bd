package testnet

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

func TestInitFourNodes(t *testing.T) {
	const n, base = 4, 31000
	dir := filepath.Join(t.TempDir(), "net")
	if err := Init(dir, n, base); err != nil {
		t.Fatal(err)
	}
	genesis, err := os.ReadFile(node.Home(NodeDir(dir, 0)).GenesisFile())
	if err != nil {
		t.Fatal(err)
	}
	g, err := chain.ParseGenesisJSON(genesis)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Authorities) != n || len(g.LicensingAuthorities) != 1 || !strings.HasPrefix(g.ChainID, "medledger-testnet-") || g.Params.EnrolmentsPerWindow != EnrolmentsPerWindow || g.Params.MaxBlockTxs != chain.DefaultParams().MaxBlockTxs {
		t.Fatalf("genesis %+v", g)
	}
	board, err := node.ReadKeyFile(LicensingKeyFile(dir))
	if err != nil || board.Public() != g.LicensingAuthorities[0].Key {
		t.Fatalf("licensing key does not match genesis: %v", err)
	}
	// The payers' registry: the one genesis issuer of payer licences, its key beside the board's.
	payers, err := node.ReadKeyFile(PayersKeyFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	want := []chain.Issuer{{Role: chain.RolePayer, Key: payers.Public(), Name: PayersRegistryName}}
	if len(g.Issuers) != 1 || g.Issuers[0].Role != want[0].Role || g.Issuers[0].Key != want[0].Key || g.Issuers[0].Name != want[0].Name {
		t.Fatalf("genesis issuers %+v, want %+v", g.Issuers, want)
	}
	if fi, err := os.Stat(PayersKeyFile(dir)); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("payers key file: %v", err)
	}
	ports := map[string]int{}
	tcpAddrs := map[string]bool{}
	for i := range n {
		home := NodeDir(dir, i)
		c, err := node.LoadConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		other, err := os.ReadFile(node.Home(home).GenesisFile())
		if err != nil || !bytes.Equal(other, genesis) {
			t.Fatalf("node %d genesis differs (%v)", i, err)
		}
		k, err := node.ReadKeyFile(node.Resolve(home, c.Node.AuthorityKey))
		if err != nil || k.Public() != g.Authorities[i].Key {
			t.Fatalf("node %d authority key is not genesis authority %d (%v)", i, i, err)
		}
		if fi, err := os.Stat(node.Resolve(home, c.P2P.Identity)); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("node %d p2p identity: %v", i, err)
		}
		_, apiPort, err := net.SplitHostPort(c.API.Listen)
		if err != nil || !strings.HasPrefix(c.API.Listen, "127.0.0.1:") {
			t.Fatalf("node %d api.listen %q", i, c.API.Listen)
		}
		if prev, dup := ports["tcp"+apiPort]; dup {
			t.Fatalf("node %d API port %s already used by node %d", i, apiPort, prev)
		}
		ports["tcp"+apiPort] = i
		for _, a := range c.P2P.Listen {
			if !strings.HasPrefix(a, "/ip4/127.0.0.1/") {
				t.Fatalf("node %d listens on %q", i, a)
			}
			parts := strings.Split(a, "/") // "", ip4, 127.0.0.1, tcp|udp, port, ...
			key := parts[3] + parts[4]
			if prev, dup := ports[key]; dup {
				t.Fatalf("node %d port %s already used by node %d", i, key, prev)
			}
			ports[key] = i
			if parts[3] == "tcp" {
				tcpAddrs[a] = true
			}
		}
		if len(c.P2P.Bootstrap) != n-1 {
			t.Fatalf("node %d bootstraps from %d peers, want %d", i, len(c.P2P.Bootstrap), n-1)
		}
		for _, b := range c.P2P.Bootstrap {
			addr, id, ok := strings.Cut(b, "/p2p/")
			if !ok || !tcpAddrs[addr] && !strings.Contains(addr, "/tcp/") || id == "" {
				t.Fatalf("node %d bootstrap %q", i, b)
			}
			if p, _ := Ports(base, i); strings.HasSuffix(addr, "/tcp/"+strconv.Itoa(p)) {
				t.Fatalf("node %d bootstraps from itself", i)
			}
		}
	}
	if len(ports) != 3*n {
		t.Fatalf("ports %v, want %d distinct", ports, 3*n)
	}
	if err := Init(dir, n, base); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second init into the same directory: %v", err)
	}
}

func TestInitRejectsBadArguments(t *testing.T) {
	for _, tc := range []struct {
		n, base int
		want    string
	}{{0, 26600, "authorities"}, {4, 80, "base port"}, {4, 65530, "base port"}} {
		if err := Init(t.TempDir(), tc.n, tc.base); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Init(n=%d, base=%d): %v", tc.n, tc.base, err)
		}
	}
}
