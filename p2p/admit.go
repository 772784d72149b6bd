package p2p

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Admission bounds. Every map fed by strangers is bounded; past a bound strangers are
// refused, never members.
const (
	// strangerGrace is how long a stranger may stay connected to present a ticket.
	strangerGrace = 10 * time.Second
	// A stranger that let its grace pass is refused for firstRefusal, twice as long each time
	// it does so again, up to strangerRefusal; it is forgotten after a quiet strangerRefusal.
	// The first refusal is short because an honest practice under load may miss its grace once.
	firstRefusal    = 10 * time.Second
	strangerRefusal = 2 * time.Minute
	// freshPerIP new stranger identities are let in per remote IP per freshWindow.
	freshPerIP  = 8
	freshWindow = time.Minute
	// maxThrottledIPs bounds the remote IPs whose fresh identities are counted, and
	// maxRefused the strangers remembered as refused.
	maxThrottledIPs = 4096
	maxRefused      = 4096
	// candidateTTL is how long an accepted ticket makes its holder a Candidate, unless the
	// ledger makes it a Member first.
	candidateTTL = 10 * time.Minute
	// maxCandidates bounds candidates in total, maxCandidatesPerIP those from one remote IP.
	maxCandidates      = 64
	maxCandidatesPerIP = 4
	// maxTracked bounds the connected peers whose class is remembered for Recheck (above the
	// connection manager's high watermark).
	maxTracked = 4096
)

// admitter keeps the host's side of admission: the candidates it accepted tickets from,
// strangers refused after their grace, the fresh-identity throttle per remote IP, and the
// class each connected peer had when it was last checked.
type admitter struct {
	adm   Admission
	pol   policy
	now   func() time.Time
	grace time.Duration

	mu         sync.Mutex
	candidates map[peer.ID]candidate
	refused    map[peer.ID]refusal
	presenting map[peer.ID]int // join streams being served, per peer
	fresh      map[netip.Addr]*freshIDs
	tracked    map[peer.ID]Class // connected peers: class at their last check
	timers     map[peer.ID]*time.Timer
	counts     admissionCounts
}

type candidate struct {
	until time.Time
	ip    netip.Addr
}

type refusal struct {
	until time.Time
	times int // refusals in a row, for the doubling
}

type freshIDs struct {
	since time.Time
	ids   []peer.ID // at most freshPerIP
}

type admissionCounts struct {
	throttled, refusedStrangers, expelled uint64
}

func newAdmitter(adm Admission, pol policy, now func() time.Time, grace time.Duration) *admitter {
	if adm == nil {
		adm = OpenAdmission{}
	}
	if grace <= 0 {
		grace = strangerGrace
	}
	return &admitter{
		adm: adm, pol: pol, now: now, grace: grace,
		candidates: map[peer.ID]candidate{}, refused: map[peer.ID]refusal{}, presenting: map[peer.ID]int{},
		fresh: map[netip.Addr]*freshIDs{}, tracked: map[peer.ID]Class{}, timers: map[peer.ID]*time.Timer{},
	}
}

