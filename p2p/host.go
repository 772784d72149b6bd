package p2p

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pubsubpb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	mh "github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medledger/medledger/p2p/frame"
)

// Config configures a Host. ChainID, ListenAddrs and IdentityFile are required.
type Config struct {
	ChainID      string   // network id: namespaces topics and protocol ids
	ListenAddrs  []string // e.g. /ip4/127.0.0.1/tcp/26600 and /ip4/127.0.0.1/udp/26600/quic-v1
	Bootstrap    []string // full multiaddrs ending in /p2p/<peer id>; dialled at start and re-dialled with backoff while disconnected
	IdentityFile string   // libp2p private key (Ed25519), created with mode 0600 if absent
	Logger       *slog.Logger

	// DisableDHT runs no DHT and no discovery: the host talks to its bootstrap peers and to
	// those that dial it, and Provide and FindHolders fail with ErrNoDHT. For a fixed topology
	// (a validator behind sentries) and for tests that need one.
	DisableDHT bool
	// DHTClient runs the Kademlia DHT in client mode: the host queries the DHT but neither
	// answers queries nor advertises itself for discovery (for wallets; nodes leave it false).
	DHTClient bool
	// DiscoveryInterval is the time between discovery rounds once settled (see discoverLoop);
	// 0 means DefaultDiscoveryInterval.
	DiscoveryInterval time.Duration
	// MaxDirectBytes is the direct protocol's frame limit (the largest payload the caller sends
	// directly); 0 means DefaultMaxDirectBytes.
	MaxDirectBytes int
	// Inbox bounds the accepted payloads waiting for the caller (see InboxLimits).
	Inbox InboxLimits
	// Admission classes peers (see Class and docs/security.md, "Admission"); nil means
	// OpenAdmission, every peer a member.
	Admission Admission
	// Ticket, if set, is this node's licence ticket: it presents it to each bootstrap peer it
	// connects to (see Join), to be let in as a Candidate before it is registered.
	Ticket []byte

	// Registerer, if set, receives libp2p's own metrics (swarm, identify, holepunch, …); nil
	// turns them off. libp2p registers them once per registry: give each host its own.
	Registerer prometheus.Registerer

	// strangerGrace overrides strangerGrace (tests).
	strangerGrace time.Duration
}

// Connection manager watermarks and dial timing.
const (
	// connLow and connHigh are the connection manager's watermarks.
	connLow, connHigh = 64, 192
	// bootstrap re-dial backoff
	bootstrapMinBackoff = 250 * time.Millisecond
	bootstrapMaxBackoff = 30 * time.Second
	bootstrapCheck      = 5 * time.Second
	dialTimeout         = 10 * time.Second
)

// Host is a libp2p host carrying opaque payloads between peers: gossip topics with the
// caller's validators, a direct stream protocol, and an inbox of what was accepted.
type Host struct {
	chainID   string
	self      peer.ID
	log       *slog.Logger
	now       func() time.Time
	maxDirect int

	host    host.Host
	ps      *pubsub.PubSub
	direct  protocol.ID
	directV atomic.Pointer[Validator]
	// directHead judges long direct payloads from their head (HandleDirectHead).
	directHead atomic.Pointer[HeadValidator]
	gate       *strikes
	adm        *admitter
	pol        policy
	// ticket is the licence ticket (SetTicket may install one after start); boot the
	// bootstrap peers it is presented to.
	ticketMu  sync.Mutex
	ticket    []byte
	boot      []peer.ID
	limiter   *frame.PeerLimits
	joinLimit *frame.PeerLimits
	// onCandidate is called when a candidate connects (OnCandidate).
	onCandidate    atomic.Pointer[func(peer.ID)]
	streamsRefused *atomic.Uint64
	// openTopics holds the full names of the topics candidates may use.
	openTopics sync.Map
	mesh       *meshTracer
	dht        *kaddht.IpfsDHT
	// rendezvousKey is the multihash of the discovery namespace's CID, open to all members.
	rendezvousKey []byte

	topicsMu sync.Mutex
	topics   map[string]*topic // by short name

	inbox        *inbox
	publish      chan publishJob
	publishBytes atomic.Int64
	sends        sendLimits

	ctx     context.Context
	cancel  context.CancelFunc
	closing sync.RWMutex // orders wg.Add in track before wg.Wait in Close
	wg      sync.WaitGroup
	once    sync.Once

	stats counters
}

