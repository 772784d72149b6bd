package badger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	corestore "cosmossdk.io/core/store"
	bdb "github.com/dgraph-io/badger/v4"

	"github.com/medledger/medledger/chain/store"
)

// kv adapts Badger to store.KV (IAVL's DB interface plus the store's own writes).
type kv struct {
	db         *bdb.DB
	dir        string
	syncWrites bool // Badger syncs every transaction: Sync has nothing left to do
	legacySync bool // see Options.legacySync

	// syncMu serializes Sync with garbage collection; syncedVlog is the newest value-log file at
	// the last Sync: older ones were complete then and are never written again.
	syncMu     sync.Mutex
	syncedVlog int
}

var _ store.KV = (*kv)(nil)

type kvOp struct {
	k, v []byte
	del  bool
}

func (b *kv) Get(key []byte) ([]byte, error) {
	var out []byte
	err := b.db.View(func(txn *bdb.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: badger get: %w", err)
	}
	if out == nil {
		out = []byte{} // present with an empty value
	}
	return out, nil
}

func (b *kv) Has(key []byte) (bool, error) {
	err := b.db.View(func(txn *bdb.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if errors.Is(err, bdb.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: badger has: %w", err)
	}
	return true, nil
}

func (b *kv) Set(key, value []byte) error {
	bt := b.NewBatch()
	if err := bt.Set(key, value); err != nil {
		return err
	}
	if err := bt.Write(); err != nil {
		return err
	}
	if b.legacySync {
		if err := b.db.Sync(); err != nil {
			return fmt.Errorf("store: badger sync: %w", err)
		}
	}
	return nil
}

func (b *kv) Delete(key []byte) error {
	bt := b.NewBatch()
	if err := bt.Delete(key); err != nil {
		return err
	}
	return bt.Write()
}

// Sync makes every write that returned durable. With SyncWrites Badger already did. Without it,
// Badger's own DB.Sync is not enough: it syncs the current memtable's write-ahead log and the
// current value-log file only, while earlier writes may sit in the log of a memtable that is
// waiting to be flushed, or in a value-log file Badger has moved on from (it syncs the file it
// leaves only with SyncWrites). So this fsyncs every memtable log and every value-log file that
// was still being written at the last Sync, then the directory. fsync on any descriptor writes
// back the file's dirty pages, including those dirtied through Badger's memory maps. Logs deleted
// meanwhile are fine: Badger deletes a memtable log only after its table file is synced.
func (b *kv) Sync() error {
	if b.syncWrites {
		return nil
	}
	if b.legacySync {
		if err := b.db.Sync(); err != nil {
			return fmt.Errorf("store: badger sync: %w", err)
		}
		return nil
	}
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return fmt.Errorf("store: badger sync: %w", err)
	}
	newest := b.syncedVlog
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".mem"):
		case strings.HasSuffix(name, ".vlog"):
			fid, err := strconv.Atoi(strings.TrimSuffix(name, ".vlog"))
			if err != nil || fid < b.syncedVlog {
				continue
			}
			newest = max(newest, fid)
		default:
			continue
		}
		if err := fsyncPath(filepath.Join(b.dir, name)); err != nil {
			return fmt.Errorf("store: badger sync: %w", err)
		}
	}
	if err := fsyncPath(b.dir); err != nil {
		return fmt.Errorf("store: badger sync: %w", err)
	}
	b.syncedVlog = newest
	return nil
}

// fsyncPath fsyncs a file or directory; one that disappeared meanwhile is fine (see Sync).
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// collectGarbage runs one Badger value-log GC step. Badger rewrites the live entries of a mostly
// garbage file through ordinary writes and then deletes the file; without SyncWrites those writes
// are not durable yet, so an open iterator pins the file (Badger defers deleting a value-log file
// while iterators are open) until Sync has made the rewritten entries durable.
func (b *kv) collectGarbage() error {
	b.syncMu.Lock()
	pinned := !b.syncWrites
	var txn *bdb.Txn
	var pin *bdb.Iterator
	if pinned {
		txn = b.db.NewTransaction(false)
		pin = txn.NewIterator(bdb.IteratorOptions{})
	}
	b.syncMu.Unlock()
	err := b.db.RunValueLogGC(gcDiscardRatio)
	if pinned {
		if err == nil {
			err = b.Sync()
		}
		pin.Close() // deletes the rewritten file, now that its entries are durable elsewhere
		txn.Discard()
	}
	return err
}

func (b *kv) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close badger: %w", err)
	}
	return nil
}

func (b *kv) Iterator(start, end []byte) (corestore.Iterator, error) {
	return b.iterator(start, end, false), nil
}

