package store

import (
	"bytes"
	"errors"
	"slices"
	"sync"

	corestore "cosmossdk.io/core/store"
	"github.com/google/btree"
)

// memKV is an ordered in-memory key-value store implementing KV, with a model of what a disk would
// keep: the live tree is what a running process sees (and what survives it being killed), the
// durable tree plus an in-order list of unsynced writes is what survives power loss, and a fault
// can kill it between any two writes.
//
// IAVL's own MemDB iterates in a goroutine holding a read lock, which deadlocks when a batch is
// written during an iteration (IAVL does that when deleting versions); memKV iterates over a
// copy-on-write snapshot instead, and starts no goroutines.
type memKV struct {
	mu     sync.RWMutex
	t      *btree.BTreeG[kvItem] // live
	policy SyncPolicy
	// durable is what power loss keeps for sure; under SyncEveryCommit it is t itself (every
	// write is durable when it returns) and is not kept separately.
	durable *btree.BTreeG[kvItem]
	// unsynced are the writes applied to t but not to durable, in order (SyncNone only), and
	// their size in bytes.
	unsynced      []kvOp
	unsyncedBytes int
	// failAfter counts the writes left before the injected crash; negative: no fault armed.
	failAfter int
	dead      bool
	closed    bool
}

// maxUnsynced and maxUnsyncedBytes bound the unsynced writes memKV remembers; older ones become
// durable, as an operating system writes dirty pages back within seconds even if nobody syncs.
const (
	maxUnsynced      = 1 << 16
	maxUnsyncedBytes = 64 << 20
)

type kvItem struct{ k, v []byte }

func kvLess(a, b kvItem) bool { return bytes.Compare(a.k, b.k) < 0 }

func newMemKV(policy SyncPolicy) *memKV {
	t := btree.NewG(32, kvLess)
	return &memKV{t: t, policy: policy, durable: t.Clone(), failAfter: -1}
}

var errClosed = errors.New("store: closed")

// crashClone is what a new process finds after this one was killed: every write that returned,
// with the same durable state and unsynced writes (the operating system still holds them). The
// clone has no fault armed. O(1): the trees share nodes copy-on-write.
func (m *memKV) crashClone() *memKV {
	m.mu.Lock() // Clone mutates the source's copy-on-write bookkeeping
	defer m.mu.Unlock()
	return &memKV{t: m.t.Clone(), policy: m.policy, durable: m.durable.Clone(), unsynced: slices.Clone(m.unsynced), unsyncedBytes: m.unsyncedBytes, failAfter: -1}
}

// powerLossClone is what the disk holds after a power loss now: the durable writes and the first
// keep(n) of the n unsynced ones.
func (m *memKV) powerLossClone(keep func(unsynced int) int) *memKV {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.durable.Clone()
	if m.policy == SyncEveryCommit {
		t = m.t.Clone() // every write was durable when it returned; unsynced is empty
	}
	k := 0
	if keep != nil {
		k = min(max(keep(len(m.unsynced)), 0), len(m.unsynced))
	}
	for _, op := range m.unsynced[:k] {
		applyOp(t, op)
	}
	return &memKV{t: t, policy: m.policy, durable: t.Clone(), failAfter: -1}
}

func applyOp(t *btree.BTreeG[kvItem], op kvOp) {
	if op.del {
		t.Delete(kvItem{k: op.k})
	} else {
		t.ReplaceOrInsert(kvItem{k: op.k, v: op.v})
	}
}

// failAfterWrites arms the fault: the n+1-th write from now on, and every later one, fails with
// ErrCrashed and is not applied.
func (m *memKV) failAfterWrites(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failAfter = max(n, -1) // negative: disarmed
}

// apply applies ops in order, as far as the armed fault lets it.
func (m *memKV) apply(ops []kvOp) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	if m.dead {
		return ErrCrashed
	}
	n := len(ops)
	if m.failAfter >= 0 {
		if n > m.failAfter {
			n, m.dead = m.failAfter, true
		}
		m.failAfter -= n
	}
	for _, op := range ops[:n] {
		applyOp(m.t, op)
		if m.policy == SyncNone {
			m.unsynced = append(m.unsynced, op)
			m.unsyncedBytes += len(op.k) + len(op.v)
		}
	}
	over := 0
	for len(m.unsynced)-over > maxUnsynced || (m.unsyncedBytes > maxUnsyncedBytes && over < len(m.unsynced)) {
		op := m.unsynced[over]
		applyOp(m.durable, op)
		m.unsyncedBytes -= len(op.k) + len(op.v)
		over++
	}
	if over > 0 {
		m.unsynced = slices.Delete(m.unsynced, 0, over)
	}
	if m.dead {
		return ErrCrashed
	}
	return nil
}

func (m *memKV) Get(key []byte) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, errClosed
	}
	it, ok := m.t.Get(kvItem{k: key})
	if !ok {
		return nil, nil
	}
	return slices.Clone(it.v), nil
}

func (m *memKV) Has(key []byte) (bool, error) {
	v, err := m.Get(key)
	return v != nil, err
}

