package p2p

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

const testChain = "medledger-p2p-test"

// wait is the generous deadline for conditions in multi-host tests.
const wait = 20 * time.Second

// Test topics: "small" carries payloads up to smallMax bytes, "large" up to MaxGossipBytes.
const smallMax = 1 << 10

// testValidator is the tests' rule: a payload starting with "ok" is accepted (its value is its
// text), one starting with "skip" ignored, anything else rejected.
func testValidator(_ peer.ID, data []byte) (Verdict, any) {
	switch {
	case bytes.HasPrefix(data, []byte("ok")):
		return Accept, string(data)
	case bytes.HasPrefix(data, []byte("skip")):
		return Ignore, nil
	}
	return Reject, nil
}

// testHost is a host with the test topics joined and the test validator on the direct protocol.
type testHost struct{ *Host }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newTestHost starts a host on 127.0.0.1 (TCP and QUIC, port 0) with the test topics and
// closes it when the test ends.
func newTestHost(t testing.TB, bootstrap ...*testHost) *testHost {
	t.Helper()
	return joinTest(t, startHost(t, testConfig(t, bootstrap...)))
}

// newStaticTestHost is newTestHost without the DHT: the host connects to its bootstrap peers
// and nobody else, for tests that need a fixed topology.
func newStaticTestHost(t testing.TB, bootstrap ...*testHost) *testHost {
	t.Helper()
	cfg := testConfig(t, bootstrap...)
	cfg.DisableDHT = true
	return joinTest(t, startHost(t, cfg))
}

func joinTest(t testing.TB, h *Host) *testHost {
	t.Helper()
	if err := h.JoinTopic(TopicConfig{Name: "small", Version: 1, MaxBytes: smallMax, Validate: testValidator}); err != nil {
		t.Fatal(err)
	}
	if err := h.JoinTopic(TopicConfig{Name: "large", Version: 1, MaxBytes: MaxGossipBytes, Validate: testValidator}); err != nil {
		t.Fatal(err)
	}
	h.HandleDirect(testValidator)
	return &testHost{h}
}

func testConfig(t testing.TB, bootstrap ...*testHost) Config {
	var boot []string
	for _, b := range bootstrap {
		boot = append(boot, b.Addrs()...)
	}
	return Config{
		ChainID:      testChain,
		ListenAddrs:  []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Bootstrap:    boot,
		IdentityFile: filepath.Join(t.TempDir(), "p2p.key"),
		Logger:       testLogger(t),
	}
}

func startHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close %s: %v", h.ID(), err)
		}
	})
	return h
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitMesh waits until h has each of neighbours in its gossipsub mesh on every topic.
func waitMesh(t testing.TB, h *testHost, neighbours ...*testHost) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to mesh with its neighbours on every topic", h.ID()), func() bool {
		for _, tp := range []*topic{h.topic("small"), h.topic("large")} {
			ps := h.mesh.peers(tp.full)
			for _, n := range neighbours {
				if !slices.Contains(ps, n.self) {
					return false
				}
			}
		}
		return true
	})
}

// waitTopicPeers waits until h sees each of neighbours subscribed to every topic.
func waitTopicPeers(t testing.TB, h *testHost, neighbours ...*testHost) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to see its neighbours on every topic", h.ID()), func() bool {
		for _, tp := range []*topic{h.topic("small"), h.topic("large")} {
			ps := tp.ps.ListPeers()
			for _, n := range neighbours {
				if !slices.Contains(ps, n.self) {
					return false
				}
			}
		}
		return true
	})
}

// receive reads one delivery from h's inbox or fails after the deadline.
func receive(t testing.TB, h *testHost) Delivery {
	t.Helper()
	select {
	case d := <-h.Inbox():
		return d
	case <-time.After(wait):
		t.Fatalf("%s: nothing received in %v", h.ID(), wait)
	}
	return Delivery{}
}

// text is what a delivery carries: the validator's value, or the bytes.
func text(d Delivery) string {
	if s, ok := d.Value.(string); ok {
		return s
	}
	return string(d.Data)
}

// assertEmpty fails if h's inbox holds anything now.
func assertEmpty(t testing.TB, h *testHost) {
	t.Helper()
	select {
	case d := <-h.Inbox():
		t.Fatalf("%s: unexpected %q on %q from %s", h.ID(), text(d), d.Topic, d.From)
	default:
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}
