package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/medledger/medledger/sync/light"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/badger"
	"github.com/medledger/medledger/consensus/reactor"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/logbridge"
	"github.com/medledger/medledger/node/metrics"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/records/exchange"
)

// blobServerRate is how many blob requests per second one peer may make; an author replicating
// an import paces itself well below it (records: pushRatePerPeer).
const blobServerRate = 100

// ShutdownTimeout bounds how long Run waits for in-flight API requests when it stops.
const ShutdownTimeout = 5 * time.Second

// Node is one assembled MedLedger node: a Badger store, a replica driven by a Runner, a libp2p
// host with the consensus reactor as its transport, and the HTTP API. Open assembles it; Run runs it until its context
// ends and then takes it apart in order.
type Node struct {
	home      Home
	cfg       *Config
	log       *slog.Logger
	genesis   *chain.Genesis
	store     *badger.Store
	host      *p2p.Host
	members   *membership
	voter     *autoVoter // nil unless this node has an authority key
	reactor   *reactor.Reactor
	runner    *Runner
	api       *API
	records   *records.Service
	commits   *commitHub
	stopBlobs func()
	stopLight func()
	audit     *auditlog.Log
	metrics   *metrics.Metrics
	srv       *http.Server
	ln        net.Listener
	// ticketless: the node started without a licence (watchLicence waits for one).
	ticketless bool

	closeOnce sync.Once
	closeErr  error
}

