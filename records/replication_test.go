package records

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
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
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/records/exchange"
)

// replNet is a Net over one host of an in-memory libp2p network (mocknet).
type replNet struct {
	h        host.Host
	provides atomic.Int64
}

func (n *replNet) LibP2P() host.Host { return n.h }
func (n *replNet) Peers() []string {
	var out []string
	for _, p := range n.h.Network().Peers() {
		out = append(out, p.String())
	}
	return out
}
func (n *replNet) Provide(context.Context, chain.Hash) error { n.provides.Add(1); return nil }
func (*replNet) FindHolders(context.Context, chain.Hash, int) ([]peer.ID, error) {
	return nil, nil
}

// gate is a node's blob server handler: its current record service (swapped at a restart),
// and a switch that loses every push sent to it, as a network that drops them would.
type gate struct {
	svc  atomic.Pointer[Service]
	drop atomic.Bool
}

func (g *gate) Fetch(ctx context.Context, from peer.ID, req *chain.AccessRequest) *exchange.FetchResponse {
	return g.svc.Load().Fetch(ctx, from, req)
}

func (g *gate) Push(ctx context.Context, from peer.ID, req *exchange.PushRequest) error {
	if g.drop.Load() {
		return errors.New("push lost by the test network")
	}
	return g.svc.Load().Push(ctx, from, req)
}

func (g *gate) Pull(ctx context.Context, from peer.ID, req *exchange.PullRequest) *exchange.FetchResponse {
	return g.svc.Load().Pull(ctx, from, req)
}

// meshNode is one provider node of a mesh: its keys, libp2p host, blob server and service.
type meshNode struct {
	name    string
	keys    *Keys
	host    host.Host
	peer    peer.ID
	key     chain.PubKey
	gate    *gate
	blobDir string
	licFile string
	run     *running
}

// mesh is n provider nodes sharing the fixture's one-authority ledger, connected over mocknet.
// Node 0 is the fixture's own provider (it enrols the test patients) and authors the records.
type mesh struct {
	f      *recFixture
	mn     mocknet.Mocknet
	nodes  []*meshNode
	timing repairTiming
}

// newMesh starts n registered provider nodes on a chain whose genesis sets replicas.
func newMesh(t *testing.T, n, replicas int, timing repairTiming) *mesh {
	t.Helper()
	return newMeshGenesis(t, n, replicas, timing, nil)
}

// newMeshGenesis is newMesh with edit applied to the genesis (nil: none).
func newMeshGenesis(t *testing.T, n, replicas int, timing repairTiming, edit func(*chain.Genesis)) *mesh {
	t.Helper()
	f := newRecFixtureGenesis(t, replica.MempoolConfig{}, func(p *chain.Params) { p.Replicas = uint32(replicas) }, edit)
	m := &mesh{f: f, mn: mocknet.New(), timing: timing}
	if os.Getenv("MESHLOG") != "" {
		f.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	t.Cleanup(func() { _ = m.mn.Close() })
	for i := range n {
		h := m.addHost(t)
		nd := &meshNode{name: fmt.Sprintf("node%d", i), host: h, peer: h.ID(), gate: &gate{}}
		var err error
		nd.key, err = NodeKeyOf(h.ID())
		require.NoError(t, err)
		if i == 0 {
			nd.keys, nd.blobDir, nd.licFile = f.keys, f.blobDir, f.licFile
			f.nodePeer, f.nodeKey = h.ID(), nd.key
		} else {
			nd.keys = f.newProviderKeys(nd.name)
			nd.blobDir, nd.licFile = filepath.Join(t.TempDir(), "blobs"), filepath.Join(t.TempDir(), "licence")
		}
		lic := f.licence(nd.keys)
		lic.NodeKey = nd.key
		lic.Sign(f.licKey, f.g.ChainID)
		require.NoError(t, os.WriteFile(nd.licFile, chain.Encode(&lic), 0o600))
		t.Cleanup(exchange.Serve(h, f.g.ChainID, nd.gate, exchange.ServerOptions{Rate: 1000, Burst: 1000}))
		m.nodes = append(m.nodes, nd)
	}
	require.NoError(t, m.mn.LinkAll())
	require.NoError(t, m.mn.ConnectAllButSelf())
	for _, nd := range m.nodes {
		m.start(t, nd)
	}
	for _, nd := range m.nodes {
		f.waitFor(nd.name+" registered", func() bool { return f.provider(nd.keys.ID()) != nil })
	}
	return m
}

// addHost adds a host with a fresh Ed25519 identity (a member's node key) to the mocknet.
func (m *mesh) addHost(t *testing.T) host.Host {
	t.Helper()
	sk, _, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	h, err := m.mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", len(m.mn.Hosts())+1)))
	require.NoError(t, err)
	return h
}

// start builds and runs nd's record service (again, after stop: a restart over the same
// blob directory).
func (m *mesh) start(t *testing.T, nd *meshNode) {
	t.Helper()
	svc, err := New(Config{ChainID: m.f.g.ChainID, Keys: nd.keys, Ledger: m.f.ledger, Net: &replNet{h: nd.host}, BlobDir: nd.blobDir,
		LicenceFile: nd.licFile, ReadLicence: readLicence, Log: m.f.log, NodeKey: nd.key})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close() })
	svc.timing = m.timing
	nd.gate.svc.Store(svc)
	nd.run = m.f.run(svc)
}

