package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/p2p/frame"
	"github.com/medledger/medledger/sync/blobs"
	"github.com/medledger/medledger/wallet/envelope"
)

// Errors the record service returns; the API maps them to status codes.
var (
	ErrRecordNotFound = errors.New("record not found")
	ErrRecordErased   = errors.New("record erased")
	ErrAccessRefused  = errors.New("access refused")
	ErrNotRegistered  = errors.New("not registered")
	ErrInvalidFHIR    = errors.New("invalid FHIR")
	ErrBadRequest     = errors.New("bad request")
)

// Timing of the record service's background work.
const (
	// commitWait bounds how long an import or a submitted transaction waits for its block.
	commitWait = 60 * time.Second
	// journalFlushEvery is how often pending access entries are (re)submitted.
	journalFlushEvery = time.Second
	// journalResubmitAfter is how long a submitted access entry may stay off the ledger before
	// it is submitted again (the ledger drops duplicates by request id).
	journalResubmitAfter = 15 * time.Second
	// maxRequestSkew is how far a request's IssuedMs may be from the holder's clock.
	maxRequestSkew = 10 * time.Minute
	// holderLookup bounds a DHT holder search.
	holderLookup = 3 * time.Second
	// pushRatePerPeer and pushBurstPerPeer pace replication pushes to one peer, well below the
	// blob server's per-peer limit (node.go: blobServerRate).
	pushRatePerPeer  = 40
	pushBurstPerPeer = 40
	pushWorkers      = 4
	// refusalLogEvery: repeated refusals of the same read by this node's own user (a client
	// polling for access) are logged once per interval, not once per poll.
	refusalLogEvery = time.Minute
	// reprovideEvery re-announces held records in the DHT, whose provider records expire after
	// 48 hours; the first round runs shortly after start.
	reprovideEvery = 12 * time.Hour
	// accessLogPayloadBudget keeps one access-log transaction's payload under the limit.
	accessLogPayloadBudget = chain.MaxPayloadSize - 4096
)

// RecordNet is what the record service needs from the libp2p host.
type RecordNet interface {
	LibP2P() host.Host
	Peers() []string
	Provide(ctx context.Context, key chain.Hash) error
	FindHolders(ctx context.Context, key chain.Hash, max int) ([]peer.ID, error)
}

// indexedRecord is what the node remembers of an anchor outside the state: enough to find a
// patient's records and to delete a blob after erasure (the state forgets the ciphertext hash).
// Nothing here identifies a person.
type indexedRecord struct {
	Patient        chain.Address
	Author         chain.Address
	CiphertextHash chain.Hash
}

// Records is the node's record service: FHIR import, sealing, blob storage and replication,
// fetches with consent checks and audit, and the reactions to committed consent and erasure
// transactions. Its index of records, consents and accesses per patient is rebuilt from the
// ledger at start.
type Records struct {
	chainID string
	keys    *ProviderKeys
	self    chain.Address
	keyID   chain.Hash
	backend Backend
	net     RecordNet
	blobs   *blobs.Store
	journal *blobs.Journal
	fhir    *fhir.Validator
	commits *commitHub
	licence string
	replica int
	log     *slog.Logger
	now     func() time.Time
	nodeKey chain.PubKey // raw Ed25519 key of this node's libp2p identity: requests are addressed to it

	txMu sync.Mutex // own transactions: nonce allocation and submission in order

	mu        sync.RWMutex
	indexed   uint64
	records   map[chain.Hash]indexedRecord
	byPatient map[chain.Address][]chain.Hash
	consents  map[chain.Address][]chain.Hash
	accesses  map[chain.Address][]chain.Hash
	seenReq   map[chain.Hash]bool

	submitted map[chain.Hash]time.Time // access entries submitted, by request id (flush goroutine only)
	flushNow  chan struct{}

	pushQ    chan pushJob
	provideQ chan chain.Hash
	pace     *frame.PeerLimits // replication pushes per peer
	limMu    sync.Mutex
	refused  map[refusalKey]time.Time // last logged own refusal (under limMu)
	used     map[chain.Hash]time.Time // request ids this holder has decided on, within the skew window (under limMu)
}

type refusalKey struct {
	record    chain.Hash
	purpose   string
	emergency bool
}

// RecordsConfig assembles a Records service.
type RecordsConfig struct {
	ChainID     string
	Keys        *ProviderKeys
	Backend     Backend
	Net         RecordNet
	BlobDir     string
	LicenceFile string
	Replicas    int
	Log         *slog.Logger
	Now         func() time.Time
	// NodeKey is the raw Ed25519 key of this node's libp2p identity; default: read from
	// Net.LibP2P().ID().
	NodeKey chain.PubKey
	commits *commitHub
}

// NewRecords opens the blob store and journal under cfg.BlobDir.
func NewRecords(cfg RecordsConfig) (*Records, error) {
	st, err := blobs.OpenStore(cfg.BlobDir)
	if err != nil {
		return nil, err
	}
	j, err := blobs.OpenJournal(cfg.BlobDir + "/journal")
	if err != nil {
		return nil, err
	}
	v, err := fhir.NewValidator()
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.commits == nil {
		cfg.commits = newCommitHub()
	}
	if cfg.NodeKey == (chain.PubKey{}) && cfg.Net != nil && cfg.Net.LibP2P() != nil {
		if cfg.NodeKey, err = nodeKeyOf(cfg.Net.LibP2P().ID()); err != nil {
			return nil, fmt.Errorf("records: this node's identity: %w", err)
		}
	}
	return &Records{nodeKey: cfg.NodeKey,
		chainID: cfg.ChainID, keys: cfg.Keys, self: cfg.Keys.ID(), keyID: cfg.Keys.Encryption.Public().KeyID(),
		backend: cfg.Backend, net: cfg.Net, blobs: st, journal: j, fhir: v, commits: cfg.commits,
		licence: cfg.LicenceFile, replica: cfg.Replicas, log: cfg.Log, now: cfg.Now,
		records: make(map[chain.Hash]indexedRecord), byPatient: make(map[chain.Address][]chain.Hash),
		consents: make(map[chain.Address][]chain.Hash), accesses: make(map[chain.Address][]chain.Hash),
		seenReq: make(map[chain.Hash]bool), submitted: make(map[chain.Hash]time.Time), flushNow: make(chan struct{}, 1),
		pushQ: make(chan pushJob, 1<<16), provideQ: make(chan chain.Hash, 1<<16),
		pace: frame.NewPeerLimits(pushRatePerPeer, pushBurstPerPeer), refused: make(map[refusalKey]time.Time), used: make(map[chain.Hash]time.Time),
	}, nil
}

// ProviderID is this node's provider id.
func (r *Records) ProviderID() chain.Address { return r.self }

// Run registers the provider if needed, follows committed blocks and flushes the access journal
// until ctx ends.
func (r *Records) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(5 + pushWorkers)
	for range pushWorkers {
		go func() { defer wg.Done(); r.pushWorker(ctx) }()
	}
	go func() { defer wg.Done(); r.provideWorker(ctx) }()
	go func() { defer wg.Done(); r.reprovideLoop(ctx) }()
	go func() { defer wg.Done(); r.registerSelf(ctx) }()
	go func() { defer wg.Done(); r.follow(ctx) }()
	go func() { defer wg.Done(); r.flushLoop(ctx) }()
	wg.Wait()
}

