package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// defaultMemTableSize is Badger's memtable size unless Options says otherwise.
const defaultMemTableSize = 16 << 20

// Badger is the on-disk store.
type Badger struct{ *core }

// OpenBadger opens (creating if needed) the store in dir and recovers from any interrupted commit.
func OpenBadger(dir string, opts Options) (*Badger, error) {
	if opts.Sync != SyncEveryCommit && opts.Sync != SyncNone {
		return nil, fmt.Errorf("store: unknown sync policy %d", opts.Sync)
	}
	memtable := opts.MemTableSize
	if memtable <= 0 {
		memtable = defaultMemTableSize
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{newLogger(opts.Logger)}).
		// Durability is the store's explicit sync (see SyncPolicy), not per-write fsyncs.
		WithSyncWrites(false).
		// Commits are serialized by the store; Badger's conflict tracking would be pure cost.
		WithDetectConflicts(false).
		// Badger's defaults (5 memtables of 64 MiB, a 256 MiB block cache, 1 GiB memory-mapped
		// value logs) are sized for a database server; a practice's desktop node runs beside
		// other programs. These keep a node's store within a few tens of MiB.
		WithMemTableSize(memtable).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		// Block compression cost more CPU under load than the disk it saves is worth here.
		WithCompression(options.None).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		// Badger refuses a value threshold above its batch cap (15% of the memtable).
		WithValueThreshold(min(badger.DefaultOptions("").ValueThreshold, memtable*15/100/2))
	if err := removeEmptyLogs(dir); err != nil {
		return nil, err
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("store: open badger in %s: %w", dir, err)
	}
	c, err := openCore(&badgerKV{db: db}, opts.Sync)
	if err != nil {
		if cerr := db.Close(); cerr != nil {
			err = fmt.Errorf("%w (and closing: %v)", err, cerr)
		}
		return nil, err
	}
	return &Badger{core: c}, nil
}

// removeEmptyLogs deletes zero-length memtable logs (.mem) and value logs (.vlog). Badger creates
// such a file and then sizes it; a kill between the two leaves an empty file that Badger v4
// refuses to open ("Create a new file"). An empty log holds no writes and nothing points into it,
// so deleting it loses nothing.
func removeEmptyLogs(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !(strings.HasSuffix(e.Name(), ".mem") || strings.HasSuffix(e.Name(), ".vlog")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("store: stat %s: %w", e.Name(), err)
		}
		if info.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("store: remove empty log: %w", err)
			}
		}
	}
	return nil
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

// Memory is the in-memory twin of Badger. It runs the same commit and recovery code over an
// ordered in-memory map, and its commits are atomic (serialized under one lock), so CrashClone
// can model a crash at any instant between calls.
type Memory struct {
	*core
	kv *memKV
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	m, err := openMemory(newMemKV())
	if err != nil {
		// An empty map cannot fail recovery; reaching this is a bug in this package.
		panic(err)
	}
	return m
}

func openMemory(m *memKV) (*Memory, error) {
	c, err := openCore(m, SyncEveryCommit)
	if err != nil {
		return nil, err
	}
	return &Memory{core: c, kv: m}, nil
}

// CrashClone returns a new Memory holding what a crash of m now would keep: every completed
// commit and the sign state. m is unaffected. Simulations use it to crash and restart nodes.
func (m *Memory) CrashClone() *Memory {
	// Holding the commit lock means no commit is half done; a failed one (broken) is exactly
	// what recovery in openMemory removes.
	m.core.mu.Lock()
	snap := m.kv.clone()
	m.core.mu.Unlock()
	c, err := openMemory(snap)
	if err != nil {
		// Recovery over a snapshot taken between commits cannot fail unless this package has a bug.
		panic(fmt.Sprintf("store: crash clone: %v", err))
	}
	return c
}
