package node

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/records"
)

// ErrTxDropped marks a transaction that left this node's mempool without being committed (its
// nonce was taken, the state refused it on a re-check, it expired, or one before it from the
// same signer was dropped). The error wrapping it gives the reason. Another node may still
// commit a copy it holds, but this node will not propose it, and a transaction of this node's
// own reuses the nonce (Mempool.NextNonce).
var ErrTxDropped = errors.New("transaction dropped from the mempool")

// commitHub tells waiters when their transactions commit or are dropped, and wakes subscribers
// after every block. The runner calls committed and dropped on its own goroutine, so nothing
// here blocks.
type commitHub struct {
	mu      sync.Mutex
	waiting map[chain.Hash][]chan records.Outcome
	wake    []chan struct{}
}

func newCommitHub() *commitHub {
	return &commitHub{waiting: make(map[chain.Hash][]chan records.Outcome)}
}

// expect registers interest in a transaction before it is submitted (so its commit cannot be
// missed); the channel receives its outcome once. cancel forgets it.
func (c *commitHub) expect(h chain.Hash) (ch chan records.Outcome, cancel func()) {
	ch = make(chan records.Outcome, 1)
	c.mu.Lock()
	c.waiting[h] = append(c.waiting[h], ch)
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		list := c.waiting[h]
		for i, x := range list {
			if x == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(c.waiting, h)
		} else {
			c.waiting[h] = list
		}
	}
}

// subscribe returns a channel that is signalled (coalesced) after each commit, and a function
// that unsubscribes it.
func (c *commitHub) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.wake = append(c.wake, ch)
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.wake {
			if x == ch {
				c.wake = append(c.wake[:i], c.wake[i+1:]...)
				return
			}
		}
	}
}

func (c *commitHub) committed(b *chain.Block) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiting) > 0 {
		for _, tx := range b.Txs {
			c.settleLocked(tx.Hash(), records.Outcome{Height: b.Header.Height})
		}
	}
	for _, ch := range c.wake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// dropped tells whoever waits for d's transaction that it will not commit here, and why.
func (c *commitHub) dropped(d replica.Dropped) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settleLocked(d.Hash, records.Outcome{Err: fmt.Errorf("%w: %s: %w", ErrTxDropped, d.Hash.Short(), d.Reason)})
}

func (c *commitHub) settleLocked(h chain.Hash, o records.Outcome) {
	for _, ch := range c.waiting[h] {
		ch <- o
	}
	delete(c.waiting, h)
}

// waitCommit waits for the outcome ch reports, or ctx: the height the transaction committed
// at, or why it was dropped (ErrTxDropped).
func waitCommit(ctx context.Context, ch chan records.Outcome) (uint64, error) {
	select {
	case o := <-ch:
		return o.Height, o.Err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
