package p2p

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/medledger/medledger/chain"
)

// admHost is a test host with an admission of its own; its "small" topic is open to
// candidates, "large" is not.
type admHost struct {
	*testHost
	adm *MemAdmission
}

// identity creates an identity file and returns its path and peer id.
func identity(t testing.TB) (string, peer.ID) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p2p.key")
	k, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return path, id
}

// startAdm starts a host with identity file key and a MemAdmission (adm, or a new one), whose
// strangers' grace is grace, bootstrapping from boot.
func startAdm(t testing.TB, key string, adm *MemAdmission, grace time.Duration, ticket []byte, boot ...*admHost) *admHost {
	t.Helper()
	if adm == nil {
		adm = NewMemAdmission()
	}
	var bs []*testHost
	for _, b := range boot {
		bs = append(bs, b.testHost)
	}
	cfg := testConfig(t, bs...)
	cfg.IdentityFile, cfg.Admission, cfg.strangerGrace, cfg.Ticket = key, adm, grace, ticket
	h := startHost(t, cfg)
	if err := h.JoinTopic(TopicConfig{Name: "small", Version: 1, MaxBytes: smallMax, Validate: testValidator, Candidates: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.JoinTopic(TopicConfig{Name: "large", Version: 1, MaxBytes: MaxGossipBytes, Validate: testValidator}); err != nil {
		t.Fatal(err)
	}
	h.HandleDirect(testValidator)
	return &admHost{&testHost{h}, adm}
}

func kadProtocol() protocol.ID { return dhtProtocolPrefix(testChain) + "/kad/1.0.0" }

// tryStream opens a stream of proto from a to b, closes its write side and reads to the end,
// and reports whether b refused the stream for a's class: b's host resets such a stream with
// the resource-limit error code (handlers that reset on their own use another).
func tryStream(t testing.TB, a, b *admHost, proto protocol.ID) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := a.host.NewStream(ctx, b.PeerID(), proto)
	if err == nil {
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		_ = s.CloseWrite()
		_, err = io.ReadAll(s)
		_ = s.Close()
	}
	var se *network.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamResourceLimitExceeded
}

// A stranger reaches identify and join only: the member protocols (direct, DHT, gossip) are
// refused, and when its grace passes without a ticket it is disconnected and refused.
func TestStrangerRefusedThenExpelled(t *testing.T) {
	mKey, _ := identity(t)
	m := startAdm(t, mKey, nil, 2*time.Second, nil)
	m.host.SetStreamHandler(WalletProtocol(testChain), func(s network.Stream) { _ = s.Close() })
	sKey, _ := identity(t)
	s := startAdm(t, sKey, nil, 0, nil, m)
	m.adm.SetClass(s.PeerID(), Stranger)
	s.adm.SetClass(m.PeerID(), Member) // the stranger thinks it talks to a member
	waitFor(t, "S to connect", func() bool { return slices.Contains(m.Peers(), s.ID()) })

	for _, proto := range []protocol.ID{m.direct, kadProtocol(), protocol.ID("/meshsub/1.2.0"), WalletProtocol(testChain)} {
		if !tryStream(t, s, m, proto) {
			t.Errorf("M let a stranger use %s", proto)
		}
	}
	if tryStream(t, s, m, JoinProtocol(testChain)) {
		t.Error("M refused the join protocol to a stranger")
	}
	if m.Class(s.PeerID()) != Stranger {
		t.Fatalf("S is %s at M", m.Class(s.PeerID()))
	}
	if slices.Contains(m.topic("small").ps.ListPeers(), s.PeerID()) {
		t.Error("M counts a stranger on a topic")
	}
	if m.dht.RoutingTable().Find(s.PeerID()) != "" {
		t.Error("a stranger is in M's routing table")
	}
	if !s.SendDirect(m.PeerID(), []byte("ok from a stranger")) {
		t.Fatal("send dropped")
	}
	waitFor(t, "M to expel S after its grace", func() bool {
		return m.AdmissionStats().Expelled == 1 && !slices.Contains(m.Peers(), s.ID())
	})
	assertEmpty(t, m.testHost)
	// S dials again: refused at InterceptSecured.
	_ = s.host.Connect(ctxT(t), peer.AddrInfo{ID: m.PeerID(), Addrs: m.host.Addrs()})
	waitFor(t, "M to refuse S's new connection", func() bool { return m.AdmissionStats().RefusedStrangers > 0 })
	if slices.Contains(m.Peers(), s.ID()) {
		t.Fatal("M accepted an expelled stranger again")
	}
}

// A stranger with a valid ticket becomes a candidate: block sync (the direct protocol) and
// the topics open to candidates, not the DHT, not the other topics; a bad ticket bans.
func TestTicketMakesCandidate(t *testing.T) {
	mKey, _ := identity(t)
	m := startAdm(t, mKey, nil, 0, nil)
	var told atomic.Int32
	m.OnCandidate(func(peer.ID) { told.Add(1) })
	cKey, cID := identity(t)
	m.adm.SetTicket(cID, []byte("licence of C"))
	cAdm := NewMemAdmission()
	cAdm.SetClass(m.PeerID(), Member)
	c := startAdm(t, cKey, cAdm, 0, []byte("licence of C"), m)

	waitFor(t, "C to become a candidate at M", func() bool {
		return m.Class(c.PeerID()) == Candidate && slices.Contains(m.Peers(), c.ID())
	})
	waitFor(t, "M to tell the candidate's connection", func() bool { return told.Load() > 0 })
	if !c.SendDirect(m.PeerID(), []byte("ok sync request")) {
		t.Fatal("send dropped")
	}
	if d := receive(t, m.testHost); text(d) != "ok sync request" || d.From != c.PeerID() {
		t.Fatalf("M received %q from %s", text(d), d.From)
	}
	if !tryStream(t, c, m, kadProtocol()) {
		t.Error("M let a candidate use the DHT")
	}
	if m.dht.RoutingTable().Find(c.PeerID()) != "" {
		t.Error("a candidate is in M's routing table")
	}
	// Gossip: the open topic carries C's payloads, the other is closed to it both ways.
	waitFor(t, "M to count C on the open topic", func() bool {
		return slices.Contains(m.topic("small").ps.ListPeers(), c.PeerID()) &&
			slices.Contains(c.topic("small").ps.ListPeers(), m.PeerID())
	})
	if err := c.Publish("large", []byte("ok on a closed topic")); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("small", []byte("ok registration")); err != nil {
		t.Fatal(err)
	}
	if d := receive(t, m.testHost); text(d) != "ok registration" {
		t.Fatalf("M received %q, want the payload on the open topic only", text(d))
	}
	if slices.Contains(m.topic("large").ps.ListPeers(), c.PeerID()) {
		t.Error("M counts a candidate on a closed topic")
	}
	// SendDirectAll is consensus traffic: members only.
	if n := m.SendDirectAll([]byte("ok consensus")); n != 0 {
		t.Errorf("SendDirectAll sent to %d peers, want none (C is a candidate)", n)
	}
	assertEmpty(t, m.testHost)

	// The ledger registers C: Recheck reconnects it as a member, with the DHT.
	m.adm.SetClass(c.PeerID(), Member)
	m.Recheck()
	waitFor(t, "C, now a member, in M's routing table", func() bool {
		return m.dht.RoutingTable().Find(c.PeerID()) != ""
	})

	// A forged ticket bans its presenter at once.
	fKey, _ := identity(t)
	f := startAdm(t, fKey, cAdm, 0, nil)
	if err := f.host.Connect(ctxT(t), peer.AddrInfo{ID: m.PeerID(), Addrs: m.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := f.Join(ctxT(t), m.PeerID(), []byte("licence of C")); err != ErrTicketRefused {
		t.Fatalf("Join with another's ticket: %v, want ErrTicketRefused", err)
	}
	waitFor(t, "M to ban F", func() bool { return m.gate.isBanned(f.PeerID()) && !slices.Contains(m.Peers(), f.ID()) })
}

// A node started without a ticket is a stranger to its bootstrap peer; SetTicket (its licence
// installed while it runs) makes it a candidate without a restart. Empty and oversized
// tickets are refused.
func TestSetTicketWhileRunning(t *testing.T) {
	mKey, _ := identity(t)
	m := startAdm(t, mKey, nil, 0, nil)
	cKey, cID := identity(t)
	m.adm.SetTicket(cID, []byte("licence of C"))
	cAdm := NewMemAdmission()
	cAdm.SetClass(m.PeerID(), Member)
	c := startAdm(t, cKey, cAdm, 0, nil, m)
	waitFor(t, "C to connect as a stranger", func() bool { return m.AdmissionStats().Expelled > 0 || slices.Contains(m.Peers(), c.ID()) })
	if m.Class(c.PeerID()) != Stranger {
		t.Fatalf("C without a ticket is %s at M", m.Class(c.PeerID()))
	}
	for _, bad := range [][]byte{nil, make([]byte, MaxTicketBytes+1)} {
		if err := c.SetTicket(bad); err == nil {
			t.Errorf("SetTicket accepted a ticket of %d bytes", len(bad))
		}
	}
	if err := c.SetTicket([]byte("licence of C")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "C to become a candidate at M", func() bool {
		return m.Class(c.PeerID()) == Candidate && slices.Contains(m.Peers(), c.ID())
	})
}

// A wallet reaches the wallet protocol only (and identify); it is not expelled as a stranger.
func TestWalletReachesOnlyWalletProtocol(t *testing.T) {
	mKey, _ := identity(t)
	m := startAdm(t, mKey, nil, time.Second, nil)
	var served atomic.Int32
	m.host.SetStreamHandler(WalletProtocol(testChain), func(s network.Stream) { served.Add(1); _ = s.Close() })
	wKey, wID := identity(t)
	m.adm.SetClass(wID, Wallet)
	w := startAdm(t, wKey, nil, 0, nil, m)
	w.adm.SetClass(m.PeerID(), Member)
	waitFor(t, "W to connect", func() bool { return slices.Contains(m.Peers(), w.ID()) })

	if tryStream(t, w, m, WalletProtocol(testChain)) || served.Load() != 1 {
		t.Fatalf("the wallet protocol refused to a wallet (served %d)", served.Load())
	}
	for _, proto := range []protocol.ID{m.direct, kadProtocol(), JoinProtocol(testChain), protocol.ID("/meshsub/1.2.0")} {
		if !tryStream(t, w, m, proto) {
			t.Errorf("M let a wallet use %s", proto)
		}
	}
	time.Sleep(2 * time.Second) // past a stranger's grace: a wallet stays
	if !slices.Contains(m.Peers(), w.ID()) {
		t.Fatal("M disconnected a wallet")
	}
}

// Members reach each other on everything; the routing table holds members only; a provider
// record is accepted only from an assigned holder.
func TestMembersAndAssignedProviders(t *testing.T) {
	keys := make([]string, 3)
	ids := make([]peer.ID, 3)
	for i := range keys {
		keys[i], ids[i] = identity(t)
	}
	adms := make([]*MemAdmission, 3)
	for i := range adms {
		adms[i] = NewMemAdmission()
		for _, id := range ids[:2] {
			adms[i].SetClass(id, Member)
		}
	}
	a := startAdm(t, keys[0], adms[0], 0, nil)
	b := startAdm(t, keys[1], adms[1], 0, nil, a)
	s := startAdm(t, keys[2], adms[2], 0, nil, a) // a stranger to A and B
	waitFor(t, "A and B in each other's routing table", func() bool {
		return a.dht.RoutingTable().Find(b.PeerID()) != "" && b.dht.RoutingTable().Find(a.PeerID()) != ""
	})
	waitFor(t, "A and B on both topics", func() bool {
		return slices.Contains(a.topic("large").ps.ListPeers(), b.PeerID()) && slices.Contains(a.topic("small").ps.ListPeers(), b.PeerID())
	})
	if err := b.Publish("large", []byte("ok member")); err != nil {
		t.Fatal(err)
	}
	if d := receive(t, a.testHost); text(d) != "ok member" {
		t.Fatalf("A received %q", text(d))
	}
	if tryStream(t, b, a, kadProtocol()) || tryStream(t, b, a, WalletProtocol(testChain)) {
		t.Error("A refused a member a protocol")
	}
	for _, p := range a.dht.RoutingTable().ListPeers() {
		if p != b.PeerID() {
			t.Errorf("A's routing table holds %s, not a member", p)
		}
	}
	_ = s

	assigned, other := chain.Sum256([]byte("assigned")), chain.Sum256([]byte("not assigned"))
	for _, adm := range adms {
		adm.SetHolder(assigned, b.PeerID())
	}
	_ = b.Provide(ctxT(t), other) // goes out; A must refuse it
	waitFor(t, "A to refuse B's record", func() bool { return a.Stats().ProvidersRefused > 0 })
	if hs, _ := a.FindHolders(shortCtx(t), other, 0); len(hs) != 0 {
		t.Errorf("A finds holders %v of a key nobody is assigned", hs)
	}
	if err := b.Provide(ctxT(t), assigned); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to find B as the assigned holder", func() bool {
		hs, _ := a.FindHolders(shortCtx(t), assigned, 0)
		return slices.Equal(hs, []peer.ID{b.PeerID()})
	})
}

func shortCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The fresh-identity throttle: freshPerIP new strangers per remote IP per window, the same
// identity again for free, members never counted, another IP its own allowance.
func TestFreshIdentityThrottle(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	adm := NewMemAdmission()
	a := newAdmitter(adm, newPolicy(testChain), func() time.Time { return now }, 0)
	ip1 := ma.StringCast("/ip4/10.0.0.1/tcp/4001")
	ip2 := ma.StringCast("/ip4/10.0.0.2/tcp/4001")
	var ids []peer.ID
	for range freshPerIP + 2 {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPublicKey(pub)
		ids = append(ids, id)
	}
	for i, id := range ids[:freshPerIP] {
		if !a.secured(network.DirInbound, id, ip1) {
			t.Fatalf("fresh identity %d refused", i)
		}
	}
	if a.secured(network.DirInbound, ids[freshPerIP], ip1) {
		t.Fatal("one fresh identity too many let in")
	}
	if !a.secured(network.DirInbound, ids[0], ip1) {
		t.Fatal("an identity already let in refused")
	}
	if !a.secured(network.DirInbound, ids[freshPerIP], ip2) {
		t.Fatal("another IP refused")
	}
	if !a.secured(network.DirOutbound, ids[freshPerIP+1], ip1) {
		t.Fatal("a connection we dialled refused")
	}
	adm.SetClass(ids[freshPerIP+1], Member)
	if !a.secured(network.DirInbound, ids[freshPerIP+1], ip1) {
		t.Fatal("a member throttled")
	}
	now = now.Add(freshWindow + time.Second)
	if !a.secured(network.DirInbound, ids[freshPerIP], ip1) {
		t.Fatal("a fresh identity refused after the window")
	}
	a.refuse(ids[0])
	if a.secured(network.DirInbound, ids[0], ip1) {
		t.Fatal("a refused stranger let in")
	}
}

// An expelled stranger is refused for firstRefusal, twice as long each time in a row up to
// strangerRefusal, and starts again after a quiet strangerRefusal.
func TestStrangerRefusalDoubles(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := newAdmitter(NewMemAdmission(), newPolicy(testChain), func() time.Time { return now }, 0)
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPublicKey(pub)
	ip := ma.StringCast("/ip4/10.0.0.1/tcp/4001")
	refusedFor := func() time.Duration {
		t.Helper()
		start := now
		for !a.secured(network.DirInbound, id, ip) {
			now = now.Add(time.Second)
		}
		return now.Sub(start)
	}
	want := []time.Duration{firstRefusal, 2 * firstRefusal, 4 * firstRefusal, 8 * firstRefusal, strangerRefusal, strangerRefusal}
	for i, w := range want {
		a.refuse(id)
		if got := refusedFor(); got != w {
			t.Fatalf("refusal %d lasted %s, want %s", i+1, got, w)
		}
	}
	now = now.Add(strangerRefusal + time.Second)
	a.secured(network.DirInbound, id, ip) // forgets the quiet stranger's history
	a.refuse(id)
	if got := refusedFor(); got != firstRefusal {
		t.Fatalf("after a quiet period: refused for %s, want %s", got, firstRefusal)
	}
}

// A member that loses its membership is refused at once, for the first refusal's length, and
// the bootstrap loop sees it refused.
func TestDemotedMemberIsRefused(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	mem := NewMemAdmission()
	a := newAdmitter(mem, newPolicy(testChain), func() time.Time { return now }, 0)
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPublicKey(pub)
	ip := ma.StringCast("/ip4/10.0.0.1/tcp/4001")
	mem.SetClass(id, Member)
	a.connected(id, func(peer.ID) {})
	if got := a.changed([]peer.ID{id}); len(got) != 0 || a.refusedNow(id) {
		t.Fatalf("a member that stays one: changed %v, refused %v", got, a.refusedNow(id))
	}
	mem.SetClass(id, Stranger)
	if got := a.changed([]peer.ID{id}); len(got) != 1 {
		t.Fatalf("changed = %v, want the demoted member", got)
	}
	if !a.refusedNow(id) || a.secured(network.DirInbound, id, ip) {
		t.Fatal("a demoted member is let back in at once")
	}
	now = now.Add(firstRefusal)
	if a.refusedNow(id) || !a.secured(network.DirInbound, id, ip) {
		t.Fatal("still refused after the first refusal")
	}
}

// The policy table, exhaustively for the protocols the host knows.
func TestPolicyTable(t *testing.T) {
	pol := newPolicy(testChain)
	protos := map[string]protocol.ID{
		"identify": "/ipfs/id/1.0.0", "ping": "/ipfs/ping/1.0.0", "join": pol.join, "wallet": pol.wallet,
		"direct": pol.direct, "kad": kadProtocol(), "gossip": "/meshsub/1.1.0", "blobs": "/medledger/" + testChain + "/blobs/1.0.0",
	}
	want := map[Class][]string{
		Stranger:  {"identify", "ping", "join"},
		Candidate: {"identify", "ping", "join", "direct", "gossip"},
		Wallet:    {"identify", "ping", "wallet"},
		Member:    {"identify", "ping", "join", "wallet", "direct", "kad", "gossip", "blobs"},
	}
	for c, names := range want {
		for name, proto := range protos {
			if got := pol.allowed(c, proto); got != slices.Contains(names, name) {
				t.Errorf("%s on %s: allowed %v", c, name, got)
			}
		}
	}
}

// During a flood of 250 fresh identities connecting again and again from 127.0.0.1, a member
// still connects and its streams work, and the flood is throttled.
func TestMemberConnectsDuringFlood(t *testing.T) {
	mKey, _ := identity(t)
	m := startAdm(t, mKey, nil, 0, nil)
	target := peer.AddrInfo{ID: m.PeerID(), Addrs: m.host.Addrs()}

	const sybils = 250
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range jobs {
				k, _, err := crypto.GenerateEd25519Key(nil)
				if err != nil {
					t.Error(err)
					return
				}
				h, err := libp2p.New(libp2p.Identity(k), libp2p.NoListenAddrs, libp2p.Transport(tcp.NewTCPTransport),
					libp2p.DisableRelay(), libp2p.DisableMetrics(), libp2p.ResourceManager(&network.NullResourceManager{}))
				if err != nil {
					t.Error(err)
					return
				}
				for range 3 { // again and again
					dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_ = h.Connect(dctx, target)
					cancel()
					_ = h.Network().ClosePeer(m.PeerID())
				}
				_ = h.Close()
				_ = i
			}
		})
	}
	go func() {
		defer close(jobs)
		for i := range sybils {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	waitFor(t, "the flood to be throttled", func() bool { return m.AdmissionStats().Throttled > 0 })
	nKey, nID := identity(t)
	m.adm.SetClass(nID, Member)
	nAdm := NewMemAdmission()
	nAdm.SetClass(m.PeerID(), Member)
	n := startAdm(t, nKey, nAdm, 0, nil, m)
	waitFor(t, "the member to connect during the flood", func() bool { return slices.Contains(m.Peers(), n.ID()) })
	if !n.SendDirect(m.PeerID(), []byte("ok from a member")) {
		t.Fatal("send dropped")
	}
	if d := receive(t, m.testHost); d.From != n.PeerID() || text(d) != "ok from a member" {
		t.Fatalf("M received %q from %s", text(d), d.From)
	}
	stop()
	wg.Wait()
	if st := m.AdmissionStats(); st.Throttled == 0 {
		t.Errorf("no fresh identity throttled: %+v", st)
	}
}