// Open loads HOME's config, genesis and keys, creates the API token if it is absent, and
// assembles the node: store, replica, libp2p host, runner and API listener. Nothing runs until
// Run. On error everything opened so far is closed again.
func Open(home string, log *slog.Logger) (n *Node, err error) {
	h := Home(home)
	cfg, err := LoadConfig(home)
	if err != nil {
		return nil, err
	}
	g, err := LoadGenesis(h.GenesisFile())
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var key *chain.PrivKey
	if cfg.Node.AuthorityKey != "" {
		k, err := ReadKeyFile(Resolve(home, cfg.Node.AuthorityKey))
		if err != nil {
			return nil, fmt.Errorf("%w (set [node] authority_key = \"\" to run a full node)", err)
		}
		key = &k
	}
	token, err := LoadOrCreateToken(h.TokenFile(), rand.Reader)
	if err != nil {
		return nil, err
	}
	policy, err := cfg.SyncPolicy()
	if err != nil {
		return nil, err
	}
	log = log.With("node", cfg.Node.Name)
	// kad-dht logs through go-log: into this node's handler too (process-wide, see logbridge).
	logbridge.Route(log.Handler())
	applyMemoryLimit(cfg, log)
	n = &Node{home: h, cfg: cfg, log: log, genesis: g}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
			n = nil
		}
	}()
	if n.store, err = badger.Open(h.DataDir(), badger.Options{Store: store.Options{Sync: policy, KeepVersions: cfg.Store.KeepVersions}, Logger: log}); err != nil {
		return n, fmt.Errorf("node: open store: %w", err)
	}
	if from, to, ok := n.store.RolledBack(); ok {
		log.Warn("power loss under store.sync \"none\" damaged the last blocks: the store rolled back; they are fetched from peers again", "from", from, "to", to)
	}
	rep, err := replica.New(replica.Config{Genesis: g, Key: key, Mempool: replica.MempoolConfig{MaxTxs: cfg.Mempool.MaxTxs, MaxBytes: cfg.Mempool.MaxBytes, MaxRegistrations: cfg.Mempool.MaxRegistrations, MaxRegistrationBytes: cfg.Mempool.MaxRegistrations * registrationBytes}}, n.store)
	if err != nil {
		return n, err
	}
	n.members = newMembership(g, n.store)
	n.metrics = n.newMetrics()
	ticket, err := licenceTicket(Resolve(home, cfg.Records.Licence))
	if err != nil {
		return n, err
	}
	n.ticketless = ticket == nil
	n.host, err = p2p.New(context.Background(), p2p.Config{
		ChainID: g.ChainID, ListenAddrs: cfg.P2P.Listen, Bootstrap: cfg.P2P.Bootstrap,
		IdentityFile: Resolve(home, cfg.P2P.Identity), Logger: log,
		MaxDirectBytes: reactor.MaxDirectBytes,
		// Peers are admitted by the ledger's member registry (membership.go); committed calls
		// Recheck. The licence, if any, is this node's ticket to peers that do not know it yet.
		Admission: n.members, Ticket: ticket,
		Registerer: n.metrics.Registry(),
	})
	if err != nil {
		return n, err
	}
	if n.reactor, err = reactor.New(n.host, rep.Gate(), reactor.Config{Log: log}); err != nil {
		return n, err
	}
	// A candidate (a practice let in by its licence ticket) learns our height at once, so it
	// syncs without waiting for a stalled round's announcement.
	n.host.OnCandidate(func(p peer.ID) {
		if h := n.store.Height(); h > 0 {
			n.reactor.Send(reactor.PeerID(p), &replica.Message{Version: replica.MessageVersion, Status: h})
		}
	})
	n.commits = newCommitHub()
	clock, err := nodeClock(home, cfg, g.ChainID, log)
	if err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	n.runner = NewRunner(rep, n.reactor, log, clock, Hooks{Committed: n.committed, Dropped: n.commits.dropped})
	pk, err := LoadOrCreateProviderKeys(Resolve(home, cfg.Records.ProviderKey), Resolve(home, cfg.Records.EncryptionKey))
	if err != nil {
		return n, err
	}
	n.records, err = records.New(records.Config{
		ChainID: g.ChainID, Keys: pk, Ledger: newLedger(n.runner, n.commits), Net: n.host, BlobDir: Resolve(home, cfg.Records.BlobDir),
		LicenceFile: Resolve(home, cfg.Records.Licence), ReadLicence: ReadLicenceFile, Replicas: cfg.Records.Replicas, Log: log,
		Now: clock,
	})
	if err != nil {
		return n, err
	}
	// Provider records in the DHT are accepted only from the holders the ledger assigns.
	n.members.mayHold = n.records.MayHold
	n.stopBlobs = exchange.Serve(n.host.LibP2P(), g.ChainID, n.records, exchange.ServerOptions{
		Log: log, Penalize: n.host.Penalize,
		Rate: blobServerRate, Burst: 2 * blobServerRate,
	})
	// The wallet protocol: headers, certificates and state proofs for patients' light clients.
	n.stopLight = light.Serve(n.host.LibP2P(), g.ChainID, n.store, light.Options{
		Log: log, Penalize: n.host.Penalize, Scope: n.members.walletScope, Fetch: n.records.Fetch,
		Submit: func(ctx context.Context, tx *chain.Tx) (chain.Hash, error) {
			if err := n.runner.ClientBacklog(); err != nil {
				return chain.Hash{}, err
			}
			return n.runner.Submit(ctx, tx)
		},
	})
	// Where wallets find this node (medledger wallet --home): its multiaddrs, public.
	if err := writeAddrs(h.AddrsFile(), n.host.Addrs()); err != nil {
		return n, err
	}
	if key != nil {
		n.voter = &autoVoter{key: *key, chainID: g.ChainID, store: n.store, ledger: newLedger(n.runner, n.commits), log: log, sent: map[chain.Hash]time.Time{}}
	}
	providerID := pk.ID()
	info := NodeInfo{ChainID: g.ChainID, NodeID: n.host.ID(), Peers: n.host.Peers, Provider: &providerID}
	if key != nil {
		pub := key.Public()
		info.Authority = &pub
		// The set the ledger holds now (authorities added by vote since genesis), else genesis's.
		set := g.AuthoritySet()
		if next, _, err := state.Authorities(n.store.State()); err == nil && next != nil {
			set = next
		}
		if !set.Contains(pub) {
			log.Warn("the authority key is not in the current authority set: this node signs nothing until the authorities add it (medledger authority propose/vote)", "key", pub)
		}
	}
	n.api = NewAPI(n.runner, info, token, cfg.API.MaxBodyBytes, cfg.API.MaxBatchBytes, log)
	n.api.attachRecords(n.records, n.commits)
	n.api.attachClaims(billingKeysDir(h))
	book, err := openBillingBook(h.BillingDir())
	if err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	n.api.attachBilling(book)
	n.api.coSigner = key // an authority's node co-signs break-glass accesses
	users, err := staff.NewDirectory(h.UsersFile())
	if err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	if n.audit, err = auditlog.Open(h.AuditLog(), int64(cfg.Audit.MaxFileMB)<<20, cfg.Audit.KeepFiles); err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	n.api.attachStaff(staff.NewGate(users, staff.GateConfig{Sessions: cfg.Staff.SessionConfig()}), n.audit)
	n.api.attachOps(n.metrics, n.probes())
	if err := n.api.attachUI(h, pk.Signing.Seed(), g.ChainID, cfg.Staff.SessionConfig().Idle, log); err != nil {
		return n, fmt.Errorf("node: %w", err)
	}
	if n.ln, err = net.Listen("tcp", cfg.API.Listen); err != nil {
		return n, fmt.Errorf("node: API: %w", err)
	}
	n.srv = &http.Server{
		Handler:           n.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return n, nil
}