// New starts a host listening on cfg.ListenAddrs and dials the bootstrap peers (in the
// background, again and again while they are unreachable). ctx bounds the host's life as Close
// does. The caller then joins its topics (JoinTopic) and sets the direct protocol's validator
// (HandleDirect).
func New(ctx context.Context, cfg Config) (*Host, error) {
	return newHost(ctx, cfg, time.Now)
}

func newHost(ctx context.Context, cfg Config, now func() time.Time) (*Host, error) {
	if cfg.ChainID == "" {
		return nil, errors.New("p2p: config: chain id is empty")
	}
	if len(cfg.ListenAddrs) == 0 {
		return nil, errors.New("p2p: config: no listen addresses")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, err := LoadOrCreateIdentity(cfg.IdentityFile)
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: peer id: %w", err)
	}
	boot, err := parseBootstrap(cfg.Bootstrap, self)
	if err != nil {
		return nil, err
	}
	maxDirect := cfg.MaxDirectBytes
	if maxDirect <= 0 {
		maxDirect = DefaultMaxDirectBytes
	}
	cfg.Inbox.defaults(maxDirect)
	if cfg.Inbox.PeerBytes < maxDirect || cfg.Inbox.Bytes < cfg.Inbox.PeerBytes {
		return nil, fmt.Errorf("p2p: config: inbox limits %+v cannot hold one direct payload of %d bytes", cfg.Inbox, maxDirect)
	}
	if len(cfg.Ticket) > MaxTicketBytes {
		return nil, fmt.Errorf("p2p: config: ticket of %d bytes, limit %d", len(cfg.Ticket), MaxTicketBytes)
	}
	direct := directProtocol(cfg.ChainID)
	pol := newPolicy(cfg.ChainID)
	adm := newAdmitter(cfg.Admission, pol, now, cfg.strangerGrace)
	streamsRefused := new(atomic.Uint64)
	baseRM, err := resourceManager(direct, maxDirect)
	if err != nil {
		return nil, err
	}
	rm := &policedRM{ResourceManager: baseRM, allow: adm.allowed, refused: streamsRefused}
	cm, err := connmgr.NewConnManager(connLow, connHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	gate := newStrikes(now)
	metricsOpt := libp2p.DisableMetrics()
	if cfg.Registerer != nil {
		metricsOpt = libp2p.PrometheusRegisterer(cfg.Registerer)
	}
	lh, err := libp2p.New(
		metricsOpt,
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(gater{strikes: gate, adm: adm, boot: bootSet(boot)}),
		libp2p.DisableRelay(),
		// No NATPortMap, no mDNS, no relay, no AutoNAT service: see DESIGN.md (off by default).
	)
	if err != nil {
		_ = cm.Close()
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: libp2p host: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Host{
		chainID:        cfg.ChainID,
		self:           self,
		log:            log.With("peer", self.ShortString()),
		now:            now,
		maxDirect:      maxDirect,
		host:           lh,
		direct:         direct,
		gate:           gate,
		adm:            adm,
		streamsRefused: streamsRefused,
		pol:            pol,
		ticket:         cfg.Ticket,
		limiter:        frame.NewPeerLimits(directRate, directBurst),
		joinLimit:      frame.NewPeerLimits(joinRate, joinBurst),
		mesh:           newMeshTracer(),
		topics:         make(map[string]*topic),
		inbox:          newInbox(cfg.Inbox),
		publish:        make(chan publishJob, publishQueueSize),
		sends:          sendLimits{perPeer: make(map[peer.ID]int), maxBytes: 8 * maxDirect},
		ctx:            ctx,
		cancel:         cancel,
	}
	if h.rendezvousKey, err = mh.Sum([]byte(rendezvous(cfg.ChainID)), mh.SHA2_256, -1); err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("p2p: rendezvous key: %w", err)
	}
	if err := h.startPubsub(); err != nil {
		_ = h.Close()
		return nil, err
	}
	if !cfg.DisableDHT {
		if err := h.startDHT(boot, cfg.DHTClient); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	lh.Network().Notify(h.notifiee())
	// The host listens from libp2p.New on: connections accepted before the notifiee existed
	// are followed from now (a stranger's grace starts here), or a restarted node would keep a
	// stranger that dialled it in that window for good.
	for _, p := range lh.Network().Peers() {
		h.adm.connected(p, h.expel)
	}
	lh.SetStreamHandler(direct, h.handleStream)
	lh.SetStreamHandler(pol.join, h.handleJoin)
	for _, ai := range boot {
		h.boot = append(h.boot, ai.ID)
		lh.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		cm.Protect(ai.ID, "bootstrap")
		h.wg.Add(1)
		go h.keepConnected(ai)
	}
	h.wg.Add(3)
	go h.recheckLoop()
	go h.publishLoop()
	go func() { defer h.wg.Done(); h.inbox.pump(h.ctx) }()
	if h.dht != nil {
		interval := cfg.DiscoveryInterval
		if interval <= 0 {
			interval = DefaultDiscoveryInterval
		}
		h.wg.Add(1)
		go h.discoverLoop(interval, !cfg.DHTClient)
	}
	h.log.Info("p2p: host started", "id", self.String(), "addrs", h.Addrs(), "bootstrap", len(boot))
	return h, nil
}

func parseBootstrap(addrs []string, self peer.ID) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("p2p: bootstrap address %q: %w", s, err)
		}
		if ai.ID == self {
			continue
		}
		i := slices.IndexFunc(out, func(o peer.AddrInfo) bool { return o.ID == ai.ID })
		if i >= 0 {
			out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
			continue
		}
		out = append(out, *ai)
	}
	return out, nil
}