// roles are the mesh's nodes by their place in a record's assignment: the author, the exact
// holders, the slack holder, and the rest.
type roles struct {
	author *meshNode
	exact  []*meshNode
	slack  *meshNode
	others []*meshNode
}

func (m *mesh) roles(t *testing.T, id chain.Hash) roles {
	t.Helper()
	rec := m.f.record(id)
	var wide Assignment
	var exact int
	m.f.view(func(v state.View) {
		a, err := m.nodes[0].run.assignment(v, rec, holdSlack)
		require.NoError(t, err)
		e, err := m.nodes[0].run.assignment(v, rec, 0)
		require.NoError(t, err)
		wide, exact = a, len(e.Holders)
	})
	var out roles
	for _, nd := range m.nodes {
		switch i := slices.Index(wide.Holders, nd.key); {
		case nd.key == wide.Author:
			out.author = nd
		case i >= 0 && i < exact:
			out.exact = append(out.exact, nd)
		case i >= exact:
			out.slack = nd
		default:
			out.others = append(out.others, nd)
		}
	}
	// exact is in placement order.
	slices.SortFunc(out.exact, func(a, b *meshNode) int {
		return slices.Index(wide.Holders, a.key) - slices.Index(wide.Holders, b.key)
	})
	return out
}

func (nd *meshNode) has(t *testing.T, f *recFixture, id chain.Hash) bool {
	return nd.run.blobs.Has(f.record(id).CiphertextHash)
}

// fastRepair runs both repair passes every 100 ms, with no grace for fresh records.
var fastRepair = repairTiming{pushFirst: 100 * time.Millisecond, pushEvery: 100 * time.Millisecond,
	pullFirst: 100 * time.Millisecond, pullEvery: 100 * time.Millisecond}