// query runs f on the replica's goroutine with the committed state.
func (r *Records) query(ctx context.Context, f func(view state.View, rep *replica.Replica) error) error {
	var ferr error
	if err := r.backend.Query(ctx, func(rep *replica.Replica) { ferr = f(rep.Store().State(), rep) }); err != nil {
		return err
	}
	return ferr
}

func tipTime(view state.View) (int64, error) {
	_, t, err := state.Tip(view)
	return t, err
}

// submit signs body with the provider key under the next free nonce and submits it. With
// wait, it returns after the transaction commits.
func (r *Records) submit(ctx context.Context, kind chain.TxKind, body any, wait bool) (chain.Hash, uint64, error) {
	h, ch, cancel, err := r.submitExpect(ctx, kind, body)
	if err != nil {
		return chain.Hash{}, 0, err
	}
	defer cancel()
	if !wait {
		return h, 0, nil
	}
	wctx, stop := context.WithTimeout(ctx, commitWait)
	defer stop()
	height, err := waitCommit(wctx, ch)
	if err != nil {
		return h, 0, fmt.Errorf("%s transaction %s not committed: %w", kind, h.Short(), err)
	}
	return h, height, nil
}

// registerSelf registers the provider from its licence file, once, retrying until it is on
// the ledger. Without a licence file the node runs unregistered (it can read nothing).
func (r *Records) registerSelf(ctx context.Context) {
	lic, err := ReadLicenceFile(r.licence)
	if errors.Is(err, os.ErrNotExist) {
		r.log.Info("no provider licence: this node is not a registered provider", "file", r.licence, "provider_id", r.self)
		return
	}
	if err != nil {
		r.log.Error("provider licence unreadable", "err", err)
		return
	}
	for {
		registered := false
		_ = r.query(ctx, func(view state.View, _ *replica.Replica) error {
			p, err := state.Provider(view, r.self)
			registered = err == nil && p != nil
			return nil
		})
		if registered {
			r.log.Info("provider registered", "provider_id", r.self)
			return
		}
		body := &chain.RegisterProvider{Licence: *lic, EncryptionKey: r.keys.Encryption.Public().Bytes()}
		if _, _, err := r.submit(ctx, chain.TxRegisterProvider, body, true); err != nil && ctx.Err() == nil {
			r.log.Warn("provider registration not committed yet; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// follow indexes every committed block in order and reacts to consent and erasure.
func (r *Records) follow(ctx context.Context) {
	wake, unsubscribe := r.commits.subscribe()
	defer unsubscribe()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		for {
			var b *chain.Block
			var tip uint64
			err := r.backend.Query(ctx, func(rep *replica.Replica) {
				tip = rep.Height()
				r.mu.RLock()
				next := r.indexed + 1
				r.mu.RUnlock()
				if next <= tip {
					b, _ = rep.Store().Block(next)
				}
			})
			if err != nil || b == nil {
				break
			}
			r.indexBlock(b)
			r.react(ctx, b)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// indexBlock adds a block's records, consents and accesses to the per-patient index.
func (r *Records) indexBlock(b *chain.Block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tx := range b.Txs {
		body, err := chain.DecodePayload(tx.Kind, tx.Payload)
		if err != nil {
			continue
		}
		switch v := body.(type) {
		case *chain.AnchorRecords:
			for _, a := range v.Records {
				if _, ok := r.records[a.ID]; ok {
					continue
				}
				r.records[a.ID] = indexedRecord{Patient: a.Patient, Author: tx.Signer.Address(), CiphertextHash: a.CiphertextHash}
				r.byPatient[a.Patient] = append(r.byPatient[a.Patient], a.ID)
			}
		case *chain.ConsentGrant:
			p := tx.Signer.Address()
			r.consents[p] = append(r.consents[p], tx.Hash())
		case *chain.EmergencyAccess:
			r.consents[v.Patient] = append(r.consents[v.Patient], tx.Hash())
		case *chain.AccessLog:
			for i := range v.Entries {
				r.indexAccessLocked(&v.Entries[i].Request)
			}
		case *chain.AccessReceipts:
			for i := range v.Receipts {
				r.indexAccessLocked(&v.Receipts[i].Request)
			}
		}
	}
	r.indexed = b.Header.Height
}

// indexAccessLocked adds a request logged by its holder or received by its requester to its
// patient's access list, once.
func (r *Records) indexAccessLocked(req *chain.AccessRequest) {
	id := req.ID()
	rec, ok := r.records[req.Record]
	if !ok || r.seenReq[id] {
		return
	}
	r.seenReq[id] = true
	r.accesses[rec.Patient] = append(r.accesses[rec.Patient], id)
}

// react does what a holder must after a block: wrap data keys for new grantees of records this
// node authored, and delete erased records' blobs and acknowledge.
func (r *Records) react(ctx context.Context, b *chain.Block) {
	var erasedHeld []chain.Hash
	for _, tx := range b.Txs {
		body, err := chain.DecodePayload(tx.Kind, tx.Payload)
		if err != nil {
			continue
		}
		switch v := body.(type) {
		case *chain.ConsentGrant:
			r.wrapForGrantee(ctx, tx.Signer.Address(), v.Grantee)
		case *chain.EmergencyAccess:
			r.wrapForGrantee(ctx, v.Patient, tx.Signer.Address())
		case *chain.RecordErase:
			for _, id := range v.Records {
				if r.shred(id) {
					erasedHeld = append(erasedHeld, id)
				}
			}
		}
	}
	if len(erasedHeld) > 0 {
		r.ackErase(ctx, erasedHeld)
	}
}

// shred deletes an erased record's ciphertext and envelopes; it reports whether this node held
// (or authored) the record.
func (r *Records) shred(id chain.Hash) bool {
	r.mu.RLock()
	rec, ok := r.records[id]
	r.mu.RUnlock()
	if !ok {
		return false
	}
	// Envelopes are only ever stored next to a ciphertext, so the ciphertext says who holds it.
	held := rec.Author == r.self || r.blobs.Has(rec.CiphertextHash)
	// The blob goes only if the ledger says it is this record's: another record's ciphertext
	// must survive this erasure whatever the local index says.
	var owner chain.Hash
	if err := r.query(context.Background(), func(view state.View, _ *replica.Replica) error {
		var err error
		owner, err = state.RecordOfCiphertext(view, rec.CiphertextHash)
		return err
	}); err != nil || owner != id {
		r.log.Error("erase: blob not deleted: not this record's on the ledger", "record", id.Short(), "owner", owner.Short(), "err", err)
		return false
	}
	if err := r.blobs.DeleteRecord(id, rec.CiphertextHash); err != nil {
		r.log.Error("erase: delete blob", "record", id.Short(), "err", err)
		return false
	}
	return held
}

func (r *Records) ackErase(ctx context.Context, ids []chain.Hash) {
	var todo []chain.Hash
	_ = r.query(ctx, func(view state.View, _ *replica.Replica) error {
		for _, id := range ids {
			rec, err := state.Record(view, id)
			if err != nil || rec == nil || !rec.Erased || slices.Contains(rec.Acks, r.self) {
				continue
			}
			todo = append(todo, id)
		}
		return nil
	})
	sort.Slice(todo, func(i, j int) bool { return string(todo[i][:]) < string(todo[j][:]) })
	for len(todo) > 0 {
		n := min(len(todo), chain.MaxEraseRecords)
		if _, _, err := r.submit(ctx, chain.TxEraseAck, &chain.EraseAck{Records: todo[:n]}, false); err != nil {
			r.log.Warn("erase acknowledgement not submitted", "err", err)
			return
		}
		todo = todo[n:]
	}
}

// wrapForGrantee wraps the data key of every record this node authored for patient to grantee,
// where the ledger says grantee may now read it, and pushes the new envelopes to replicas.
func (r *Records) wrapForGrantee(ctx context.Context, patient, grantee chain.Address) {
	r.mu.RLock()
	var mine []chain.Hash
	for _, id := range r.byPatient[patient] {
		if r.records[id].Author == r.self {
			mine = append(mine, id)
		}
	}
	r.mu.RUnlock()
	if len(mine) == 0 {
		return
	}
	type job struct {
		rec *state.RecordState
	}
	var jobs []job
	var to envelope.PublicKey
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		prov, err := state.Provider(view, grantee)
		if err != nil || prov == nil {
			return fmt.Errorf("grantee %s is not a registered provider", grantee)
		}
		if to, err = envelope.ParsePublicKey(prov.EncryptionKey); err != nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		for _, id := range mine {
			rec, err := state.Record(view, id)
			if err != nil || rec == nil || rec.Erased {
				continue
			}
			readers, err := state.Readers(view, now, rec)
			if err != nil || !slices.Contains(readers, grantee) {
				continue
			}
			jobs = append(jobs, job{rec})
		}
		return nil
	})
	if err != nil {
		r.log.Warn("wrap for grantee", "grantee", grantee, "err", err)
		return
	}
	wrapped := 0
	for _, j := range jobs {
		if _, err := r.blobs.Envelope(j.rec.ID, to.KeyID()); err == nil {
			continue
		}
		env, err := r.wrap(j.rec, to)
		if err != nil {
			r.log.Warn("wrap for grantee", "record", j.rec.ID.Short(), "err", err)
			continue
		}
		wrapped++
		r.pushAsync(j.rec.ID, j.rec.CiphertextHash, nil, []envelope.Envelope{env})
	}
	if wrapped > 0 {
		r.log.Info("wrapped data keys for a new grantee", "grantee", grantee, "records", wrapped)
	}
}

// wrap opens this node's own envelope of rec and wraps the data key to to.
func (r *Records) wrap(rec *state.RecordState, to envelope.PublicKey) (envelope.Envelope, error) {
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		return envelope.Envelope{}, err
	}
	own, err := r.blobs.Envelope(rec.ID, r.keyID)
	if err != nil {
		return envelope.Envelope{}, err
	}
	s := &envelope.Sealed{Ciphertext: ct, Envelopes: []envelope.Envelope{own}}
	env, err := envelope.WrapFor(r.keys.Encryption, s, r.context(rec), to)
	if err != nil {
		return envelope.Envelope{}, err
	}
	if err := r.blobs.PutEnvelope(rec.ID, env); err != nil {
		return envelope.Envelope{}, err
	}
	return env, nil
}

func (r *Records) context(rec *state.RecordState) envelope.Context {
	return envelope.Context{ChainID: r.chainID, RecordID: rec.ID, Version: rec.RecVersion}
}

// ImportedRecord is one record an import anchored.
type ImportedRecord struct {
	ID           chain.Hash `json:"id"`
	ResourceType string     `json:"resourceType"`
	Version      uint64     `json:"version"`
	Height       uint64     `json:"height"`
}

// sealedRecord is a record sealed and stored locally, waiting for its anchor.
type sealedRecord struct {
	anchor chain.RecordAnchor
	sealed *envelope.Sealed
}

// Import validates FHIR JSON (one resource or a Bundle) for one patient, seals each resource
// to the patient, this provider and every provider the patient's consents currently cover,
// stores the ciphertexts, anchors them and waits for the anchors to commit. Nothing is anchored
// unless every resource is valid.
func (r *Records) Import(ctx context.Context, patient chain.Address, data []byte) ([]ImportedRecord, error) {
	resources, err := r.fhir.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	fid, err := fhir.SinglePatient(resources)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	if err := fhir.AssignPatient(resources, fid); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	recs := make([]sealedRecord, len(resources))
	for i, res := range resources {
		var id chain.Hash
		if _, err := rand.Read(id[:]); err != nil {
			return nil, err
		}
		recs[i].anchor = chain.RecordAnchor{ID: id, Patient: patient, ResourceType: res.ResourceType, Version: 1}
	}
	// Each resource is stored on its own, so references between the document's entries by
	// fullUrl become Type/id, and a resource without an id is named by its record id.
	resources, err = fhir.Standalone(resources, func(i int) string { return recs[i].anchor.ID.String() })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	plain := make([][]byte, len(resources))
	for i, res := range resources {
		plain[i] = res.JSON
	}
	return r.sealAndAnchor(ctx, recs, plain)
}

// Amend stores a new version of record id: the FHIR resource replaces it, the old version stays
// readable to those with consent. The resource must have the same type.
func (r *Records) Amend(ctx context.Context, id chain.Hash, data []byte) (*ImportedRecord, error) {
	resources, err := r.fhir.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	if len(resources) != 1 {
		return nil, fmt.Errorf("%w: an amendment is one resource, got %d", ErrInvalidFHIR, len(resources))
	}
	var prev *state.RecordState
	if err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		prev, err = state.Record(view, id)
		return err
	}); err != nil {
		return nil, err
	}
	switch {
	case prev == nil:
		return nil, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	case prev.Erased:
		return nil, fmt.Errorf("%w: %s", ErrRecordErased, id)
	case !prev.SupersededBy.IsZero():
		return nil, fmt.Errorf("%w: record %s is already superseded by %s; amend the latest version", ErrAccessRefused, id, prev.SupersededBy)
	case resources[0].ResourceType != prev.ResourceType:
		return nil, fmt.Errorf("%w: record %s is a %s, the amendment a %s", ErrInvalidFHIR, id, prev.ResourceType, resources[0].ResourceType)
	}
	var nid chain.Hash
	if _, err := rand.Read(nid[:]); err != nil {
		return nil, err
	}
	recs := []sealedRecord{{anchor: chain.RecordAnchor{ID: nid, Patient: prev.Patient, ResourceType: prev.ResourceType, Version: prev.RecVersion + 1, Supersedes: id}}}
	out, err := r.sealAndAnchor(ctx, recs, [][]byte{resources[0].JSON})
	if err != nil {
		return nil, err
	}
	return &out[0], nil
}

func (r *Records) sealAndAnchor(ctx context.Context, recs []sealedRecord, plain [][]byte) ([]ImportedRecord, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: nothing to import", ErrInvalidFHIR)
	}
	patient := recs[0].anchor.Patient
	// Recipients come from the ledger as of now; a grant committed later is handled by
	// wrapForGrantee when this node sees it.
	recipients := make([][]envelope.Recipient, len(recs))
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		pat, err := state.Patient(view, patient)
		if err != nil {
			return err
		}
		if pat == nil {
			return fmt.Errorf("%w: patient %s is not registered on the ledger", ErrNotRegistered, patient)
		}
		me, err := state.Provider(view, r.self)
		if err != nil {
			return err
		}
		if me == nil {
			return fmt.Errorf("%w: this node's provider %s is not registered yet", ErrNotRegistered, r.self)
		}
		pk, err := envelope.ParsePublicKey(pat.EncryptionKey)
		if err != nil {
			return fmt.Errorf("patient encryption key: %w", err)
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		keys := map[chain.Address]envelope.PublicKey{}
		for i := range recs {
			a := &recs[i].anchor
			root := a.ID
			if a.Version > 1 {
				prev, err := state.Record(view, a.Supersedes)
				if err != nil || prev == nil {
					return fmt.Errorf("%w: %s", ErrRecordNotFound, a.Supersedes)
				}
				root = prev.Root
			}
			probe := &state.RecordState{ID: a.ID, Patient: patient, Author: r.self, ResourceType: a.ResourceType, RecVersion: a.Version, Root: root}
			readers, err := state.Readers(view, now, probe)
			if err != nil {
				return err
			}
			list := []envelope.Recipient{{Key: pk}, {Key: r.keys.Encryption.Public()}}
			for _, g := range readers {
				if g == r.self {
					continue
				}
				k, ok := keys[g]
				if !ok {
					prov, err := state.Provider(view, g)
					if err != nil || prov == nil {
						continue
					}
					if k, err = envelope.ParsePublicKey(prov.EncryptionKey); err != nil {
						continue
					}
					keys[g] = k
				}
				list = append(list, envelope.Recipient{Key: k})
			}
			recipients[i] = list
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Sealing (HPKE per recipient) runs on every core; the files are then written in one batch
	// with one fsync per directory rather than per file.
	sealErrs := make([]error, len(recs))
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(recs))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(recs); i += workers {
				a := &recs[i].anchor
				recs[i].sealed, sealErrs[i] = envelope.Seal(rand.Reader, plain[i], envelope.Context{ChainID: r.chainID, RecordID: a.ID, Version: a.Version}, recipients[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(sealErrs...); err != nil {
		return nil, err
	}
	files := make([]blobs.RecordFiles, len(recs))
	for i := range recs {
		files[i] = blobs.RecordFiles{Record: recs[i].anchor.ID, Ciphertext: recs[i].sealed.Ciphertext, Envelopes: recs[i].sealed.Envelopes}
	}
	hashes, err := r.blobs.PutBatch(files)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].anchor.CiphertextHash, recs[i].anchor.Size = hashes[i], uint64(len(recs[i].sealed.Ciphertext))
	}
	out := make([]ImportedRecord, 0, len(recs))
	type pending struct {
		ch     chan txOutcome
		cancel func()
		from   int
		to     int
	}
	// Submit every chunk first, then wait: the chunks can share blocks.
	var waits []pending
	defer func() {
		for _, w := range waits {
			w.cancel()
		}
	}()
	for from := 0; from < len(recs); from += chain.MaxAnchorsPerTx {
		to := min(from+chain.MaxAnchorsPerTx, len(recs))
		body := &chain.AnchorRecords{}
		for _, rec := range recs[from:to] {
			body.Records = append(body.Records, rec.anchor)
		}
		_, ch, cancel, err := r.submitExpect(ctx, chain.TxAnchorRecords, body)
		if err != nil {
			return nil, err
		}
		waits = append(waits, pending{ch, cancel, from, to})
	}
	wctx, stop := context.WithTimeout(ctx, commitWait)
	defer stop()
	for _, w := range waits {
		h, err := waitCommit(wctx, w.ch)
		if err != nil {
			return nil, fmt.Errorf("anchors not committed: %w", err)
		}
		for _, rec := range recs[w.from:w.to] {
			out = append(out, ImportedRecord{ID: rec.anchor.ID, ResourceType: rec.anchor.ResourceType, Version: rec.anchor.Version, Height: h})
		}
	}
	for _, rec := range recs {
		r.pushAsync(rec.anchor.ID, rec.anchor.CiphertextHash, rec.sealed.Ciphertext, rec.sealed.Envelopes)
	}
	return out, nil
}

// submitExpect signs body with the provider key under the next free nonce, submits it, and
// returns its hash and a channel that reports its outcome (cancel forgets it). When the mempool
// refuses it for load (see backlogged: typically this node's own backlog, an import's earlier
// chunks filling the signer's quota), it waits for the next commit and tries again, under the
// then next free nonce, until ctx ends (or commitWait passes, if ctx has no deadline); then it
// returns the refusal.
func (r *Records) submitExpect(ctx context.Context, kind chain.TxKind, body any) (chain.Hash, chan txOutcome, func(), error) {
	if _, ok := ctx.Deadline(); !ok {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, commitWait)
		defer stop()
	}
	// Subscribed before the first try, so a commit between a refusal and the wait is not missed.
	wake, unsubscribe := r.commits.subscribe()
	defer unsubscribe()
	for {
		h, ch, cancel, err := r.trySubmit(ctx, kind, body)
		if err == nil || !backlogged(err) {
			return h, ch, cancel, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return chain.Hash{}, nil, nil, fmt.Errorf("%w (still refused when the deadline came)", err)
		}
	}
}

// backlogged reports whether the mempool refused one of this node's own transactions for load
// rather than for what it is: the pool, the signer's quota, the registration quota, or a nonce
// beyond the window (own nonces come from Mempool.NextNonce, one past the pending run, so a gap
// means the signer's pending run fills the window). A commit makes room.
func backlogged(err error) bool {
	return errors.Is(err, replica.ErrSignerFull) || errors.Is(err, replica.ErrMempoolFull) ||
		errors.Is(err, replica.ErrRegistrationsFull) || errors.Is(err, replica.ErrNonceGap)
}

func (r *Records) trySubmit(ctx context.Context, kind chain.TxKind, body any) (chain.Hash, chan txOutcome, func(), error) {
	r.txMu.Lock()
	defer r.txMu.Unlock()
	var nonce uint64
	pub := r.keys.Signing.Public()
	err := r.query(ctx, func(view state.View, rep *replica.Replica) error {
		committed, err := state.Nonce(view, r.self)
		nonce = rep.Mempool().NextNonce(pub, committed)
		return err
	})
	if err != nil {
		return chain.Hash{}, nil, nil, err
	}
	tx := chain.NewTx(r.keys.Signing, r.chainID, kind, nonce, body)
	ch, cancel := r.commits.expect(tx.Hash())
	h, err := r.backend.Submit(ctx, tx)
	if err != nil {
		cancel()
		return chain.Hash{}, nil, nil, fmt.Errorf("submit %s: %w", kind, err)
	}
	return h, ch, cancel, nil
}

// pushJob is one record (or envelope update) waiting to be pushed to its replicas.
type pushJob struct {
	id, hash   chain.Hash
	ciphertext []byte // nil for an envelope-only update
	envs       []envelope.Envelope
}

// pushAsync queues a record for replication to up to Replicas peers and, when it carries the
// ciphertext, for announcement in the DHT. The import has already committed; a replica that
// misses the push is repaired by nothing yet (see docs/records.md).
func (r *Records) pushAsync(id, hash chain.Hash, ciphertext []byte, envs []envelope.Envelope) {
	select {
	case r.pushQ <- pushJob{id: id, hash: hash, ciphertext: ciphertext, envs: envs}:
	default:
		r.log.Warn("replication queue full: record not replicated", "record", id.Short())
	}
}

// provideAsync queues a DHT announcement; a full queue drops it (the periodic re-announcement
// catches up).
func (r *Records) provideAsync(id chain.Hash) {
	select {
	case r.provideQ <- id:
	default:
	}
}

// pushWorker replicates queued records. Pushes to one peer are paced below the blob server's
// per-peer rate limit: an import of thousands of records must not look like abuse and get this
// node struck and banned by its peers.
func (r *Records) pushWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-r.pushQ:
			r.replicate(ctx, job)
		}
	}
}

