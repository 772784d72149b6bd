package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/medledger/medledger/consensus/replica"
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
}

// Queue sizes and connection manager watermarks.
const (
	// InboxSize is the inbox buffer; when it is full, messages are dropped and counted.
	InboxSize = 8192
	// publishQueueSize bounds gossip messages waiting to be published.
	publishQueueSize = 1024
	// maxDirectSends bounds direct sends in flight; more are dropped and counted.
	maxDirectSends = 64
	// connLow and connHigh are the connection manager's watermarks.
	connLow, connHigh = 64, 192
	// bootstrap re-dial backoff
	bootstrapMinBackoff = 250 * time.Millisecond
	bootstrapMaxBackoff = 30 * time.Second
	bootstrapCheck      = 5 * time.Second
	dialTimeout         = 10 * time.Second
)

// Host is a libp2p host carrying replica messages. It implements node.Transport.
type Host struct {
	chainID string
	self    peer.ID
	log     *slog.Logger
	now     func() time.Time

	host    host.Host
	ps      *pubsub.PubSub
	topics  [numTopics]*pubsub.Topic
	subs    [numTopics]*pubsub.Subscription
	direct  protocol.ID
	gate    *strikes
	limiter *frame.PeerLimits
	mesh    *meshTracer
	dht     *kaddht.IpfsDHT

	inbox   chan replica.Inbound
	publish chan publishJob
	sends   chan struct{} // semaphore of direct sends in flight

	ctx     context.Context
	cancel  context.CancelFunc
	closing sync.RWMutex // orders wg.Add in track before wg.Wait in Close
	wg      sync.WaitGroup
	once    sync.Once

	stats counters
}

type publishJob struct {
	kind topicKind
	data []byte
}

var _ interface {
	Broadcast(*replica.Message)
	Send(replica.PeerID, *replica.Message)
	Inbox() <-chan replica.Inbound
	Penalize(replica.PeerID, error)
} = (*Host)(nil)

// New starts a host listening on cfg.ListenAddrs, joins the network's topics and dials the
// bootstrap peers (in the background, again and again while they are unreachable). ctx bounds
// the host's life as Close does.
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
	direct := directProtocol(cfg.ChainID)
	rm, err := resourceManager(direct)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(connLow, connHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	gate := newStrikes(now)
	lh, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(gate),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(), // the node registers its own; libp2p's would go to the global registry
		// No NATPortMap, no mDNS, no relay, no AutoNAT service: see DESIGN.md (off by default).
	)
	if err != nil {
		_ = cm.Close()
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: libp2p host: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Host{
		chainID: cfg.ChainID,
		self:    self,
		log:     log.With("peer", self.ShortString()),
		now:     now,
		host:    lh,
		direct:  direct,
		gate:    gate,
		limiter: frame.NewPeerLimits(directRate, directBurst),
		mesh:    newMeshTracer(),
		inbox:   make(chan replica.Inbound, InboxSize),
		publish: make(chan publishJob, publishQueueSize),
		sends:   make(chan struct{}, maxDirectSends),
		ctx:     ctx,
		cancel:  cancel,
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
	lh.SetStreamHandler(direct, h.handleStream)
	for _, ai := range boot {
		lh.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		cm.Protect(ai.ID, "bootstrap")
		h.wg.Add(1)
		go h.keepConnected(ai)
	}
	h.wg.Add(1)
	go h.publishLoop()
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

// resourceManager returns a resource manager with libp2p's default limits scaled to this
// machine, raised for the direct protocol so one stream can hold the largest message.
func resourceManager(direct protocol.ID) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	const frame = int64(MaxDirectMessageBytes) + 64<<10
	limits.StreamBaseLimit.Memory = max(limits.StreamBaseLimit.Memory, frame)
	limits.AddProtocolLimit(direct,
		rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 8 * frame},
		rcmgr.BaseLimitIncrease{})
	limits.AddProtocolPeerLimit(direct,
		rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 2 * frame},
		rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return rm, nil
}

func (h *Host) startPubsub() error {
	params, thresholds := scoreParams(h.chainID, h.gate.appScore)
	ps, err := pubsub.NewGossipSub(h.ctx, h.host,
		// pubsub warns on every message when the connection manager cannot bump a decaying
		// tag (thousands of lines a second under load); only its errors are worth a log line.
		pubsub.WithLogger(slog.New(minLevel{h.log.Handler(), slog.LevelError})),
		pubsub.WithMaxMessageSize(MaxPubsubMessageBytes),
		pubsub.WithPeerScore(params, thresholds),
		// Our own messages go to every subscribed peer whose score is above publishThreshold,
		// not only to the mesh: proposals and votes are latency-critical, the networks are
		// small, and a message published before the first heartbeat builds the mesh would
		// otherwise be lost.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerExchange(false),
		// No per-message libp2p signatures: every payload carries its own Ed25519 signature,
		// checked by the topic validators, and Noise already authenticates the peer that
		// delivers it. Signing and verifying each message again cost about a tenth of a node's
		// CPU under load. Message ids are content hashes, so the same payload is one message.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithMessageIdFn(contentID),
		pubsub.WithValidateQueueSize(256),
		pubsub.WithRawTracer(h.mesh),
	)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}
	h.ps = ps
	for k := range numTopics {
		name := topicName(h.chainID, k)
		if err := ps.RegisterTopicValidator(name, h.validator(k)); err != nil {
			return fmt.Errorf("p2p: validator for %s: %w", name, err)
		}
		t, err := ps.Join(name)
		if err != nil {
			return fmt.Errorf("p2p: join %s: %w", name, err)
		}
		h.topics[k] = t
		sub, err := t.Subscribe(pubsub.WithBufferSize(1024))
		if err != nil {
			return fmt.Errorf("p2p: subscribe %s: %w", name, err)
		}
		h.subs[k] = sub
		h.wg.Add(1)
		go h.readTopic(k, sub)
	}
	return nil
}