// Connection limits of the resource manager, above libp2p's defaults: strangers are refused
// at InterceptSecured right after their handshake, which frees their slot, and the few let in
// (freshPerIP per IP a minute, maxCandidates candidates) leave room for every member. The
// transient scope holds a connection only while its handshake runs; a flood of handshakes
// must not fill it before a member's turn.
const (
	systemConnsInbound    = 1024
	systemConns           = 2048
	transientConnsInbound = 512
	transientConns        = 512
)

// resourceManager returns a resource manager with libp2p's default limits scaled to this
// machine, raised for the direct protocol so one stream can hold the largest payload, and
// for connections (see systemConnsInbound).
func resourceManager(direct protocol.ID, maxDirect int) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	frame := int64(maxDirect) + 64<<10
	limits.StreamBaseLimit.Memory = max(limits.StreamBaseLimit.Memory, frame)
	limits.AddProtocolLimit(direct,
		rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 8 * frame},
		rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(direct,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 2 * frame},
		rcmgr.BaseLimitIncrease{})
	scaled := limits.AutoScale()
	concrete := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			ConnsInbound: rcmgr.LimitVal(max(int(scaled.ToPartialLimitConfig().System.ConnsInbound), systemConnsInbound)),
			Conns:        rcmgr.LimitVal(max(int(scaled.ToPartialLimitConfig().System.Conns), systemConns)),
			FD:           rcmgr.LimitVal(max(int(scaled.ToPartialLimitConfig().System.FD), systemConns)),
		},
		Transient: rcmgr.ResourceLimits{
			ConnsInbound: rcmgr.LimitVal(max(int(scaled.ToPartialLimitConfig().Transient.ConnsInbound), transientConnsInbound)),
			Conns:        rcmgr.LimitVal(max(int(scaled.ToPartialLimitConfig().Transient.Conns), transientConns)),
			FD:           rcmgr.LimitVal(max(int(scaled.ToPartialLimitConfig().Transient.FD), transientConns)),
		},
	}.Build(scaled)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(concrete))
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return rm, nil
}

