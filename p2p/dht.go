package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	mh "github.com/multiformats/go-multihash"

	"github.com/medledger/medledger/chain"
)

// Discovery through the DHT.
const (
	// DefaultDiscoveryInterval is the time between two discovery rounds once the host has
	// settled. Right after start the rounds are closer: discoveryFirst, then doubling.
	DefaultDiscoveryInterval = 30 * time.Second
	discoveryFirst           = time.Second
	// readvertiseEvery is how often the host renews its rendezvous provider record. Records
	// live for 48 hours on the peers holding them; renewing often re-seeds peers that restarted
	// (the records are kept in memory).
	readvertiseEvery = 10 * time.Minute
	// discoveryTimeout bounds one advertisement and one provider lookup.
	discoveryTimeout = 30 * time.Second
	// discoveryDials bounds concurrent dials of discovered peers.
	discoveryDials = 8
	// defaultMaxHolders is FindHolders' limit when the caller gives none.
	defaultMaxHolders = 20
)

// dhtProtocolPrefix namespaces the DHT by network: its protocol is
// /medledger/<chain>/kad/1.0.0, so DHTs of two networks never talk to each other.
func dhtProtocolPrefix(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID)
}

// rendezvous is the discovery namespace under which every node of a network advertises itself.
func rendezvous(chainID string) string {
	return "/medledger/" + chainID + "/nodes/1"
}

// startDHT starts the Kademlia DHT on the host: providers and peer routing only (no values),
// namespaced by chain id, seeded from the configured bootstrap peers. The default filters accept
// peers and addresses on private and loopback networks (the public-only filters are not used)
// and no public bootstrap peers are configured, so the DHT talks only to peers we reach through
// the configured ones.
func (h *Host) startDHT(boot []peer.AddrInfo, client bool) error {
	mode := kaddht.ModeServer // forced: there is no AutoNAT to tell ModeAuto we are reachable
	if client {
		mode = kaddht.ModeClient
	}
	d, err := kaddht.New(h.host,
		kaddht.Mode(mode),
		kaddht.ProtocolPrefix(dhtProtocolPrefix(h.chainID)),
		kaddht.DisableValues(),
		kaddht.BootstrapPeers(boot...),
		// Members only, on any address (a testnet on 127.0.0.1 or a LAN must be routable):
		// the routing table holds members alone, and queries go to members alone.
		kaddht.QueryFilter(func(_ any, ai peer.AddrInfo) bool { return h.adm.class(ai.ID) == Member }),
		kaddht.RoutingTableFilter(func(_ any, p peer.ID) bool { return h.adm.class(p) == Member }),
		kaddht.OnRequestHook(h.judgeDHTRequest),
	)
	if err != nil {
		return fmt.Errorf("p2p: kad-dht: %w", err)
	}
	h.dht = d
	return nil
}

// judgeDHTRequest drops the provider records of an ADD_PROVIDER request unless the ledger
// assigns its sender as a holder of the key (kad-dht stores only a sender's own record): the
// handler then finds no record to store, answers with an error and closes the stream. The
// network's rendezvous key is open to every member. A refused announcement is dropped without a
// strike: the sender's view of the assignment may differ from ours.
func (h *Host) judgeDHTRequest(_ context.Context, s network.Stream, req *dhtpb.Message) {
	if req.GetType() != dhtpb.Message_ADD_PROVIDER {
		return
	}
	p := s.Conn().RemotePeer()
	if h.mayProvide(p, req.GetKey()) {
		return
	}
	// Dropped, not struck: an honest holder announces records our ledger does not show yet (its
	// anchor commits here a moment later) or no longer assigns to it (a membership change moved
	// them), and every such announcement would count towards a ban. What it costs is bounded by
	// the DHT's own request limits.
	req.ProviderPeers = nil
	h.stats.providersRefused.Add(1)
}

// mayProvide reports whether p may announce the DHT key mhKey (a multihash).
func (h *Host) mayProvide(p peer.ID, mhKey []byte) bool {
	if h.adm.class(p) != Member {
		return false
	}
	if string(mhKey) == string(h.rendezvousKey) {
		return true
	}
	dec, err := mh.Decode(mhKey)
	if err != nil || dec.Code != mh.SHA2_256 || len(dec.Digest) != len(chain.Hash{}) {
		return false
	}
	return h.adm.adm.MayProvide(p, chain.Hash(dec.Digest))
}

// LibP2P returns the underlying libp2p host, for protocols living outside this package (the
// record blob protocol registers its stream handler on it). Closing it is Close's job.
func (h *Host) LibP2P() host.Host { return h.host }

