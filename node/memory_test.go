package node

import (
	"strings"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	c := DefaultConfig()
	derived := c.MemoryLimit()
	// The derived limit covers at least the store's memtables and caches and the mempool, and
	// stays within what a desktop can give a background service.
	if derived < 2*int64(c.Mempool.MaxBytes)+(96<<20) || derived > 1<<30 {
		t.Fatalf("derived memory limit %d MiB", derived>>20)
	}
	t.Logf("derived memory limit: %d MiB", derived>>20)
	c.Mempool.MaxBytes *= 2
	if got := c.MemoryLimit(); got <= derived {
		t.Fatalf("a larger mempool gave limit %d MiB, want more than %d", got>>20, derived>>20)
	}
	c.Node.MemoryLimitMB = 200
	if got := c.MemoryLimit(); got != 200<<20 {
		t.Fatalf("memory_limit_mb 200 gave %d bytes", got)
	}
	for _, mb := range []int{-1, 1, minMemoryLimitMB - 1} {
		c := DefaultConfig()
		c.Node.MemoryLimitMB = mb
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "memory_limit_mb") {
			t.Fatalf("memory_limit_mb %d: %v", mb, err)
		}
	}
	c = DefaultConfig()
	c.Node.MemoryLimitMB = minMemoryLimitMB
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
