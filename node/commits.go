package node

import (
	"context"
	"sync"

	"github.com/medledger/medledger/chain"
)

// commitHub tells waiters when their transactions commit and wakes subscribers after every
// block. The runner calls committed on its own goroutine, so nothing here blocks.
type commitHub struct {
	mu      sync.Mutex
	waiting map[chain.Hash][]chan uint64
	wake    []chan struct{}
}

func newCommitHub() *commitHub { return &commitHub{waiting: make(map[chain.Hash][]chan uint64)} }

// expect registers interest in a transaction before it is submitted (so its commit cannot be
// missed); the channel receives the height it committed at. cancel forgets it.
func (c *commitHub) expect(h chain.Hash) (ch chan uint64, cancel func()) {
	ch = make(chan uint64, 1)
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

// subscribe returns a channel that is signalled (coalesced) after each commit.
func (c *commitHub) subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.wake = append(c.wake, ch)
	c.mu.Unlock()
	return ch
}

func (c *commitHub) committed(b *chain.Block) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiting) > 0 {
		for _, tx := range b.Txs {
			h := tx.Hash()
			for _, ch := range c.waiting[h] {
				ch <- b.Header.Height
			}
			delete(c.waiting, h)
		}
	}
	for _, ch := range c.wake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// waitCommit waits for the height ch reports, or ctx.
func waitCommit(ctx context.Context, ch chan uint64) (uint64, error) {
	select {
	case h := <-ch:
		return h, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