// HashCID maps a 32-byte record or blob id to the CID it is provided under in the DHT: CIDv1,
// raw codec, with a sha2-256 multihash whose digest is the id itself (not a hash of it).
func HashCID(key chain.Hash) cid.Cid {
	m, err := mh.Encode(key[:], mh.SHA2_256)
	if err != nil {
		panic(err) // a 32-byte sha2-256 digest always encodes
	}
	return cid.NewCidV1(cid.Raw, m)
}

// Provide announces in the DHT that this node holds the blob or record with id key. The record
// is kept locally even when the announcement fails (for instance while the host has no DHT
// peers yet); records expire after 48 hours on the peers holding them, so a holder should
// provide its keys again periodically.
func (h *Host) Provide(ctx context.Context, key chain.Hash) error {
	ctx, cancel, err := h.dhtContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := h.dht.Provide(ctx, HashCID(key), true); err != nil {
		return fmt.Errorf("p2p: provide %x: %w", key[:8], err)
	}
	return nil
}

// FindHolders returns up to max peers (20 if max <= 0), other than this node, that announced
// holding key. It returns what it found when ctx ends, and ctx's error only if it found nothing.
// The holders' addresses are in the peerstore for a while, so they can be dialled.
func (h *Host) FindHolders(ctx context.Context, key chain.Hash, max int) ([]peer.ID, error) {
	if max <= 0 {
		max = defaultMaxHolders
	}
	ctx, cancel, err := h.dhtContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out []peer.ID
	// One more than asked: the local provider store may list this node among the holders.
	for ai := range h.dht.FindProvidersAsync(ctx, HashCID(key), max+1) {
		// A member may answer with any peer: keep the holders the ledger assigns.
		if ai.ID == h.self || len(out) == max || !h.adm.adm.MayProvide(ai.ID, key) {
			continue
		}
		out = append(out, ai.ID)
	}
	if len(out) == 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("p2p: find holders of %x: %w", key[:8], ctx.Err())
	}
	return out, nil
}

// ErrNoDHT is returned by Provide and FindHolders on a host configured with DisableDHT.
var ErrNoDHT = errors.New("p2p: the DHT is disabled")

var errClosed = errors.New("p2p: host closed")

// dhtContext derives from ctx a context that Close cancels as well.
func (h *Host) dhtContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if h.dht == nil {
		return nil, nil, ErrNoDHT
	}
	if h.ctx.Err() != nil {
		return nil, nil, errClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(h.ctx, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// discoverLoop makes the host find the other nodes of its network through the DHT and connect
// to them: it advertises itself under the network's rendezvous key (server mode only: a client
// serves nothing and is not a node to find) and dials the other advertisers it is not connected
// to. Rounds start every discoveryFirst and slow down, doubling, to one per interval.
func (h *Host) discoverLoop(interval time.Duration, advertise bool) {
	defer h.wg.Done()
	disc := drouting.NewRoutingDiscovery(h.dht)
	ns := rendezvous(h.chainID)
	wait := min(discoveryFirst, interval)
	var advertised time.Time
	for {
		t := time.NewTimer(wait)
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, interval)
		if h.dht.RoutingTable().Size() == 0 {
			continue // nobody to ask yet (the bootstrap peers are being dialled)
		}
		if advertise && (advertised.IsZero() || time.Since(advertised) >= readvertiseEvery) {
			ctx, cancel := context.WithTimeout(h.ctx, discoveryTimeout)
			_, err := disc.Advertise(ctx, ns)
			cancel()
			switch {
			case err == nil:
				advertised = time.Now()
			case h.ctx.Err() != nil:
				return
			default:
				h.log.Debug("p2p: advertise", "err", err)
			}
		}
		h.connectDiscovered(disc, ns)
	}
}

// connectDiscovered looks up the network's advertisers and dials those we are not connected
// to, banned peers excepted, until the host has connLow connections (the connection manager's
// low watermark: more would only be trimmed).
func (h *Host) connectDiscovered(disc *drouting.RoutingDiscovery, ns string) {
	ctx, cancel := context.WithTimeout(h.ctx, discoveryTimeout)
	defer cancel()
	found, err := disc.FindPeers(ctx, ns, discovery.Limit(connLow))
	if err != nil {
		h.log.Debug("p2p: find peers", "err", err)
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	dials := make(chan struct{}, discoveryDials)
	for ai := range found {
		if ai.ID == h.self || h.gate.isBanned(ai.ID) || h.adm.class(ai.ID) != Member ||
			h.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if len(h.host.Network().Peers()) >= connLow {
			return
		}
		select {
		case dials <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-dials }()
			dctx, dcancel := context.WithTimeout(ctx, dialTimeout)
			defer dcancel()
			if err := h.host.Connect(dctx, ai); err != nil {
				h.log.Debug("p2p: dial discovered peer", "peer", ai.ID, "err", err)
				return
			}
			h.log.Info("p2p: connected to discovered peer", "peer", ai.ID)
		})
	}
}