func (h *Host) startPubsub() error {
	params, thresholds := scoreParams(h.gate.appScore)
	ps, err := pubsub.NewGossipSub(h.ctx, h.host,
		// pubsub warns on every message when the connection manager cannot bump a decaying
		// tag (thousands of lines a second under load); only its errors are worth a log line.
		pubsub.WithLogger(slog.New(minLevel{h.log.Handler(), slog.LevelError})),
		pubsub.WithMaxMessageSize(MaxPubsubMessageBytes),
		pubsub.WithPeerScore(params, thresholds),
		// Must follow WithPeerScore: a graylisted peer is disconnected (see refuseGraylisted).
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(h.refuseGraylisted), scoreInspectPeriod),
		// Our own messages go to every subscribed peer whose score is above publishThreshold,
		// not only to the mesh: consensus messages are latency-critical, the networks are
		// small, and a message published before the first heartbeat builds the mesh would
		// otherwise be lost.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerExchange(false),
		// No per-message libp2p signatures: payloads carry their own signatures, checked by
		// the callers' validators, and Noise already authenticates the peer that delivers
		// them. Signing and verifying each message again cost about a tenth of a node's CPU
		// under load.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		// A message is named by its payload's hash: the same payload is one message, relayed
		// and validated once per node however often it is published (within the seen TTL).
		pubsub.WithMessageIdFn(contentID),
		pubsub.WithSeenMessagesTTL(seenTTL),
		pubsub.WithValidateQueueSize(256),
		pubsub.WithRawTracer(h.mesh),
		// Admission (see topicAllowed): which peers count on which topic.
		pubsub.WithPeerFilter(h.topicAllowed),
		pubsub.WithSubscriptionFilter(subFilter{h}),
	)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	h.ps = ps
	return nil
}

// ID returns the host's peer id.
func (h *Host) ID() string { return h.self.String() }

// PeerID returns the host's peer id.
func (h *Host) PeerID() peer.ID { return h.self }

// Addrs returns the listen multiaddrs with /p2p/<id> appended.
func (h *Host) Addrs() []string {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.self, Addrs: h.host.Addrs()})
	if err != nil {
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	slices.Sort(out)
	return out
}

// Peers returns the ids of connected peers, sorted.
func (h *Host) Peers() []string {
	ps := h.host.Network().Peers()
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	slices.Sort(out)
	return out
}

// PeerClasses returns the number of connected peers by class (see Class): "member",
// "candidate", "wallet", "stranger".
func (h *Host) PeerClasses() map[string]int {
	out := map[string]int{Member.String(): 0, Candidate.String(): 0, Wallet.String(): 0, Stranger.String(): 0}
	for _, p := range h.host.Network().Peers() {
		out[h.adm.class(p).String()]++
	}
	return out
}

// MeshPeers returns, per joined topic's full name, the number of peers in our gossipsub mesh.
func (h *Host) MeshPeers() map[string]int {
	h.topicsMu.Lock()
	defer h.topicsMu.Unlock()
	out := make(map[string]int, len(h.topics))
	for _, t := range h.topics {
		out[t.full] = len(h.mesh.peers(t.full))
	}
	return out
}

// Inbox returns the channel of accepted payloads, in arrival order. It is never closed.
func (h *Host) Inbox() <-chan Delivery { return h.inbox.out }

// ErrInvalidData marks a penalty's reason as proof of invalid data (see Invalid).
var ErrInvalidData = errors.New("p2p: invalid data")

// Invalid marks err as the severe kind of penalty: data no honest peer sends, whatever this
// node's view of the chain (a bad signature, a malformed message, a forged ticket). Penalize
// bans the peer at once for it.
func Invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalidData, err) }

// Penalize records a penalty against a peer that sent bad input. Its severity follows the
// reason: one marked Invalid (errors.Is(reason, ErrInvalidData)) disconnects the peer and
// refuses it for banDuration at once; any other (stale, duplicate, junk, excess) is a strike,
// and past strikeLimit strikes in strikeWindow the peer is banned the same way. Every penalty
// also lowers the peer's gossip score. Being behind is never a reason: callers penalize only
// what the peer is at fault for.
func (h *Host) Penalize(p peer.ID, reason error) {
	if p == h.self || p == "" {
		return
	}
	banned, n := h.gate.strike(p)
	h.stats.strikes.Add(1)
	if errors.Is(reason, ErrInvalidData) && !banned {
		banned = h.gate.ban(p)
	}
	h.log.Debug("p2p: strike", "peer", p, "strikes", n, "err", reason)
	if banned {
		h.log.Warn("p2p: refusing peer", "peer", p, "strikes", n, "for", banDuration, "last", reason)
		h.closePeer(p)
	}
}