// readTopic moves validated gossip into the inbox, skipping our own messages. The message is
// attributed to the peer that delivered it: messages are unsigned at the pubsub layer, and a
// relayer validated the content before passing it on, so it answers for it.
func (h *Host) readTopic(k topicKind, sub *pubsub.Subscription) {
	defer h.wg.Done()
	for {
		msg, err := sub.Next(h.ctx)
		if err != nil {
			return // cancelled
		}
		if msg.ReceivedFrom == h.self {
			continue
		}
		m, ok := msg.ValidatorData.(*replica.Message)
		if !ok {
			h.log.Error("p2p: gossip without validated message", "topic", k.String())
			continue
		}
		h.deliver(msg.ReceivedFrom, m)
	}
}

// deliver queues m for the node, dropping it if the inbox is full. Every message reaching here
// passed checkSignatures, so it is marked Verified and the replica does not verify it again.
func (h *Host) deliver(from peer.ID, m *replica.Message) {
	select {
	case h.inbox <- replica.Inbound{From: replica.PeerID(from.String()), Msg: m, Verified: true}:
		h.stats.delivered.Add(1)
	default:
		if n := h.stats.inboxDropped.Add(1); n&(n-1) == 0 { // log at powers of two
			h.log.Warn("p2p: inbox full, dropping messages", "dropped", n)
		}
	}
}

// ID returns the host's peer id.
func (h *Host) ID() string { return h.self.String() }

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

// MeshPeers returns, per gossip topic name, the number of peers in our gossipsub mesh.
func (h *Host) MeshPeers() map[string]int {
	out := make(map[string]int, numTopics)
	for k := range numTopics {
		name := topicName(h.chainID, k)
		out[name] = len(h.mesh.peers(name))
	}
	return out
}

// Inbox returns the channel of messages received from peers. It is never closed.
func (h *Host) Inbox() <-chan replica.Inbound { return h.inbox }

// Broadcast sends m to the network without blocking: transactions, proposals and votes on
// their gossip topic; proposals too large for gossip directly to every connected peer. Sync
// messages are not broadcast (use Send).
func (h *Host) Broadcast(m *replica.Message) {
	k, ok := kindOf(m)
	if !ok {
		h.log.Error("p2p: broadcast of a message that is not gossiped", "kind", m.Kind())
		return
	}
	data := m.Encode()
	if len(data) > k.maxBytes() {
		if k != topicProposals {
			h.log.Error("p2p: message too large to broadcast", "kind", m.Kind(), "bytes", len(data))
			return
		}
		h.stats.bigProposals.Add(1)
		for _, p := range h.host.Network().Peers() {
			h.sendDirect(p, data)
		}
		return
	}
	if h.ctx.Err() != nil {
		return
	}
	// Message ids are content hashes and pubsub drops a publish whose id it has seen (for two
	// minutes). Consensus re-sends identical votes and proposals on purpose, for peers that
	// missed them or restarted, so each publish gets a fresh nonce: a re-send is a new message,
	// while copies of one publish are still deduplicated.
	payload := make([]byte, gossipNonceBytes, gossipNonceBytes+len(data))
	binary.BigEndian.PutUint64(payload, rand.Uint64())
	payload = append(payload, data...)
	select {
	case h.publish <- publishJob{kind: k, data: payload}:
	default:
		h.stats.publishDropped.Add(1)
	}
}

func (h *Host) publishLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case job := <-h.publish:
			if err := h.topics[job.kind].Publish(h.ctx, job.data); err != nil && h.ctx.Err() == nil {
				h.log.Warn("p2p: publish", "topic", job.kind.String(), "err", err)
			}
		}
	}
}

// Send sends m to one peer over the direct protocol without blocking.
func (h *Host) Send(to replica.PeerID, m *replica.Message) {
	p, err := peer.Decode(string(to))
	if err != nil {
		h.log.Error("p2p: send to an invalid peer id", "peer", to, "err", err)
		return
	}
	if p == h.self {
		return
	}
	h.sendDirect(p, m.Encode())
}

