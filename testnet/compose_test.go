package testnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// Full nodes are genesis members without an authority key; with a starting IP every node
// listens on its own address and bootstraps from the others' there, its API on loopback.
func TestInitFullNodesStartingIP(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	o := Options{Authorities: 4, BasePort: 26600, FullNodes: 2, StartingIP: "10.9.8.10"}
	if err := InitWith(dir, o); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(node.Home(NodeDir(dir, 0)).GenesisFile())
	if err != nil {
		t.Fatal(err)
	}
	g, err := chain.ParseGenesisJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Authorities) != 4 || len(g.Members) != 6 {
		t.Fatalf("%d authorities, %d members; want 4 and 6", len(g.Authorities), len(g.Members))
	}
	for i := range 6 {
		c, err := node.LoadConfig(NodeDir(dir, i))
		if err != nil {
			t.Fatal(err)
		}
		if (c.Node.AuthorityKey == "") != (i >= 4) {
			t.Errorf("node%d: authority key %q", i, c.Node.AuthorityKey)
		}
		ip, _ := o.Host(i)
		if want := []string{"10.9.8.10", "10.9.8.11", "10.9.8.12", "10.9.8.13", "10.9.8.14", "10.9.8.15"}[i]; ip != want {
			t.Fatalf("node%d at %q, want %s", i, ip, want)
		}
		if !strings.HasPrefix(c.P2P.Listen[0], "/ip4/"+ip+"/tcp/") || !strings.HasPrefix(c.API.Listen, "127.0.0.1:") {
			t.Errorf("node%d listens on %v, API %s", i, c.P2P.Listen, c.API.Listen)
		}
		if len(c.P2P.Bootstrap) != 5 {
			t.Errorf("node%d bootstraps from %v", i, c.P2P.Bootstrap)
		}
		for _, b := range c.P2P.Bootstrap {
			if strings.Contains(b, "/ip4/"+ip+"/") || !strings.HasPrefix(b, "/ip4/10.9.8.1") {
				t.Errorf("node%d bootstrap %s", i, b)
			}
		}
	}
	if err := WriteDocker(dir, o, DockerOptions{Image: "medledger-testnet:t", User: "1000:1000"}); err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join(dir, ComposeFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`version: "2.4"`, "node5:", "ipv4_address: 10.9.8.15", "subnet: 10.9.8.0/24", `command: ["node", "--home", "/testnet/node3"]`, `user: "1000:1000"`} {
		if !strings.Contains(string(compose), want) {
			t.Errorf("compose file lacks %s:\n%s", want, compose)
		}
	}
	if strings.Contains(string(compose), "ports:") {
		t.Error("the compose file publishes ports")
	}
	df, err := os.ReadFile(filepath.Join(dir, DockerfileName))
	if err != nil || !strings.Contains(string(df), "FROM scratch") || strings.Contains(string(df), "# syntax") {
		t.Fatalf("Dockerfile %q: %v", df, err)
	}
}

func TestInitOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Authorities: 4, BasePort: 26600, StartingIP: "fe80::1"}, "IPv4"},
		{Options{Authorities: 4, BasePort: 26600, StartingIP: "10.0.0.250", FullNodes: 10}, "leaves no address"},
		{Options{Authorities: 4, BasePort: 26600, FullNodes: -1}, "full nodes"},
	} {
		if err := InitWith(t.TempDir(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
	dir := t.TempDir()
	if err := WriteDocker(dir, Options{Authorities: 1, BasePort: 26600}, DockerOptions{Image: "x"}); err == nil || !strings.Contains(err.Error(), "--starting-ip") {
		t.Errorf("docker files on 127.0.0.1: %v", err)
	}
	if err := WriteDocker(dir, Options{Authorities: 1, BasePort: 26600, StartingIP: "10.0.0.10"}, DockerOptions{Image: "x", Subnet: "10.1.0.0/24"}); err == nil || !strings.Contains(err.Error(), "outside the subnet") {
		t.Errorf("addresses outside the subnet: %v", err)
	}
}

// With a hostname prefix every node listens on all interfaces and bootstraps by name.
func TestInitHostnamePrefix(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	o := Options{Authorities: 2, BasePort: 26600, FullNodes: 1, HostnamePrefix: "mlnode"}
	if err := InitWith(dir, o); err != nil {
		t.Fatal(err)
	}
	c, err := node.LoadConfig(NodeDir(dir, 2))
	if err != nil {
		t.Fatal(err)
	}
	if c.P2P.Listen[0] != "/ip4/0.0.0.0/tcp/26620" || c.API.Listen != "127.0.0.1:26621" || c.Node.AuthorityKey != "" {
		t.Fatalf("node2: listen %v, API %s, authority key %q", c.P2P.Listen, c.API.Listen, c.Node.AuthorityKey)
	}
	if len(c.P2P.Bootstrap) != 2 || !strings.HasPrefix(c.P2P.Bootstrap[0], "/dns4/mlnode0/tcp/26600/p2p/") || !strings.HasPrefix(c.P2P.Bootstrap[1], "/dns4/mlnode1/tcp/26610/p2p/") {
		t.Fatalf("node2 bootstraps from %v", c.P2P.Bootstrap)
	}
	if err := WriteDocker(dir, o, DockerOptions{Image: "i"}); err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join(dir, ComposeFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(compose), "  mlnode2:\n") || strings.Contains(string(compose), "ipv4_address") || strings.Contains(string(compose), "ipam") {
		t.Fatalf("compose file:\n%s", compose)
	}
}
