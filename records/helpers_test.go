package records

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
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
	"github.com/medledger/medledger/wallet/envelope"
)

// recWait bounds every wait of the record tests.
const recWait = 30 * time.Second

// testPurpose is the purpose of use of the tests' grants and reads: treatment.
const (
	testPurpose = "TREAT"
	testRole    = "clinician"
)

// fakeRecordNet is a RecordNet without peers: nothing is replicated or fetched remotely, and
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

// soloLedger is a Ledger over a one-authority chain in memory: the replica runs under a mutex,
// its timeouts on timers, and what it would send to peers goes nowhere (there are none). It is
// the in-memory twin of the node's ledger adapter, which drives the replica from the Runner.
type soloLedger struct {
	t       *testing.T
	mu      sync.Mutex // guards everything below and every call into rep
	rep     *replica.Replica
	stopped bool
	failed  error
	waiting map[chain.Hash][]chan Outcome
	wake    []chan struct{}
}

func newSoloLedger(t *testing.T, g *chain.Genesis, key chain.PrivKey, mempool replica.MempoolConfig) *soloLedger {
	t.Helper()
	rep, err := replica.New(replica.Config{Genesis: g, Key: &key, Mempool: mempool}, store.NewMemory())
	require.NoError(t, err)
	l := &soloLedger{t: t, rep: rep, waiting: make(map[chain.Hash][]chan Outcome)}
	l.mu.Lock()
	out, err := rep.Start(time.Now().UnixMilli())
	require.NoError(t, err)
	l.emit(out)
	l.mu.Unlock()
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.stopped = true
		if l.failed != nil {
			t.Errorf("solo ledger: %v", l.failed)
		}
	})
	return l
}

// emit settles waiters and wakes subscribers for what one replica call returned, and arms its
// timeouts. Called with mu held.
func (l *soloLedger) emit(out replica.Output) {
	for _, b := range out.Committed {
		for _, tx := range b.Txs {
			l.settle(tx.Hash(), Outcome{Height: b.Header.Height})
		}
		for _, ch := range l.wake {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	for _, d := range out.Dropped {
		l.settle(d.Hash, Outcome{Err: fmt.Errorf("transaction dropped from the mempool: %s: %w", d.Hash.Short(), d.Reason)})
	}
	for _, to := range out.Timeouts {
		time.AfterFunc(time.Duration(to.DelayMs)*time.Millisecond, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.stopped || l.failed != nil {
				return
			}
			out, err := l.rep.HandleTimeout(to, time.Now().UnixMilli())
			if err != nil {
				l.failed = err
				return
			}
			l.emit(out)
		})
	}
}

func (l *soloLedger) settle(h chain.Hash, o Outcome) {
	for _, ch := range l.waiting[h] {
		ch <- o
	}
	delete(l.waiting, h)
}

func (l *soloLedger) View(_ context.Context, f func(view state.View) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return f(l.rep.Store().State())
}

func (l *soloLedger) Block(_ context.Context, height uint64) (*chain.Block, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if height > l.rep.Height() {
		return nil, nil
	}
	return l.rep.Store().Block(height)
}

func (l *soloLedger) NextNonce(_ context.Context, signer chain.PubKey) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	committed, err := state.Nonce(l.rep.Store().State(), signer.Address())
	return l.rep.Mempool().NextNonce(signer, committed), err
}

func (l *soloLedger) Submit(_ context.Context, tx *chain.Tx) (chain.Hash, <-chan Outcome, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := tx.Hash()
	ch := make(chan Outcome, 1)
	l.waiting[h] = append(l.waiting[h], ch)
	cancel := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.waiting[h] = slices.DeleteFunc(l.waiting[h], func(x chan Outcome) bool { return x == ch })
		if len(l.waiting[h]) == 0 {
			delete(l.waiting, h)
		}
	}
	hash, out, err := l.rep.SubmitTx(tx, time.Now().UnixMilli())
	if err != nil {
		l.waiting[h] = slices.DeleteFunc(l.waiting[h], func(x chan Outcome) bool { return x == ch })
		if errors.Is(err, replica.ErrSignerFull) || errors.Is(err, replica.ErrMempoolFull) ||
			errors.Is(err, replica.ErrRegistrationsFull) || errors.Is(err, replica.ErrNonceGap) {
			err = fmt.Errorf("%w: %w", ErrBacklogged, err)
		}
		return chain.Hash{}, nil, nil, err
	}
	l.emit(out)
	return hash, ch, cancel, nil
}

