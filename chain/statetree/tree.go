package statetree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cosmos/iavl"
	iavldb "github.com/cosmos/iavl/db"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// EmptyRoot is the root of a tree with no keys, whether nothing was ever committed or a committed
// version holds no keys: SHA-256 of the empty string, which is what IAVL reports for an empty
// version. A proof against EmptyRoot is a non-membership proof with no commitment.
var EmptyRoot = chain.Hash(sha256.Sum256(nil))

// NoVersion is Version() of a tree that has never committed.
const NoVersion int64 = -1

// ErrNoSuchVersion is returned (wrapped) for a version that was never saved or has been pruned.
var ErrNoSuchVersion = errors.New("statetree: no such version")

// nodeCacheSize is IAVL's in-memory node cache, in nodes (about 100 bytes plus key and value
// each, so a few tens of MB). Reads walk the tree (the fast index is off, see newMutable), so the
// cache decides how many of those steps are Badger reads; the profile under load showed node
// loads as the largest CPU cost at 20,000.
const nodeCacheSize = 100_000

// CacheBudget is about what the node cache holds when full (a node, its key and hash, and the
// cache's list entry: some 300 bytes), for the node's memory limit.
const CacheBudget = nodeCacheSize * 300

// Tree is the authenticated state tree. It is safe for concurrent use: reads run in parallel,
// Commit and Rollback exclude them.
type Tree struct {
	mu      sync.RWMutex
	db      iavldb.DB
	mt      *iavl.MutableTree
	latest  *iavl.ImmutableTree // nil when nothing was committed
	version int64
	// broken holds the error of a failed save: IAVL may have written part of a version, so the
	// tree refuses further commits until it is reopened (Open repairs it).
	broken error
}

// Open loads the latest completely saved version from db. A version that a crash left half
// written is deleted, so Open also repairs the tree after a crash.
func Open(db iavldb.DB) (*Tree, error) {
	t := &Tree{db: db, version: NoVersion}
	mt := t.newMutable()
	_, err := mt.Load()
	if err == nil {
		return t, t.adopt(mt)
	}
	if !errors.Is(err, iavl.ErrVersionDoesNotExist) {
		_ = mt.Close()
		return nil, fmt.Errorf("statetree: load: %w", err)
	}
	// The newest IAVL version has nodes but no root: SaveVersion was interrupted. Versions are
	// saved one at a time, so the one below it is complete.
	latest, err := mt.GetLatestVersion()
	if err != nil {
		_ = mt.Close()
		return nil, fmt.Errorf("statetree: latest version: %w", err)
	}
	if err := mt.Close(); err != nil {
		return nil, fmt.Errorf("statetree: close: %w", err)
	}
	if err := t.rollback(latest - 2); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tree) newMutable() *iavl.MutableTree {
	// skipFastStorageUpgrade: IAVL's "fast node" index mirrors the latest version and must be
	// rebuilt after every rollback; reads walk the tree instead, which is O(log n) and simpler
	// to reason about after a crash.
	return iavl.NewMutableTree(t.db, nodeCacheSize, true, iavl.NewNopLogger(), iavl.AsyncPruningOption(false),
		iavl.FlushThresholdOption(flushThreshold))
}

// flushThreshold is the size at which IAVL writes its batch of a version early. IAVL's default
// (100 kB) turned a 2,000-key block into dozens of synced Badger transactions; the store's KV
// splits a batch at Badger's transaction cap anyway, so one batch per version is what we want.
const flushThreshold = 1 << 40

// adopt makes mt the tree's mutable tree and caches its latest version.
func (t *Tree) adopt(mt *iavl.MutableTree) error {
	t.mt = mt
	t.latest = nil
	t.version = NoVersion
	v := mt.Version()
	if v == 0 {
		return nil
	}
	it, err := mt.GetImmutable(v)
	if err != nil {
		return fmt.Errorf("statetree: load version %d: %w", v-1, err)
	}
	t.latest, t.version = it, v-1
	return nil
}

// Version is the latest saved version (the height of the state), or NoVersion.
func (t *Tree) Version() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.version
}

// Root is the root hash of the latest saved version; EmptyRoot if nothing was committed.
func (t *Tree) Root() chain.Hash {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return rootOf(t.latest)
}

// RootAt is the root hash of a saved version (an error if it is not kept).
func (t *Tree) RootAt(version int64) (chain.Hash, error) {
	it, err := t.immutable(version)
	if err != nil {
		return chain.Hash{}, err
	}
	return rootOf(it), nil
}