func (r *Records) provideWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-r.provideQ:
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := r.net.Provide(pctx, id); err != nil && ctx.Err() == nil {
				r.log.Debug("provide record", "record", id.Short(), "err", err)
			}
			cancel()
		}
	}
}

func (r *Records) replicate(ctx context.Context, job pushJob) {
	if job.ciphertext != nil {
		r.provideAsync(job.id)
	}
	req := &blobs.PushRequest{Record: job.id, CiphertextHash: job.hash, Ciphertext: job.ciphertext, Envelopes: job.envs}
	req.Sign(r.keys.Signing, r.chainID)
	for _, p := range r.replicaPeers(job.id) {
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = r.pace.Wait(ctx, p); err != nil {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = blobs.Push(pctx, r.net.LibP2P(), r.chainID, p, req)
			cancel()
			if err == nil || errors.Is(err, blobs.ErrRefused) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second << attempt):
			}
		}
		if err != nil {
			r.log.Warn("replicate record", "record", job.id.Short(), "peer", p, "err", err)
		}
	}
}

// replicaPeers chooses the record's replica holders among connected peers: the Replicas peers
// closest to the record id by XOR of hashes, so every push of one record goes to the same nodes
// while the peer set is stable.
func (r *Records) replicaPeers(id chain.Hash) []peer.ID {
	if r.replica == 0 {
		return nil
	}
	var ps []peer.ID
	for _, s := range r.net.Peers() {
		if p, err := peer.Decode(s); err == nil {
			ps = append(ps, p)
		}
	}
	dist := func(p peer.ID) chain.Hash {
		h := chain.Sum256([]byte(p))
		for i := range h {
			h[i] ^= id[i]
		}
		return h
	}
	sort.Slice(ps, func(i, j int) bool { a, b := dist(ps[i]), dist(ps[j]); return string(a[:]) < string(b[:]) })
	if len(ps) > r.replica {
		ps = ps[:r.replica]
	}
	return ps
}