func (l *soloLedger) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wake = append(l.wake, ch)
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.wake = slices.DeleteFunc(l.wake, func(x chan struct{}) bool { return x == ch })
	}
}

// recFixture is a one-authority chain over a memory store (soloLedger), with a licensing
// authority in its genesis, and the provider keys and licence file of "this node".
type recFixture struct {
	t       *testing.T
	g       *chain.Genesis
	ledger  *soloLedger
	licKey  chain.PrivKey
	keys    *Keys
	licFile string
	blobDir string
	net     *fakeRecordNet
	log     *slog.Logger
	// peer is the libp2p identity test requests come from (RequesterNode); nodeKey is this
	// node's (Holder).
	peer     peer.ID
	peerKey  chain.PubKey
	nodePeer peer.ID
	nodeKey  chain.PubKey
}

// testPeer returns a fresh libp2p identity and its raw Ed25519 key.
func testPeer(t testing.TB) (peer.ID, chain.PubKey) {
	t.Helper()
	_, pub, err := p2pcrypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPublicKey(pub)
	require.NoError(t, err)
	k, err := NodeKeyOf(id)
	require.NoError(t, err)
	return id, k
}

func newRecFixture(t *testing.T) *recFixture {
	t.Helper()
	return newRecFixtureWith(t, replica.MempoolConfig{})
}

// newRecFixtureWith is newRecFixture with the replica's mempool bounds set.
func newRecFixtureWith(t *testing.T, mempool replica.MempoolConfig) *recFixture {
	t.Helper()
	return newRecFixtureParams(t, mempool, nil)
}

// newRecFixtureParams is newRecFixtureWith with the genesis parameters adjusted by set.
func newRecFixtureParams(t *testing.T, mempool replica.MempoolConfig, set func(*chain.Params)) *recFixture {
	t.Helper()
	return newRecFixtureGenesis(t, mempool, set, nil)
}

// newRecFixtureGenesis is newRecFixtureParams with edit applied to the whole genesis (nil: none).
func newRecFixtureGenesis(t *testing.T, mempool replica.MempoolConfig, set func(*chain.Params), edit func(*chain.Genesis)) *recFixture {
	t.Helper()
	key := testKey(t, "records-authority")
	licKey := testKey(t, "records-licensing-board")
	params := chain.DefaultParams()
	params.TimeoutProposeMs, params.TimeoutVoteMs, params.TimeoutDeltaMs, params.BlockIntervalMs = 400, 200, 100, 50
	if set != nil {
		set(&params)
	}
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
	dir := t.TempDir()
	f := &recFixture{
		t: t, g: g, ledger: newSoloLedger(t, g, key, mempool), licKey: licKey,
		licFile: filepath.Join(dir, "licence"), blobDir: filepath.Join(dir, "blobs"),
		net: &fakeRecordNet{}, log: log,
	}
	f.keys = f.newProviderKeys("this-node")
	f.peer, f.peerKey = testPeer(t)
	f.nodePeer, f.nodeKey = testPeer(t)
	lic := f.licence(f.keys)
	require.NoError(t, os.WriteFile(f.licFile, chain.Encode(&lic), 0o600))
	return f
}

