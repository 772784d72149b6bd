// Package index is the record service's persisted per-patient index: which records, consents
// and accesses belong to each patient, and enough of each record (author, ciphertext hash) to
// find and delete its blob. It lives in its own Badger database beside the blobs and is updated
// once per committed block; the block's height is written in the same Badger transaction as the
// block's last entries, so a node that restarts (even after kill -9) resumes after the last
// block indexed instead of replaying the chain. Re-applying a block that was partly written is
// idempotent. Patient lists are key-prefix scans, read a page at a time.
//
// The index holds pseudonymous ids and hashes, like the ledger it is derived from, and can be
// rebuilt from the ledger (Reset, then apply every block) — except for the FHIR keys of the
// records this node imported (fhir.go), which are the node's own memory: Type/id and a hash of
// the content, never on the ledger, lost if the index directory is lost (a re-import then makes
// new records instead of recognizing the old ones).
package index

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	bdb "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/internal/badgerdir"
)

// Page sizes of the patient lists.
const (
	// MaxPage bounds one page of a patient list (and DefaultPage is what a limit of 0 asks for).
	MaxPage     = 1000
	DefaultPage = MaxPage
)

// ErrBadCursor: a page cursor that this index did not hand out.
var ErrBadCursor = errors.New("index: bad page cursor")

// formatVersion is the layout below; an index of another version is dropped and rebuilt.
const formatVersion = 1

// Key layout (every key starts with one tag byte; numbers are big-endian so keys sort by them):
//
//	v                          format version (1 byte)
//	m                          height 8 | records 8 | block hash 32: the last block applied
//	x                          height 8: the last block the service reacted to
//	r id                       patient 20 | author 20 | ciphertext 32 | height 8 | seq 8
//	o seq                      id 32: records in anchor order
//	p patient seq              id 32 | author 20 | ciphertext 32 | height 8
//	c patient height ord       consent id 32
//	q request                  height 8: the block that first logged it
//	a patient height ord       request 32 | record 32
//	f patient key              FHIR key of an imported record (fhir.go; not from the ledger)
const (
	tagVersion = 'v'
	tagMeta    = 'm'
	tagReacted = 'x'
	tagRecord  = 'r'
	tagOrder   = 'o'
	tagPatient = 'p'
	tagConsent = 'c'
	tagRequest = 'q'
	tagAccess  = 'a'
	recValLen  = 20 + 20 + 32 + 8 + 8
	patValLen  = 32 + 20 + 32 + 8
	posLen     = 8 + 4 // height, ordinal of the event in its block
	accValLen  = 32 + 32
	metaLen    = 8 + 8 + 32
	recSuffix  = 8
)

// Record is what the index keeps of an anchored record.
type Record struct {
	ID             chain.Hash
	Patient        chain.Address
	Author         chain.Address
	CiphertextHash chain.Hash
	Height         uint64 // the block that anchored it
	Seq            uint64 // its place in anchor order, from 0
}

// Badger's sizes for the index: a few tens of MiB beside the chain store.
const (
	defaultMemTableSize = 8 << 20
	blockCacheSize      = 8 << 20
	indexCacheSize      = 4 << 20
)

// MemoryBudget is what the index's Badger may hold in memory at the default sizes: two
// memtables and its caches (the node's memory limit adds it up with the other budgets).
const MemoryBudget = 2*defaultMemTableSize + blockCacheSize + indexCacheSize

// Options tune Open; the zero value is the default.
type Options struct {
	// Logger receives Badger's warnings and errors; nil discards them.
	Logger *slog.Logger
	// MemTableSize is Badger's memtable size: default 8 MiB, at least 1 MiB.
	MemTableSize int64
}

// tip is the last block applied and how many records the index holds.
type tip struct {
	height, count uint64
	hash          chain.Hash
}

// shared is one open Badger database; every Index opened on the same directory in this process
// shares it (tests run several services over one blob directory; Badger locks its directory).
type shared struct {
	dir  string
	db   *bdb.DB
	refs int        // under openMu
	wmu  sync.Mutex // one Apply (or Reset) at a time
	tip  atomic.Pointer[tip]

	// crashAfterParts, set by tests only (under wmu), fails Apply after that many parts of a
	// block are committed: a crash between two transactions of one block.
	crashAfterParts int
}

