// Package badger is the disk backend of chain/store: Badger v4 under the store's commit protocol
// and recovery (store.Core). It is its own package so that what links chain/store alone (the
// consensus replica, p2p, the deterministic simulation) does not link Badger.
//
// Durability (docs/storage.md, "Sync policy"): under store.SyncEveryCommit Badger runs with
// SyncWrites, so every Badger transaction is durable before its commit returns, which is the
// store.KV contract; under store.SyncNone nothing is synced except by KV.Sync, which fsyncs every
// log file Badger may still hold unsynced data in.
package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	bdb "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/internal/badgerdir"
)

// Defaults for Options.
const (
	DefaultMemTableSize     = 16 << 20
	DefaultValueLogFileSize = 64 << 20
	DefaultGCInterval       = 10 * time.Minute
)

// Badger's caches, sized for a desktop node (see openKV).
const (
	blockCacheSize = 32 << 20
	indexCacheSize = 16 << 20
	numMemtables   = 2
)

// MemoryBudget is what the store's Badger may hold in memory with opts: its memtables and its
// block and index caches (the node's memory limit adds it up with the other budgets).
func MemoryBudget(opts Options) int64 {
	memtable := opts.MemTableSize
	if memtable == 0 {
		memtable = DefaultMemTableSize
	}
	return numMemtables*memtable + blockCacheSize + indexCacheSize
}

// gcDiscardRatio: a value-log file is rewritten when at least this share of it is garbage (the
// ratio Badger's documentation suggests).
const gcDiscardRatio = 0.5

// maxGCRewritesPerRound bounds one garbage-collection round, so that Close never waits long.
const maxGCRewritesPerRound = 64

// Options configure Open. The zero value is the documented default.
type Options struct {
	// Store holds the backend-independent options: sync policy and pruning.
	Store store.Options
	// Logger receives Badger's warnings and errors (its info chatter at debug level) and
	// garbage-collection failures; nil discards them.
	Logger *slog.Logger
	// MemTableSize is Badger's memtable size in bytes: default 16 MiB, at least 1 MiB. One
	// Badger transaction holds at most about 15% of it; the store splits larger writes, so this
	// only trades memory for write throughput.
	MemTableSize int64
	// ValueLogFileSize is the size at which Badger starts a new value-log file: default 64 MiB,
	// 1 MiB to 1 GiB. Garbage collection rewrites whole files.
	ValueLogFileSize int64
	// GCInterval is how often the value log is garbage collected: default 10 minutes; negative
	// turns it off (tests drive CollectGarbage themselves).
	GCInterval time.Duration

	// legacySync restores, for the power-loss test only, the durability of the store before
	// SyncWrites: no per-transaction sync, and one Badger DB.Sync after each Set, which is how
	// the old core wrote and synced its commit marker.
	legacySync bool
}

// Store is the Badger-backed store.
type Store struct {
	*store.Core
	kv *kv

	log       *slog.Logger
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in dir and recovers from any interrupted commit.
func Open(dir string, opts Options) (*Store, error) { return open(dir, opts, nil) }

// open is Open; wrap, if set, wraps the KV under the store (tests inject faults there).
func open(dir string, opts Options, wrap func(store.KV) store.KV) (*Store, error) {
	k, log, err := openKV(dir, opts)
	if err != nil {
		return nil, err
	}
	var under store.KV = k
	if wrap != nil {
		under = wrap(k)
	}
	c, err := store.Open(under, opts.Store)
	if err != nil {
		return nil, err // store.Open closed k
	}
	s := &Store{Core: c, kv: k, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	interval := opts.GCInterval
	if interval == 0 {
		interval = DefaultGCInterval
	}
	if interval > 0 {
		go s.gcLoop(interval)
	} else {
		close(s.done)
	}
	return s, nil
}

// openKV opens Badger in dir as a store.KV for opts.
func openKV(dir string, opts Options) (*kv, *slog.Logger, error) {
	memtable := opts.MemTableSize
	if memtable == 0 {
		memtable = DefaultMemTableSize
	}
	if memtable < 1<<20 {
		return nil, nil, fmt.Errorf("store: memtable size %d, at least 1 MiB", memtable)
	}
	vlogSize := opts.ValueLogFileSize
	if vlogSize == 0 {
		vlogSize = DefaultValueLogFileSize
	}
	if vlogSize < 1<<20 || vlogSize > 1<<30 {
		return nil, nil, fmt.Errorf("store: value-log file size %d, want 1 MiB to 1 GiB", vlogSize)
	}
	if opts.Store.Sync != store.SyncEveryCommit && opts.Store.Sync != store.SyncNone {
		return nil, nil, fmt.Errorf("store: unknown sync policy %d", opts.Store.Sync)
	}
	syncWrites := opts.Store.Sync == store.SyncEveryCommit && !opts.legacySync
	log := newLogger(opts.Logger)
	bo := bdb.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		// The KV contract under SyncEveryCommit: each transaction durable before it returns.
		// Badger keeps one write-ahead log per memtable and one value-log file at a time, and
		// syncs the one it leaves only with SyncWrites; docs/storage.md has the argument.
		WithSyncWrites(syncWrites).
		// Commits are serialized by the store; Badger's conflict tracking would be pure cost.
		WithDetectConflicts(false).
		// Badger's defaults (5 memtables of 64 MiB, a 256 MiB block cache, 1 GiB memory-mapped
		// value logs) are sized for a database server; a practice's desktop node runs beside
		// other programs. These keep a node's store within a few tens of MiB.
		WithMemTableSize(memtable).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(blockCacheSize).
		// Block compression cost more CPU under load than the disk it saves is worth here.
		WithCompression(options.None).
		WithIndexCacheSize(indexCacheSize).
		WithValueLogFileSize(vlogSize).
		// Badger refuses a value threshold above its batch cap (15% of the memtable).
		WithValueThreshold(min(bdb.DefaultOptions("").ValueThreshold, memtable*15/100/2))
	if err := badgerdir.RemoveEmptyLogs(dir); err != nil {
		return nil, nil, err
	}
	db, err := bdb.Open(bo)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open badger in %s: %w", dir, err)
	}
	return &kv{db: db, dir: dir, syncWrites: syncWrites, legacySync: opts.legacySync}, log, nil
}

// Close stops garbage collection, then closes the store.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.Core.Close()
	})
	return s.closeErr
}

func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.CollectGarbage(); err != nil {
				s.log.Warn("value-log garbage collection failed", "err", err)
			}
		}
	}
}

// CollectGarbage rewrites value-log files that are at least half garbage, one after another while
// there are such files (at most 64 per call), and returns how many it rewrote. The store runs it
// every Options.GCInterval; it is safe to call concurrently with everything else.
func (s *Store) CollectGarbage() (int, error) {
	n := 0
	for n < maxGCRewritesPerRound {
		select {
		case <-s.stop:
			return n, nil
		default:
		}
		err := s.kv.collectGarbage()
		if errors.Is(err, bdb.ErrNoRewrite) || errors.Is(err, bdb.ErrRejected) {
			return n, nil // nothing worth rewriting, or a round is already running
		}
		if err != nil {
			return n, fmt.Errorf("store: value-log garbage collection: %w", err)
		}
		n++
	}
	return n, nil
}

func newLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.With("component", "badger")
}

// badgerLogger routes Badger's printf-style logging to slog. Badger reports routine work
// (compactions, replay) at info level; that is debug detail for a node operator.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, args []any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug-4, f, a) }

var _ store.Store = (*Store)(nil)
