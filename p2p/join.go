package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/p2p/frame"
)

// Join protocol: the stranger opens a stream, writes one length-prefixed ticket of at most
// MaxTicketBytes and reads one status byte. On joinAdmitted it is a Candidate at that peer
// and reconnects, so that every protocol (gossipsub above all, which negotiates once per
// connection) starts again with its new rights.
const (
	// MaxTicketBytes bounds a licence ticket.
	MaxTicketBytes = 4 << 10
	joinTimeout    = 10 * time.Second
	// joinReconnects bounds the reconnects after an accepted ticket, gossipStreamWait how long
	// each waits for gossipsub's stream (see reconnectWithGossip).
	joinReconnects   = 3
	gossipStreamWait = 2 * time.Second
	// joinRate and joinBurst bound the join streams one peer may open.
	joinRate  = 1
	joinBurst = 3
	// joinAnswerGrace is how long a refused presenter's connection outlives the answer.
	joinAnswerGrace = 500 * time.Millisecond
)

// Join answers.
const (
	joinAdmitted byte = iota // the ticket is good: reconnect as a Candidate
	joinAlready              // the peer is already a candidate, member or wallet here
	joinRefused              // the ticket is invalid: the peer is banned
	joinBusy                 // no candidate slot free: try later
)

// Errors of Join.
var (
	ErrTicketRefused = errors.New("p2p: join: ticket refused")
	ErrJoinBusy      = errors.New("p2p: join: no candidate slot free")
)

// handleJoin serves one join stream: rate limit, deadline, a bounded ticket, the node's
// verdict. A refused ticket bans its presenter at once (a ticket is either valid or forged).
func (h *Host) handleJoin(s network.Stream) {
	p := s.Conn().RemotePeer()
	if !h.joinLimit.Allow(p, h.now()) {
		_ = s.Reset()
		return
	}
	if err := s.SetDeadline(h.now().Add(joinTimeout)); err != nil {
		_ = s.Reset()
		return
	}
	if h.adm.class(p) != Stranger {
		h.answerJoin(s, joinAlready)
		return
	}
	h.adm.present(p, +1)
	defer h.adm.present(p, -1)
	ticket, err := frame.Read(s, MaxTicketBytes)
	if err != nil {
		_ = s.Reset()
		if fault := (*frame.SenderFault)(nil); errors.As(err, &fault) {
			h.Penalize(p, Invalid(fmt.Errorf("p2p: join: %w", err)))
		}
		return
	}
	if err := h.adm.adm.CheckTicket(p, ticket); err != nil {
		// Banned at once (a ticket is valid or forged), disconnected a moment later, so that
		// the answer reaches the presenter first.
		h.gate.ban(p)
		h.stats.strikes.Add(1)
		h.log.Warn("p2p: refusing peer", "peer", p, "for", banDuration, "reason", "invalid ticket", "err", err)
		h.answerJoin(s, joinRefused)
		if h.track() {
			time.AfterFunc(joinAnswerGrace, func() { defer h.wg.Done(); _ = h.host.Network().ClosePeer(p) })
		}
		return
	}
	if !h.adm.admit(p, s.Conn().RemoteMultiaddr()) {
		h.answerJoin(s, joinBusy)
		return
	}
	h.log.Info("p2p: candidate admitted", "peer", p)
	h.answerJoin(s, joinAdmitted)
}

