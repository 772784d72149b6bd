package p2p

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A bootstrap peer that starts after us is dialled again until it is up.
func TestBootstrapPeerStartsLater(t *testing.T) {
	dir := t.TempDir()
	bKey := filepath.Join(dir, "b.key")
	bID, err := PeerIDFromIdentity(bKey)
	if err != nil {
		t.Fatal(err)
	}
	port := freeTCPPort(t)
	bAddr := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port)
	a := startHost(t, Config{
		ChainID: testChain, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap:    []string{bAddr + "/p2p/" + bID},
		IdentityFile: filepath.Join(dir, "a.key"), Logger: testLogger(t),
	})
	b := startHost(t, Config{
		ChainID: testChain, ListenAddrs: []string{bAddr},
		IdentityFile: bKey, Logger: testLogger(t),
	})
	if b.ID() != bID {
		t.Fatalf("B started as %s, its identity file says %s", b.ID(), bID)
	}
	waitFor(t, "A and B to connect", func() bool {
		return slices.Contains(a.Peers(), bID) && slices.Contains(b.Peers(), a.ID())
	})
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// Invalid gossip published raw on the topics is rejected by the receiver's validators and never

// The identity file survives restarts and is readable by its owner only.
func TestIdentityPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "p2p.key")
	cfg := Config{ChainID: testChain, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, IdentityFile: path, Logger: testLogger(t)}
	h1, err := New(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := h1.ID()
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := startHost(t, cfg)
	if h2.ID() != id {
		t.Fatalf("restarted as %s, was %s", h2.ID(), id)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", st.Mode().Perm())
	}
	if got, err := PeerIDFromIdentity(path); err != nil || got != id {
		t.Errorf("PeerIDFromIdentity = %s, %v; want %s", got, err, id)
	}
}

func TestIdentityRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2p.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(path); err == nil {
		t.Fatal("a garbage identity file loaded")
	}
}

// Past the strike limit a peer is disconnected and refused.
func TestPenalizeDisconnectsAndRefuses(t *testing.T) {
	b := newTestHost(t)
	a := newTestHost(t, b)
	waitFor(t, "A and B to connect", func() bool { return slices.Contains(b.Peers(), a.ID()) })

	reason := errors.New("test: invalid block")
	for range strikeLimit {
		b.Penalize(a.PeerID(), reason)
	}
	waitFor(t, "B to drop A", func() bool { return !slices.Contains(b.Peers(), a.ID()) })

	// A dials B again (as its bootstrap loop does): B refuses it.
	bInfo, err := peer.AddrInfoFromString(b.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	_ = a.host.Connect(ctxT(t), *bInfo) // may "succeed" on A's side before B's gater closes it
	if slices.Contains(b.Peers(), a.ID()) {
		t.Fatal("B accepted a banned peer")
	}
	aID := a.PeerID()
	if !b.gate.isBanned(aID) {
		t.Fatal("A is not banned at B")
	}
	if s := b.gate.appScore(aID); s >= graylistThreshold {
		t.Errorf("banned peer's app score %v, want below the gray list %v", s, graylistThreshold)
	}
}