// TestReplicationByPlacement: with one replica per record among four providers, a record goes to
// the holder the ledger names and nowhere else. A push the network loses is repaired by that
// holder's pull; the author's unconfirmed list empties once a push gets through; peers outside
// the assignment can neither pull nor push; a fetcher asks only assigned holders; and when the
// holder's licence is revoked the record moves to the next in line, which pulls it.
func TestReplicationByPlacement(t *testing.T) {
	m := newMesh(t, 4, 1, fastRepair)
	f, author := m.f, m.nodes[0]
	ctx := testCtx(t)
	for _, nd := range m.nodes {
		nd.gate.drop.Store(true)
	}
	p := f.newPatient("rita", true)
	out, err := author.run.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	rec := f.record(id)
	rs := m.roles(t, id)
	require.Equal(t, author, rs.author)
	require.Len(t, rs.exact, 1)
	require.NotNil(t, rs.slack)
	require.Len(t, rs.others, 1)
	holder, next, outsider := rs.exact[0], rs.slack, rs.others[0]

	// The push is lost; the holder's repair pass pulls the record from the author.
	f.waitFor("the assigned holder repaired its replica with the patient's and the author's envelopes", func() bool {
		env, err := holder.run.blobs.Envelopes(id)
		return holder.has(t, f, id) && err == nil && len(env) == 2
	})
	// Neither the slack holder nor the outsider pulls: they are not assigned.
	next.run.repairPass(ctx)
	outsider.run.repairPass(ctx)
	require.False(t, next.has(t, f, id))
	require.False(t, outsider.has(t, f, id))
	require.Equal(t, 1, author.run.unpushed.len(), "no push was confirmed")

	// A push that gets through confirms the record and empties the author's list.
	for _, nd := range m.nodes {
		nd.gate.drop.Store(false)
	}
	f.waitFor("unpushed list empty", func() bool { return author.run.unpushed.len() == 0 })
	require.Zero(t, filesUnder(t, filepath.Join(author.blobDir, "unpushed")))
	require.False(t, outsider.has(t, f, id), "the author pushes only to assigned holders")

	// Peers outside the assignment can neither pull nor push.
	pull := func(from *meshNode, to *meshNode) error {
		_, err := exchange.Pull(ctx, from.host, f.g.ChainID, to.peer, &exchange.PullRequest{Record: id, CiphertextHash: rec.CiphertextHash})
		return err
	}
	err = pull(outsider, author)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "does not assign this record to the pulling node")
	require.NoError(t, pull(next, author), "the slack holder may pull (a membership change it has seen)")
	require.NoError(t, pull(holder, author))
	require.NoError(t, pull(author, holder), "the author may pull its own record back")
	stranger := m.addHost(t)
	require.NoError(t, m.mn.LinkAll())
	_, err = m.mn.ConnectPeers(stranger.ID(), author.peer)
	require.NoError(t, err)
	_, err = exchange.Pull(ctx, stranger, f.g.ChainID, author.peer, &exchange.PullRequest{Record: id, CiphertextHash: rec.CiphertextHash})
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "not an active provider's")

	ct, err := author.run.blobs.Get(rec.CiphertextHash)
	require.NoError(t, err)
	push := func(from *meshNode, to *meshNode) error {
		req := &exchange.PushRequest{Record: id, CiphertextHash: rec.CiphertextHash, Ciphertext: ct}
		req.Sign(from.keys.Signing, f.g.ChainID)
		return exchange.Push(ctx, from.host, f.g.ChainID, to.peer, req)
	}
	err = push(outsider, next)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "only the author or an assigned holder")
	err = push(author, outsider)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "does not assign record")
	require.False(t, outsider.has(t, f, id))
	require.NoError(t, push(holder, next), "an assigned holder may push a replica to another")

	// A fetcher is sent to the assigned holders only: author first, then placement order.
	require.Equal(t, []peer.ID{author.peer, holder.peer, next.peer}, outsider.run.holders(ctx, id))
	require.Equal(t, []peer.ID{author.peer, next.peer}, holder.run.holders(ctx, id), "never itself")
	require.True(t, author.run.MayHold(holder.peer, id))
	require.True(t, author.run.MayHold(next.peer, id))
	require.False(t, author.run.MayHold(outsider.peer, id))
	require.False(t, author.run.MayHold(stranger.ID(), id))
	require.False(t, author.run.MayHold(holder.peer, randomHash(t)), "an unknown record has no holders")

	// The holder's licence is revoked: the record moves to the next in line, which pulls it,
	// and the revoked node may no longer announce it.
	f.submit(f.licKey, chain.TxRevokeAttestation, &chain.RevokeAttestation{Subject: holder.keys.ID(), Role: chain.RoleProvider, Reason: chain.RevokeSuspended})
	moved := m.roles(t, id)
	require.Equal(t, []*meshNode{next}, moved.exact)
	require.Equal(t, outsider, moved.slack)
	require.False(t, author.run.MayHold(holder.peer, id))
	// next got a copy above (the holder's push): remove it so that the pull must bring it.
	require.NoError(t, next.run.blobs.DeleteRecord(id, rec.CiphertextHash))
	f.waitFor("the new holder pulled the record", func() bool { return next.has(t, f, id) })
	require.Equal(t, []peer.ID{author.peer, next.peer, outsider.peer}, holder.run.holders(ctx, id))
}