// readLicence reads a licence file the fixture wrote (the node reads hex; this is raw CBOR).
func readLicence(path string) (*chain.Licence, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l chain.Licence
	if err := chain.DecodeCanonical("licence", data, 4096, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

func testKey(t *testing.T, name string) chain.PrivKey {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	k, err := chain.PrivKeyFromSeed(seed[:])
	require.NoError(t, err)
	return k
}

// sub is the fixture bound to a subtest's t.
func (f *recFixture) sub(t *testing.T) *recFixture {
	c := *f
	c.t = t
	return &c
}

func (f *recFixture) newProviderKeys(name string) *Keys {
	f.t.Helper()
	ek, err := envelope.GenerateKey(rand.Reader)
	require.NoError(f.t, err)
	return &Keys{Signing: testKey(f.t, "provider-"+name), Encryption: ek}
}

// nodeOf is the libp2p identity of a test provider's node, derived from its provider key.
func nodeOf(t testing.TB, k *Keys) (peer.ID, chain.PubKey) {
	t.Helper()
	seed := sha256.Sum256([]byte("node-of-" + k.ID().String()))
	sk, err := p2pcrypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	require.NoError(t, err)
	id, err := peer.IDFromPrivateKey(sk)
	require.NoError(t, err)
	key, err := NodeKeyOf(id)
	require.NoError(t, err)
	return id, key
}

func (f *recFixture) licence(k *Keys) chain.Licence {
	_, nodeKey := nodeOf(f.t, k) // the provider's libp2p identity
	if k == f.keys {
		nodeKey = f.nodeKey // this node: holders log only requests addressed to their own node key
	}
	l := chain.Licence{Role: chain.RoleProvider, Subject: k.Signing.Public(), NodeKey: nodeKey, Number: "MD-" + k.ID().String()[:8], Jurisdiction: "NL-ZH",
		NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	l.Sign(f.licKey, f.g.ChainID)
	return l
}

// newRecords builds a record service over the fixture's blob dir (not running).
func (f *recFixture) newRecords() *Service {
	f.t.Helper()
	r, err := New(Config{
		ChainID: f.g.ChainID, Keys: f.keys, Ledger: f.ledger, Net: f.net, BlobDir: f.blobDir,
		LicenceFile: f.licFile, ReadLicence: readLicence, Log: f.log, NodeKey: f.nodeKey,
	})
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = r.Close() }) // after Run's cleanup (registered later, runs first)
	return r
}

// running is a record service whose Run goroutine can be stopped.
type running struct {
	*Service
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(recWait):
		t.Fatal("Service.Run did not return")
	}
}

func (f *recFixture) run(r *Service) *running {
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{Service: r, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(rr.done); r.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		select {
		case <-rr.done:
		case <-time.After(recWait):
			f.t.Errorf("Service.Run did not return")
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

func (f *recFixture) view(fn func(view state.View)) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recWait)
	defer cancel()
	require.NoError(f.t, f.ledger.View(ctx, func(v state.View) error { fn(v); return nil }))
}

func (f *recFixture) provider(a chain.Address) *state.ProviderRecord {
	var p *state.ProviderRecord
	f.view(func(v state.View) { p, _ = state.Provider(v, a) })
	return p
}

func (f *recFixture) record(id chain.Hash) *state.RecordState {
	f.t.Helper()
	var rec *state.RecordState
	var err error
	f.view(func(v state.View) { rec, err = state.Record(v, id) })
	require.NoError(f.t, err)
	return rec
}

func (f *recFixture) access(id chain.Hash) *state.AccessRecord {
	f.t.Helper()
	var a *state.AccessRecord
	var err error
	f.view(func(v state.View) { a, err = state.Access(v, id) })
	require.NoError(f.t, err)
	return a
}

func (f *recFixture) tip() (uint64, int64) {
	f.t.Helper()
	var h uint64
	var ms int64
	var err error
	f.view(func(v state.View) { h, ms, err = state.Tip(v) })
	require.NoError(f.t, err)
	return h, ms
}

func (f *recFixture) nonce(a chain.Address) uint64 {
	f.t.Helper()
	var n uint64
	var err error
	f.view(func(v state.View) { n, err = state.Nonce(v, a) })
	require.NoError(f.t, err)
	return n
}

// submit signs body with key under its next free nonce (committed and pending), submits it and
// waits for its block. Callers make sure nothing else submits for key meanwhile.
func (f *recFixture) submit(key chain.PrivKey, kind chain.TxKind, body any) (*chain.Tx, uint64) {
	f.t.Helper()
	n, err := f.ledger.NextNonce(context.Background(), key.Public())
	require.NoError(f.t, err)
	tx := chain.NewTx(key, f.g.ChainID, kind, n, body)
	return tx, f.submitTx(tx)
}

func (f *recFixture) submitTx(tx *chain.Tx) uint64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recWait)
	defer cancel()
	_, ch, forget, err := f.ledger.Submit(ctx, tx)
	require.NoError(f.t, err, "submit %s", tx.Kind)
	defer forget()
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

