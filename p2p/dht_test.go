package p2p

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	mh "github.com/multiformats/go-multihash"

	"github.com/medledger/medledger/chain"
)

// testDiscoveryInterval keeps discovery rounds short in tests.
const testDiscoveryInterval = 300 * time.Millisecond

// newDHTHost starts a TCP host on 127.0.0.1 for chainID with short discovery rounds, bootstrapped
// to the given hosts only.
func newDHTHost(t testing.TB, chainID string, bootstrap ...*Host) *Host {
	t.Helper()
	var boot []string
	for _, b := range bootstrap {
		boot = append(boot, b.Addrs()...)
	}
	return startHost(t, Config{
		ChainID:           chainID,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap:         boot,
		IdentityFile:      filepath.Join(t.TempDir(), "p2p.key"),
		Logger:            testLogger(t),
		DiscoveryInterval: testDiscoveryInterval,
	})
}

// waitInRoutingTable waits until each host has every other in its DHT routing table.
func waitInRoutingTable(t testing.TB, hosts ...*Host) {
	t.Helper()
	waitFor(t, "the DHT routing tables to fill", func() bool {
		for _, h := range hosts {
			for _, o := range hosts {
				if o != h && h.dht.RoutingTable().Find(o.self) == "" {
					return false
				}
			}
		}
		return true
	})
}

func TestHashCID(t *testing.T) {
	key := chain.Sum256([]byte("blob"))
	c := HashCID(key)
	if c.Version() != 1 || c.Type() != cid.Raw {
		t.Fatalf("cid %s: version %d codec %#x, want CIDv1 raw", c, c.Version(), c.Type())
	}
	d, err := mh.Decode(c.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if d.Code != mh.SHA2_256 || !bytes.Equal(d.Digest, key[:]) {
		t.Fatalf("multihash code %#x digest %x, want sha2-256 over the key itself %x", d.Code, d.Digest, key)
	}
}

// Four hosts, each given only host 0 as bootstrap peer, all end up connected to each other.
func TestDiscoveryConnectsEveryNode(t *testing.T) {
	h0 := newDHTHost(t, testChain)
	hosts := []*Host{h0}
	for range 3 {
		hosts = append(hosts, newDHTHost(t, testChain, h0))
	}
	waitFor(t, "every host to be connected to every other", func() bool {
		for _, h := range hosts {
			for _, o := range hosts {
				if o != h && !slices.Contains(h.Peers(), o.ID()) {
					return false
				}
			}
		}
		return true
	})
	// The connections may come from the DHT's own lookups as well (in a network this small they
	// touch every node); the rendezvous records are what lets a node of a larger network find
	// all others: every host has advertised itself and finds every other under the key.
	for _, h := range hosts {
		waitFor(t, h.ID()+" to find every other host under the rendezvous key", func() bool {
			found := rendezvousPeers(t, h)
			for _, o := range hosts {
				if o != h && !slices.Contains(found, o.self) {
					return false
				}
			}
			return true
		})
	}
}

// rendezvousPeers looks the network's rendezvous key up as the discovery loop does.
func rendezvousPeers(t testing.TB, h *Host) []peer.ID {
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	ch, err := drouting.NewRoutingDiscovery(h.dht).FindPeers(ctx, rendezvous(h.chainID))
	if err != nil {
		t.Fatal(err)
	}
	var out []peer.ID
	for ai := range ch {
		if ai.ID != h.self {
			out = append(out, ai.ID)
		}
	}
	return out
}

// A key one host provides is found from another; a key nobody provides finds nobody.
func TestProvideAndFindHolders(t *testing.T) {
	h0 := newDHTHost(t, testChain)
	hosts := []*Host{h0}
	for range 3 {
		hosts = append(hosts, newDHTHost(t, testChain, h0))
	}
	waitInRoutingTable(t, hosts[0], hosts[2])
	waitInRoutingTable(t, hosts[0], hosts[3])

	key := chain.Sum256([]byte("record blob"))
	if err := hosts[2].Provide(ctxT(t), key); err != nil {
		t.Fatal(err)
	}
	// A peer stores an ADD_PROVIDER asynchronously, so a lookup right after Provide may miss it.
	waitFor(t, "host 3 to find host 2 holding the key", func() bool {
		holders, err := hosts[3].FindHolders(ctxT(t), key, 5)
		return err == nil && slices.Contains(holders, hosts[2].self)
	})
	// The provider does not list itself.
	own, err := hosts[2].FindHolders(ctxT(t), key, 5)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(own, hosts[2].self) {
		t.Fatalf("the provider lists itself among the holders: %v", own)
	}

	none, err := hosts[3].FindHolders(ctxT(t), chain.Sum256([]byte("nobody has this")), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(none) != 0 {
		t.Fatalf("holders of a key nobody provides: %v", none)
	}
}

// Hosts of two networks, although connected, share no DHT: a key provided on chain A is not
// found from chain B, and neither side has the other in its routing table.
func TestDHTSeparatesNetworks(t *testing.T) {
	a0 := newDHTHost(t, testChain+"-a")
	a1 := newDHTHost(t, testChain+"-a", a0)
	b := newDHTHost(t, testChain+"-b", a0) // dials a0 as its bootstrap peer
	waitInRoutingTable(t, a0, a1)
	waitFor(t, "b to be connected to a0", func() bool { return slices.Contains(b.Peers(), a0.ID()) })

	key := chain.Sum256([]byte("chain A blob"))
	if err := a1.Provide(ctxT(t), key); err != nil {
		t.Fatal(err)
	}
	if holders, err := a0.FindHolders(ctxT(t), key, 5); err != nil || !slices.Contains(holders, a1.self) {
		t.Fatalf("a0 finds holders %v (err %v), want a1", holders, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	holders, err := b.FindHolders(ctx, key, 5)
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	if len(holders) != 0 {
		t.Fatalf("b (chain B) finds chain A's holders %v", holders)
	}
	for _, p := range []peer.ID{a0.self, a1.self} {
		if b.dht.RoutingTable().Find(p) != "" {
			t.Errorf("chain B's routing table holds chain A's %s", p)
		}
	}
	if a0.dht.RoutingTable().Find(b.self) != "" {
		t.Errorf("chain A's routing table holds chain B's %s", b.self)
	}
	// Discovery stays within a network too: b never connects to a1.
	if slices.Contains(b.Peers(), a1.ID()) {
		t.Errorf("b (chain B) connected to a1 (chain A)")
	}
}

// A host configured without a DHT refuses Provide and FindHolders.
func TestDisableDHT(t *testing.T) {
	h := startHost(t, Config{
		ChainID: testChain, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		IdentityFile: filepath.Join(t.TempDir(), "p2p.key"), Logger: testLogger(t), DisableDHT: true,
	})
	key := chain.Sum256([]byte("blob"))
	if err := h.Provide(ctxT(t), key); !errors.Is(err, ErrNoDHT) {
		t.Fatalf("Provide: %v, want ErrNoDHT", err)
	}
	if _, err := h.FindHolders(ctxT(t), key, 1); !errors.Is(err, ErrNoDHT) {
		t.Fatalf("FindHolders: %v, want ErrNoDHT", err)
	}
}
