package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/wallet/envelope"
)

// recWait bounds every wait of the record tests.
const recWait = 30 * time.Second

// fakeRecordNet is a records.Net without peers: nothing is replicated or fetched remotely, and
// DHT announcements are only counted.
type fakeRecordNet struct{ provides atomic.Int64 }

func (*fakeRecordNet) LibP2P() host.Host { return nil }
func (*fakeRecordNet) Peers() []string   { return nil }
func (n *fakeRecordNet) Provide(context.Context, chain.Hash) error {
	n.provides.Add(1)
	return nil
}
func (*fakeRecordNet) FindHolders(context.Context, chain.Hash, int) ([]peer.ID, error) {
	return nil, nil
}
func (*fakeRecordNet) Penalize(peer.ID, error) {}

// recFixture is a one-authority chain over a memory store, driven by the real Runner (the record
// service reads it through the node's ledger adapter), with a
// licensing authority in its genesis, and the provider keys and licence file of "this node".
type recFixture struct {
	t       *testing.T
	g       *chain.Genesis
	runner  *Runner
	commits *commitHub
	licKey  chain.PrivKey
	keys    *records.Keys
	licFile string
	blobDir string
	net     *fakeRecordNet
	log     *slog.Logger
}

func newRecFixture(t *testing.T) *recFixture {
	t.Helper()
	return newRecFixtureWith(t, replica.MempoolConfig{})
}

// newRecFixtureWith is newRecFixture with the replica's mempool bounds set.
func newRecFixtureWith(t *testing.T, mempool replica.MempoolConfig) *recFixture {
	t.Helper()
	return newRecFixtureGenesis(t, mempool, nil)
}

// newRecFixtureGenesis is newRecFixtureWith with edit applied to the genesis first (nil: none).
func newRecFixtureGenesis(t *testing.T, mempool replica.MempoolConfig, edit func(*chain.Genesis)) *recFixture {
	t.Helper()
	key := testKey(t, "records-authority")
	licKey := testKey(t, "records-licensing-board")
	params := chain.DefaultParams()
	params.TimeoutProposeMs, params.TimeoutVoteMs, params.TimeoutDeltaMs, params.BlockIntervalMs = 400, 200, 100, 50
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: "records-test", TimeMs: time.Now().UnixMilli(),
		Authorities:          []chain.Authority{{Key: key.Public(), Name: "solo"}},
		LicensingAuthorities: []chain.Authority{{Key: licKey.Public(), Name: "board"}},
		Params:               params,
	}
	if edit != nil {
		edit(g)
	}
	log := slog.New(slog.DiscardHandler)
	rep, err := replica.New(replica.Config{Genesis: g, Key: &key, Mempool: mempool}, store.NewMemory())
	require.NoError(t, err)
	commits := newCommitHub()
	runner := NewRunner(rep, NewBus(log).Join("solo"), log, time.Now, Hooks{Committed: commits.committed, Dropped: commits.dropped})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(recWait):
			t.Errorf("runner did not stop")
		}
	})
	dir := t.TempDir()
	f := &recFixture{
		t: t, g: g, runner: runner, commits: commits, licKey: licKey,
		licFile: filepath.Join(dir, "licence"), blobDir: filepath.Join(dir, "blobs"),
		net: &fakeRecordNet{}, log: log,
	}
	f.keys = f.newProviderKeys("this-node")
	lic := f.licence(f.keys)
	require.NoError(t, WriteLicenceFile(f.licFile, &lic))
	return f
}

// sub is the fixture bound to a subtest's t.
func (f *recFixture) sub(t *testing.T) *recFixture {
	c := *f
	c.t = t
	return &c
}

func (f *recFixture) newProviderKeys(name string) *records.Keys {
	f.t.Helper()
	ek, err := envelope.GenerateKey(rand.Reader)
	require.NoError(f.t, err)
	return &records.Keys{Signing: testKey(f.t, "provider-"+name), Encryption: ek}
}