// class returns p's class: the node's answer, except that a stranger whose ticket was
// accepted less than candidateTTL ago is a Candidate.
func (a *admitter) class(p peer.ID) Class {
	c := a.adm.Class(p)
	if c != Stranger {
		return c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cd, ok := a.candidates[p]; ok {
		if a.now().Before(cd.until) {
			return Candidate
		}
		delete(a.candidates, p)
	}
	return Stranger
}

// allowed reports whether p may use protocol proto.
func (a *admitter) allowed(p peer.ID, proto protocol.ID) bool {
	return a.pol.allowed(a.class(p), proto)
}

// secured decides an authenticated connection (InterceptSecured): a peer the ledger knows, a
// candidate, or a connection this host dialled passes; an inbound stranger passes unless it
// was refused lately or its remote IP brought freshPerIP new identities within freshWindow.
func (a *admitter) secured(dir network.Direction, p peer.ID, remote ma.Multiaddr) bool {
	if dir == network.DirOutbound || a.class(p) != Stranger {
		return true
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.refused[p]; ok {
		if now.Before(r.until) {
			a.counts.refusedStrangers++
			return false
		}
		if now.Sub(r.until) > strangerRefusal {
			delete(a.refused, p)
		}
	}
	ip, ok := remoteIP(remote)
	if !ok {
		return false
	}
	f := a.fresh[ip]
	if f != nil && now.Sub(f.since) > freshWindow {
		f = nil
	}
	if f == nil {
		if len(a.fresh) >= maxThrottledIPs {
			for k, v := range a.fresh {
				if now.Sub(v.since) > freshWindow {
					delete(a.fresh, k)
				}
			}
			if len(a.fresh) >= maxThrottledIPs {
				a.counts.throttled++
				return false
			}
		}
		f = &freshIDs{since: now}
		a.fresh[ip] = f
	}
	if slices.Contains(f.ids, p) {
		return true
	}
	if len(f.ids) >= freshPerIP {
		a.counts.throttled++
		return false
	}
	f.ids = append(f.ids, p)
	return true
}

// admit makes p a Candidate after its ticket was accepted, within the candidate bounds, and
// reports whether there was room.
func (a *admitter) admit(p peer.ID, remote ma.Multiaddr) bool {
	ip, _ := remoteIP(remote)
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	perIP := 0
	for q, cd := range a.candidates {
		if !now.Before(cd.until) {
			delete(a.candidates, q)
			continue
		}
		if cd.ip == ip && q != p {
			perIP++
		}
	}
	if _, ok := a.candidates[p]; !ok && (len(a.candidates) >= maxCandidates || perIP >= maxCandidatesPerIP) {
		return false
	}
	a.candidates[p] = candidate{until: now.Add(candidateTTL), ip: ip}
	delete(a.refused, p)
	return true
}

// refuse refuses a stranger for firstRefusal, doubled for each refusal in a row up to
// strangerRefusal.
func (a *admitter) refuse(p peer.ID) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.refused[p]
	if !ok && len(a.refused) >= maxRefused {
		for q, old := range a.refused {
			if now.Sub(old.until) > strangerRefusal {
				delete(a.refused, q)
			}
		}
		if len(a.refused) >= maxRefused {
			return // the fresh-identity throttle still holds it back
		}
	}
	if ok && now.Sub(r.until) > strangerRefusal {
		r.times = 0 // quiet long enough: start again
	}
	r.times++
	r.until = now.Add(min(strangerRefusal, firstRefusal<<min(r.times-1, 8)))
	a.refused[p] = r
}

// present marks p as presenting a ticket (+1) or done with it (-1): its grace does not end
// while it is presenting (the join stream has its own deadline).
func (a *admitter) present(p peer.ID, delta int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.presenting[p] + delta; n > 0 {
		a.presenting[p] = n
	} else {
		delete(a.presenting, p)
	}
}

// connected records p's class as of its new connection and, for a stranger, arms the grace
// timer that expel runs when it fires. It returns the class.
func (a *admitter) connected(p peer.ID, expel func(peer.ID)) Class {
	c := a.class(p)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.tracked[p]; !ok && len(a.tracked) >= maxTracked && c != Member {
		go expel(p) // no room to follow it: only members are kept beyond the bound
		return c
	}
	a.tracked[p] = c
	if c == Stranger && a.timers[p] == nil {
		a.timers[p] = time.AfterFunc(a.grace, func() { expel(p) })
	}
	return c
}

// follow makes sure a connected p is tracked and, if it is a stranger, that its grace timer is
// armed: a backstop for connections whose notification was missed or whose timer fired while
// the connection was not yet fully up.
func (a *admitter) follow(p peer.ID, expel func(peer.ID)) {
	a.mu.Lock()
	_, tracked := a.tracked[p]
	armed := a.timers[p] != nil
	a.mu.Unlock()
	if !tracked {
		a.connected(p, expel)
		return
	}
	if !armed && a.class(p) == Stranger {
		a.mu.Lock()
		if a.timers[p] == nil {
			a.timers[p] = time.AfterFunc(a.grace, func() { expel(p) })
		}
		a.mu.Unlock()
	}
}

// disconnected forgets p when its last connection closed.
func (a *admitter) disconnected(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.tracked, p)
	if t := a.timers[p]; t != nil {
		t.Stop()
		delete(a.timers, p)
	}
}

// changed returns the connected peers whose class differs from the one they were checked with,
// and records their new class. A peer that fell to Stranger (a member removed, a candidacy
// expired) is refused as an expelled stranger is: it is no newcomer owed a grace, and the
// bootstrap loop does not dial it back while it is refused.
func (a *admitter) changed(connected []peer.ID) (out []peer.ID) {
	for _, p := range connected {
		c := a.class(p)
		a.mu.Lock()
		prev, ok := a.tracked[p]
		if ok && prev != c {
			a.tracked[p] = c
			out = append(out, p)
		}
		a.mu.Unlock()
		if ok && prev != c && c == Stranger {
			a.refuse(p)
		}
	}
	return out
}

// refusedNow reports whether p, a stranger, is refused at the moment.
func (a *admitter) refusedNow(p peer.ID) bool {
	if a.class(p) != Stranger {
		return false
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.refused[p]
	return ok && now.Before(r.until)
}

// graceOver ends p's grace timer; it reports whether p is still a stranger, to be expelled.
// A stranger presenting a ticket right now gets another grace instead.
func (a *admitter) graceOver(p peer.ID, expel func(peer.ID)) bool {
	a.mu.Lock()
	if a.presenting[p] > 0 {
		a.timers[p] = time.AfterFunc(a.grace, func() { expel(p) })
		a.mu.Unlock()
		return false
	}
	delete(a.timers, p)
	a.mu.Unlock()
	return a.class(p) == Stranger
}

func (a *admitter) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p, t := range a.timers {
		t.Stop()
		delete(a.timers, p)
	}
}

func remoteIP(m ma.Multiaddr) (netip.Addr, bool) {
	if m == nil {
		return netip.Addr{}, false
	}
	ip, err := manet.ToIP(m)
	if err != nil {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}