func (h *Host) answerJoin(s network.Stream, code byte) {
	if _, err := s.Write([]byte{code}); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// Join presents ticket to p over the join protocol. If p admits this host as a Candidate, Join
// closes the connection to p and connects again, so that every protocol starts with the new
// rights. It returns nil as well when p already counts this host as a candidate, member or
// wallet; ErrTicketRefused (p has banned this host) or ErrJoinBusy otherwise.
func (h *Host) Join(ctx context.Context, p peer.ID, ticket []byte) error {
	if len(ticket) == 0 || len(ticket) > MaxTicketBytes {
		return fmt.Errorf("p2p: join: ticket of %d bytes outside 1..%d", len(ticket), MaxTicketBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	code, err := h.presentTicket(ctx, p, ticket)
	if err != nil {
		return err
	}
	switch code {
	case joinAlready:
		return nil
	case joinRefused:
		return ErrTicketRefused
	case joinBusy:
		return ErrJoinBusy
	case joinAdmitted:
	default:
		return fmt.Errorf("p2p: join: unknown answer %d", code)
	}
	return h.reconnectWithGossip(ctx, p)
}

// reconnectWithGossip closes the connection to p and connects again until gossipsub has an
// outbound stream to p on the new connection. One reconnect is not always enough: gossipsub
// tried a stream while this host was still a stranger at p, and if p's refusal reaches
// gossipsub after the new connection's notice, gossipsub drops p and never tries again on
// that connection, so the candidate's subscriptions (and its registration) never reach p.
func (h *Host) reconnectWithGossip(ctx context.Context, p peer.ID) error {
	for attempt := 0; ; attempt++ {
		_ = h.host.Network().ClosePeer(p)
		if err := h.host.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
			return fmt.Errorf("p2p: join: reconnect: %w", err)
		}
		if h.ps == nil || h.awaitGossipStream(ctx, p) || attempt == joinReconnects-1 {
			return nil
		}
		h.log.Debug("p2p: join: no gossip stream after reconnecting; reconnecting again", "peer", p)
	}
}

// awaitGossipStream waits up to gossipStreamWait for an outbound gossipsub stream to p.
func (h *Host) awaitGossipStream(ctx context.Context, p peer.ID) bool {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(gossipStreamWait)
	for {
		for _, c := range h.host.Network().ConnsToPeer(p) {
			for _, s := range c.GetStreams() {
				if s.Stat().Direction == network.DirOutbound && strings.HasPrefix(string(s.Protocol()), "/meshsub/") {
					return true
				}
			}
		}
		select {
		case <-t.C:
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (h *Host) presentTicket(ctx context.Context, p peer.ID, ticket []byte) (byte, error) {
	s, err := h.host.NewStream(ctx, p, h.pol.join)
	if err != nil {
		return 0, fmt.Errorf("p2p: join: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := frame.Write(s, ticket); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("p2p: join: %w", err)
	}
	_ = s.CloseWrite()
	var code [1]byte
	if _, err := io.ReadFull(s, code[:]); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("p2p: join: no answer: %w", err)
	}
	_ = s.Close()
	return code[0], nil
}

// OnCandidate sets fn to be called, on its own goroutine, each time a Candidate connects (the
// connection it makes after its ticket was accepted): the node tells it its height, so that
// it starts syncing blocks at once.
func (h *Host) OnCandidate(fn func(peer.ID)) { h.onCandidate.Store(&fn) }

// Class returns p's class at this host: the Admission's answer, or Candidate for a stranger
// whose ticket this host accepted.
func (h *Host) Class(p peer.ID) Class { return h.adm.class(p) }

// Recheck re-evaluates every connected peer after the Admission's answers changed (the node
// calls it after each commit): a peer whose class changed is disconnected, so that one that
// lost rights loses them now and one that gained rights reconnects with them (gossipsub and
// the DHT decide a peer's topics and routing once per connection); peers that are no longer
// members leave the DHT routing table.
func (h *Host) Recheck() {
	peers := h.host.Network().Peers()
	for _, p := range peers {
		h.adm.follow(p, h.expel)
	}
	for _, p := range h.adm.changed(peers) {
		h.log.Info("p2p: peer's class changed, disconnecting", "peer", p, "class", h.adm.class(p))
		h.closePeer(p)
	}
	if h.dht != nil {
		for _, p := range h.dht.RoutingTable().ListPeers() {
			if h.adm.class(p) != Member {
				h.dht.RoutingTable().RemovePeer(p)
			}
		}
	}
}

// recheckEvery is how often the host rechecks its peers by itself (candidacies expire).
const recheckEvery = 5 * time.Second

func (h *Host) recheckLoop() {
	defer h.wg.Done()
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			h.Recheck()
		}
	}
}

// closePeer closes p's connections on a goroutine of the host's (notifications and pubsub's
// loop must not block on it).
func (h *Host) closePeer(p peer.ID) {
	if h.track() {
		go func() {
			defer h.wg.Done()
			_ = h.host.Network().ClosePeer(p)
		}()
	}
}

// expel disconnects a stranger whose grace passed without a ticket, and refuses it for a while.
func (h *Host) expel(p peer.ID) {
	if !h.adm.graceOver(p, h.expel) || h.host.Network().Connectedness(p) != network.Connected {
		return
	}
	h.adm.refuse(p)
	h.adm.mu.Lock()
	h.adm.counts.expelled++
	h.adm.mu.Unlock()
	h.log.Debug("p2p: stranger expelled after its grace", "peer", p)
	h.closePeer(p)
}

// notifiee follows connections for admission: a stranger's grace starts with its connection,
// a candidate's connection triggers OnCandidate.
func (h *Host) notifiee() network.Notifiee {
	return &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			p := c.RemotePeer()
			if h.adm.connected(p, h.expel) != Candidate {
				return
			}
			if fn := h.onCandidate.Load(); fn != nil && h.track() {
				go func() { defer h.wg.Done(); (*fn)(p) }()
			}
		},
		DisconnectedF: func(n network.Network, c network.Conn) {
			p := c.RemotePeer()
			if n.Connectedness(p) != network.Connected {
				h.adm.disconnected(p)
			}
		},
	}
}

// AdmissionStats are the admission counters.
type AdmissionStats struct {
	Throttled        uint64 // fresh stranger identities refused by the per-IP throttle
	RefusedStrangers uint64 // connections of strangers refused after their grace
	StreamsRefused   uint64 // streams refused because the peer's class may not use the protocol
	Expelled         uint64 // strangers disconnected at the end of their grace
	Candidates       int    // candidates now
}

// AdmissionStats returns a snapshot of the admission counters.
func (h *Host) AdmissionStats() AdmissionStats {
	a := h.adm
	a.mu.Lock()
	defer a.mu.Unlock()
	return AdmissionStats{
		Throttled: a.counts.throttled, RefusedStrangers: a.counts.refusedStrangers,
		StreamsRefused: h.streamsRefused.Load(), Expelled: a.counts.expelled, Candidates: len(a.candidates),
	}
}