// Push is the blob protocol's store handler: it keeps a copy of a record its author pushes, once
// the anchor is on this node's ledger and the ciphertext matches it.
func (r *Records) Push(ctx context.Context, from peer.ID, req *blobs.PushRequest) error {
	var rec *state.RecordState
	var err error
	if err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		rec, err = state.Record(view, req.Record)
		return err
	}); err != nil {
		return err
	}
	switch {
	case rec == nil:
		return fmt.Errorf("%w: record %s is not anchored on this node's ledger yet", blobs.ErrNotFound, req.Record.Short())
	case rec.Erased:
		// Also stops a replayed push from bringing an erased record back.
		return fmt.Errorf("%w: record %s is erased", blobs.ErrRefused, req.Record.Short())
	case rec.Author != req.Sender.Address():
		return fmt.Errorf("%w: only the author may push record %s", blobs.ErrRefused, req.Record.Short())
	case rec.CiphertextHash != req.CiphertextHash:
		return fmt.Errorf("%w: ciphertext hash does not match the anchor of record %s", blobs.ErrRefused, req.Record.Short())
	}
	if len(req.Ciphertext) > 0 {
		if got := chain.Sum256(req.Ciphertext); got != rec.CiphertextHash {
			return fmt.Errorf("%w: ciphertext does not hash to the anchor of record %s", blobs.ErrRefused, req.Record.Short())
		}
		if _, err := r.blobs.PutBatch([]blobs.RecordFiles{{Record: rec.ID, Ciphertext: req.Ciphertext, Envelopes: req.Envelopes}}); err != nil {
			return err
		}
		r.provideAsync(rec.ID)
		return nil
	}
	if !r.blobs.Has(rec.CiphertextHash) {
		return fmt.Errorf("%w: no copy of record %s here for these envelopes", blobs.ErrNotFound, req.Record.Short())
	}
	for _, e := range req.Envelopes {
		if err := r.blobs.PutEnvelope(rec.ID, e); err != nil {
			return err
		}
	}
	return nil
}

