package replica

import (
	"sync"

	"github.com/medledger/medledger/chain"
)

// sigCache is the replica's state.SigCache, shared by the Gate's validators (concurrent) and
// the replica's own execution. Bounded: two generations of at most sigCacheGen entries each
// (about 5 MiB in all), the older dropped when the newer fills.
type sigCache struct {
	mu       sync.Mutex
	cur, old map[chain.Hash]struct{}
}

const sigCacheGen = 1 << 15

func newSigCache() *sigCache {
	return &sigCache{cur: make(map[chain.Hash]struct{}), old: make(map[chain.Hash]struct{})}
}

// Verify implements state.SigCache.
func (c *sigCache) Verify(key chain.Hash, check func() error) error {
	c.mu.Lock()
	_, ok := c.cur[key]
	if !ok {
		_, ok = c.old[key]
	}
	c.mu.Unlock()
	if ok {
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.cur) >= sigCacheGen {
		c.old, c.cur = c.cur, make(map[chain.Hash]struct{}, sigCacheGen)
	}
	c.cur[key] = struct{}{}
	c.mu.Unlock()
	return nil
}
