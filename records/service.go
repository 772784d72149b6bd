package records

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/p2p/frame"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/records/index"
	"github.com/medledger/medledger/records/journal"
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
	// staleBlocks and minStaleAfter set the default freshness bound of a holder: it decides a
	// request only if its last block is at most this much older than its clock (staleBlocks
	// genesis block intervals, at least minStaleAfter). The network finalizes an empty block
	// every interval when idle, so an older tip means this node is behind or cut off.
	staleBlocks   = 3
	minStaleAfter = 5 * time.Second
	// holderFirstByte is how long a fetcher waits for a holder's first byte; holderMinRate
	// (bytes per second) and holderSlack bound the rest of one holder's answer, by the record's
	// anchored size. Past either the holder is struck and the next one asked.
	holderFirstByte = 2 * time.Second
	holderMinRate   = 256 << 10
	holderSlack     = 2 * time.Second
	// maxInflight bounds the request ids a holder is deciding at once; maxRefusalKeys the
	// (requester, record) pairs whose last logged refusal it remembers.
	maxInflight    = 4096
	maxRefusalKeys = 4096
	// holderLookup bounds a DHT holder search.
	holderLookup = 3 * time.Second
	// pushRatePerPeer and pushBurstPerPeer pace replication pushes to one peer, well below the
	// blob server's per-peer limit (node/node.go: blobServerRate) and the holders' per-member
	// quota (quotaRate).
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

// Net is what the record service needs from the libp2p host.
type Net interface {
	LibP2P() host.Host
	Peers() []string
	Provide(ctx context.Context, key chain.Hash) error
	FindHolders(ctx context.Context, key chain.Hash, max int) ([]peer.ID, error)
	// Penalize strikes a peer that stalled or served a bad copy (p2p.Host.Penalize).
	Penalize(p peer.ID, reason error)
}

// Keys are the node's provider identity: the signing key that authors records, signs access
// requests and audit entries, and the HPKE key records are wrapped to.
type Keys struct {
	Signing    chain.PrivKey
	Encryption *envelope.PrivateKey
}

// ID is the provider's ledger id: the address of its signing key.
func (k *Keys) ID() chain.Address { return k.Signing.Public().Address() }

// Service is the node's record service: FHIR import, sealing, blob storage and replication,
// fetches with consent checks and audit, and the reactions to committed consent and erasure
// transactions. Its index of records, consents and accesses per patient (records/index) is
// persisted beside the blobs and follows the ledger block by block.
type Service struct {
	chainID string
	keys    *Keys
	self    chain.Address
	keyID   chain.Hash
	ledger  Ledger
	net     Net
	blobs   *blobstore.Store
	journal *journal.Journal
	fhir    *fhir.Validator
	licence string
	readLic func(path string) (*chain.Licence, error)
	log     *slog.Logger
	now     func() time.Time
	nodeKey chain.PubKey // raw Ed25519 key of this node's libp2p identity: requests are addressed to it

	// receipts holds this node's receipts of reads served by remote holders until the
	// ledger has them.
	receipts *journal.Receipts

	txMu sync.Mutex // own transactions: nonce allocation and submission in order

	// bindings are the patients' FHIR Patient bindings (binding.go); importLocks serializes
	// imports per patient.
	bindings    *bindings
	names       *localNamer
	importLocks keyedLocks

	// idx is the persisted per-patient index (records/index.go follows the ledger into it);
	// indexed is the last block this service indexed and reacted to (under mu).
	idx     *index.Index
	mu      sync.RWMutex
	indexed uint64

	submitted map[chain.Hash]time.Time // access entries submitted, by request id (flush goroutine only)
	sentRc    map[chain.Hash]time.Time // receipts submitted, by request id (flush goroutine only)
	flushNow  chan struct{}

	pushQ    chan []pushJob // batches (replication.go)
	storeSem chan struct{}  // envelopes wrapped on demand being kept (holder.go: storeWrapped)
	bg       sync.WaitGroup // storeWrapped's writes
	provideQ chan chain.Hash
	pace     *frame.PeerLimits // replication pushes per peer
	limMu    sync.Mutex
	refused  map[refusalKey]time.Time // last logged refusal per (requester, record) (under limMu)
	inflight map[chain.Hash]bool      // request ids being decided now (under limMu); decided ones are in the journal or on the ledger

	staleAfter time.Duration // fixed freshness bound; zero: from the ledger's block interval
	firstByte  time.Duration // holderFirstByte, shorter in tests
	// hideServes makes Fetch serve without journalling: a test's dishonest holder.
	hideServes atomic.Bool
	// holderOrder, set by tests only, replaces the ledger's placement as the list of holders a
	// read tries, so the fetch path can be tested against holders that misbehave in a given order.
	holderOrder func(id chain.Hash) []peer.ID

	// Replication by the ledger's placement (assign.go, replication.go, repair.go).
	place        placeCache   // placement input of the latest tip
	unpushed     *unpushed    // records not yet confirmed by every holder
	pushQuota    *memberQuota // what each member may push here
	pullQuota    *memberQuota // what each member may pull from here
	timing       repairTiming
	repairMu     sync.Mutex // one pull pass at a time
	repairCursor int        // where the next pull pass starts in order (under repairMu)
}

