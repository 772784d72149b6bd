package p2p

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Misbehaviour policy: a peer that collects strikeLimit strikes within strikeWindow is
// disconnected and refused for banDuration.
const (
	strikeLimit  = 20
	strikeWindow = time.Minute
	banDuration  = 10 * time.Minute
)

// strikes counts misbehaviour per peer and remembers bans. It is the connection gater: a banned
// peer is refused at InterceptSecured (the first hook that knows the authenticated peer id) and
// never dialled.
type strikes struct {
	now func() time.Time

	mu     sync.Mutex
	counts map[peer.ID]*strikeCount
	banned map[peer.ID]time.Time // until
}

type strikeCount struct {
	since time.Time // start of the current window
	n     int
}

func newStrikes(now func() time.Time) *strikes {
	return &strikes{now: now, counts: make(map[peer.ID]*strikeCount), banned: make(map[peer.ID]time.Time)}
}

// strike records one strike against p and reports whether p has just been banned.
func (s *strikes) strike(p peer.ID) (banned bool, n int) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.counts[p]
	if !ok || now.Sub(c.since) > strikeWindow {
		if len(s.counts) >= 4096 {
			s.pruneLocked(now)
		}
		c = &strikeCount{since: now}
		s.counts[p] = c
	}
	c.n++
	if c.n < strikeLimit {
		return false, c.n
	}
	if until, ok := s.banned[p]; ok && now.Before(until) {
		return false, c.n // already banned
	}
	s.banned[p] = now.Add(banDuration)
	return true, c.n
}

// ban refuses p for banDuration from now, whatever its strikes, and reports whether p was not
// banned already.
func (s *strikes) ban(p peer.ID) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.banned[p]; ok && now.Before(until) {
		return false
	}
	s.banned[p] = now.Add(banDuration)
	return true
}

// current returns p's strikes in the current window.
func (s *strikes) current(p peer.ID) int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.counts[p]; ok && now.Sub(c.since) <= strikeWindow {
		return c.n
	}
	return 0
}

func (s *strikes) isBanned(p peer.ID) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.banned[p]
	if !ok {
		return false
	}
	if !now.Before(until) {
		delete(s.banned, p)
		delete(s.counts, p)
		return false
	}
	return true
}

func (s *strikes) pruneLocked(now time.Time) {
	for p, c := range s.counts {
		if now.Sub(c.since) > strikeWindow {
			delete(s.counts, p)
		}
	}
	for p, until := range s.banned {
		if !now.Before(until) {
			delete(s.banned, p)
		}
	}
}

// appScore is the application-specific pubsub score (P5): strikes in the current window, weighted.
func (s *strikes) appScore(p peer.ID) float64 {
	if s.isBanned(p) {
		return graylistThreshold * 2
	}
	return float64(s.current(p)) * appStrikeWeight
}

// InterceptPeerDial refuses to dial a banned peer.
func (s *strikes) InterceptPeerDial(p peer.ID) bool { return !s.isBanned(p) }

// InterceptAddrDial allows every address.
func (s *strikes) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection: the peer is not known yet.
func (s *strikes) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a banned peer once its identity is authenticated.
func (s *strikes) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !s.isBanned(p)
}

// InterceptUpgraded allows every upgraded connection.
func (s *strikes) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
