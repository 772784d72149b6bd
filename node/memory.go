package node

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/medledger/medledger/chain/statetree"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/badger"
	"github.com/medledger/medledger/records/index"
)

// A node's memory is mostly what its configuration sizes: Badger's memtables and caches, the
// state tree's node cache, the latest-state cache, the mempool. The node sets Go's soft memory
// limit to twice the sum of those budgets: a ceiling against runaway growth, not a target. A
// limit at the budgets themselves (256 MiB) made the collector run without pause once an
// overload pushed the live heap past it: the step after 30 s at twice the sustained load then
// committed 74 tx/s at 25.6 ms of CPU each, against 348 tx/s at 5.3 ms without a limit and 328
// at 5.7 ms at 512 MiB (docs/bench.md, 2026-12-05).
const (
	// memoryBase covers what no setting sizes: libp2p (connections, pubsub, the DHT), the
	// runtime, the API's and the record exchange's buffers in flight.
	memoryBase = 64 << 20
	// validatorBudget is the compiled FHIR R4 schema (node/fhir.Shared), about 13 MiB.
	validatorBudget = 16 << 20
	// minMemoryLimitMB is the least [node] memory_limit_mb accepted: below it the collector
	// would run without pause just to hold the base.
	minMemoryLimitMB = 96
)

// MemoryLimit is the node's soft memory limit in bytes: [node] memory_limit_mb when set, else
// twice the sum of the budgets the configuration implies (the mempool counts twice in the sum:
// transactions are held decoded beside their encoding).
func (c *Config) MemoryLimit() int64 {
	if c.Node.MemoryLimitMB > 0 {
		return int64(c.Node.MemoryLimitMB) << 20
	}
	return 2 * (memoryBase + validatorBudget + badger.MemoryBudget(badger.Options{}) + index.MemoryBudget +
		statetree.CacheBudget + store.LatestCacheBytes + 2*int64(c.Mempool.MaxBytes))
}

// applyMemoryLimit sets the runtime's soft memory limit, unless GOMEMLIMIT does (an operator's
// environment wins over the config).
func applyMemoryLimit(c *Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		log.Info("memory limit from GOMEMLIMIT", "limit_mib", debug.SetMemoryLimit(-1)>>20)
		return
	}
	limit := c.MemoryLimit()
	debug.SetMemoryLimit(limit)
	log.Info("memory limit", "limit_mib", limit>>20)
}