// TestRepushAfterRestart: an author that stops after its anchors commit but before any push got
// through pushes the record again when it restarts, from its durable unpushed list.
func TestRepushAfterRestart(t *testing.T) {
	timing := fastRepair
	timing.pullFirst, timing.pullEvery = time.Hour, time.Hour // holders do not pull: only the push can help
	m := newMesh(t, 3, 1, timing)
	f, author := m.f, m.nodes[0]
	ctx := testCtx(t)
	for _, nd := range m.nodes {
		nd.gate.drop.Store(true)
	}
	p := f.newPatient("sam", true)
	out, err := author.run.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	holder := m.roles(t, id).exact[0]
	author.run.stop(t)
	require.Equal(t, 1, filesUnder(t, filepath.Join(author.blobDir, "unpushed")), "the record is listed on disk")
	for _, nd := range m.nodes {
		nd.gate.drop.Store(false)
	}
	require.False(t, holder.has(t, f, id))

	m.start(t, author)
	f.waitFor("the restarted author re-pushed the record", func() bool { return holder.has(t, f, id) })
	f.waitFor("unpushed list empty", func() bool { return author.run.unpushed.len() == 0 })
	require.Zero(t, filesUnder(t, filepath.Join(author.blobDir, "unpushed")))
	for _, nd := range m.nodes {
		if nd != author && nd != holder {
			require.False(t, nd.has(t, f, id), "%s is not assigned", nd.name)
		}
	}
}

func (*replNet) Penalize(peer.ID, error) {}

// nextBatch loses and repeats no job: queued chunks (sub-slices of one import's jobs) are
// batched up to pushBatchMax without writing into each other.
func TestNextBatchKeepsEveryJob(t *testing.T) {
	all := make([]pushJob, 3*pushBatchMax+5)
	for i := range all {
		all[i].id[0], all[i].id[1] = byte(i), byte(i>>8)
		all[i].ciphertext = []byte{1}
	}
	q := make(chan []pushJob, 16)
	q <- all[:10:10]
	for from := 10; from < len(all); from += pushBatchMax {
		q <- all[from:min(from+pushBatchMax, len(all)):min(from+pushBatchMax, len(all))]
	}
	seen := map[chain.Hash]int{}
	var carry []pushJob
	for {
		first := carry
		if first == nil {
			select {
			case first = <-q:
			default:
			}
		}
		if first == nil {
			break
		}
		var jobs []pushJob
		jobs, carry = nextBatch(first, q)
		require.LessOrEqual(t, len(jobs), pushBatchMax)
		for _, j := range jobs {
			seen[j.id]++
		}
	}
	require.Len(t, seen, len(all))
	for id, n := range seen {
		require.Equal(t, 1, n, "job %s", id.Short())
	}
	// A job larger than a batch's bytes still goes, alone.
	big := []pushJob{{ciphertext: make([]byte, pushBatchBytes+1)}, {ciphertext: []byte{1}}}
	jobs, carry := nextBatch(big, nil)
	require.Len(t, jobs, 1)
	require.Len(t, carry, 1)
}
