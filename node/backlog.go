package node

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Clients' transactions are refused with 503 once the pending ones (this node's mempool, which
// holds what every node gossiped) would take more than backlogSeconds to commit at the rate the
// chain has been committing. Queueing more only makes every accepted transaction wait longer and
// costs memory; an early 503 tells the client to come back. The node's own services (anchors,
// access logs, votes) are not held back.
const (
	backlogSeconds = 3
	// backlogFloor is the backlog always allowed, whatever the recent rate (an idle chain
	// commits nothing, and its first burst must get in).
	backlogFloor = 1000
	// backlogWindow is how far back the commit rate is measured.
	backlogWindow = 10 * time.Second
)

// ErrBacklog refuses a client's transactions while the backlog is full.
var ErrBacklog = errors.New("node busy: the pending transactions would take more than 3 s to commit; retry later")

// clientBacklog measures the commit rate on the runner's goroutine and publishes, for the API's
// goroutines, whether the mempool is beyond what commits within backlogSeconds.
type clientBacklog struct {
	commits []commitMark // ring of recent commits, oldest first, within backlogWindow
	full    atomic.Bool
	pending atomic.Int64
	allowed atomic.Int64
}

type commitMark struct {
	at  time.Time
	txs int
}

// committed records a block of txs committed at now.
func (b *clientBacklog) committed(now time.Time, txs int) {
	b.commits = append(b.commits, commitMark{now, txs})
	cut := 0
	for cut < len(b.commits) && now.Sub(b.commits[cut].at) > backlogWindow {
		cut++
	}
	if cut > 0 {
		b.commits = append(b.commits[:0], b.commits[cut:]...)
	}
}

// update publishes whether pending transactions exceed the allowance at now.
func (b *clientBacklog) update(now time.Time, pending int) {
	txs := 0
	for _, c := range b.commits {
		if now.Sub(c.at) <= backlogWindow {
			txs += c.txs
		}
	}
	rate := float64(txs) / backlogWindow.Seconds()
	allowed := max(backlogFloor, int(rate*backlogSeconds))
	b.pending.Store(int64(pending))
	b.allowed.Store(int64(allowed))
	b.full.Store(pending >= allowed)
}

// check returns ErrBacklog (wrapped with the figures) while the backlog is full.
func (b *clientBacklog) check() error {
	if !b.full.Load() {
		return nil
	}
	return fmt.Errorf("%w (%d pending, %d allowed)", ErrBacklog, b.pending.Load(), b.allowed.Load())
}