// Fetch is the blob protocol's fetch handler. The ledger decides: the requester must be a
// registered provider holding a current consent (or emergency access) for this record and
// purpose. Every decision on a record held here is journalled durably before the answer goes
// out, and the journal reaches the ledger even across a crash.
func (r *Records) Fetch(ctx context.Context, from peer.ID, req *chain.AccessRequest) *blobs.FetchResponse {
	refuse := func(st blobs.Status, reason string) *blobs.FetchResponse {
		return &blobs.FetchResponse{Status: st, Reason: reason}
	}
	var rec *state.RecordState
	var prov *state.ProviderRecord
	var cerr error
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		var err error
		if rec, err = state.Record(view, req.Record); err != nil || rec == nil {
			return err
		}
		if prov, err = state.Provider(view, req.Requester.Address()); err != nil || prov == nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		_, cerr = state.CheckAccess(view, now, req.Requester.Address(), rec, req.Purpose, req.Emergency)
		return nil
	})
	switch {
	case err != nil:
		return refuse(blobs.StatusError, "ledger unavailable")
	case rec == nil:
		return refuse(blobs.StatusNotFound, "no such record on this node's ledger")
	case rec.Erased:
		return refuse(blobs.StatusNotFound, "record erased")
	case !r.blobs.Has(rec.CiphertextHash):
		return refuse(blobs.StatusNotFound, "not held here")
	case prov == nil:
		return refuse(blobs.StatusRefused, "requester is not a registered provider")
	}
	// A request is good only from the node it names and at the holder it names: a copy taken
	// from the ledger, or sent to several holders, is refused before it costs an entry.
	if k, kerr := nodeKeyOf(from); kerr != nil || k != req.RequesterNode {
		return refuse(blobs.StatusRefused, "request is bound to another requester node")
	}
	if req.Holder != r.nodeKey {
		return refuse(blobs.StatusRefused, "request is addressed to another holder")
	}
	// Compared in milliseconds without subtracting the request's value: a far-off IssuedMs must
	// not overflow into a small skew.
	if now, maxMs := r.now().UnixMilli(), maxRequestSkew.Milliseconds(); req.IssuedMs < now-maxMs || req.IssuedMs > now+maxMs {
		return refuse(blobs.StatusRefused, "request time too far from the holder's clock")
	}
	if !r.firstUse(req.ID()) {
		// One signed request, one read: a replay within the time window would be served
		// without a ledger entry of its own.
		return refuse(blobs.StatusRefused, "request already used: sign a new one")
	}
	if cerr != nil {
		reason := truncateReason(consentReason(cerr))
		if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessRefused, Reason: reason}); err != nil {
			return refuse(blobs.StatusError, "audit journal unavailable")
		}
		return refuse(blobs.StatusRefused, reason)
	}
	keyID := envelope.KeyIDOf(prov.EncryptionKey)
	env, err := r.blobs.Envelope(rec.ID, keyID)
	if err != nil && rec.Author == r.self {
		to, perr := envelope.ParsePublicKey(prov.EncryptionKey)
		if perr == nil {
			env, err = r.wrap(rec, to)
		}
	}
	if err != nil {
		return refuse(blobs.StatusNotFound, "no key envelope for the requester here")
	}
	// Served as stored: the fetcher checks the hash against the anchor, so a damaged or
	// tampered copy is caught there and another holder is tried.
	ct, err := os.ReadFile(r.blobs.Path(rec.CiphertextHash))
	if err != nil {
		return refuse(blobs.StatusNotFound, "not held here")
	}
	if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessServed}); err != nil {
		return refuse(blobs.StatusError, "audit journal unavailable")
	}
	return &blobs.FetchResponse{Status: blobs.StatusOK, Ciphertext: ct, Envelopes: []envelope.Envelope{env}}
}