func (f *recFixture) licence(k *records.Keys) chain.Licence {
	var nodeKey chain.PubKey // stands in for the provider's libp2p identity
	copy(nodeKey[:], k.ID().String())
	if k == f.keys {
		nodeKey = testNodeKey // this node: holders log only requests addressed to their own node key
	}
	l := chain.Licence{Role: chain.RoleProvider, Subject: k.Signing.Public(), NodeKey: nodeKey, Number: "MD-" + k.ID().String()[:8], Jurisdiction: "NL-ZH",
		NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	l.Sign(f.licKey, f.g.ChainID)
	return l
}

// testNodeKey stands in for this node's libp2p identity key.
var testNodeKey = chain.PubKey{0x6e}

// newRecords builds a record service over the fixture's blob dir (not running).
func (f *recFixture) newRecords() *records.Service {
	f.t.Helper()
	r, err := records.New(records.Config{
		ChainID: f.g.ChainID, Keys: f.keys, Ledger: newLedger(f.runner, f.commits), Net: f.net, BlobDir: f.blobDir,
		LicenceFile: f.licFile, ReadLicence: ReadLicenceFile, Log: f.log,
		NodeKey: testNodeKey,
	})
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = r.Close() })
	return r
}

// running is a record service whose Run goroutine can be stopped.
type running struct {
	*records.Service
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(recWait):
		t.Fatal("records.Service.Run did not return")
	}
}

func (f *recFixture) run(r *records.Service) *running {
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{Service: r, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(rr.done); r.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		select {
		case <-rr.done:
		case <-time.After(recWait):
			f.t.Errorf("records.Service.Run did not return")
		}
	})
	return rr
}

// start builds and runs the record service and waits until its provider is registered.
func (f *recFixture) start() *running {
	f.t.Helper()
	r := f.run(f.newRecords())
	f.waitFor("provider registered", func() bool { return f.provider(f.keys.ID()) != nil })
	return r
}

func (f *recFixture) view(fn func(view state.View, rep *replica.Replica)) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recWait)
	defer cancel()
	require.NoError(f.t, f.runner.Query(ctx, func(rep *replica.Replica) { fn(rep.Store().State(), rep) }))
}

func (f *recFixture) provider(a chain.Address) *state.ProviderRecord {
	var p *state.ProviderRecord
	f.view(func(v state.View, _ *replica.Replica) { p, _ = state.Provider(v, a) })
	return p
}

func (f *recFixture) record(id chain.Hash) *state.RecordState {
	f.t.Helper()
	var rec *state.RecordState
	var err error
	f.view(func(v state.View, _ *replica.Replica) { rec, err = state.Record(v, id) })
	require.NoError(f.t, err)
	return rec
}

func (f *recFixture) submit(key chain.PrivKey, kind chain.TxKind, body any) (*chain.Tx, uint64) {
	f.t.Helper()
	var n uint64
	var err error
	f.view(func(v state.View, rep *replica.Replica) {
		var committed uint64
		committed, err = state.Nonce(v, key.Public().Address())
		n = rep.Mempool().NextNonce(key.Public(), committed)
	})
	require.NoError(f.t, err)
	tx := chain.NewTx(key, f.g.ChainID, kind, n, body)
	return tx, f.submitTx(tx)
}

func (f *recFixture) submitTx(tx *chain.Tx) uint64 {
	f.t.Helper()
	ch, forget := f.commits.expect(tx.Hash())
	defer forget()
	ctx, cancel := context.WithTimeout(context.Background(), recWait)
	defer cancel()
	_, err := f.runner.Submit(ctx, tx)
	require.NoError(f.t, err, "submit %s", tx.Kind)
	h, err := waitCommit(ctx, ch)
	require.NoError(f.t, err, "%s transaction not committed", tx.Kind)
	return h
}

// testPatient is a registered (or not) patient.
type testPatient struct {
	key chain.PrivKey
	enc *envelope.PrivateKey
}

func (p *testPatient) id() chain.Address { return p.key.Public().Address() }

func (f *recFixture) newPatient(name string, register bool) *testPatient {
	f.t.Helper()
	ek, err := envelope.GenerateKey(rand.Reader)
	require.NoError(f.t, err)
	p := &testPatient{key: testKey(f.t, "patient-"+name), enc: ek}
	if register {
		// Enrolled by the fixture's own provider, as the operator API would.
		f.submit(p.key, chain.TxRegisterPatient, chain.NewEnrolment(f.keys.Signing, f.keys.ID(), f.g.ChainID, p.key.Public(), ek.Public().Bytes()))
	}
	return p
}

// erase has the patient erase records.
func (f *recFixture) erase(p *testPatient, ids ...chain.Hash) {
	f.t.Helper()
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b chain.Hash) int { return bytes.Compare(a[:], b[:]) })
	f.submit(p.key, chain.TxRecordErase, &chain.RecordErase{Records: sorted})
}

// waitFor polls cond until it holds, failing the test after recWait.
func (f *recFixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(recWait)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not after %s", what, recWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("fhir", "testdata", name))
	require.NoError(t, err)
	return data
}