func (m *memKV) Set(key, value []byte) error {
	b := m.NewBatch()
	if err := b.Set(key, value); err != nil {
		return err
	}
	return b.Write()
}

func (m *memKV) Delete(key []byte) error {
	b := m.NewBatch()
	if err := b.Delete(key); err != nil {
		return err
	}
	return b.Write()
}

// Sync makes every write so far durable.
func (m *memKV) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	if m.dead {
		return ErrCrashed
	}
	if m.policy == SyncNone {
		m.durable, m.unsynced, m.unsyncedBytes = m.t.Clone(), nil, 0
	}
	return nil
}

func (m *memKV) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memKV) Iterator(start, end []byte) (corestore.Iterator, error) {
	return m.iterator(start, end, false)
}

func (m *memKV) ReverseIterator(start, end []byte) (corestore.Iterator, error) {
	return m.iterator(start, end, true)
}

func (m *memKV) iterator(start, end []byte, reverse bool) (corestore.Iterator, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	it := &memIter{t: m.t.Clone(), start: start, end: end, reverse: reverse}
	if reverse {
		if end == nil {
			it.cur, it.ok = it.t.Max()
		} else {
			it.seekBelow(end, false)
		}
	} else {
		if start == nil {
			it.cur, it.ok = it.t.Min()
		} else {
			it.seekAbove(start, true)
		}
	}
	it.clip()
	return it, nil
}

type memIter struct {
	t          *btree.BTreeG[kvItem]
	start, end []byte
	reverse    bool
	cur        kvItem
	ok         bool
}

func (it *memIter) seekAbove(k []byte, inclusive bool) {
	it.ok = false
	it.t.AscendGreaterOrEqual(kvItem{k: k}, func(x kvItem) bool {
		if !inclusive && bytes.Equal(x.k, k) {
			return true
		}
		it.cur, it.ok = x, true
		return false
	})
}

func (it *memIter) seekBelow(k []byte, inclusive bool) {
	it.ok = false
	it.t.DescendLessOrEqual(kvItem{k: k}, func(x kvItem) bool {
		if !inclusive && bytes.Equal(x.k, k) {
			return true
		}
		it.cur, it.ok = x, true
		return false
	})
}

// clip ends the iteration when the cursor leaves [start, end).
func (it *memIter) clip() {
	if !it.ok {
		return
	}
	if it.end != nil && bytes.Compare(it.cur.k, it.end) >= 0 {
		it.ok = false
	}
	if it.start != nil && bytes.Compare(it.cur.k, it.start) < 0 {
		it.ok = false
	}
}

func (it *memIter) Domain() ([]byte, []byte) { return it.start, it.end }
func (it *memIter) Valid() bool              { return it.ok }
func (it *memIter) Error() error             { return nil }
func (it *memIter) Close() error             { it.ok = false; return nil }
func (it *memIter) Key() []byte              { it.mustBeValid(); return slices.Clone(it.cur.k) }
func (it *memIter) Value() []byte            { it.mustBeValid(); return slices.Clone(it.cur.v) }

func (it *memIter) Next() {
	it.mustBeValid()
	if it.reverse {
		it.seekBelow(it.cur.k, false)
	} else {
		it.seekAbove(it.cur.k, false)
	}
	it.clip()
}

func (it *memIter) mustBeValid() {
	if !it.ok {
		panic("store: use of an exhausted iterator") // the corestore.Iterator contract: a caller bug
	}
}

type kvOp struct {
	k, v []byte
	del  bool
}

type memBatch struct {
	m    *memKV
	ops  []kvOp
	size int
	done bool
}

func (m *memKV) NewBatch() corestore.Batch            { return &memBatch{m: m} }
func (m *memKV) NewBatchWithSize(int) corestore.Batch { return &memBatch{m: m} }
func (b *memBatch) GetByteSize() (int, error)         { return b.size, nil }
func (b *memBatch) Close() error                      { b.done = true; b.ops = nil; return nil }
func (b *memBatch) WriteSync() error {
	if err := b.Write(); err != nil {
		return err
	}
	return b.m.Sync()
}
func (b *memBatch) Set(key, value []byte) error { return b.add(kvOp{k: key, v: value}) }
func (b *memBatch) Delete(key []byte) error     { return b.add(kvOp{k: key, del: true}) }
func (b *memBatch) add(op kvOp) error {
	if b.done {
		return errors.New("store: batch already written or closed")
	}
	if len(op.k) == 0 || (!op.del && op.v == nil) {
		return errors.New("store: empty key or nil value")
	}
	// Batches are applied later; copies keep the caller free to reuse its buffers.
	op.k, op.v = slices.Clone(op.k), slices.Clone(op.v)
	b.ops = append(b.ops, op)
	b.size += len(op.k) + len(op.v)
	return nil
}

func (b *memBatch) Write() error {
	if b.done {
		return errors.New("store: batch already written or closed")
	}
	ops := b.ops
	b.done, b.ops = true, nil
	return b.m.apply(ops)
}