// registrationBytes is the byte quota of pending registrations per configured registration
// (the default quota is 256 registrations and 2 MiB).
const registrationBytes = 8 << 10

func (n *Node) committed(b *chain.Block) {
	n.commits.committed(b)
	var round uint32
	if cert, err := n.store.Cert(b.Header.Height); err == nil {
		round = cert.Round
	}
	n.metrics.Committed(b.Header.Time, round, len(b.Txs))
	// Membership may have changed with the block: peers that lost rights lose them now.
	n.host.Recheck()
	n.log.Info("block committed", "height", b.Header.Height, "hash", b.Hash().Short(), "txs", len(b.Txs), "proposer", b.Header.Proposer.Short())
}

// PeerID is the node's libp2p peer id.
func (n *Node) PeerID() string { return n.host.ID() }

// APIAddr is the address the API listens on.
func (n *Node) APIAddr() string { return n.ln.Addr().String() }

// Genesis is the chain's genesis.
func (n *Node) Genesis() *chain.Genesis { return n.genesis }

// Run serves the API and drives the replica until ctx ends or the replica fails, then stops in
// order: the API (waiting up to ShutdownTimeout for requests in flight), the runner, the libp2p
// host and the store. It returns nil after a requested stop.
func (n *Node) Run(ctx context.Context) error {
	n.log.Info("node starting", "chain", n.genesis.ChainID, "peer_id", n.host.ID(), "p2p", n.host.Addrs(), "api", n.APIAddr(), "height", n.store.Height())
	runCtx, stopRunner := context.WithCancel(context.Background())
	defer stopRunner()
	runErr := make(chan error, 1)
	go func() { runErr <- n.runner.Run(runCtx) }()
	recCtx, stopRecords := context.WithCancel(context.Background())
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		if n.voter != nil {
			done := make(chan struct{})
			go func() { defer close(done); n.voter.run(recCtx) }()
			defer func() { <-done }()
		}
		if n.ticketless {
			done := make(chan struct{})
			go func() { defer close(done); n.watchLicence(recCtx) }()
			defer func() { <-done }()
		}
		n.records.Run(recCtx)
	}()
	apiErr := make(chan error, 1)
	go func() {
		err := n.srv.Serve(n.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		apiErr <- err
	}()

	var err error
	runnerDone, apiDone := false, false
	select {
	case <-ctx.Done():
	case err = <-runErr:
		runnerDone = true
		err = fmt.Errorf("node: replica stopped: %w", err)
	case err = <-apiErr:
		apiDone = true
		err = fmt.Errorf("node: API server stopped: %w", err)
	}
	n.log.Info("node stopping")

	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if e := n.srv.Shutdown(shutdownCtx); e != nil {
		err = errors.Join(err, fmt.Errorf("node: API shutdown: %w", e), n.srv.Close())
	}
	if !apiDone {
		err = errors.Join(err, <-apiErr)
	}
	stopRecords()
	<-recDone
	stopRunner()
	if !runnerDone {
		if e := <-runErr; e != nil {
			err = errors.Join(err, fmt.Errorf("node: replica: %w", e))
		}
	}
	err = errors.Join(err, n.Close())
	if err != nil {
		n.log.Error("node stopped with errors", "err", err)
	} else {
		n.log.Info("node stopped", "height", n.store.Height())
	}
	return err
}

// Close releases the API listener, the reactor, the record index, the libp2p host and the store. Run calls it; call it
// directly only for a node that was opened and never run.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.ln != nil {
			if err := n.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node: close API listener: %w", err))
			}
		}
		if n.stopBlobs != nil {
			n.stopBlobs()
		}
		if n.stopLight != nil {
			n.stopLight()
		}
		if n.reactor != nil {
			n.reactor.Close()
		}
		if n.records != nil {
			if err := n.records.Close(); err != nil {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node: close record index: %w", err))
			}
		}
		if n.audit != nil {
			if err := n.audit.Close(); err != nil {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node: close audit log: %w", err))
			}
		}
		if n.host != nil {
			if err := n.host.Close(); err != nil {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node: close p2p host: %w", err))
			}
		}
		if n.store != nil {
			if err := n.store.Close(); err != nil {
				n.closeErr = errors.Join(n.closeErr, fmt.Errorf("node: close store: %w", err))
			}
		}
	})
	return n.closeErr
}
