package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	iavldb "github.com/cosmos/iavl/db"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
)

// Key layout (docs/storage.md). Heights are 8-byte big-endian so they sort numerically.
var (
	keyMarker     = []byte("mc") // commit marker: the committed height and its state root
	keyGenesis    = []byte("mg")
	keyLegacySign = []byte("ms") // the whole sign state in one value, before sign records
	prefixTree    = []byte("t")
)

const (
	pBlockChunk = 'b' // 'b' height chunk(4) -> a piece of the block's canonical encoding
	pBlockMeta  = 'n' // 'n' height -> block hash, chunk count
	pCert       = 'c' // 'c' height -> commit certificate
	pHashIndex  = 'h' // 'h' block hash -> height
	pTxIndex    = 'x' // 'x' tx hash -> height, index, block hash
)

// chunkSize splits block encodings so that no single value comes near Badger's transaction cap,
// even with a small memtable (a block may be 16 MiB).
const chunkSize = 256 << 10

const markerVersion = 1

func heightKey(p byte, h uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{p}, h)
}

func chunkKey(h uint64, i uint32) []byte {
	return binary.BigEndian.AppendUint32(heightKey(pBlockChunk, h), i)
}

func hashKey(p byte, h chain.Hash) []byte { return append([]byte{p}, h[:]...) }

type marker struct {
	height uint64
	root   chain.Hash
}

func (m marker) encode() []byte {
	b := binary.BigEndian.AppendUint64([]byte{markerVersion}, m.height)
	return append(b, m.root[:]...)
}

func decodeMarker(b []byte) (marker, error) {
	if len(b) != 1+8+32 || b[0] != markerVersion {
		return marker{}, fmt.Errorf("store: commit marker is malformed (%d bytes)", len(b))
	}
	m := marker{height: binary.BigEndian.Uint64(b[1:9])}
	copy(m.root[:], b[9:])
	return m, nil
}

type blockMeta struct {
	hash   chain.Hash
	chunks uint32
}

func (m blockMeta) encode() []byte { return binary.BigEndian.AppendUint32(m.hash[:], m.chunks) }

func decodeBlockMeta(b []byte) (blockMeta, error) {
	if len(b) != 36 {
		return blockMeta{}, fmt.Errorf("store: block record is malformed (%d bytes)", len(b))
	}
	var m blockMeta
	copy(m.hash[:], b)
	m.chunks = binary.BigEndian.Uint32(b[32:])
	return m, nil
}

// Core implements Store over a KV: the commit protocol, recovery and pruning, written once for
// every backend. Writes are serialized by mu. Reads take only pubMu, to snapshot the committed
// height, then read data at or below it, which commits never change; so a commit in progress
// (which may wait on fsyncs) does not hold up reads of the state it is replacing.
type Core struct {
	mu sync.RWMutex
	// pubMu guards height, root, lastHash, hasGenesis and closed for readers; writers hold mu
	// and also pubMu when they change them.
	pubMu      sync.RWMutex
	kv         KV
	tree       *statetree.Tree
	opts       Options
	height     uint64
	root       chain.Hash
	lastHash   chain.Hash // hash of the block at height (zero at genesis)
	hasGenesis bool
	closed     bool
	// broken is set when a commit failed half way: the kv may hold a partial commit, which only
	// recovery on open removes, so further commits are refused until the store is reopened.
	broken error

	// flatMu guards the latest-value index's visible height (flat.go): reads of it hold flatMu
	// for reading, and the commit's last batch, which moves it, holds it for writing.
	flatMu     sync.RWMutex
	flatOK     bool   // the index holds the state at flatAt
	flatAt     uint64 // its height
	flatClosed bool
	latest     *latestCache // values at flatAt, in front of the index (latest.go)

	// durable is the height synced under SyncNone (tail.go); rolledFrom and rolledTo record a
	// roll-back of a damaged tail by recovery.
	durable              uint64
	rolledFrom, rolledTo uint64
}

