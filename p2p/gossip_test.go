package p2p

import (
	"github.com/libp2p/go-libp2p/core/peer"

	"bytes"
	"fmt"
	"slices"
	"testing"
)

// Three hosts in a chain (A knows B, C knows B): what A publishes reaches B and C exactly once,
// through B for C, attributed to the peer that delivered it, and never comes back to A.
func TestGossipReachesEveryPeerOnce(t *testing.T) {
	// Without the DHT, which would connect A and C directly.
	b := newStaticTestHost(t)
	a := newStaticTestHost(t, b)
	c := newStaticTestHost(t, b)
	waitMesh(t, b, a, c) // B relays A's messages to C through its mesh
	waitTopicPeers(t, a, b)
	waitTopicPeers(t, c, b)

	sent := []struct{ topic, data string }{{"small", "ok small 1"}, {"large", "ok " + string(bytes.Repeat([]byte("L"), 200<<10))}}
	for _, s := range sent {
		if err := a.Publish(s.topic, []byte(s.data)); err != nil {
			t.Fatal(err)
		}
	}
	// A marker per topic, published after the originals, bounds the wait for duplicates.
	markers := []string{"small", "large"}
	for _, tp := range markers {
		if err := a.Publish(tp, []byte("ok marker "+tp)); err != nil {
			t.Fatal(err)
		}
	}
	for _, hc := range []struct{ h, via *testHost }{{b, a}, {c, b}} {
		h := hc.h
		counts := map[string]int{}
		for len(counts) < len(sent)+len(markers) {
			d := receive(t, h)
			if d.From != hc.via.PeerID() {
				t.Errorf("%s: payload attributed to %s, want the delivering peer %s", h.ID(), d.From, hc.via.ID())
			}
			if d.Data != nil || d.Size != len(text(d)) {
				t.Errorf("%s: delivery carries %d bytes and size %d besides the validator's value", h.ID(), len(d.Data), d.Size)
			}
			counts[d.Topic+":"+text(d)]++
		}
		for _, s := range sent {
			if n := counts[s.topic+":"+s.data]; n != 1 {
				t.Errorf("%s received the %s payload %d times, want 1", h.ID(), s.topic, n)
			}
		}
		assertEmpty(t, h)
	}
	assertEmpty(t, a)
	if s := a.Stats(); s.GossipRejected != 0 || s.PublishDropped != 0 {
		t.Errorf("sender stats %+v", s)
	}
}

// Message ids are the payload's hash and there is no per-publish nonce: a payload published
// again is the same message, delivered once and validated once.
func TestRepublishedPayloadIsDeliveredOnce(t *testing.T) {
	b := newStaticTestHost(t)
	a := newStaticTestHost(t, b)
	waitTopicPeers(t, a, b)
	vote := []byte("ok the same vote")
	for range 3 {
		if err := a.Publish("small", vote); err != nil {
			t.Fatal(err)
		}
	}
	if d := receive(t, b); text(d) != string(vote) {
		t.Fatalf("received %q, want the vote", text(d))
	}
	// A marker published after the copies bounds the wait for a second delivery.
	if err := a.Publish("small", []byte("ok marker")); err != nil {
		t.Fatal(err)
	}
	if d := receive(t, b); text(d) != "ok marker" {
		t.Fatalf("received %q again, want the marker: a re-published payload was delivered twice", text(d))
	}
	assertEmpty(t, b)
	if s := b.Stats(); s.Delivered != 2 {
		t.Errorf("B delivered %d payloads, want 2", s.Delivered)
	}
}