// scoreInspectPeriod is how often gossip scores are checked for graylisted peers.
const scoreInspectPeriod = time.Second

// refuseGraylisted bans every connected peer whose gossip score fell below the graylist
// threshold. Pubsub ignores everything a graylisted peer sends, yet still reads, decrypts and
// decodes it: a peer that was graylisted for invalid messages (five are enough) and keeps
// sending them would cost us that forever without earning the strikes that disconnect it, since
// its messages no longer reach a validator. Pubsub calls this from its scoring loop, so the
// disconnection happens elsewhere.
func (h *Host) refuseGraylisted(scores map[peer.ID]float64) {
	for p, score := range scores {
		if score >= graylistThreshold || p == h.self || !h.gate.ban(p) {
			continue
		}
		h.stats.graylistBans.Add(1)
		h.log.Warn("p2p: refusing peer", "peer", p, "gossip_score", score, "for", banDuration, "reason", "graylisted")
		if h.track() {
			go func() {
				defer h.wg.Done()
				_ = h.host.Network().ClosePeer(p)
			}()
		}
	}
}

// keepConnected dials a bootstrap peer and re-dials it, with exponential backoff and jitter,
// whenever it is not connected.
func (h *Host) keepConnected(ai peer.AddrInfo) {
	defer h.wg.Done()
	backoff := bootstrapMinBackoff
	for {
		wait := bootstrapCheck
		// A bootstrap peer the ledger does not know is dialled (this node may be behind), but
		// not while it is refused: one that let its grace pass or lost its membership would
		// otherwise be reconnected every few seconds and kept for another grace each time.
		if h.host.Network().Connectedness(ai.ID) != network.Connected && !h.gate.isBanned(ai.ID) && !h.adm.refusedNow(ai.ID) {
			// This loop owns the backoff: clear the swarm's own (5 s and up per failed
			// address), which would otherwise make a peer that just came up wait.
			if sw, ok := h.host.Network().(interface{ Backoff() *swarm.DialBackoff }); ok {
				sw.Backoff().Clear(ai.ID)
			}
			ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
			err := h.host.Connect(ctx, ai)
			cancel()
			if err != nil {
				if h.ctx.Err() != nil {
					return
				}
				h.log.Debug("p2p: bootstrap dial", "peer", ai.ID, "err", err, "retry", backoff)
				// Jitter spreads re-dials of many nodes restarted together.
				wait = backoff/2 + rand.N(backoff/2+1)
				backoff = min(2*backoff, bootstrapMaxBackoff)
			} else {
				h.log.Info("p2p: connected to bootstrap peer", "peer", ai.ID)
				backoff = bootstrapMinBackoff
				h.joinWithTicket(ai.ID)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// SetTicket installs a licence ticket after start (a practice whose licence arrived while its
// node ran) and presents it at once to the bootstrap peers connected now; the others get it
// when the bootstrap loop connects them.
func (h *Host) SetTicket(ticket []byte) error {
	if len(ticket) == 0 || len(ticket) > MaxTicketBytes {
		return fmt.Errorf("p2p: ticket of %d bytes outside 1..%d", len(ticket), MaxTicketBytes)
	}
	h.ticketMu.Lock()
	h.ticket = slices.Clone(ticket)
	h.ticketMu.Unlock()
	for _, p := range h.boot {
		if h.host.Network().Connectedness(p) == network.Connected && h.track() {
			go func() { defer h.wg.Done(); h.joinWithTicket(p) }()
		}
	}
	return nil
}

// joinWithTicket presents the configured ticket to p, if there is one (see Join).
func (h *Host) joinWithTicket(p peer.ID) {
	h.ticketMu.Lock()
	ticket := h.ticket
	h.ticketMu.Unlock()
	if len(ticket) == 0 {
		return
	}
	if err := h.Join(h.ctx, p, ticket); err != nil {
		h.log.Warn("p2p: join", "peer", p, "err", err)
		// Not left connected as a stranger until p expels it: disconnect, and the bootstrap
		// loop dials and presents the ticket again.
		if !errors.Is(err, ErrTicketRefused) {
			_ = h.host.Network().ClosePeer(p)
		}
	}
}

// track adds a goroutine to the wait group unless the host is closing.
func (h *Host) track() bool {
	h.closing.RLock()
	defer h.closing.RUnlock()
	if h.ctx.Err() != nil {
		return false
	}
	h.wg.Add(1)
	return true
}

// Close stops everything the host started and closes the libp2p host. It waits for the host's
// goroutines to end.
func (h *Host) Close() error {
	var err error
	h.once.Do(func() {
		h.closing.Lock()
		h.cancel()
		h.closing.Unlock()
		h.topicsMu.Lock()
		topics := slices.Collect(maps.Values(h.topics))
		h.topicsMu.Unlock()
		for _, t := range topics {
			t.sub.Cancel()
		}
		h.host.RemoveStreamHandler(h.direct)
		h.host.RemoveStreamHandler(h.pol.join)
		h.adm.close()
		h.wg.Wait()
		if h.dht != nil { // before the host: it uses the host's streams and event bus
			if cerr := h.dht.Close(); cerr != nil {
				h.log.Debug("p2p: close dht", "err", cerr)
			}
		}
		for _, t := range topics {
			if cerr := t.ps.Close(); cerr != nil {
				h.log.Debug("p2p: close topic", "topic", t.name, "err", cerr)
			}
		}
		err = h.host.Close()
		h.log.Info("p2p: host closed")
	})
	return err
}

// Stats are the host's counters, for metrics and tests.
type Stats struct {
	Delivered         uint64 // payloads put in the inbox
	InboxDropped      uint64 // accepted payloads dropped beyond the inbox's bounds
	GossipRejected    uint64 // gossip payloads rejected (by size or by a validator)
	GossipIgnored     uint64 // gossip payloads validators ignored
	DirectRejected    uint64 // direct streams with a malformed frame or a rejected payload
	DirectIgnored     uint64 // direct payloads the validator ignored
	DirectRateLimited uint64 // direct streams refused by the per-peer rate limit
	DirectHeadRefused uint64 // direct payloads ignored or rejected from their head, the rest unread
	PublishDropped    uint64 // payloads dropped because the publish queue was full
	SendDropped       uint64 // direct sends dropped beyond the limits on sends in flight
	SendFailed        uint64 // direct sends that failed
	Strikes           uint64 // strikes recorded by Penalize
	GraylistBans      uint64 // peers refused for a gossip score below the graylist threshold
	ProvidersRefused  uint64 // DHT provider records refused (sender not an assigned holder)
}

type counters struct {
	delivered, inboxDropped, gossipRejected, gossipIgnored, directRejected, directIgnored,
	directRateLimited, directHeadRefused, publishDropped, sendDropped, sendFailed, strikes,
	graylistBans, providersRefused atomic.Uint64
}

// Stats returns a snapshot of the host's counters.
func (h *Host) Stats() Stats {
	c := &h.stats
	return Stats{
		Delivered: c.delivered.Load(), InboxDropped: c.inboxDropped.Load(),
		GossipRejected: c.gossipRejected.Load(), GossipIgnored: c.gossipIgnored.Load(),
		DirectRejected: c.directRejected.Load(), DirectIgnored: c.directIgnored.Load(),
		DirectRateLimited: c.directRateLimited.Load(), DirectHeadRefused: c.directHeadRefused.Load(),
		PublishDropped: c.publishDropped.Load(),
		SendDropped:    c.sendDropped.Load(), SendFailed: c.sendFailed.Load(), Strikes: c.strikes.Load(),
		GraylistBans: c.graylistBans.Load(), ProvidersRefused: c.providersRefused.Load(),
	}
}

// Banned reports whether p is refused now (see Penalize).
func (h *Host) Banned(p peer.ID) bool { return h.gate.isBanned(p) }

// Strikes returns p's strikes in the current window (see Penalize).
func (h *Host) Strikes(p peer.ID) int { return h.gate.current(p) }

// seenTTL is how long pubsub remembers a message id: a payload published again within it is
// dropped as a duplicate everywhere.
const seenTTL = 2 * time.Minute

// contentID names a pubsub message by the hash of its payload.
func contentID(m *pubsubpb.Message) string {
	h := sha256.Sum256(m.GetData())
	return string(h[:])
}

// minLevel drops records below a level, whatever the wrapped handler would accept.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(as), m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.min} }
