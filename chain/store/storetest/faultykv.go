package storetest

import (
	"errors"
	"slices"
	"sync"

	corestore "cosmossdk.io/core/store"

	"github.com/medledger/medledger/chain/store"
)

// FaultyKV wraps a KV so that it can die after a number of writes, like Memory.FailAfterWrites:
// each key set or deleted counts as one write, also inside a batch, and the write that reaches the
// limit and every later one are not applied and fail with store.ErrCrashed. Reads pass through.
type FaultyKV struct {
	store.KV
	mu   sync.Mutex
	left int // writes before the fault; negative: none armed
	dead bool
}

// NewFaultyKV wraps kv with no fault armed.
func NewFaultyKV(kv store.KV) *FaultyKV { return &FaultyKV{KV: kv, left: -1} }

// FailAfterWrites arms the fault n writes from now.
func (f *FaultyKV) FailAfterWrites(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left = max(n, 0)
}

// allow returns how many of n writes may still be applied, and whether the fault fires.
func (f *FaultyKV) allow(n int) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead {
		return 0, true
	}
	if f.left < 0 {
		return n, false
	}
	if n > f.left {
		n, f.dead = f.left, true
	}
	f.left -= n
	return n, f.dead
}

func (f *FaultyKV) Set(key, value []byte) error {
	if _, dead := f.allow(1); dead {
		return store.ErrCrashed
	}
	return f.KV.Set(key, value)
}

func (f *FaultyKV) Delete(key []byte) error {
	if _, dead := f.allow(1); dead {
		return store.ErrCrashed
	}
	return f.KV.Delete(key)
}

func (f *FaultyKV) Sync() error {
	f.mu.Lock()
	dead := f.dead
	f.mu.Unlock()
	if dead {
		return store.ErrCrashed
	}
	return f.KV.Sync()
}

func (f *FaultyKV) NewBatch() corestore.Batch            { return &faultyBatch{f: f} }
func (f *FaultyKV) NewBatchWithSize(int) corestore.Batch { return &faultyBatch{f: f} }

type faultyOp struct {
	k, v []byte
	del  bool
}

// faultyBatch buffers its writes and hands the wrapped KV the prefix the fault allows.
type faultyBatch struct {
	f    *FaultyKV
	ops  []faultyOp
	size int
	done bool
}

var errBatchDone = errors.New("storetest: batch already written or closed")

func (b *faultyBatch) Set(key, value []byte) error {
	return b.add(faultyOp{k: slices.Clone(key), v: slices.Clone(value)})
}
func (b *faultyBatch) Delete(key []byte) error {
	return b.add(faultyOp{k: slices.Clone(key), del: true})
}
func (b *faultyBatch) GetByteSize() (int, error) { return b.size, nil }
func (b *faultyBatch) Close() error              { b.done, b.ops = true, nil; return nil }

func (b *faultyBatch) add(op faultyOp) error {
	if b.done {
		return errBatchDone
	}
	if len(op.k) == 0 || (!op.del && op.v == nil) {
		return errors.New("storetest: empty key or nil value")
	}
	b.ops = append(b.ops, op)
	b.size += len(op.k) + len(op.v)
	return nil
}

func (b *faultyBatch) Write() error {
	if b.done {
		return errBatchDone
	}
	ops := b.ops
	b.done, b.ops = true, nil
	n, dead := b.f.allow(len(ops))
	if n > 0 {
		inner := b.f.KV.NewBatch()
		for _, op := range ops[:n] {
			var err error
			if op.del {
				err = inner.Delete(op.k)
			} else {
				err = inner.Set(op.k, op.v)
			}
			if err != nil {
				return errors.Join(err, inner.Close())
			}
		}
		if err := errors.Join(inner.Write(), inner.Close()); err != nil {
			return err
		}
	}
	if dead {
		return store.ErrCrashed
	}
	return nil
}

func (b *faultyBatch) WriteSync() error {
	if err := b.Write(); err != nil {
		return err
	}
	return b.f.Sync()
}