// sendDirect writes data to p on a stream of its own, in the background.
func (h *Host) sendDirect(p peer.ID, data []byte) {
	if len(data) > MaxDirectMessageBytes {
		h.log.Error("p2p: message too large to send", "bytes", len(data))
		return
	}
	select {
	case h.sends <- struct{}{}:
	default:
		h.stats.sendDropped.Add(1)
		return
	}
	if !h.track() {
		<-h.sends
		return
	}
	go func() {
		defer h.wg.Done()
		defer func() { <-h.sends }()
		if err := h.writeDirect(p, data); err != nil {
			h.stats.sendFailed.Add(1)
			h.log.Debug("p2p: direct send", "to", p, "err", err)
		}
	}()
}

func (h *Host) writeDirect(p peer.ID, data []byte) error {
	ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
	defer cancel()
	s, err := h.host.NewStream(ctx, p, h.direct)
	if err != nil {
		return err
	}
	if err := s.SetWriteDeadline(h.now().Add(directWriteTimeout)); err != nil {
		_ = s.Reset()
		return err
	}
	if err := frame.Write(s, data); err != nil {
		_ = s.Reset()
		return err
	}
	return s.Close()
}

// Penalize records a strike against a peer that sent invalid input. Past strikeLimit strikes in
// strikeWindow the peer is disconnected and refused for banDuration; every strike also lowers
// its gossip score.
func (h *Host) Penalize(id replica.PeerID, reason error) {
	p, err := peer.Decode(string(id))
	if err != nil || p == h.self {
		return
	}
	banned, n := h.gate.strike(p)
	h.stats.strikes.Add(1)
	h.log.Debug("p2p: strike", "peer", p, "strikes", n, "err", reason)
	if banned {
		h.log.Warn("p2p: refusing peer", "peer", p, "strikes", n, "for", banDuration, "last", reason)
		_ = h.host.Network().ClosePeer(p)
	}
}

// keepConnected dials a bootstrap peer and re-dials it, with exponential backoff and jitter,
// whenever it is not connected.
func (h *Host) keepConnected(ai peer.AddrInfo) {
	defer h.wg.Done()
	backoff := bootstrapMinBackoff
	for {
		wait := bootstrapCheck
		if h.host.Network().Connectedness(ai.ID) != network.Connected && !h.gate.isBanned(ai.ID) {
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
		for k := range numTopics {
			if h.subs[k] != nil {
				h.subs[k].Cancel()
			}
		}
		h.host.RemoveStreamHandler(h.direct)
		h.wg.Wait()
		if h.dht != nil { // before the host: it uses the host's streams and event bus
			if cerr := h.dht.Close(); cerr != nil {
				h.log.Debug("p2p: close dht", "err", cerr)
			}
		}
		for k := range numTopics {
			if h.topics[k] != nil {
				if cerr := h.topics[k].Close(); cerr != nil {
					h.log.Debug("p2p: close topic", "topic", k.String(), "err", cerr)
				}
			}
		}
		err = h.host.Close()
		h.log.Info("p2p: host closed")
	})
	return err
}

// Stats are the host's counters, for metrics and tests.
type Stats struct {
	Delivered         uint64 // messages put in the inbox
	InboxDropped      uint64 // messages dropped because the inbox was full
	GossipRejected    uint64 // gossip messages our validators rejected
	GossipIgnored     uint64 // gossip messages our validators ignored
	DirectRejected    uint64 // direct streams with a malformed frame or message
	DirectRateLimited uint64 // direct streams refused by the per-peer rate limit
	PublishDropped    uint64 // broadcasts dropped because the publish queue was full
	SendDropped       uint64 // direct sends dropped because too many were in flight
	SendFailed        uint64 // direct sends that failed
	BigProposals      uint64 // proposals sent directly because they are too large for gossip
	Strikes           uint64 // strikes recorded by Penalize
}

type counters struct {
	delivered, inboxDropped, gossipRejected, gossipIgnored, directRejected, directRateLimited,
	publishDropped, sendDropped, sendFailed, bigProposals, strikes atomic.Uint64
}

// Stats returns a snapshot of the host's counters.
func (h *Host) Stats() Stats {
	c := &h.stats
	return Stats{
		Delivered: c.delivered.Load(), InboxDropped: c.inboxDropped.Load(),
		GossipRejected: c.gossipRejected.Load(), GossipIgnored: c.gossipIgnored.Load(),
		DirectRejected: c.directRejected.Load(), DirectRateLimited: c.directRateLimited.Load(),
		PublishDropped: c.publishDropped.Load(), SendDropped: c.sendDropped.Load(),
		SendFailed: c.sendFailed.Load(), BigProposals: c.bigProposals.Load(), Strikes: c.strikes.Load(),
	}
}

// gossipNonceBytes prefix every published payload (see Broadcast).
const gossipNonceBytes = 8

// contentID names a pubsub message by the hash of its payload (nonce included).
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
