package records

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/records/index"
)

// Penalize: the peerless net strikes no one.
func (*fakeRecordNet) Penalize(peer.ID, error) {}

// newRecordsWith is newRecords with cfg adjusted by adjust.
func (f *recFixture) newRecordsWith(adjust func(*Config)) *Service {
	f.t.Helper()
	cfg := Config{
		ChainID: f.g.ChainID, Keys: f.keys, Ledger: f.ledger, Net: f.net, BlobDir: f.blobDir,
		LicenceFile: f.licFile, ReadLicence: readLicence, Log: f.log, NodeKey: f.nodeKey,
	}
	adjust(&cfg)
	r, err := New(cfg)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = r.Close() })
	return r
}

// copyHeld copies the blobs and envelopes (not the journals) of the fixture's blob dir to a new
// one: another holder of the same records, under this node's identity.
func (f *recFixture) copyHeld(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	for _, sub := range []string{"blobs", "envelopes"} {
		require.NoError(t, os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join(f.blobDir, sub))))
	}
	return dir
}

// testFetchReplayAfterCrash: a holder that served a request and crashed before flushing its
// journal refuses the same request after the restart, and the read is logged exactly once.
func testFetchReplayAfterCrash(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("kim", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	k := f.registerProvider("restarter")
	f.grant(p, k.ID(), 0)
	dir := f.copyHeld(t)
	holder := func() *Service { return f.newRecordsWith(func(c *Config) { c.BlobDir = dir }) }

	// Served, journalled, and "crashed": the service is never run, so nothing is flushed.
	req := f.request(k, id, time.Now())
	require.Equal(t, exchange.StatusOK, holder().Fetch(ctx, f.peer, req).Status)

	// The restarted holder finds the request in its journal.
	h2 := holder()
	again := h2.Fetch(ctx, f.peer, req)
	require.Equal(t, exchange.StatusRefused, again.Status)
	require.Contains(t, again.Reason, "already used")
	require.Len(t, pending(t, h2), 1, "the replay added nothing to the journal")

	// Running, it logs the read once and forgets it; the ledger then says the request is used.
	h3 := f.run(holder())
	f.waitFor("entry on the ledger, journal empty", func() bool { return f.access(req.ID()) != nil && len(pending(t, h3.Service)) == 0 })
	again = h2.Fetch(ctx, f.peer, req)
	require.Equal(t, exchange.StatusRefused, again.Status)
	require.Contains(t, again.Reason, "already used")
	require.Empty(t, pending(t, h2))
	a := f.access(req.ID())
	require.Equal(t, chain.AccessServed, a.Outcome)
	f.waitFor("index", func() bool { acc, err := r.Accesses(ctx, p.id()); return err == nil && len(acc) > 0 })
	acc, err := r.Accesses(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, acc, 1, "exactly one entry for the served read")
	require.Equal(t, req.ID(), acc[0].RequestID)

	// The near miss: a new request for the same read is served.
	require.Equal(t, exchange.StatusOK, h2.Fetch(ctx, f.peer, f.request(k, id, time.Now())).Status)
	h3.stop(t)
}

// testStaleHolder: a holder whose last block is older than the freshness bound by its clock
// decides nothing: no serve, no refusal, nothing journalled.
func testStaleHolder(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("lou", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	k := f.registerProvider("fresh-seeker")
	noConsent := f.registerProvider("stale-refused")
	f.grant(p, k.ID(), 0)
	dir := f.copyHeld(t)
	at := func(ahead time.Duration) *Service {
		return f.newRecordsWith(func(c *Config) {
			c.BlobDir = dir
			c.Now = func() time.Time { return time.Now().Add(ahead) }
		})
	}

	// The bound is 5 s here (three 50 ms block intervals are less): a clock a minute ahead
	// sees a stale ledger.
	stale := at(time.Minute)
	for _, k := range []*Keys{k, noConsent} {
		resp := stale.Fetch(ctx, f.peer, f.request(k, id, time.Now()))
		require.Equal(t, exchange.StatusError, resp.Status, "a stale holder neither serves nor refuses")
		require.Contains(t, resp.Reason, "holder's ledger view is stale")
		require.Empty(t, resp.Ciphertext)
	}
	require.Empty(t, pending(t, stale), "a stale holder journals nothing")
	// Its own users: a refusal is not logged; the author still reads its own record.
	res, err := stale.Read(ctx, id, testPurpose, false, testRole)
	require.NoError(t, err)
	require.Equal(t, "local", res.Holder)
	staleReader := f.newRecordsWith(func(c *Config) {
		c.Keys, c.BlobDir = noConsent, filepath.Join(t.TempDir(), "blobs")
		c.Now = func() time.Time { return time.Now().Add(time.Minute) }
	})
	_, err = staleReader.Read(ctx, id, testPurpose, false, testRole)
	require.ErrorIs(t, err, ErrAccessRefused)
	require.ErrorIs(t, err, ErrStaleView)
	require.Empty(t, pending(t, staleReader))

	// The near miss: a clock a second ahead is within the bound.
	fresh := at(time.Second)
	ok := f.request(k, id, time.Now())
	require.Equal(t, exchange.StatusOK, fresh.Fetch(ctx, f.peer, ok).Status)
	journalled, err := fresh.journal.Has(ok.ID())
	require.NoError(t, err)
	require.True(t, journalled)

	// An explicit bound replaces the default.
	strict := f.newRecordsWith(func(c *Config) {
		c.BlobDir = dir
		c.StaleAfter = 2 * time.Second
		c.Now = func() time.Time { return time.Now().Add(3 * time.Second) }
	})
	resp := strict.Fetch(ctx, f.peer, f.request(k, id, time.Now()))
	require.Equal(t, exchange.StatusError, resp.Status)
	require.Contains(t, resp.Reason, "stale")
}

// testRefusalLimit: refusals are logged once per requester and record, whatever the purpose
// or request; the limiter's memory is bounded.
func testRefusalLimit(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("max", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	k := f.registerProvider("poller")
	var reqs []*chain.AccessRequest
	for i, purpose := range []string{testPurpose, "PAYMENT", "a purpose of the requester's invention"} {
		req := f.request(k, id, time.Now())
		req.Purpose = purpose
		req.Nonce += uint64(i)
		req.Sign(k.Signing, f.g.ChainID)
		resp := r.Fetch(ctx, f.peer, req)
		require.Equal(t, exchange.StatusRefused, resp.Status)
		reqs = append(reqs, req)
	}
	f.waitFor("first refusal logged", func() bool { return f.access(reqs[0].ID()) != nil })
	f.waitFor("journal flushed", func() bool { return len(pending(t, r.Service)) == 0 })
	f.waitBlocks(2)
	for _, req := range reqs[1:] {
		require.Nil(t, f.access(req.ID()), "purpose %q: a second refusal of the same requester and record was logged", req.Purpose)
	}
	// Another record of the same requester is another key (the near miss). (The same resource
	// again would be the same record: imports are idempotent.)
	out2, err := r.Import(ctx, p.id(), bytes.ReplaceAll(readTestdata(t, "observation.json"), []byte(`"obs-bp-1"`), []byte(`"obs-bp-2"`)))
	require.NoError(t, err)
	other := f.request(k, out2[0].ID, time.Now())
	require.Equal(t, exchange.StatusRefused, r.Fetch(ctx, f.peer, other).Status)
	f.waitFor("other record's refusal logged", func() bool { return f.access(other.ID()) != nil })

	for i := range maxRefusalKeys + 100 {
		r.shouldLogRefusal(refusalKey{requester: chain.Address{byte(i), byte(i >> 8)}, record: id})
	}
	r.limMu.Lock()
	n := len(r.refused)
	r.limMu.Unlock()
	require.LessOrEqual(t, n, maxRefusalKeys)
}

// meshNet is a Net over a mocknet host: holders are what the test says, penalties are kept.
type meshNet struct {
	h       host.Host
	holders []peer.ID
	mu      sync.Mutex
	strikes map[peer.ID][]string
}

func (n *meshNet) LibP2P() host.Host                         { return n.h }
func (n *meshNet) Peers() []string                           { return nil }
func (n *meshNet) Provide(context.Context, chain.Hash) error { return nil }
func (n *meshNet) FindHolders(context.Context, chain.Hash, int) ([]peer.ID, error) {
	return n.holders, nil
}
func (n *meshNet) Penalize(p peer.ID, reason error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.strikes == nil {
		n.strikes = make(map[peer.ID][]string)
	}
	n.strikes[p] = append(n.strikes[p], reason.Error())
}
func (n *meshNet) struck(p peer.ID) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.strikes[p]...)
}

// fixedHandler answers every fetch with fn and refuses pushes.
type fixedHandler func() *exchange.FetchResponse

func (h fixedHandler) Fetch(context.Context, peer.ID, *chain.AccessRequest) *exchange.FetchResponse {
	return h()
}
func (fixedHandler) Push(context.Context, peer.ID, *exchange.PushRequest) error {
	return fmt.Errorf("%w: not here", exchange.ErrRefused)
}
func (fixedHandler) Pull(context.Context, peer.ID, *exchange.PullRequest) *exchange.FetchResponse {
	return &exchange.FetchResponse{Status: exchange.StatusRefused, Reason: "not here"}
}

// TestRemoteReads runs a requester and holders over an in-memory libp2p network: a stalled and
// a tampering holder cost a strike each and the read goes on to an honest one; every remote
// read leaves the requester's receipt; and a holder that serves without logging is exposed by
// the receipt, flagged once the grace blocks pass.
func TestRemoteReads(t *testing.T) {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	newHost := func(i int) (host.Host, chain.PubKey) {
		sk, _, err := p2pcrypto.GenerateEd25519Key(nil)
		require.NoError(t, err)
		h, err := mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", i)))
		require.NoError(t, err)
		k, err := NodeKeyOf(h.ID())
		require.NoError(t, err)
		return h, k
	}
	hA, kA := newHost(1)
	hB, kB := newHost(2)
	hS, _ := newHost(3)
	hT, _ := newHost(4)
	require.NoError(t, mn.LinkAll())
	require.NoError(t, mn.ConnectAllButSelf())

	f := newRecFixture(t)
	ctx := testCtx(t)
	// This node, the author and honest holder, registers under hA's identity.
	f.nodeKey = kA
	lic := f.licence(f.keys)
	require.NoError(t, os.WriteFile(f.licFile, chain.Encode(&lic), 0o600))
	netA := &meshNet{h: hA}
	a := f.run(f.newRecordsWith(func(c *Config) { c.Net, c.NodeKey = netA, kA }))
	f.waitFor("provider registered", func() bool { return f.provider(f.keys.ID()) != nil })
	t.Cleanup(exchange.Serve(hA, f.g.ChainID, a.Service, exchange.ServerOptions{}))

	release := make(chan struct{})
	t.Cleanup(exchange.Serve(hS, f.g.ChainID, fixedHandler(func() *exchange.FetchResponse {
		<-release
		return &exchange.FetchResponse{Status: exchange.StatusNotFound, Reason: "late"}
	}), exchange.ServerOptions{}))
	t.Cleanup(func() { close(release) }) // runs before the server's stop: its handler returns
	t.Cleanup(exchange.Serve(hT, f.g.ChainID, fixedHandler(func() *exchange.FetchResponse {
		return &exchange.FetchResponse{Status: exchange.StatusOK, Ciphertext: []byte("not the record")}
	}), exchange.ServerOptions{}))

	// The requester, its own provider with its own blob dir.
	readerKeys := f.registerProvider("remote-reader")
	netB := &meshNet{h: hB, holders: []peer.ID{hS.ID(), hT.ID(), hA.ID()}}
	bDir := filepath.Join(t.TempDir(), "blobs")
	bSvc := f.newRecordsWith(func(c *Config) {
		c.Keys, c.Net, c.NodeKey, c.BlobDir, c.LicenceFile = readerKeys, netB, kB, bDir, filepath.Join(bDir, "no-licence")
	})
	bSvc.firstByte = 300 * time.Millisecond
	// The fetch path against holders in this order (placement has its own tests).
	bSvc.holderOrder = func(chain.Hash) []peer.ID { return netB.holders }
	b := f.run(bSvc)

	p := f.newPatient("nia", true)
	out, err := a.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	_, grantHeight := f.grant(p, readerKeys.ID(), 0)
	f.waitFor("consent seen by the author", func() bool { return indexedUpTo(a.Service, grantHeight) })

	accessOf := func(reqID chain.Hash) *AccessJSON {
		acc, err := a.Accesses(ctx, p.id())
		require.NoError(t, err)
		for i := range acc {
			if acc[i].RequestID == reqID {
				return &acc[i]
			}
		}
		return nil
	}

	// An honest read past a stalled and a tampering holder.
	res, err := b.Read(ctx, id, testPurpose, false, testRole)
	require.NoError(t, err)
	require.Equal(t, hA.ID().String(), res.Holder)
	require.NoError(t, ctx.Err())
	require.NotEmpty(t, netB.struck(hS.ID()), "the stalled holder got no strike")
	require.Contains(t, strings.Join(netB.struck(hS.ID()), ";"), "stalled")
	require.NotEmpty(t, netB.struck(hT.ID()), "the tampering holder got no strike")
	require.Empty(t, netB.struck(hA.ID()), "the honest holder was struck")
	var first *AccessJSON
	f.waitFor("the read logged by both", func() bool {
		for _, reqID := range accessIDs(a.Service, p.id()) {
			if j := accessOf(reqID); j != nil && j.LoggedBy == "both" {
				first = j
				return true
			}
		}
		return false
	})
	require.Equal(t, "served", first.Outcome)
	require.False(t, first.UnloggedByHolder)
	require.Equal(t, readerKeys.ID(), first.Accessor)

	// A holder that serves without logging: the receipt shows the read.
	a.hideServes.Store(true)
	netB.holders = []peer.ID{hA.ID()}
	before := len(accessIDs(a.Service, p.id()))
	_, err = b.Read(ctx, id, testPurpose, false, testRole)
	require.NoError(t, err)
	var hidden chain.Hash
	f.waitFor("the hidden read on the ledger by its receipt", func() bool {
		ids := accessIDs(a.Service, p.id())
		if len(ids) <= before {
			return false
		}
		hidden = ids[len(ids)-1]
		return accessOf(hidden) != nil
	})
	for _, e := range pending(t, a.Service) {
		require.NotEqual(t, hidden, e.Request.ID(), "the holder journalled the hidden read")
	}
	require.Nil(t, f.access(hidden), "no holder entry")
	j := accessOf(hidden)
	require.Equal(t, "requester", j.LoggedBy)
	require.Equal(t, "served", j.Outcome)
	require.False(t, j.UnloggedByHolder, "flagged before the grace blocks passed")
	f.waitFor("grace blocks", func() bool { h, _ := f.tip(); return h >= j.Height+state.ReceiptGraceBlocks })
	j = accessOf(hidden)
	require.True(t, j.UnloggedByHolder)
	require.Equal(t, "requester", j.LoggedBy)
	b.stop(t)
	a.stop(t)
}

// accessIDs is the request ids of patient's access list, in ledger order.
func accessIDs(r *Service, patient chain.Address) []chain.Hash {
	refs, _, err := r.idx.Accesses(patient, "", index.MaxPage)
	if err != nil {
		panic(err)
	}
	var ids []chain.Hash
	for _, a := range refs {
		ids = append(ids, a.Request)
	}
	return ids
}