var (
	openMu sync.Mutex
	opened = map[string]*shared{}
)

// Index is a handle on an open index. Safe for concurrent use; Apply calls are serialized.
type Index struct {
	s      *shared
	closed atomic.Bool
}

// Open opens (creating if needed) the index in dir. Opening a directory this process already
// has open returns another handle on the same database; each handle must be closed.
func Open(dir string, opts Options) (*Index, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	openMu.Lock()
	defer openMu.Unlock()
	if s := opened[abs]; s != nil {
		s.refs++
		return &Index{s: s}, nil
	}
	db, err := openBadger(abs, opts)
	if err != nil {
		return nil, err
	}
	s := &shared{dir: abs, db: db, refs: 1}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	opened[abs] = s
	return &Index{s: s}, nil
}

func openBadger(dir string, opts Options) (*bdb.DB, error) {
	memtable := opts.MemTableSize
	if memtable == 0 {
		memtable = defaultMemTableSize
	}
	if memtable < 1<<20 {
		return nil, fmt.Errorf("index: memtable size %d, at least 1 MiB", memtable)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	bo := bdb.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		// Derived data: a crash loses at most the last blocks applied, which are applied again
		// (the height is in the same transaction as the block's entries).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		// Sized for a desktop node beside its chain store: a few tens of MiB at most.
		WithMemTableSize(memtable).
		WithNumMemtables(2).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithValueLogFileSize(16 << 20).
		// Every value is small: keep them in the LSM tree, so scans never touch the value log.
		WithValueThreshold(256)
	// A kill between Badger creating a log file and sizing it leaves an empty one that Badger
	// refuses to open ("Create a new file"); the chain store's remedy applies here too.
	if err := badgerdir.RemoveEmptyLogs(dir); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	db, err := bdb.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("index: open badger in %s: %w", dir, err)
	}
	return db, nil
}

