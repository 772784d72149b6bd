package p2p

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// gater is the host's connection gater: the strike gate (banned peers are never dialled nor
// let in) plus admission at InterceptSecured, the first hook that knows the authenticated
// peer id (see admitter.secured).
type gater struct {
	*strikes
	adm  *admitter
	boot map[peer.ID]bool // configured bootstrap peers: always dialled
}

// InterceptPeerDial refuses to dial a banned peer, and a stranger other than a configured
// bootstrap peer: a member never needs to dial a peer the ledger does not know (newcomers and
// wallets dial in), so nothing this node does (replication, the DHT, gossip) reaches out to
// one. Bootstrap peers are dialled whatever this node's view says: a node still syncing may
// not know yet that they are members.
func (g gater) InterceptPeerDial(p peer.ID) bool {
	if g.isBanned(p) {
		return false
	}
	return g.boot[p] || g.adm.class(p) != Stranger
}

func bootSet(boot []peer.AddrInfo) map[peer.ID]bool {
	m := make(map[peer.ID]bool, len(boot))
	for _, ai := range boot {
		m[ai.ID] = true
	}
	return m
}

// InterceptSecured refuses a banned peer, a stranger refused lately and a fresh stranger
// identity beyond its remote IP's allowance.
func (g gater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if g.isBanned(p) {
		return false
	}
	return g.adm.secured(dir, p, addrs.RemoteMultiaddr())
}

// ErrProtocolRefused is the error a stream gets when its peer's class may not use its protocol.
var ErrProtocolRefused = errors.New("p2p: protocol refused for this peer's class")

// policedRM wraps the resource manager so that every stream, whoever opens it and whichever
// handler serves it (gossipsub, kad-dht and identify included), is checked against the
// admission policy once multistream has negotiated its protocol: go-libp2p's basic host calls
// the stream scope's SetProtocol then, for inbound streams before the handler runs and for
// outbound ones before NewStream returns, and resets the stream if it fails.
type policedRM struct {
	network.ResourceManager
	allow   func(peer.ID, protocol.ID) bool
	refused *atomic.Uint64
}

func (r *policedRM) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	s, err := r.ResourceManager.OpenStream(p, dir)
	if err != nil {
		return nil, err
	}
	return &policedStream{StreamManagementScope: s, rm: r, peer: p}, nil
}

type policedStream struct {
	network.StreamManagementScope
	rm   *policedRM
	peer peer.ID
}

func (s *policedStream) SetProtocol(proto protocol.ID) error {
	if !s.rm.allow(s.peer, proto) {
		s.rm.refused.Add(1)
		return fmt.Errorf("%w: %s", ErrProtocolRefused, proto)
	}
	return s.StreamManagementScope.SetProtocol(proto)
}