func rootOf(it *iavl.ImmutableTree) chain.Hash {
	if it == nil {
		return EmptyRoot
	}
	return chain.Hash(it.Hash())
}

// Get reads key from the latest saved version; (nil, nil) when absent.
func (t *Tree) Get(key []byte) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return get(t.latest, key)
}

func get(it *iavl.ImmutableTree, key []byte) ([]byte, error) {
	if it == nil || len(key) == 0 {
		return nil, nil
	}
	v, err := it.Get(key)
	if err != nil {
		return nil, fmt.Errorf("statetree: get: %w", err)
	}
	// IAVL hands out its own buffers; callers may keep or modify what they read.
	return slices.Clone(v), nil
}

// Commit applies cs in order and saves it as the next version, returning the new root and
// version. The first commit is version 0.
func (t *Tree) Commit(cs state.ChangeSet) (chain.Hash, int64, error) {
	if err := cs.Validate(); err != nil {
		return chain.Hash{}, 0, fmt.Errorf("statetree: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return chain.Hash{}, 0, fmt.Errorf("statetree: reopen required after failed save: %w", t.broken)
	}
	for _, c := range cs.Changes {
		if len(c.Key) == 0 {
			t.mt.Rollback()
			return chain.Hash{}, 0, errors.New("statetree: empty key in change set")
		}
		var err error
		if c.Delete {
			_, _, err = t.mt.Remove(c.Key)
		} else {
			// IAVL keeps the slices it is given and the caller may reuse theirs: copy both
			// into one allocation. IAVL rejects nil values; an empty value is a value.
			buf := make([]byte, len(c.Key)+len(c.Value))
			k, v := buf[:len(c.Key):len(c.Key)], buf[len(c.Key):]
			copy(k, c.Key)
			copy(v, c.Value)
			_, err = t.mt.Set(k, v)
		}
		if err != nil {
			t.mt.Rollback()
			return chain.Hash{}, 0, fmt.Errorf("statetree: apply %x: %w", c.Key, err)
		}
	}
	_, v, err := t.mt.SaveVersion()
	if err != nil {
		t.mt.Rollback()
		t.broken = err
		return chain.Hash{}, 0, fmt.Errorf("statetree: save version %d: %w", t.version+1, err)
	}
	it, err := t.mt.GetImmutable(v)
	if err != nil {
		t.broken = err
		return chain.Hash{}, 0, fmt.Errorf("statetree: load saved version %d: %w", v-1, err)
	}
	t.latest, t.version = it, v-1
	return rootOf(it), t.version, nil
}

// Rollback deletes every version above version (NoVersion deletes all), making version the latest.
// It is crash recovery: the store calls it when the tree got ahead of the last committed block.
// Views of deleted versions must not be used afterwards.
func (t *Tree) Rollback(version int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if version > t.version {
		return fmt.Errorf("statetree: cannot roll back to version %d, latest is %d", version, t.version)
	}
	if version < NoVersion {
		return fmt.Errorf("statetree: invalid version %d", version)
	}
	if t.mt != nil {
		if err := t.mt.Close(); err != nil {
			return fmt.Errorf("statetree: close: %w", err)
		}
		t.mt = nil
	}
	return t.rollback(version)
}

// rollback deletes versions above version and reloads; the caller holds mu (or owns t).
func (t *Tree) rollback(version int64) error {
	t.latest, t.version, t.mt = nil, NoVersion, nil
	if version == NoVersion {
		if err := wipe(t.db); err != nil {
			return err
		}
	} else {
		mt := t.newMutable()
		if err := mt.LoadVersionForOverwriting(version + 1); err != nil {
			_ = mt.Close()
			return fmt.Errorf("statetree: roll back to version %d: %w", version, err)
		}
		// A fresh MutableTree drops node caches that may still hold deleted versions.
		if err := mt.Close(); err != nil {
			return fmt.Errorf("statetree: close: %w", err)
		}
	}
	mt := t.newMutable()
	if _, err := mt.Load(); err != nil {
		_ = mt.Close()
		return fmt.Errorf("statetree: reload after rollback to %d: %w", version, err)
	}
	t.broken = nil
	return t.adopt(mt)
}

// wipe deletes every key of the tree's DB (IAVL cannot roll back below its first version).
func wipe(db iavldb.DB) error {
	it, err := db.Iterator(nil, nil)
	if err != nil {
		return fmt.Errorf("statetree: wipe: %w", err)
	}
	var keys [][]byte
	for ; it.Valid(); it.Next() {
		keys = append(keys, slices.Clone(it.Key()))
	}
	err = errors.Join(it.Error(), it.Close())
	if err != nil {
		return fmt.Errorf("statetree: wipe: %w", err)
	}
	b := db.NewBatch()
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			_ = b.Close()
			return fmt.Errorf("statetree: wipe: %w", err)
		}
	}
	if err := errors.Join(b.Write(), b.Close()); err != nil {
		return fmt.Errorf("statetree: wipe: %w", err)
	}
	return nil
}