// load reads the version and the tip; an index of another format is dropped.
func (s *shared) load() error {
	var ver []byte
	var t tip
	err := s.db.View(func(txn *bdb.Txn) error {
		if v, err := get(txn, []byte{tagVersion}); err != nil {
			return err
		} else {
			ver = v
		}
		m, err := get(txn, []byte{tagMeta})
		if err != nil {
			return err
		}
		if m != nil {
			if len(m) != metaLen {
				return fmt.Errorf("index: corrupt tip (%d bytes)", len(m))
			}
			t.height, t.count = binary.BigEndian.Uint64(m), binary.BigEndian.Uint64(m[8:])
			copy(t.hash[:], m[16:])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(ver) != 1 || ver[0] != formatVersion {
		return s.reset()
	}
	s.tip.Store(&t)
	return nil
}

// reset drops everything and writes the format version.
func (s *shared) reset() error {
	if err := s.db.DropAll(); err != nil {
		return fmt.Errorf("index: drop: %w", err)
	}
	if err := s.db.Update(func(txn *bdb.Txn) error { return txn.Set([]byte{tagVersion}, []byte{formatVersion}) }); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	s.tip.Store(&tip{})
	return nil
}

// Close releases this handle; the last handle on a directory closes the database.
func (x *Index) Close() error {
	if x.closed.Swap(true) {
		return nil
	}
	openMu.Lock()
	defer openMu.Unlock()
	x.s.refs--
	if x.s.refs > 0 {
		return nil
	}
	delete(opened, x.s.dir)
	if err := x.s.db.Close(); err != nil {
		return fmt.Errorf("index: close: %w", err)
	}
	return nil
}

// Reset empties the index (a ledger that does not hold the block it last applied: another
// chain, or a store restored from an older copy); it is then rebuilt from block 1.
func (x *Index) Reset() error {
	x.s.wmu.Lock()
	defer x.s.wmu.Unlock()
	return x.s.reset()
}

// Height is the last block applied (0: none).
func (x *Index) Height() uint64 { return x.s.tip.Load().height }

// Tip is the last block applied and its hash (as Apply was told it).
func (x *Index) Tip() (uint64, chain.Hash) {
	t := x.s.tip.Load()
	return t.height, t.hash
}

// Count is how many records the index holds.
func (x *Index) Count() uint64 { return x.s.tip.Load().count }

// Reacted is the last block whose effects the record service has carried out (SetReacted).
func (x *Index) Reacted() (uint64, error) {
	var h uint64
	err := x.s.db.View(func(txn *bdb.Txn) error {
		v, err := get(txn, []byte{tagReacted})
		if len(v) == 8 {
			h = binary.BigEndian.Uint64(v)
		}
		return err
	})
	return h, err
}

// SetReacted records that the effects of every block up to height are carried out.
func (x *Index) SetReacted(height uint64) error {
	return x.s.db.Update(func(txn *bdb.Txn) error {
		return txn.Set([]byte{tagReacted}, binary.BigEndian.AppendUint64(nil, height))
	})
}

// Record returns what the index holds of record id (false: not indexed).
func (x *Index) Record(id chain.Hash) (Record, bool, error) {
	var rec Record
	var ok bool
	tipHeight := x.Height()
	err := x.s.db.View(func(txn *bdb.Txn) error {
		var err error
		rec, ok, err = getRecord(txn, id)
		return err
	})
	if ok && rec.Height > tipHeight {
		return Record{}, false, err // a partly applied block's
	}
	return rec, ok, err
}

func getRecord(txn *bdb.Txn, id chain.Hash) (Record, bool, error) {
	v, err := get(txn, append([]byte{tagRecord}, id[:]...))
	if err != nil || v == nil {
		return Record{}, false, err
	}
	if len(v) != recValLen {
		return Record{}, false, fmt.Errorf("index: corrupt record %s", id.Short())
	}
	r := Record{ID: id, Height: binary.BigEndian.Uint64(v[72:]), Seq: binary.BigEndian.Uint64(v[80:])}
	copy(r.Patient[:], v)
	copy(r.Author[:], v[20:])
	copy(r.CiphertextHash[:], v[40:])
	return r, true, nil
}

// Records returns a page of patient's records in anchor order, starting after the cursor
// (empty: from the first), at most limit (0: DefaultPage; at most MaxPage), and the cursor of
// the next page (empty: this was the last).
func (x *Index) Records(patient chain.Address, after string, limit int) ([]Record, string, error) {
	var out []Record
	next, err := x.scan(tagPatient, patient, after, recSuffix, limit, patHeight, func(suffix, v []byte) error {
		if len(v) != patValLen {
			return errors.New("index: corrupt patient record entry")
		}
		r := Record{Patient: patient, Seq: binary.BigEndian.Uint64(suffix), Height: binary.BigEndian.Uint64(v[84:])}
		copy(r.ID[:], v)
		copy(r.Author[:], v[32:])
		copy(r.CiphertextHash[:], v[52:])
		out = append(out, r)
		return nil
	})
	return out, next, err
}

// Consents returns a page of the ids of patient's consents and emergency accesses, in ledger
// order (paged as Records).
func (x *Index) Consents(patient chain.Address, after string, limit int) ([]chain.Hash, string, error) {
	var out []chain.Hash
	next, err := x.scan(tagConsent, patient, after, posLen, limit, posHeight, func(_, v []byte) error {
		if len(v) != 32 {
			return errors.New("index: corrupt consent entry")
		}
		out = append(out, chain.Hash(v))
		return nil
	})
	return out, next, err
}

// AccessRef is one logged access: its request id and the record read.
type AccessRef struct{ Request, Record chain.Hash }

// Accesses returns a page of the accesses to patient's records, in the order the ledger first
// logged each request (paged as Records).
func (x *Index) Accesses(patient chain.Address, after string, limit int) ([]AccessRef, string, error) {
	var out []AccessRef
	next, err := x.scan(tagAccess, patient, after, posLen, limit, posHeight, func(_, v []byte) error {
		if len(v) != accValLen {
			return errors.New("index: corrupt access entry")
		}
		out = append(out, AccessRef{Request: chain.Hash(v[:32]), Record: chain.Hash(v[32:])})
		return nil
	})
	return out, next, err
}

// patHeight is the block of a patient's record entry; posHeight of an entry keyed by its place.
func patHeight(_, v []byte) uint64 {
	if len(v) != patValLen {
		return 0 // reported as corrupt by the caller
	}
	return binary.BigEndian.Uint64(v[84:])
}

func posHeight(suffix, _ []byte) uint64 { return binary.BigEndian.Uint64(suffix) }

// scan calls f on up to limit entries under tag|patient after the cursor, in key order; it
// returns the cursor of the entry after the last one returned, or "" if there is none. Entries
// of a block above the tip (left by a crash between the parts of a block, and written again
// when it is applied again) are skipped: height tells an entry's block.
func (x *Index) scan(tag byte, patient chain.Address, after string, suffixLen, limit int, height func(suffix, v []byte) uint64, f func(suffix, v []byte) error) (string, error) {
	if limit <= 0 {
		limit = DefaultPage
	}
	limit = min(limit, MaxPage)
	prefix := append([]byte{tag}, patient[:]...)
	seek := prefix
	if after != "" {
		c, err := hex.DecodeString(after)
		if err != nil || len(c) != suffixLen {
			return "", ErrBadCursor
		}
		// The first key after the cursor's: the cursor's key with a zero byte appended.
		seek = append(append(append([]byte(nil), prefix...), c...), 0)
	}
	var next string
	tipHeight := x.Height()
	err := x.s.db.View(func(txn *bdb.Txn) error {
		it := txn.NewIterator(bdb.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		n, last := 0, ""
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+suffixLen {
				return errors.New("index: corrupt key")
			}
			suffix := k[len(prefix):]
			var above bool
			if err := it.Item().Value(func(v []byte) error {
				if above = height(suffix, v) > tipHeight; above {
					return nil
				}
				if n == limit {
					return nil
				}
				return f(suffix, v)
			}); err != nil {
				return err
			}
			if above {
				continue
			}
			if n == limit {
				next = last // more remain: the next page starts after the last one returned
				return nil
			}
			n++
			last = hex.EncodeToString(suffix)
		}
		return nil
	})
	return next, err
}

// Scan returns up to n records in anchor order starting at sequence number from, wrapping to
// the first after the last (so a caller walks the whole index in bounded steps), and how many
// records the index holds.
func (x *Index) Scan(from uint64, n int) ([]Record, uint64, error) {
	total := x.Count()
	if total == 0 || n <= 0 {
		return nil, total, nil
	}
	n = int(min(uint64(n), total))
	from %= total
	out := make([]Record, 0, n)
	err := x.s.db.View(func(txn *bdb.Txn) error {
		for i := 0; i < n; i++ {
			seq := (from + uint64(i)) % total
			v, err := get(txn, binary.BigEndian.AppendUint64([]byte{tagOrder}, seq))
			if err != nil {
				return err
			}
			if len(v) != 32 {
				return fmt.Errorf("index: record %d missing from anchor order", seq)
			}
			r, ok, err := getRecord(txn, chain.Hash(v))
			if err != nil {
				return err
			}
			if ok {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, total, err
}

// Each calls f on every record in anchor order until f returns false. It reads in bounded
// steps, so a long walk holds no transaction open.
func (x *Index) Each(f func(Record) bool) error {
	const step = 1024
	total := x.Count()
	for from := uint64(0); from < total; from += step {
		recs, _, err := x.Scan(from, int(min(step, total-from)))
		if err != nil {
			return err
		}
		for _, r := range recs {
			if !f(r) {
				return nil
			}
		}
	}
	return nil
}

// get returns the value at key, nil if absent.
func get(txn *bdb.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("index: get: %w", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("index: get: %w", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// badgerLogger forwards Badger's warnings and errors to slog (its info chatter is dropped).
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, args []any) {
	if b.l != nil {
		b.l.Log(context.Background(), level, "index: badger: "+fmt.Sprintf(f, args...))
	}
}
func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