// Config assembles a Service. Every field but Replicas and Now is required.
type Config struct {
	ChainID string
	Keys    *Keys
	Ledger  Ledger
	Net     Net
	BlobDir string
	// LicenceFile holds this provider's licence; ReadLicence reads it (a missing file is
	// fs.ErrNotExist: the node then runs unregistered).
	LicenceFile string
	ReadLicence func(path string) (*chain.Licence, error)
	// Replicas is ignored: how many nodes hold a record is the network's genesis parameter
	// (chain.Params.Replicas), since every node must compute the same holders. Kept so that
	// configurations that set [records] replicas still load.
	Replicas int
	Log      *slog.Logger
	Now      func() time.Time // time.Now if nil
	// NodeKey is the raw Ed25519 key of this node's libp2p identity; default: read from
	// Net.LibP2P().ID().
	NodeKey chain.PubKey
	// StaleAfter is how much older than this node's clock its last block may be for it to
	// decide fetches as a holder; zero means staleBlocks block intervals of the ledger's
	// parameters, at least minStaleAfter.
	StaleAfter time.Duration
}

// New opens the blob store and journal under cfg.BlobDir.
func New(cfg Config) (*Service, error) {
	st, err := blobstore.OpenStore(cfg.BlobDir)
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(cfg.BlobDir + "/journal")
	if err != nil {
		return nil, err
	}
	rc, err := journal.OpenReceipts(cfg.BlobDir + "/receipts")
	if err != nil {
		return nil, err
	}
	up, err := openUnpushed(cfg.BlobDir + "/unpushed")
	if err != nil {
		return nil, err
	}
	bd, err := openBindings(cfg.BlobDir + "/bindings")
	if err != nil {
		return nil, err
	}
	names, err := newLocalNamer(cfg.Keys.Signing.Seed())
	if err != nil {
		return nil, err
	}
	v, err := fhir.Shared()
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NodeKey == (chain.PubKey{}) && cfg.Net != nil && cfg.Net.LibP2P() != nil {
		if cfg.NodeKey, err = NodeKeyOf(cfg.Net.LibP2P().ID()); err != nil {
			return nil, fmt.Errorf("records: this node's identity: %w", err)
		}
	}
	idx, reacted, err := openIndex(cfg.BlobDir+"/index", cfg.Log)
	if err != nil {
		return nil, err
	}
	return &Service{nodeKey: cfg.NodeKey,
		chainID: cfg.ChainID, keys: cfg.Keys, self: cfg.Keys.ID(), keyID: cfg.Keys.Encryption.Public().KeyID(),
		ledger: cfg.Ledger, net: cfg.Net, blobs: st, journal: j, fhir: v,
		receipts: rc, sentRc: make(map[chain.Hash]time.Time), inflight: make(map[chain.Hash]bool), staleAfter: cfg.StaleAfter, firstByte: holderFirstByte,
		licence: cfg.LicenceFile, readLic: cfg.ReadLicence, log: cfg.Log, now: cfg.Now,
		idx: idx, indexed: reacted, submitted: make(map[chain.Hash]time.Time), flushNow: make(chan struct{}, 1),
		pushQ: make(chan []pushJob, pushQueueLen), storeSem: make(chan struct{}, maxBackgroundStores), provideQ: make(chan chain.Hash, 1<<16),
		pace: frame.NewPeerLimits(pushRatePerPeer, pushBurstPerPeer), unpushed: up, timing: defaultRepairTiming(),
		pushQuota: newMemberQuota("push", quotaBytes, quotaWindow, quotaRate), pullQuota: newMemberQuota("pull", quotaBytes, quotaWindow, quotaRate),
		refused: make(map[refusalKey]time.Time), bindings: bd, names: names,
	}, nil
}