// Each verdict does what Verdict documents: Ignore drops without blame, Accept delivers, and
// Reject (or a payload over the topic's limit) drops the payload and bans the delivering peer
// at once: it is invalid data, which no honest peer relays.
func TestValidatorVerdicts(t *testing.T) {
	for _, bad := range []string{"forged", "ok but too long " + string(bytes.Repeat([]byte("x"), smallMax))} {
		b := newTestHost(t)
		a := newTestHost(t, b)
		waitTopicPeers(t, a, b)
		waitTopicPeers(t, b, a)

		// Published on A's pubsub topics directly: A's own validator does not judge its payloads.
		ignored := []string{"skip this", "skip that"}
		for i, p := range ignored {
			if err := a.topic("small").ps.Publish(ctxT(t), []byte(p)); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		waitFor(t, "B to ignore both", func() bool { return b.Stats().GossipIgnored == uint64(len(ignored)) })
		if err := a.Publish("small", []byte("ok valid")); err != nil {
			t.Fatal(err)
		}
		if d := receive(t, b); text(d) != "ok valid" {
			t.Fatalf("B received %q, want only the valid payload", text(d))
		}
		if n := b.Strikes(a.PeerID()); n != 0 || b.gate.isBanned(a.PeerID()) {
			t.Fatalf("A has %d strikes at B for ignored payloads, want none", n)
		}
		if err := a.topic("small").ps.Publish(ctxT(t), []byte(bad)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "B to ban A", func() bool {
			return b.Stats().GossipRejected == 1 && b.gate.isBanned(a.PeerID()) && !slices.Contains(b.Peers(), a.ID())
		})
		assertEmpty(t, b)
	}
}

func TestJoinTopicChecks(t *testing.T) {
	h := newStaticTestHost(t)
	for _, c := range []TopicConfig{
		{Name: "small", Version: 1, MaxBytes: 10, Validate: testValidator}, // joined already
		{Name: "huge", Version: 1, MaxBytes: MaxGossipBytes + 1, Validate: testValidator},
		{Name: "novalidator", Version: 1, MaxBytes: 10},
		{Name: "noversion", MaxBytes: 10, Validate: testValidator},
	} {
		if err := h.JoinTopic(c); err == nil {
			t.Errorf("joined %+v", c)
		}
	}
	if err := h.Publish("small", make([]byte, smallMax+1)); err == nil {
		t.Error("published a payload over the topic's limit")
	}
	if err := h.Publish("unjoined", []byte("ok")); err == nil {
		t.Error("published on a topic not joined")
	}
}

func TestTopicNamesAreNamespaced(t *testing.T) {
	if got := TopicName("net-a", "votes", 1); got != "/medledger/net-a/votes/1" {
		t.Errorf("topic name %s", got)
	}
	h := newStaticTestHost(t)
	if got, want := h.topic("small").full, fmt.Sprintf("/medledger/%s/small/1", testChain); got != want {
		t.Errorf("joined topic %s, want %s", got, want)
	}
	if p := directProtocol("net-a"); p != "/medledger/net-a/direct/1.0.0" {
		t.Errorf("direct protocol %s", p)
	}
}

// A peer whose gossip score falls below the graylist threshold (pubsub's own rejections count
// too) is disconnected and refused, though it has far fewer strikes than a ban takes: pubsub
// would otherwise keep reading, decrypting and decoding what it sends and ignore it, forever.
func TestGraylistedPeerIsRefused(t *testing.T) {
	b := newStaticTestHost(t)
	a := newStaticTestHost(t, b)
	c := newStaticTestHost(t, b)
	waitFor(t, "B to see A and C", func() bool {
		return slices.Contains(b.Peers(), a.ID()) && slices.Contains(b.Peers(), c.ID())
	})
	b.refuseGraylisted(map[peer.ID]float64{a.PeerID(): graylistThreshold - 1, c.PeerID(): graylistThreshold})
	waitFor(t, "B to refuse A", func() bool { return b.Stats().GraylistBans == 1 && !slices.Contains(b.Peers(), a.ID()) })
	if !b.gate.isBanned(a.PeerID()) {
		t.Fatal("A is not banned at B")
	}
	if b.gate.isBanned(c.PeerID()) || !slices.Contains(b.Peers(), c.ID()) {
		t.Fatal("C, at the threshold, was refused")
	}
}
