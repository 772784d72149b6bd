package reactor

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Junk policy: a peer earns one strike (the host's Penalize) for every junkPerStrike payloads
// ignored as junk (see isJunk) within junkWindow. The host bans a peer at 20 strikes a minute,
// so a ban takes 2560 junk payloads a minute (about 43 a second) from one peer: honest relaying
// stays far below that even for a node that is behind (duplicates never reach a validator, and a
// transaction looks like junk to a lagging node only when its signer is more than the mempool's
// nonce window ahead or was registered in a block the node lacks).
const (
	junkPerStrike = 128
	junkWindow    = time.Minute
	// maxJunkPeers bounds the peers tracked; expired windows are forgotten first.
	maxJunkPeers = 4096
)

// junkCounter counts junk per peer in fixed windows.
type junkCounter struct {
	now func() time.Time

	mu    sync.Mutex
	peers map[peer.ID]*junkWindowCount
}

type junkWindowCount struct {
	since time.Time
	n     int
}

func newJunkCounter(now func() time.Time) *junkCounter {
	return &junkCounter{now: now, peers: make(map[peer.ID]*junkWindowCount)}
}

// add counts one junk payload from p and reports whether it completes a strike.
func (j *junkCounter) add(p peer.ID) bool {
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	c, ok := j.peers[p]
	if !ok || now.Sub(c.since) > junkWindow {
		if !ok && len(j.peers) >= maxJunkPeers {
			for q, x := range j.peers {
				if now.Sub(x.since) > junkWindow {
					delete(j.peers, q)
				}
			}
			if len(j.peers) >= maxJunkPeers {
				return false // too many peers at once: the host's connection limits apply first
			}
		}
		c = &junkWindowCount{since: now}
		j.peers[p] = c
	}
	c.n++
	return c.n%junkPerStrike == 0
}