// logAccess journals an access entry durably and wakes the flusher.
func (r *Records) logAccess(e chain.AccessEntry) error {
	if err := r.journal.Add(e); err != nil {
		r.log.Error("access journal", "err", err)
		return err
	}
	select {
	case r.flushNow <- struct{}{}:
	default:
	}
	return nil
}

func (r *Records) flushLoop(ctx context.Context) {
	t := time.NewTicker(journalFlushEvery)
	defer t.Stop()
	for {
		r.flushJournal(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.flushNow:
		}
	}
}

// flushJournal submits journalled access entries that are not on the ledger yet and forgets
// those that are.
func (r *Records) flushJournal(ctx context.Context) {
	pending, err := r.journal.Pending()
	if err != nil {
		r.log.Error("access journal", "err", err)
		return
	}
	if len(pending) == 0 {
		return
	}
	registered := false
	var todo []chain.AccessEntry
	err = r.query(ctx, func(view state.View, _ *replica.Replica) error {
		me, err := state.Provider(view, r.self)
		registered = err == nil && me != nil
		for _, e := range pending {
			id := e.Request.ID()
			a, err := state.Access(view, id)
			if err != nil {
				return err
			}
			if a != nil {
				if err := r.journal.Remove(id); err != nil {
					return err
				}
				delete(r.submitted, id)
				continue
			}
			if t, ok := r.submitted[id]; ok && r.now().Sub(t) < journalResubmitAfter {
				continue
			}
			if e.Outcome == chain.AccessRefused {
				// The ledger keeps one refusal per requester and record per window and skips
				// the rest: such an entry would never appear, so it leaves the journal.
				if skip, err := r.refusalThrottled(view, &e); err != nil {
					return err
				} else if skip {
					if err := r.journal.Remove(id); err != nil {
						return err
					}
					delete(r.submitted, id)
					continue
				}
			}
			todo = append(todo, e)
		}
		return nil
	})
	if err != nil || len(todo) == 0 || !registered {
		return
	}
	for len(todo) > 0 {
		body := &chain.AccessLog{}
		size := 0
		for len(todo) > 0 && len(body.Entries) < chain.MaxAccessEntriesPerTx {
			n := len(chain.Encode(&todo[0]))
			if size+n > accessLogPayloadBudget && len(body.Entries) > 0 {
				break
			}
			body.Entries = append(body.Entries, todo[0])
			size += n
			todo = todo[1:]
		}
		if _, _, err := r.submit(ctx, chain.TxAccessLog, body, false); err != nil {
			r.log.Warn("access log not submitted; will retry", "entries", len(body.Entries), "err", err)
			return
		}
		for _, e := range body.Entries {
			r.submitted[e.Request.ID()] = r.now()
		}
	}
}

// refusalThrottled reports whether the ledger would skip a refused entry now.
func (r *Records) refusalThrottled(view state.View, e *chain.AccessEntry) (bool, error) {
	rec, err := state.Record(view, e.Request.Record)
	if err != nil || rec == nil {
		return false, err
	}
	_, now, err := state.Tip(view)
	if err != nil {
		return false, err
	}
	return state.RefusalThrottled(view, e.Request.Requester.Address(), rec, now)
}

// ReadResult is a decrypted record.
type ReadResult struct {
	Record *state.RecordState
	JSON   []byte
	Holder string // "local" or the peer id that served it
}

// Read fetches (or finds locally), verifies and decrypts a record for this provider. The node
// enforces the ledger's consent state for its own users first: without a current consent (or
// emergency access) it refuses even if it holds a copy and an envelope. Every read, local or
// remote, leaves an access entry on the ledger.
func (r *Records) Read(ctx context.Context, id chain.Hash, purpose string, emergency bool) (*ReadResult, error) {
	var rec *state.RecordState
	var cerr error
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		var err error
		if rec, err = state.Record(view, id); err != nil || rec == nil {
			return err
		}
		me, err := state.Provider(view, r.self)
		if err != nil {
			return err
		}
		if me == nil {
			return fmt.Errorf("%w: this node's provider %s is not registered yet", ErrNotRegistered, r.self)
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		_, cerr = state.CheckAccess(view, now, r.self, rec, purpose, emergency)
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case rec == nil:
		return nil, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	case rec.Erased:
		return nil, fmt.Errorf("%w: %s was erased at the patient's request", ErrRecordErased, id)
	}
	req := r.newRequest(id, purpose, emergency, r.nodeKey) // for this node as the holder
	if cerr != nil {
		// This node refuses its own user as any holder would, and the attempt is audited too
		// (once per refusalLogEvery for the same read, so polling cannot flood the ledger).
		if r.shouldLogRefusal(refusalKey{id, purpose, emergency}) {
			if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessRefused, Reason: truncateReason(consentReason(cerr))}); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrAccessRefused, consentReason(cerr))
	}

	ct, env, holder, err := r.readLocal(rec, req)
	if err != nil {
		ct, env, holder, err = r.fetchRemote(ctx, rec, req)
		if err != nil {
			return nil, err
		}
	}
	s := &envelope.Sealed{Ciphertext: ct, Envelopes: []envelope.Envelope{env}}
	plain, err := envelope.Open(r.keys.Encryption, s, r.context(rec))
	if err != nil {
		return nil, fmt.Errorf("decrypt record %s: %w", id.Short(), err)
	}
	return &ReadResult{Record: rec, JSON: plain, Holder: holder}, nil
}

// readLocal serves a read from this node's own copy, journalling it like any served fetch.
func (r *Records) readLocal(rec *state.RecordState, req *chain.AccessRequest) ([]byte, envelope.Envelope, string, error) {
	env, err := r.blobs.Envelope(rec.ID, r.keyID)
	if err != nil {
		return nil, env, "", err
	}
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		if errors.Is(err, blobs.ErrCorrupt) {
			r.log.Warn("local copy of a record is corrupt; fetching another", "record", rec.ID.Short())
		}
		return nil, env, "", err
	}
	if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessServed}); err != nil {
		return nil, env, "", err
	}
	return ct, env, "local", nil
}

func (r *Records) fetchRemote(ctx context.Context, rec *state.RecordState, req *chain.AccessRequest) ([]byte, envelope.Envelope, string, error) {
	holders := r.holders(ctx, rec.ID)
	if len(holders) == 0 {
		return nil, envelope.Envelope{}, "", fmt.Errorf("%w: no peers to fetch record %s from", ErrRecordNotFound, rec.ID.Short())
	}
	// One request per holder, each addressed to it: a request can buy one read from one holder.
	var resp *blobs.FetchResponse
	var from peer.ID
	err := fmt.Errorf("no holder with a usable identity for record %s", rec.ID.Short())
	for _, h := range holders {
		hk, kerr := nodeKeyOf(h)
		if kerr != nil {
			continue
		}
		hreq := r.newRequest(rec.ID, req.Purpose, req.Emergency, hk)
		resp, from, err = blobs.FetchFrom(ctx, r.net.LibP2P(), r.chainID, []peer.ID{h}, hreq, rec.CiphertextHash, func(p peer.ID, err error) {
			r.log.Warn("holder served a bad copy", "peer", p, "record", rec.ID.Short(), "err", err)
		})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		if errors.Is(err, blobs.ErrRefused) {
			return nil, envelope.Envelope{}, "", fmt.Errorf("%w: %w", ErrAccessRefused, err)
		}
		return nil, envelope.Envelope{}, "", fmt.Errorf("%w: %w", ErrRecordNotFound, err)
	}
	for _, e := range resp.Envelopes {
		if e.RecipientKeyID == r.keyID {
			return resp.Ciphertext, e, from.String(), nil
		}
	}
	return nil, envelope.Envelope{}, "", fmt.Errorf("holder %s sent no key envelope for this node", from)
}