// registerProvider registers another provider (a requester) with a licence from the board.
func (f *recFixture) registerProvider(name string) *Keys {
	f.t.Helper()
	k := f.newProviderKeys(name)
	f.submit(k.Signing, chain.TxRegisterProvider, &chain.RegisterProvider{Licence: f.licence(k), EncryptionKey: k.Encryption.Public().Bytes()})
	return k
}

// unassigned registers providers named name-0, name-1, ... until one is outside record id's
// assignment with slack, and returns it.
func (f *recFixture) unassigned(r *Service, id chain.Hash, name string) *Keys {
	f.t.Helper()
	rec := f.record(id)
	for i := range 32 {
		k := f.registerProvider(fmt.Sprintf("%s-%d", name, i))
		_, key := nodeOf(f.t, k)
		var a Assignment
		f.view(func(v state.View) {
			var err error
			a, err = r.assignment(v, rec, holdSlack)
			require.NoError(f.t, err)
		})
		if !a.Includes(key) {
			return k
		}
	}
	f.t.Fatal("every provider registered is assigned the record")
	return nil
}

// grant has patient consent to grantee reading every record for purpose TREAT until expires.
func (f *recFixture) grant(p *testPatient, grantee chain.Address, expiresMs int64) (chain.Hash, uint64) {
	f.t.Helper()
	tx, h := f.submit(p.key, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: grantee, Scope: chain.ConsentScope{Kind: chain.ScopeAll},
		Purpose: testPurpose, ExpiresMs: expiresMs})
	return tx.Hash(), h
}

// erase has the patient erase records.
func (f *recFixture) erase(p *testPatient, ids ...chain.Hash) {
	f.t.Helper()
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b chain.Hash) int { return bytes.Compare(a[:], b[:]) })
	f.submit(p.key, chain.TxRecordErase, &chain.RecordErase{Records: sorted})
}

// request is a signed access request by k for record id, issued at issued.
func (f *recFixture) request(k *Keys, id chain.Hash, issued time.Time) *chain.AccessRequest {
	var b [8]byte
	_, _ = rand.Read(b[:])
	req := &chain.AccessRequest{Role: "clinician", Record: id, RequesterNode: f.peerKey, Holder: f.nodeKey, Purpose: testPurpose,
		IssuedMs: issued.UnixMilli(), Nonce: binary.LittleEndian.Uint64(b[:])}
	req.Sign(k.Signing, f.g.ChainID)
	return req
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

// waitHeight waits until the chain is at least n blocks above its current height.
func (f *recFixture) waitBlocks(n uint64) {
	f.t.Helper()
	h0, _ := f.tip()
	f.waitFor("blocks", func() bool { h, _ := f.tip(); return h >= h0+n })
}

// pending is the journal's pending entries.
func pending(t *testing.T, r *Service) []chain.AccessEntry {
	t.Helper()
	es, err := r.journal.Pending()
	require.NoError(t, err)
	return es
}

// filesUnder counts the regular files below dir (none if it does not exist).
func filesUnder(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return n
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "node", "fhir", "testdata", name))
	require.NoError(t, err)
	return data
}
