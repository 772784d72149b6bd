package p2p

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p/frame"
)

// Three hosts in a chain (A knows B, C knows B): what A broadcasts reaches B and C exactly once,
// through B for C, and never comes back to A.
func TestGossipReachesEveryPeerOnce(t *testing.T) {
	// Without the DHT, which would connect A and C directly.
	b := newStaticTestHost(t)
	a := newStaticTestHost(t, b)
	c := newStaticTestHost(t, b)
	waitMesh(t, b, a, c) // B relays A's messages to C through its mesh
	waitTopicPeers(t, a, b)
	waitTopicPeers(t, c, b)

	sent := []*replica.Message{txMsg(t, 1), voteMsg(t, 1), proposalMsg(t, 2, 100)}
	for _, m := range sent {
		a.Broadcast(m)
	}
	// A marker per topic, published after the originals, bounds the wait for duplicates.
	markers := []*replica.Message{txMsg(t, 2), voteMsg(t, 2), proposalMsg(t, 3, 100)}
	for _, m := range markers {
		a.Broadcast(m)
	}
	// Gossip is attributed to the peer that delivered it (it validated the content before
	// relaying): B gets A's messages from A, C gets them from B.
	for _, hc := range []struct{ h, via *Host }{{b, a}, {c, b}} {
		h := hc.h
		counts := map[string]int{}
		for len(counts) < len(sent)+len(markers) {
			in := receive(t, h)
			if in.From != replica.PeerID(hc.via.ID()) {
				t.Errorf("%s: message attributed to %s, want the delivering peer %s", h.ID(), in.From, hc.via.ID())
			}
			if !in.Verified {
				t.Errorf("%s: gossip not marked verified", h.ID())
			}
			counts[string(in.Msg.Encode())]++
		}
		for _, m := range sent {
			if n := counts[string(m.Encode())]; n != 1 {
				t.Errorf("%s received the %s %d times, want 1", h.ID(), m.Kind(), n)
			}
		}
		assertEmpty(t, h)
	}
	assertEmpty(t, a)
	if s := a.Stats(); s.GossipRejected != 0 || s.PublishDropped != 0 {
		t.Errorf("sender stats %+v", s)
	}
}

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
// reaches its inbox.
func TestValidatorsRejectInvalidGossip(t *testing.T) {
	b := newTestHost(t)
	a := newTestHost(t, b)
	waitTopicPeers(t, a, b)
	waitTopicPeers(t, b, a)

	badSig := voteMsg(t, 1)
	badSig.Vote.Sig[0] ^= 1
	raw := []struct {
		name  string
		topic topicKind
		data  []byte
	}{
		// Each payload carries the per-publish nonce as Broadcast writes it, so the validators
		// reject it for the reason named, not for a missing nonce.
		{"vote with a bad signature", topicVotes, withNonce(badSig.Encode())},
		{"transaction on the votes topic", topicVotes, withNonce(txMsg(t, 1).Encode())},
		{"oversized vote payload", topicVotes, withNonce(bytes.Repeat([]byte{0xa5}, MaxGossipVoteBytes+1))},
		{"garbage on the transactions topic", topicTxs, withNonce([]byte("not a message"))},
		{"shorter than the nonce", topicTxs, []byte{1, 2, 3}},
	}
	for _, r := range raw {
		if err := a.topics[r.topic].Publish(ctxT(t), r.data); err != nil {
			t.Fatalf("publish %s: %v", r.name, err)
		}
	}
	waitFor(t, "B to reject every invalid message", func() bool { return b.Stats().GossipRejected >= uint64(len(raw)) })

	// A valid message published afterwards still arrives, and is the only thing that does.
	good := voteMsg(t, 2)
	a.Broadcast(good)
	in := receive(t, b)
	if !bytes.Equal(in.Msg.Encode(), good.Encode()) {
		t.Fatalf("B received a %s that is not the valid vote", in.Msg.Kind())
	}
	assertEmpty(t, b)
	if got := b.Stats().GossipRejected; got != uint64(len(raw)) {
		t.Errorf("B rejected %d messages, want %d", got, len(raw))
	}
}