func (b *kv) ReverseIterator(start, end []byte) (corestore.Iterator, error) {
	return b.iterator(start, end, true), nil
}

// iterator reads a consistent snapshot (a read transaction), so writes during the iteration,
// which IAVL makes when deleting versions, are safe.
func (b *kv) iterator(start, end []byte, reverse bool) *badgerIter {
	txn := b.db.NewTransaction(false)
	opts := bdb.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Reverse = reverse
	it := &badgerIter{txn: txn, it: txn.NewIterator(opts), start: start, end: end, reverse: reverse}
	switch {
	case !reverse && start == nil:
		it.it.Rewind()
	case !reverse:
		it.it.Seek(start)
	case end == nil:
		it.it.Rewind()
	default:
		// A reverse Seek lands on the greatest key <= end; end itself is excluded.
		it.it.Seek(end)
		if it.it.Valid() && bytes.Equal(it.it.Item().Key(), end) {
			it.it.Next()
		}
	}
	return it
}

type badgerIter struct {
	txn        *bdb.Txn
	it         *bdb.Iterator
	start, end []byte
	reverse    bool
	err        error
	closed     bool
}

func (i *badgerIter) Domain() ([]byte, []byte) { return i.start, i.end }

func (i *badgerIter) Valid() bool {
	if i.closed || i.err != nil || !i.it.Valid() {
		return false
	}
	k := i.it.Item().Key()
	if i.end != nil && bytes.Compare(k, i.end) >= 0 {
		return false
	}
	if i.start != nil && bytes.Compare(k, i.start) < 0 {
		return false
	}
	return true
}

func (i *badgerIter) Next() { i.it.Next() }

func (i *badgerIter) Key() []byte { return i.it.Item().KeyCopy(nil) }

func (i *badgerIter) Value() []byte {
	v, err := i.it.Item().ValueCopy(nil)
	if err != nil {
		// The interface has no error here; Error reports it and Valid turns false.
		i.err = fmt.Errorf("store: badger iterator value: %w", err)
		return nil
	}
	if v == nil {
		v = []byte{}
	}
	return v
}

func (i *badgerIter) Error() error { return i.err }

func (i *badgerIter) Close() error {
	if !i.closed {
		i.closed = true
		i.it.Close()
		i.txn.Discard()
	}
	return nil
}

// badgerBatch buffers writes and applies them in order in as few transactions as Badger's size
// cap allows. A batch larger than one transaction is therefore not atomic; the store's commit
// marker, not the batch, is what makes a commit atomic.
type badgerBatch struct {
	b    *kv
	ops  []kvOp
	size int
	done bool
}

func (b *kv) NewBatch() corestore.Batch            { return &badgerBatch{b: b} }
func (b *kv) NewBatchWithSize(int) corestore.Batch { return &badgerBatch{b: b} }

func (bt *badgerBatch) GetByteSize() (int, error) { return bt.size, nil }
func (bt *badgerBatch) Close() error              { bt.done = true; bt.ops = nil; return nil }
func (bt *badgerBatch) Set(key, value []byte) error {
	return bt.add(kvOp{k: key, v: value})
}
func (bt *badgerBatch) Delete(key []byte) error { return bt.add(kvOp{k: key, del: true}) }

func (bt *badgerBatch) add(op kvOp) error {
	if bt.done {
		return errors.New("store: batch already written or closed")
	}
	if len(op.k) == 0 || (!op.del && op.v == nil) {
		return errors.New("store: empty key or nil value")
	}
	op.k, op.v = slices.Clone(op.k), slices.Clone(op.v)
	bt.ops = append(bt.ops, op)
	bt.size += len(op.k) + len(op.v)
	return nil
}

func (bt *badgerBatch) WriteSync() error {
	if err := bt.Write(); err != nil {
		return err
	}
	return bt.b.Sync()
}

func (bt *badgerBatch) Write() error {
	if bt.done {
		return errors.New("store: batch already written or closed")
	}
	bt.done = true
	ops := bt.ops
	bt.ops = nil
	txn := bt.b.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	apply := func(op kvOp) error {
		if op.del {
			return txn.Delete(op.k)
		}
		return txn.Set(op.k, op.v)
	}
	for _, op := range ops {
		err := apply(op)
		if errors.Is(err, bdb.ErrTxnTooBig) {
			// Full: commit what we have and continue in a fresh transaction, preserving order.
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("store: badger commit: %w", err)
			}
			txn = bt.b.db.NewTransaction(true)
			err = apply(op)
		}
		if err != nil {
			return fmt.Errorf("store: badger write: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("store: badger commit: %w", err)
	}
	return nil
}