// holders lists peers to ask for a record: DHT providers first, then every other connected peer.
func (r *Records) holders(ctx context.Context, id chain.Hash) []peer.ID {
	lctx, cancel := context.WithTimeout(ctx, holderLookup)
	defer cancel()
	found, _ := r.net.FindHolders(lctx, id, 8)
	seen := map[peer.ID]bool{}
	var out []peer.ID
	for _, p := range found {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, s := range r.net.Peers() {
		if p, err := peer.Decode(s); err == nil && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// newRequest signs a request for record id addressed to the holder node holder.
func (r *Records) newRequest(id chain.Hash, purpose string, emergency bool, holder chain.PubKey) *chain.AccessRequest {
	req := &chain.AccessRequest{Record: id, RequesterNode: r.nodeKey, Holder: holder, Purpose: purpose, Emergency: emergency,
		IssuedMs: r.now().UnixMilli(), Nonce: randUint64()}
	req.Sign(r.keys.Signing, r.chainID)
	return req
}

// nodeKeyOf returns the raw Ed25519 key a libp2p peer id embeds.
func nodeKeyOf(p peer.ID) (chain.PubKey, error) {
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return chain.PubKey{}, err
	}
	raw, err := pk.Raw()
	if err != nil {
		return chain.PubKey{}, err
	}
	var k chain.PubKey
	if len(raw) != len(k) {
		return chain.PubKey{}, fmt.Errorf("peer %s has a %d-byte key, not an Ed25519 key", p, len(raw))
	}
	copy(k[:], raw)
	return k, nil
}

func randUint64() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return binary.LittleEndian.Uint64(b[:])
}

// RecordJSON describes one record version as the ledger knows it.
type RecordJSON struct {
	ID             chain.Hash      `json:"id"`
	ResourceType   string          `json:"resourceType"`
	Version        uint64          `json:"version"`
	Patient        chain.Address   `json:"patient"`
	Author         chain.Address   `json:"author"`
	Supersedes     *chain.Hash     `json:"supersedes,omitempty"`
	SupersededBy   *chain.Hash     `json:"superseded_by,omitempty"`
	CiphertextHash *chain.Hash     `json:"ciphertext_hash,omitempty"`
	Size           uint64          `json:"size,omitempty"`
	Height         uint64          `json:"height"`
	Time           string          `json:"time"`
	Erased         bool            `json:"erased"`
	ErasedHeight   uint64          `json:"erased_height,omitempty"`
	ErasureAcks    []chain.Address `json:"erasure_acks,omitempty"`
}

func recordJSON(rec *state.RecordState) RecordJSON {
	j := RecordJSON{ID: rec.ID, ResourceType: rec.ResourceType, Version: rec.RecVersion, Patient: rec.Patient, Author: rec.Author,
		Size: rec.Size, Height: rec.AnchoredHeight, Time: msTime(rec.AnchoredTime), Erased: rec.Erased, ErasedHeight: rec.ErasedHeight, ErasureAcks: rec.Acks}
	if !rec.Supersedes.IsZero() {
		j.Supersedes = &rec.Supersedes
	}
	if !rec.SupersededBy.IsZero() {
		j.SupersededBy = &rec.SupersededBy
	}
	if !rec.CiphertextHash.IsZero() {
		j.CiphertextHash = &rec.CiphertextHash
	}
	return j
}

func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// List returns a patient's records (every version, in anchor order) from the ledger.
func (r *Records) List(ctx context.Context, patient chain.Address) ([]RecordJSON, error) {
	r.mu.RLock()
	ids := slices.Clone(r.byPatient[patient])
	r.mu.RUnlock()
	out := make([]RecordJSON, 0, len(ids))
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		for _, id := range ids {
			rec, err := state.Record(view, id)
			if err != nil {
				return err
			}
			if rec != nil {
				out = append(out, recordJSON(rec))
			}
		}
		return nil
	})
	return out, err
}

// ConsentJSON is one consent (or emergency access) of a patient.
type ConsentJSON struct {
	ID            chain.Hash    `json:"id"`
	Patient       chain.Address `json:"patient"`
	Grantee       chain.Address `json:"grantee"`
	Scope         string        `json:"scope"`
	Types         []string      `json:"types,omitempty"`
	Records       []chain.Hash  `json:"records,omitempty"`
	Purpose       string        `json:"purpose"`
	GrantedHeight uint64        `json:"granted_height"`
	GrantedTime   string        `json:"granted_time"`
	Expires       string        `json:"expires,omitempty"`
	Emergency     bool          `json:"emergency"`
	// Reason is an emergency access's reason code (chain.EmergencyReason.String()).
	Reason          string `json:"reason,omitempty"`
	CoSigned        bool   `json:"co_signed,omitempty"`
	AfterRevocation bool   `json:"after_revocation,omitempty"`
	Revoked         bool   `json:"revoked"`
	RevokedHeight   uint64 `json:"revoked_height,omitempty"`
	Active          bool   `json:"active"`
}

// Consents returns every consent and emergency access of a patient, with whether each is in
// force at the last block's time.
func (r *Records) Consents(ctx context.Context, patient chain.Address) ([]ConsentJSON, error) {
	r.mu.RLock()
	ids := slices.Clone(r.consents[patient])
	r.mu.RUnlock()
	var out []ConsentJSON
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		for _, id := range ids {
			c, err := state.Consent(view, id)
			if err != nil {
				return err
			}
			if c == nil {
				continue
			}
			j := ConsentJSON{ID: c.ID, Patient: c.Patient, Grantee: c.Grantee, Scope: c.Scope.Kind.String(), Types: c.Scope.Types, Records: c.Scope.Records,
				Purpose: c.Purpose, GrantedHeight: c.GrantedHeight, GrantedTime: msTime(c.GrantedTime), Emergency: c.Emergency,
				CoSigned: c.CoSigned, AfterRevocation: c.AfterRevocation, Revoked: c.Revoked, RevokedHeight: c.RevokedHeight}
			if c.Emergency {
				j.Reason = c.ReasonCode.String()
			}
			if c.ExpiresMs != 0 {
				j.Expires = msTime(c.ExpiresMs)
			}
			j.Active = !c.Revoked && (c.ExpiresMs == 0 || now < c.ExpiresMs)
			out = append(out, j)
		}
		return nil
	})
	return out, err
}

// AccessJSON is one logged access to a patient's record.
type AccessJSON struct {
	RequestID chain.Hash    `json:"request_id"`
	Record    chain.Hash    `json:"record"`
	Accessor  chain.Address `json:"accessor"`
	Holder    chain.Address `json:"holder"`
	Height    uint64        `json:"height"`
	Time      string        `json:"time"`
	Purpose   string        `json:"purpose"`
	Emergency bool          `json:"emergency"`
	Outcome   string        `json:"outcome"`
	Reason    string        `json:"reason,omitempty"`
	// LoggedBy: "holder", "requester" (a receipt only) or "both"; then the flags of
	// state.AccessView, and an emergency read's break-glass flags.
	LoggedBy           string `json:"logged_by"`
	UnloggedByHolder   bool   `json:"unlogged_by_holder,omitempty"`
	RefusedButReceived bool   `json:"refused_but_received,omitempty"`
	CoSigned           bool   `json:"co_signed,omitempty"`
	AfterRevocation    bool   `json:"after_revocation,omitempty"`
}

