package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	corestore "cosmossdk.io/core/store"
	badger "github.com/dgraph-io/badger/v4"
)

// badgerKV adapts Badger to IAVL's DB interface and to the store's own writes.
type badgerKV struct{ db *badger.DB }

func (b *badgerKV) Get(key []byte) ([]byte, error) {
	var out []byte
	err := b.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
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

func (b *badgerKV) Has(key []byte) (bool, error) {
	err := b.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: badger has: %w", err)
	}
	return true, nil
}

func (b *badgerKV) Set(key, value []byte) error {
	bt := b.NewBatch()
	if err := bt.Set(key, value); err != nil {
		return err
	}
	return bt.Write()
}

func (b *badgerKV) Delete(key []byte) error {
	bt := b.NewBatch()
	if err := bt.Delete(key); err != nil {
		return err
	}
	return bt.Write()
}

func (b *badgerKV) sync() error {
	if err := b.db.Sync(); err != nil {
		return fmt.Errorf("store: badger sync: %w", err)
	}
	return nil
}

func (b *badgerKV) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close badger: %w", err)
	}
	return nil
}

func (b *badgerKV) Iterator(start, end []byte) (corestore.Iterator, error) {
	return b.iterator(start, end, false), nil
}

func (b *badgerKV) ReverseIterator(start, end []byte) (corestore.Iterator, error) {
	return b.iterator(start, end, true), nil
}

// iterator reads a consistent snapshot (a read transaction), so writes during the iteration,
// which IAVL makes when deleting versions, are safe.
func (b *badgerKV) iterator(start, end []byte, reverse bool) *badgerIter {
	txn := b.db.NewTransaction(false)
	opts := badger.DefaultIteratorOptions
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
	txn        *badger.Txn
	it         *badger.Iterator
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
	b    *badgerKV
	ops  []kvOp
	size int
	done bool
}

func (b *badgerKV) NewBatch() corestore.Batch            { return &badgerBatch{b: b} }
func (b *badgerKV) NewBatchWithSize(int) corestore.Batch { return &badgerBatch{b: b} }

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
	return bt.b.sync()
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
		if errors.Is(err, badger.ErrTxnTooBig) {
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