// ViewAt returns a read-only view of a saved version.
func (t *Tree) ViewAt(version int64) (state.View, error) {
	it, err := t.immutable(version)
	if err != nil {
		return nil, err
	}
	return view{t: t, it: it}, nil
}

func (t *Tree) immutable(version int64) (*iavl.ImmutableTree, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if version < 0 || version > t.version {
		return nil, fmt.Errorf("statetree: version %d not available (latest %d)", version, t.version)
	}
	if version == t.version {
		return t.latest, nil
	}
	it, err := t.mt.GetImmutable(version + 1)
	if errors.Is(err, iavl.ErrVersionDoesNotExist) {
		return nil, fmt.Errorf("%w: version %d (latest %d)", ErrNoSuchVersion, version, t.version)
	}
	if err != nil {
		return nil, fmt.Errorf("statetree: version %d: %w", version, err)
	}
	return it, nil
}

// Prune deletes every version up to and including upTo, synchronously; the latest version is
// never deleted. Versions already pruned are skipped, so calling it after every commit with a
// moving upTo deletes one version at a time. Views of deleted versions must not be used
// afterwards.
//
// A crash half way through leaves some nodes of the oldest version deleted: IAVL deletes a
// version's root first, so that version is gone and the rest of its nodes are garbage that a later
// prune does not revisit (bounded: one version's orphans per crash).
func (t *Tree) Prune(upTo int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken != nil {
		return fmt.Errorf("statetree: reopen required after failed save: %w", t.broken)
	}
	if upTo < 0 {
		return nil
	}
	if upTo >= t.version {
		return fmt.Errorf("statetree: cannot prune up to version %d, latest is %d", upTo, t.version)
	}
	if err := t.mt.DeleteVersionsTo(upTo + 1); err != nil {
		t.broken = err
		return fmt.Errorf("statetree: prune up to version %d: %w", upTo, err)
	}
	return nil
}

// view reads one version under the tree's read lock: IAVL's immutable trees share nodes (and
// the node cache) with the working tree, which a commit mutates, so reads must not overlap one.
type view struct {
	t  *Tree
	it *iavl.ImmutableTree
}

func (v view) Get(key []byte) ([]byte, error) {
	v.t.mu.RLock()
	defer v.t.mu.RUnlock()
	return get(v.it, key)
}

// Close releases the tree's resources; it does not close the DB.
func (t *Tree) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mt == nil {
		return nil
	}
	err := t.mt.Close()
	t.mt, t.latest = nil, nil
	if err != nil {
		return fmt.Errorf("statetree: close: %w", err)
	}
	return nil
}

// ChangedKeys lists the keys that version changed (set or deleted) relative to version-1. The
// store uses it in recovery to undo what a commit interrupted after the tree saved version may
// have written to its latest-value index.
func (t *Tree) ChangedKeys(version int64) ([][]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if version < 1 || version > t.version || t.latest == nil {
		return nil, fmt.Errorf("statetree: no changes of version %d (latest %d)", version, t.version)
	}
	var keys [][]byte
	err := t.latest.TraverseStateChanges(version+1, version+1, func(_ int64, cs *iavl.ChangeSet) error {
		for _, p := range cs.Pairs {
			keys = append(keys, slices.Clone(p.Key))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statetree: changes of version %d: %w", version, err)
	}
	return keys, nil
}

// Each calls fn with every key and value of the latest version in key order, until fn returns
// an error. fn must not keep key or value.
func (t *Tree) Each(fn func(key, value []byte) error) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.latest == nil {
		return nil
	}
	var ferr error
	_, err := t.latest.Iterate(func(k, v []byte) bool {
		ferr = fn(k, v)
		return ferr != nil
	})
	if err != nil {
		return fmt.Errorf("statetree: iterate: %w", err)
	}
	return ferr
}