// Accesses returns every logged access (served and refused) to a patient's records.
func (r *Records) Accesses(ctx context.Context, patient chain.Address) ([]AccessJSON, error) {
	r.mu.RLock()
	ids := slices.Clone(r.accesses[patient])
	r.mu.RUnlock()
	out := []AccessJSON{}
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		views, err := state.AccessesOf(view, patient, ids)
		if err != nil {
			return err
		}
		for _, v := range views {
			j := AccessJSON{RequestID: v.RequestID, Record: v.Record, LoggedBy: v.LoggedBy(), UnloggedByHolder: v.UnloggedByHolder,
				RefusedButReceived: v.RefusedButReceived}
			if a := v.Entry; a != nil {
				j.Accessor, j.Holder, j.Height, j.Time, j.Purpose, j.Emergency, j.Outcome, j.Reason = a.Accessor, a.Holder, a.Height,
					msTime(a.Time), a.Purpose, a.Emergency, a.Outcome.String(), a.Reason
			} else {
				rc := v.Receipt
				j.Accessor, j.Height, j.Time, j.Purpose, j.Emergency, j.Outcome = rc.Requester, rc.Height, msTime(rc.Time), rc.Purpose,
					rc.Emergency, chain.AccessServed.String()
			}
			if v.Emergency != nil {
				j.CoSigned, j.AfterRevocation = v.Emergency.CoSigned, v.Emergency.AfterRevocation
			}
			out = append(out, j)
		}
		return nil
	})
	return out, err
}

// Export returns a FHIR Bundle (collection) of the patient's records this node may read (each
// read is audited like any other), the patient's consents as Consent resources and the access
// log as AuditEvent resources.
func (r *Records) Export(ctx context.Context, patient chain.Address, purpose string) ([]byte, error) {
	list, err := r.List(ctx, patient)
	if err != nil {
		return nil, err
	}
	var resources []fhir.Resource
	for _, rec := range list {
		if rec.Erased {
			continue
		}
		res, err := r.Read(ctx, rec.ID, purpose, false)
		if errors.Is(err, ErrAccessRefused) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.ID, err)
		}
		parsed, err := r.fhir.Parse(res.JSON)
		if err != nil {
			return nil, fmt.Errorf("record %s: stored FHIR no longer parses: %w", rec.ID, err)
		}
		for _, p := range parsed {
			if p.ID == "" {
				p.FullURL = fhir.ExportBase + "Record/" + rec.ID.String()
			}
			resources = append(resources, p)
		}
	}
	consents, err := r.Consents(ctx, patient)
	if err != nil {
		return nil, err
	}
	for _, c := range consents {
		info := fhir.ConsentInfo{ID: c.ID.String(), Patient: c.Patient.String(), Grantee: c.Grantee.String(), Status: "inactive", Scope: c.Scope,
			Types: c.Types, Purpose: c.Purpose, Emergency: c.Emergency, Reason: c.Reason}
		if c.Active {
			info.Status = "active"
		}
		for _, id := range c.Records {
			info.Records = append(info.Records, id.String())
		}
		info.Granted, _ = time.Parse(time.RFC3339Nano, c.GrantedTime)
		if c.Expires != "" {
			info.Expires, _ = time.Parse(time.RFC3339Nano, c.Expires)
		}
		data, err := fhir.ConsentResource(info)
		if err != nil {
			return nil, err
		}
		resources = append(resources, fhir.Resource{ResourceType: "Consent", ID: info.ID, JSON: data})
	}
	accesses, err := r.Accesses(ctx, patient)
	if err != nil {
		return nil, err
	}
	for _, a := range accesses {
		t, _ := time.Parse(time.RFC3339Nano, a.Time)
		data, err := fhir.AuditEventResource(fhir.AccessInfo{ID: a.RequestID.String(), Record: a.Record.String(), Patient: patient.String(),
			Accessor: a.Accessor.String(), Holder: a.Holder.String(), Purpose: a.Purpose, Emergency: a.Emergency, Served: a.Outcome == "served",
			Reason: a.Reason, Recorded: t, Height: a.Height})
		if err != nil {
			return nil, err
		}
		resources = append(resources, fhir.Resource{ResourceType: "AuditEvent", ID: a.RequestID.String(), JSON: data})
	}
	return fhir.ExportBundle(resources, "collection")
}

// EmergencyAccess records a break-glass access to a patient's records on the ledger, with a
// reason code, and waits for it to commit. The free-text note stays in this node's log, never
// on the ledger.
func (r *Records) EmergencyAccess(ctx context.Context, patient chain.Address, purpose string, code chain.EmergencyReason, note string) (chain.Hash, uint64, error) {
	body := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: patient, Purpose: purpose, ReasonCode: code}
	if err := body.Validate(); err != nil {
		return chain.Hash{}, 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	h, height, err := r.submit(ctx, chain.TxEmergencyAccess, body, true)
	r.log.Info("break-glass access (the note is kept here only)", "patient", patient, "reason", code, "note", note, "tx", h.Short(), "err", err)
	return h, height, err
}

// PatientOf returns the patient of a record.
func (r *Records) PatientOf(ctx context.Context, id chain.Hash) (chain.Address, error) {
	var rec *state.RecordState
	err := r.query(ctx, func(view state.View, _ *replica.Replica) error {
		var err error
		rec, err = state.Record(view, id)
		return err
	})
	if err != nil {
		return chain.Address{}, err
	}
	if rec == nil {
		return chain.Address{}, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	}
	return rec.Patient, nil
}

// truncateReason fits a refusal reason into an access entry, on a UTF-8 boundary.
func truncateReason(s string) string {
	if len(s) <= chain.MaxReasonLen {
		return s
	}
	s = s[:chain.MaxReasonLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// reprovideLoop announces every record whose ciphertext this node holds, after start and then
// periodically, so DHT provider records survive restarts and expiry.
func (r *Records) reprovideLoop(ctx context.Context) {
	wait := 10 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = reprovideEvery
		r.mu.RLock()
		var held []chain.Hash
		for id, rec := range r.records {
			if r.blobs.Has(rec.CiphertextHash) {
				held = append(held, id)
			}
		}
		r.mu.RUnlock()
		for _, id := range held {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := r.net.Provide(pctx, id)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				r.log.Debug("re-provide record", "record", id.Short(), "err", err)
			}
		}
	}
}

func (r *Records) shouldLogRefusal(k refusalKey) bool {
	r.limMu.Lock()
	defer r.limMu.Unlock()
	now := r.now()
	if t, ok := r.refused[k]; ok && now.Sub(t) < refusalLogEvery {
		return false
	}
	if len(r.refused) > 10_000 {
		for key, t := range r.refused {
			if now.Sub(t) >= refusalLogEvery {
				delete(r.refused, key)
			}
		}
	}
	r.refused[k] = now
	return true
}

// firstUse records a request id and reports whether this holder sees it for the first time
// within the request-time window (older ids are refused by the time check anyway).
func (r *Records) firstUse(id chain.Hash) bool {
	r.limMu.Lock()
	defer r.limMu.Unlock()
	now := r.now()
	if _, ok := r.used[id]; ok {
		return false
	}
	if len(r.used) >= 1024 {
		for k, t := range r.used {
			if now.Sub(t) > 2*maxRequestSkew {
				delete(r.used, k)
			}
		}
	}
	r.used[id] = now
	return true
}

// consentReason is the state machine's refusal as a person reads it, without the package prefix.
func consentReason(err error) string { return strings.TrimPrefix(err.Error(), "state: ") }