// The direct protocol: Send delivers, a proposal too large for gossip travels directly, and
// malformed streams are reset and penalised without being delivered.
func TestDirectProtocol(t *testing.T) {
	c := newTestHost(t)
	a := newTestHost(t, c)
	waitFor(t, "A and C to connect", func() bool { return slices.Contains(c.Peers(), a.ID()) })

	req := &replica.Message{Version: replica.MessageVersion, SyncFrom: 7}
	a.Send(replica.PeerID(c.ID()), req)
	if in := receive(t, c); in.From != replica.PeerID(a.ID()) || in.Msg.SyncFrom != 7 {
		t.Fatalf("C received %s from %s, want the sync request from A", in.Msg.Kind(), in.From)
	}

	big := proposalMsg(t, 20, 60<<10)
	if n := len(big.Encode()); n <= MaxGossipProposalBytes {
		t.Fatalf("test proposal is %d bytes, not too large for gossip", n)
	}
	a.Broadcast(big)
	if in := receive(t, c); !bytes.Equal(in.Msg.Encode(), big.Encode()) {
		t.Fatalf("C received a %s, want the big proposal", in.Msg.Kind())
	}
	if a.Stats().BigProposals != 1 {
		t.Errorf("A sent %d proposals directly, want 1", a.Stats().BigProposals)
	}

	cID, err := peer.Decode(c.ID())
	if err != nil {
		t.Fatal(err)
	}
	var junk bytes.Buffer
	if err := frame.Write(&junk, []byte("garbage that is no message")); err != nil {
		t.Fatal(err)
	}
	overLimit := binary.AppendUvarint(nil, MaxDirectMessageBytes+1)
	for i, frame := range [][]byte{junk.Bytes(), overLimit} {
		s, err := a.host.NewStream(ctxT(t), cID, a.direct)
		if err != nil {
			t.Fatal(err)
		}
		// C may reset the stream before we finish: write errors are expected.
		if _, err := s.Write(frame); err == nil {
			_ = s.CloseWrite()
		}
		if _, err := io.ReadAll(s); err == nil {
			t.Errorf("stream %d: C closed it cleanly, want a reset", i)
		}
		waitFor(t, "C to count the bad stream", func() bool { return c.Stats().DirectRejected == uint64(i+1) })
	}
	aID, err := peer.Decode(a.ID())
	if err != nil {
		t.Fatal(err)
	}
	if n := c.gate.current(aID); n != 2 {
		t.Errorf("A has %d strikes at C, want 2", n)
	}
	assertEmpty(t, c)
}

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
		b.Penalize(replica.PeerID(a.ID()), reason)
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
	aID, _ := peer.Decode(a.ID())
	if !b.gate.isBanned(aID) {
		t.Fatal("A is not banned at B")
	}
	if s := b.gate.appScore(aID); s >= graylistThreshold {
		t.Errorf("banned peer's app score %v, want below the gray list %v", s, graylistThreshold)
	}
}

func withNonce(data []byte) []byte {
	return append(make([]byte, gossipNonceBytes), data...)
}

// Consensus re-sends identical votes on purpose (for peers that missed them or restarted):
// a second broadcast of the same message must be delivered again, not dropped as a duplicate.
func TestIdenticalRebroadcastIsDelivered(t *testing.T) {
	b := newTestHost(t)
	a := newTestHost(t, b)
	waitTopicPeers(t, a, b)
	v := voteMsg(t, 1)
	for range 2 {
		a.Broadcast(v)
		in := receive(t, b)
		if !bytes.Equal(in.Msg.Encode(), v.Encode()) {
			t.Fatalf("received a %s, want the vote", in.Msg.Kind())
		}
	}
}