// Open opens a store over db and runs recovery: it rolls the state tree back to the commit marker
// and deletes any block data above it. db must keep the KV contract for opts.Sync. The store owns
// db from then on (Close closes it), also when Open fails.
func Open(db KV, opts Options) (*Core, error) {
	if err := opts.validate(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	c, err := open(db, opts)
	if err != nil {
		if cerr := db.Close(); cerr != nil {
			err = fmt.Errorf("%w (and closing: %v)", err, cerr)
		}
		return nil, err
	}
	return c, nil
}

func open(db KV, opts Options) (*Core, error) {
	c := &Core{kv: db, opts: opts, root: statetree.EmptyRoot, latest: newLatestCache(LatestCacheBytes)}
	raw, err := db.Get(keyMarker)
	if err != nil {
		return nil, fmt.Errorf("store: read commit marker: %w", err)
	}
	tree, err := statetree.Open(iavldb.NewPrefixDB(db, prefixTree))
	if err != nil {
		return nil, fmt.Errorf("store: open state tree: %w", err)
	}
	c.tree = tree
	if err := c.recover(raw); err != nil {
		return nil, errors.Join(err, tree.Close())
	}
	if err := c.sweepSignChunks(); err != nil {
		return nil, errors.Join(err, tree.Close())
	}
	if err := c.settleDurable(); err != nil {
		return nil, errors.Join(err, tree.Close())
	}
	return c, nil
}

func (c *Core) recover(raw []byte) error {
	if raw == nil {
		// No marker: the store is empty, or InitGenesis was interrupted. Start from nothing.
		if c.tree.Version() != statetree.NoVersion {
			if err := c.tree.Rollback(statetree.NoVersion); err != nil {
				return fmt.Errorf("store: recover: %w", err)
			}
		}
		if err := c.kv.Delete(keyGenesis); err != nil {
			return fmt.Errorf("store: recover: %w", err)
		}
		if err := c.wipeFlat(); err != nil {
			return err
		}
		return c.deleteBlocksFrom(1)
	}
	m, err := decodeMarker(raw)
	if err != nil {
		return err
	}
	if m, err = c.checkUnsyncedTail(m); err != nil {
		return err
	}
	fh, flatOK, err := c.flatHeight()
	if err != nil {
		return err
	}
	switch v := c.tree.Version(); {
	case v < int64(m.height):
		return fmt.Errorf("store: state tree is at version %d, behind the commit marker %d: storage is corrupt", v, m.height)
	case v > int64(m.height):
		// The crash came after the tree saved the next version but before the marker. The
		// commit may have written part of that version to the latest-value index: restore the
		// keys it changed while the tree still has both versions.
		if v == int64(m.height)+1 && flatOK && (fh == m.height || fh == m.height+1) {
			if err := c.undoFlat(m.height); err != nil {
				return err
			}
			fh = m.height
		}
		if err := c.tree.Rollback(int64(m.height)); err != nil {
			return fmt.Errorf("store: recover: %w", err)
		}
	}
	if got := c.tree.Root(); got != m.root {
		return fmt.Errorf("store: state root %s at height %d does not match the commit marker %s: storage is corrupt", got.Short(), m.height, m.root.Short())
	}
	if !flatOK || fh != m.height {
		// No index, or one an older binary left behind its commits.
		if err := c.rebuildFlat(m.height); err != nil {
			return err
		}
	}
	if err := c.deleteBlocksFrom(m.height + 1); err != nil {
		return err
	}
	c.height, c.root, c.hasGenesis = m.height, m.root, true
	c.flatOK, c.flatAt = true, m.height
	if m.height > 0 {
		meta, err := c.blockMeta(m.height)
		if err != nil {
			return fmt.Errorf("store: recover: committed block %d: %w", m.height, err)
		}
		c.lastHash = meta.hash
	}
	return nil
}

// deleteBlocksFrom deletes block records, chunks and certificates at heights >= from: the remains
// of a commit that never got its marker. Index entries pointing there are left; lookups check
// them against the committed blocks, and later commits overwrite them.
func (c *Core) deleteBlocksFrom(from uint64) error {
	var keys [][]byte
	for _, p := range []byte{pBlockMeta, pCert, pBlockChunk} {
		it, err := c.kv.Iterator(heightKey(p, from), []byte{p + 1})
		if err != nil {
			return fmt.Errorf("store: recover: %w", err)
		}
		for ; it.Valid(); it.Next() {
			keys = append(keys, it.Key())
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("store: recover: %w", err)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	b := c.kv.NewBatch()
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return errors.Join(fmt.Errorf("store: recover: %w", err), b.Close())
		}
	}
	if err := errors.Join(b.Write(), b.Close()); err != nil {
		return fmt.Errorf("store: recover: %w", err)
	}
	return nil
}

func (c *Core) Height() uint64 {
	c.pubMu.RLock()
	defer c.pubMu.RUnlock()
	return c.height
}

func (c *Core) StateRoot() chain.Hash {
	c.pubMu.RLock()
	defer c.pubMu.RUnlock()
	return c.root
}

// committed returns the committed height, or an error once closed.
func (c *Core) committed() (uint64, bool, error) {
	c.pubMu.RLock()
	defer c.pubMu.RUnlock()
	if c.closed {
		return 0, false, errClosed
	}
	return c.height, c.hasGenesis, nil
}

func (c *Core) State() state.View {
	h, ok, err := c.committed()
	if err != nil {
		return errView{err}
	}
	if !ok {
		return errView{} // nothing committed: every key is absent
	}
	return flatView{c: c, h: h}
}

// errView answers every read with err (nil: every key absent).
type errView struct{ err error }

func (e errView) Get([]byte) ([]byte, error) { return nil, e.err }

func (c *Core) StateAt(height uint64) (state.View, error) {
	h, ok, err := c.committed()
	if err != nil {
		return nil, err
	}
	if err := c.readable(height, h, ok); err != nil {
		return nil, err
	}
	v, err := c.tree.ViewAt(int64(height))
	if err != nil {
		return nil, c.treeError(height, err)
	}
	return v, nil
}

func (c *Core) Prove(height uint64, key []byte) (*statetree.Proof, error) {
	h, ok, err := c.committed()
	if err != nil {
		return nil, err
	}
	if err := c.readable(height, h, ok); err != nil {
		return nil, err
	}
	p, err := c.tree.Prove(int64(height), key)
	if err != nil {
		return nil, c.treeError(height, err)
	}
	return p, nil
}

// readable checks that the state at height exists: committed and not pruned.
func (c *Core) readable(height, committed uint64, hasGenesis bool) error {
	if !hasGenesis || height > committed {
		return fmt.Errorf("%w: state at height %d (committed %d)", ErrNotFound, height, committed)
	}
	if c.opts.KeepVersions > 0 && height+c.opts.KeepVersions <= committed {
		return fmt.Errorf("%w: state at height %d (this node keeps the latest %d of %d)", ErrPruned, height, c.opts.KeepVersions, committed)
	}
	return nil
}

// treeError explains a failed read of the state at height: a version that is gone was pruned,
// by a commit that ran meanwhile or by an earlier run with pruning on.
func (c *Core) treeError(height uint64, err error) error {
	if errors.Is(err, statetree.ErrNoSuchVersion) {
		return fmt.Errorf("%w: state at height %d: %v", ErrPruned, height, err)
	}
	return fmt.Errorf("store: state at %d: %w", height, err)
}

func (c *Core) checkHeight(height uint64) error {
	h, _, err := c.committed()
	if err != nil {
		return err
	}
	if height == 0 || height > h {
		return fmt.Errorf("%w: block %d (committed %d)", ErrNotFound, height, h)
	}
	return nil
}

func (c *Core) blockMeta(height uint64) (blockMeta, error) {
	raw, err := c.kv.Get(heightKey(pBlockMeta, height))
	if err != nil {
		return blockMeta{}, fmt.Errorf("store: block %d: %w", height, err)
	}
	if raw == nil {
		return blockMeta{}, fmt.Errorf("%w: block %d", ErrNotFound, height)
	}
	return decodeBlockMeta(raw)
}

func (c *Core) Block(height uint64) (*chain.Block, error) {
	if err := c.checkHeight(height); err != nil {
		return nil, err
	}
	return c.readBlock(height)
}

// readBlock reads the block stored at height, committed or not, and checks it against its record.
func (c *Core) readBlock(height uint64) (*chain.Block, error) {
	meta, err := c.blockMeta(height)
	if err != nil {
		return nil, err
	}
	var enc []byte
	for i := range meta.chunks {
		part, err := c.kv.Get(chunkKey(height, i))
		if err != nil {
			return nil, fmt.Errorf("store: block %d: %w", height, err)
		}
		if part == nil {
			return nil, fmt.Errorf("store: block %d: chunk %d of %d missing: storage is corrupt", height, i, meta.chunks)
		}
		enc = append(enc, part...)
	}
	b, err := chain.DecodeBlock(enc)
	if err != nil {
		return nil, fmt.Errorf("store: block %d: %w", height, err)
	}
	if b.Hash() != meta.hash {
		return nil, fmt.Errorf("store: block %d: hash does not match its record: storage is corrupt", height)
	}
	return b, nil
}

func (c *Core) Cert(height uint64) (*chain.CommitCert, error) {
	if err := c.checkHeight(height); err != nil {
		return nil, err
	}
	return c.readCert(height)
}

func (c *Core) readCert(height uint64) (*chain.CommitCert, error) {
	raw, err := c.kv.Get(heightKey(pCert, height))
	if err != nil {
		return nil, fmt.Errorf("store: certificate %d: %w", height, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("store: certificate %d missing: storage is corrupt", height)
	}
	cert, err := chain.DecodeCommitCert(raw)
	if err != nil {
		return nil, fmt.Errorf("store: certificate %d: %w", height, err)
	}
	return cert, nil
}

// indexedAt reports whether a block with this hash is committed at height; index entries left by
// an interrupted commit fail this check.
func (c *Core) indexedAt(height uint64, blockHash chain.Hash, committed uint64) (bool, error) {
	if height == 0 || height > committed {
		return false, nil
	}
	meta, err := c.blockMeta(height)
	if err != nil {
		return false, err
	}
	return meta.hash == blockHash, nil
}

func (c *Core) HeightOf(blockHash chain.Hash) (uint64, error) {
	committed, _, err := c.committed()
	if err != nil {
		return 0, err
	}
	raw, err := c.kv.Get(hashKey(pHashIndex, blockHash))
	if err != nil {
		return 0, fmt.Errorf("store: block index: %w", err)
	}
	if len(raw) == 8 {
		h := binary.BigEndian.Uint64(raw)
		ok, err := c.indexedAt(h, blockHash, committed)
		if err != nil {
			return 0, err
		}
		if ok {
			return h, nil
		}
	}
	return 0, fmt.Errorf("%w: block %s", ErrNotFound, blockHash.Short())
}

func (c *Core) TxLocation(txHash chain.Hash) (uint64, int, error) {
	committed, _, err := c.committed()
	if err != nil {
		return 0, 0, err
	}
	h, i, ok, err := c.txLocation(txHash, committed)
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, fmt.Errorf("%w: transaction %s", ErrNotFound, txHash.Short())
	}
	return h, i, nil
}

func (c *Core) txLocation(txHash chain.Hash, committed uint64) (uint64, int, bool, error) {
	raw, err := c.kv.Get(hashKey(pTxIndex, txHash))
	if err != nil {
		return 0, 0, false, fmt.Errorf("store: transaction index: %w", err)
	}
	if len(raw) != 8+4+32 {
		return 0, 0, false, nil
	}
	h := binary.BigEndian.Uint64(raw)
	i := int(binary.BigEndian.Uint32(raw[8:]))
	ok, err := c.indexedAt(h, chain.Hash(raw[12:]), committed)
	return h, i, ok, err
}

func (c *Core) Genesis() (*chain.Genesis, error) {
	if _, _, err := c.committed(); err != nil {
		return nil, err
	}
	raw, err := c.kv.Get(keyGenesis)
	if err != nil {
		return nil, fmt.Errorf("store: genesis: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: genesis", ErrNotFound)
	}
	var g chain.Genesis
	if err := chain.DecodeCanonical("genesis", raw, chain.MaxGenesisBytes, &g); err != nil {
		return nil, fmt.Errorf("store: genesis: %w", err)
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("store: genesis: %w", err)
	}
	return &g, nil
}

// writable is checked under mu before any write.
func (c *Core) writable() error {
	if c.closed {
		return errClosed
	}
	if c.broken != nil {
		return fmt.Errorf("store: reopen required after a failed commit: %w", c.broken)
	}
	return nil
}

func (c *Core) InitGenesis(g *chain.Genesis, cs state.ChangeSet) (chain.Hash, error) {
	if g == nil {
		return chain.Hash{}, errors.New("store: nil genesis")
	}
	if err := g.Validate(); err != nil {
		return chain.Hash{}, fmt.Errorf("store: %w", err)
	}
	if err := cs.Validate(); err != nil {
		return chain.Hash{}, fmt.Errorf("store: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.writable(); err != nil {
		return chain.Hash{}, err
	}
	if c.hasGenesis {
		return chain.Hash{}, errors.New("store: genesis already initialised")
	}
	fail := func(err error) (chain.Hash, error) {
		c.broken = err
		return chain.Hash{}, err
	}
	if err := c.kv.Set(keyGenesis, chain.Encode(g)); err != nil {
		return fail(fmt.Errorf("store: write genesis: %w", err))
	}
	root, v, err := c.tree.Commit(cs)
	if err != nil {
		return fail(fmt.Errorf("store: genesis state: %w", err))
	}
	if v != 0 {
		return fail(fmt.Errorf("store: genesis state saved as version %d, want 0", v))
	}
	if err := c.writeFlatAndMarker(cs, marker{height: 0, root: root}); err != nil {
		return fail(err)
	}
	c.pubMu.Lock()
	c.height, c.root, c.hasGenesis = 0, root, true
	c.pubMu.Unlock()
	return root, nil
}

// writeFlatAndMarker writes cs to the latest-value index and then the commit marker, the commit
// point, in one batch after everything else of the commit. The KV applies a batch in order, in
// atomic parts durable in order under SyncEveryCommit, and makes the last (with the marker)
// durable before this returns, so a marker that survives a power loss implies that everything
// written before it survived too (docs/storage.md, "Sync policy"). Reads of the index are held
// off while the batch is written, and then see height m.height.
func (c *Core) writeFlatAndMarker(cs state.ChangeSet, m marker) error {
	b := c.kv.NewBatch()
	defer b.Close()
	if err := stageFlat(b, cs, m.height); err != nil {
		return err
	}
	if err := b.Set(keyMarker, m.encode()); err != nil {
		return fmt.Errorf("store: write commit marker %d: %w", m.height, err)
	}
	c.flatMu.Lock()
	defer c.flatMu.Unlock()
	if err := b.Write(); err != nil {
		// The index may hold part of the new state: reads go to the tree until reopened.
		c.flatOK = false
		c.latest.clear()
		return fmt.Errorf("store: write commit marker %d: %w", m.height, err)
	}
	c.latest.apply(cs)
	c.flatOK, c.flatAt = true, m.height
	return nil
}

// Commit implements Store. An error from pruning, which runs after the commit point, leaves the
// block committed (Height reports it) and the store refusing further commits until reopened.
func (c *Core) Commit(b *chain.Block, cert *chain.CommitCert, cs state.ChangeSet) (chain.Hash, error) {
	if b == nil || cert == nil {
		return chain.Hash{}, errors.New("store: commit needs a block and its certificate")
	}
	if err := cs.Validate(); err != nil {
		return chain.Hash{}, fmt.Errorf("store: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.writable(); err != nil {
		return chain.Hash{}, err
	}
	if !c.hasGenesis {
		return chain.Hash{}, errors.New("store: commit before genesis")
	}
	h := b.Header.Height
	if h != c.height+1 {
		return chain.Hash{}, fmt.Errorf("store: commit of block %d, next height is %d", h, c.height+1)
	}
	if b.Header.PrevHash != c.lastHash {
		return chain.Hash{}, fmt.Errorf("store: block %d links to %s, block %d is %s", h, b.Header.PrevHash.Short(), c.height, c.lastHash.Short())
	}
	blockHash := b.Hash()
	if cert.Height != h || cert.BlockHash != blockHash {
		return chain.Hash{}, fmt.Errorf("store: certificate for %d/%s does not match block %d/%s", cert.Height, cert.BlockHash.Short(), h, blockHash.Short())
	}
	fail := func(err error) (chain.Hash, error) {
		c.broken = err
		return chain.Hash{}, err
	}
	// 1. Block, certificate and indices: invisible until the marker names this height.
	if err := c.writeBlock(b, blockHash, cert); err != nil {
		return fail(err)
	}
	// 2. State: IAVL writes the new version through its own batches.
	root, v, err := c.tree.Commit(cs)
	if err != nil {
		return fail(fmt.Errorf("store: state of block %d: %w", h, err))
	}
	if v != int64(h) {
		return fail(fmt.Errorf("store: state of block %d saved as version %d", h, v))
	}
	// 3. The latest-value index and the marker, the commit point.
	if err := c.writeFlatAndMarker(cs, marker{height: h, root: root}); err != nil {
		return fail(err)
	}
	c.pubMu.Lock()
	c.height, c.root, c.lastHash = h, root, blockHash
	c.pubMu.Unlock()
	// 4. Pruning, and under SyncNone a sync now and then, after the commit point: a crash in
	// either leaves the block committed.
	if err := errors.Join(c.prune(), c.syncTail()); err != nil {
		c.broken = err
		return root, fmt.Errorf("store: block %d is committed, but %w; reopen the store", h, err)
	}
	return root, nil
}

// prune deletes the state versions that KeepVersions no longer keeps.
func (c *Core) prune() error {
	if c.opts.KeepVersions == 0 || c.height < c.opts.KeepVersions {
		return nil
	}
	if err := c.tree.Prune(int64(c.height - c.opts.KeepVersions)); err != nil {
		return fmt.Errorf("pruning failed: %w", err)
	}
	return nil
}

func (c *Core) writeBlock(b *chain.Block, blockHash chain.Hash, cert *chain.CommitCert) error {
	h := b.Header.Height
	enc := b.Encode()
	batch := c.kv.NewBatch()
	defer batch.Close()
	var chunks uint32
	for off := 0; off < len(enc); off += chunkSize {
		if err := batch.Set(chunkKey(h, chunks), enc[off:min(off+chunkSize, len(enc))]); err != nil {
			return fmt.Errorf("store: write block %d: %w", h, err)
		}
		chunks++
	}
	if err := batch.Set(heightKey(pBlockMeta, h), blockMeta{hash: blockHash, chunks: chunks}.encode()); err != nil {
		return fmt.Errorf("store: write block %d: %w", h, err)
	}
	if err := batch.Set(heightKey(pCert, h), cert.Encode()); err != nil {
		return fmt.Errorf("store: write certificate %d: %w", h, err)
	}
	if err := batch.Set(hashKey(pHashIndex, blockHash), binary.BigEndian.AppendUint64(nil, h)); err != nil {
		return fmt.Errorf("store: write block index %d: %w", h, err)
	}
	seen := make(map[chain.Hash]bool, len(b.Txs))
	for i, tx := range b.Txs {
		th := tx.Hash()
		if seen[th] {
			continue
		}
		seen[th] = true
		// A block may carry a transaction that an earlier block already committed (it then
		// fails execution); the index keeps the first, valid location.
		_, _, earlier, err := c.txLocation(th, c.height)
		if err != nil {
			return err
		}
		if earlier {
			continue
		}
		loc := binary.BigEndian.AppendUint64(nil, h)
		loc = binary.BigEndian.AppendUint32(loc, uint32(i))
		loc = append(loc, blockHash[:]...)
		if err := batch.Set(hashKey(pTxIndex, th), loc); err != nil {
			return fmt.Errorf("store: write transaction index %d: %w", h, err)
		}
	}
	if err := batch.Write(); err != nil {
		return fmt.Errorf("store: write block %d: %w", h, err)
	}
	return nil
}

func (c *Core) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.pubMu.Lock()
	c.closed = true
	c.pubMu.Unlock()
	c.flatMu.Lock()
	c.flatOK, c.flatClosed = false, true
	c.flatMu.Unlock()
	return errors.Join(c.tree.Close(), c.kv.Close())
}