// ProviderID is this node's provider id.
func (r *Service) ProviderID() chain.Address { return r.self }

// Run registers the provider if needed, follows committed blocks and flushes the access journal
// until ctx ends.
func (r *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(7 + pushWorkers)
	for range pushWorkers {
		go func() { defer wg.Done(); r.pushWorker(ctx) }()
	}
	go func() { defer wg.Done(); r.provideWorker(ctx) }()
	go func() { defer wg.Done(); r.reprovideLoop(ctx) }()
	go func() { defer wg.Done(); r.repushLoop(ctx) }()
	go func() { defer wg.Done(); r.repairLoop(ctx) }()
	go func() { defer wg.Done(); r.registerSelf(ctx) }()
	go func() { defer wg.Done(); r.follow(ctx) }()
	go func() { defer wg.Done(); r.flushLoop(ctx) }()
	wg.Wait()
	r.bg.Wait()
}

// licenceWatch is how often a node without a licence file looks for one.
const licenceWatch = 2 * time.Second

// registerSelf registers the member from its licence file (a provider's, or another attested
// role's such as a payer's), once, retrying until it is on the ledger in the licence's role. Without a licence file the node runs unregistered (it can read nothing) until
// the file appears.
func (r *Service) registerSelf(ctx context.Context) {
	lic, err := r.readLic(r.licence)
	if errors.Is(err, os.ErrNotExist) {
		r.log.Info("no provider licence: this node is not a registered provider until one is installed (medledger provider register)", "file", r.licence, "provider_id", r.self)
		// A practice's licence may arrive while its node runs: watch for the file.
		for errors.Is(err, os.ErrNotExist) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(licenceWatch):
			}
			lic, err = r.readLic(r.licence)
		}
	}
	if err != nil {
		r.log.Error("provider licence unreadable", "err", err)
		return
	}
	for {
		registered, synced := false, false
		_ = r.query(ctx, func(view state.View) error {
			m, err := state.Member(view, r.self)
			registered = err == nil && m != nil && m.Role == lic.Role
			h, _, err := state.Tip(view)
			synced = err == nil && h > 0
			return nil
		})
		if registered {
			r.log.Info("member registered", "role", lic.Role, "member_id", r.self)
			return
		}
		// Not before the node holds a block: until the members let it in (its licence is its
		// ticket) nobody relays what it gossips, and a registration lost that way would block
		// the signer's only valid nonce until it expires.
		if !synced {
			select {
			case <-ctx.Done():
				return
			case <-time.After(licenceWatch):
			}
			continue
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

// ReplicationBacklog is the number of records this node authored that not every assigned
// holder has confirmed yet (the repair loop pushes them again).
func (r *Service) ReplicationBacklog() int { return r.unpushed.len() }
