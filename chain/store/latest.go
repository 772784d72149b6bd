package store

import (
	"slices"
	"sync"

	"github.com/medledger/medledger/chain/state"
)

// LatestCacheBytes bounds the memory of the latest-state cache (keys, values and per-entry
// overhead). The hot set is small (authority set, params, the registered providers, the
// accounts of pending signers), so a few MiB keep almost every read of execution and admission
// out of the KV, whose gets walk the memtables and every level.
const LatestCacheBytes = 8 << 20

// latestEntryOverhead approximates an entry's bookkeeping (map slot, string and slice headers).
const latestEntryOverhead = 64

// latestCache holds values of the latest committed state in front of the latest-value index,
// absent keys included (patients' first transactions read accounts that do not exist yet).
// It is only read and filled under flatMu held for reading while the index is at the cached
// height, and updated with each commit's change set under flatMu held for writing, so it never
// holds a value of another height.
type latestCache struct {
	mu      sync.Mutex
	entries map[string]latestEntry
	bytes   int
	limit   int
}

type latestEntry struct {
	val     []byte
	present bool
}

func newLatestCache(limit int) *latestCache {
	return &latestCache{entries: map[string]latestEntry{}, limit: limit}
}

func entrySize(key string, val []byte) int { return len(key) + len(val) + latestEntryOverhead }

// get returns a copy of the cached value (callers may keep or change it) and whether key was
// cached at all.
func (lc *latestCache) get(key []byte) (val []byte, cached bool) {
	lc.mu.Lock()
	e, ok := lc.entries[string(key)]
	lc.mu.Unlock()
	if !ok {
		return nil, false
	}
	if !e.present {
		return nil, true
	}
	return slices.Clone(e.val), true
}

// put caches key's value (nil: absent), making room by dropping arbitrary entries.
func (lc *latestCache) put(key, val []byte) {
	size := entrySize(string(key), val)
	if size > lc.limit/16 {
		return // a large value would evict much of the hot set for one read
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.setLocked(string(key), val, size)
}

func (lc *latestCache) setLocked(key string, val []byte, size int) {
	if old, ok := lc.entries[key]; ok {
		lc.bytes -= entrySize(key, old.val)
	}
	for k, e := range lc.entries { // map order is random: random eviction
		if lc.bytes+size <= lc.limit {
			break
		}
		if k == key {
			continue
		}
		lc.bytes -= entrySize(k, e.val)
		delete(lc.entries, k)
	}
	lc.entries[key] = latestEntry{val: slices.Clone(val), present: val != nil}
	lc.bytes += size
}

// apply brings the cached keys that cs changes to their new values. Only keys already cached
// are updated: a commit's writes are not all read again, and caching them would evict the hot set.
func (lc *latestCache) apply(cs state.ChangeSet) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, ch := range cs.Changes {
		k := string(ch.Key)
		if _, ok := lc.entries[k]; !ok {
			continue
		}
		var val []byte
		if !ch.Delete {
			val = ch.Value
		}
		size := entrySize(k, val)
		if size > lc.limit/16 {
			lc.bytes -= entrySize(k, lc.entries[k].val)
			delete(lc.entries, k)
			continue
		}
		lc.setLocked(k, val, size)
	}
}

// clear drops everything (the index left the cached height by another path than a commit).
func (lc *latestCache) clear() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	clear(lc.entries)
	lc.bytes = 0
}
