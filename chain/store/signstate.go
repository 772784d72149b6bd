package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Sign-state keys (docs/storage.md). A sign block is written as chunks first and its record
// ('sm') last, and deleted record first, so a block record implies that all its chunks are there.
var (
	keySignRecord  = []byte("sr")     // the sign record and the hashes of its blocks
	prefixSignMeta = []byte("sm")     // "sm" hash -> block size (4)
	prefixSignData = []byte("sc")     // "sc" hash chunk(4) -> a piece of the block
	endSignMeta    = []byte("sm\xff") // past every "sm" + 32-byte hash key
	endSignData    = []byte("sc\xff")
)

// signChunkSize splits sign blocks into values small enough that Badger keeps them in its LSM tree
// rather than its value log at any memtable size the backend allows (chain/store/badger), so
// value-log rotation and garbage collection never touch the sign state.
const signChunkSize = 64 << 10

const signRecordVersion = 1

// maxLegacySignBytes bounds the sign state of the format before sign records (consensus's whole
// SignState with its three blocks).
const maxLegacySignBytes = 3*chain.MaxBlockBytes + MaxSignRecordBytes

func signMetaKey(h chain.Hash) []byte { return append(slices.Clone(prefixSignMeta), h[:]...) }

func signChunkKey(h chain.Hash, i uint32) []byte {
	return binary.BigEndian.AppendUint32(append(slices.Clone(prefixSignData), h[:]...), i)
}

func signChunks(size uint32) uint32 { return (size + signChunkSize - 1) / signChunkSize }

func encodeSignRecord(hashes []chain.Hash, record []byte) []byte {
	b := make([]byte, 0, 2+len(hashes)*32+len(record))
	b = append(b, signRecordVersion, byte(len(hashes)))
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return append(b, record...)
}

func decodeSignRecord(b []byte) ([]chain.Hash, []byte, error) {
	if len(b) < 2 || b[0] != signRecordVersion {
		return nil, nil, errors.New("store: sign record is malformed")
	}
	n := int(b[1])
	if n > MaxSignBlocks || len(b) < 2+n*32 {
		return nil, nil, fmt.Errorf("store: sign record names %d blocks (at most %d) or is truncated", n, MaxSignBlocks)
	}
	hashes := make([]chain.Hash, n)
	for i := range hashes {
		copy(hashes[i][:], b[2+i*32:])
	}
	record := b[2+n*32:]
	if len(record) > MaxSignRecordBytes {
		return nil, nil, fmt.Errorf("store: sign record is %d bytes, at most %d", len(record), MaxSignRecordBytes)
	}
	return hashes, record, nil
}

func checkSignState(record []byte, blocks []SignBlock) error {
	if len(record) > MaxSignRecordBytes {
		return fmt.Errorf("store: sign record is %d bytes, at most %d", len(record), MaxSignRecordBytes)
	}
	if len(blocks) > MaxSignBlocks {
		return fmt.Errorf("store: sign state with %d blocks, at most %d", len(blocks), MaxSignBlocks)
	}
	for i, b := range blocks {
		if b.Encode == nil {
			return fmt.Errorf("store: sign block %s has no encoder", b.Hash.Short())
		}
		for _, o := range blocks[:i] {
			if o.Hash == b.Hash {
				return fmt.Errorf("store: sign block %s listed twice", b.Hash.Short())
			}
		}
	}
	return nil
}

// SaveSignState implements Store. The order of writes makes every crash leave the previous or the
// new sign state: new blocks (chunks, then their records), then the sign record, then deleting
// blocks no longer listed. Under SyncNone each step is synced before the next, since the KV only
// orders what it made durable.
func (c *Core) SaveSignState(record []byte, blocks []SignBlock) error {
	if err := checkSignState(record, blocks); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	hashes := make([]chain.Hash, len(blocks))
	var fresh [][]byte // block records to write once the chunks are down
	data := c.kv.NewBatch()
	defer data.Close()
	for i, b := range blocks {
		hashes[i] = b.Hash
		size, ok, err := c.signBlockSize(b.Hash)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		enc := b.Encode()
		if len(enc) == 0 || len(enc) > MaxSignBlockBytes {
			return fmt.Errorf("store: sign block %s is %d bytes, want 1..%d", b.Hash.Short(), len(enc), MaxSignBlockBytes)
		}
		size = uint32(len(enc))
		for i := range signChunks(size) {
			off := int(i) * signChunkSize
			if err := data.Set(signChunkKey(b.Hash, i), enc[off:min(off+signChunkSize, len(enc))]); err != nil {
				return fmt.Errorf("store: save sign block: %w", err)
			}
		}
		fresh = append(fresh, signMetaKey(b.Hash), binary.BigEndian.AppendUint32(nil, size))
	}
	if len(fresh) > 0 {
		if err := c.writeDurably(data); err != nil {
			return fmt.Errorf("store: save sign blocks: %w", err)
		}
		metas := c.kv.NewBatch()
		defer metas.Close()
		for i := 0; i < len(fresh); i += 2 {
			if err := metas.Set(fresh[i], fresh[i+1]); err != nil {
				return fmt.Errorf("store: save sign blocks: %w", err)
			}
		}
		if err := c.writeDurably(metas); err != nil {
			return fmt.Errorf("store: save sign blocks: %w", err)
		}
	}
	if err := c.kv.Set(keySignRecord, encodeSignRecord(hashes, record)); err != nil {
		return fmt.Errorf("store: save sign record: %w", err)
	}
	if err := c.syncIfNeeded(); err != nil {
		return fmt.Errorf("store: sync sign record: %w", err)
	}
	// The new record is durable: blocks it does not list can go. Losing these deletes to a crash
	// only leaves garbage that the next save removes.
	if err := c.deleteSignBlocksExcept(hashes); err != nil {
		return err
	}
	return nil
}

// writeDurably writes b; under SyncNone it also syncs, so that later writes cannot become durable
// before it.
func (c *Core) writeDurably(b interface{ Write() error }) error {
	if err := b.Write(); err != nil {
		return err
	}
	return c.syncIfNeeded()
}

func (c *Core) syncIfNeeded() error {
	if c.opts.Sync == SyncEveryCommit {
		return nil // the KV made every write durable before it returned
	}
	return c.kv.Sync()
}

// signBlockSize reads the record of a stored sign block.
func (c *Core) signBlockSize(h chain.Hash) (uint32, bool, error) {
	raw, err := c.kv.Get(signMetaKey(h))
	if err != nil {
		return 0, false, fmt.Errorf("store: sign block %s: %w", h.Short(), err)
	}
	if raw == nil {
		return 0, false, nil
	}
	if len(raw) != 4 {
		return 0, false, fmt.Errorf("store: sign block %s record is malformed", h.Short())
	}
	size := binary.BigEndian.Uint32(raw)
	if size == 0 || size > MaxSignBlockBytes {
		return 0, false, fmt.Errorf("store: sign block %s claims %d bytes, at most %d", h.Short(), size, MaxSignBlockBytes)
	}
	return size, true, nil
}

// deleteSignBlocksExcept deletes every stored sign block not in keep, and the sign state of the
// old format. There are at most a few block records (the previous save's and any left by a crash).
func (c *Core) deleteSignBlocksExcept(keep []chain.Hash) error {
	type stale struct {
		h    chain.Hash
		size uint32
	}
	var old []stale
	it, err := c.kv.Iterator(prefixSignMeta, endSignMeta)
	if err != nil {
		return fmt.Errorf("store: sign blocks: %w", err)
	}
	for ; it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(prefixSignMeta)+32 || len(v) != 4 {
			continue // not a record this package writes; left alone
		}
		h := chain.Hash(k[len(prefixSignMeta):])
		if !slices.Contains(keep, h) {
			old = append(old, stale{h, min(binary.BigEndian.Uint32(v), MaxSignBlockBytes)})
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("store: sign blocks: %w", err)
	}
	legacy, err := c.kv.Has(keyLegacySign)
	if err != nil {
		return fmt.Errorf("store: sign state: %w", err)
	}
	if len(old) == 0 && !legacy {
		return nil
	}
	b := c.kv.NewBatch()
	defer b.Close()
	for _, s := range old {
		// The record first: a block record never outlives one of its chunks.
		if err := b.Delete(signMetaKey(s.h)); err != nil {
			return fmt.Errorf("store: delete sign block: %w", err)
		}
		for i := range signChunks(s.size) {
			if err := b.Delete(signChunkKey(s.h, i)); err != nil {
				return fmt.Errorf("store: delete sign block: %w", err)
			}
		}
	}
	if legacy {
		if err := b.Delete(keyLegacySign); err != nil {
			return fmt.Errorf("store: delete old sign state: %w", err)
		}
	}
	if err := b.Write(); err != nil {
		return fmt.Errorf("store: delete sign blocks: %w", err)
	}
	return nil
}

// sweepSignChunks deletes chunks whose block has no record: a crash interrupted the block's
// writing or deletion. Run on open; bounded by the few blocks a sign state holds.
func (c *Core) sweepSignChunks() error {
	var orphans [][]byte
	known := map[chain.Hash]bool{}
	it, err := c.kv.Iterator(prefixSignData, endSignData)
	if err != nil {
		return fmt.Errorf("store: recover sign blocks: %w", err)
	}
	for ; it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != len(prefixSignData)+32+4 {
			continue
		}
		h := chain.Hash(k[len(prefixSignData):])
		ok, seen := known[h]
		if !seen {
			_, ok, err = c.signBlockSize(h)
			if err != nil {
				return errors.Join(err, it.Close())
			}
			known[h] = ok
		}
		if !ok {
			orphans = append(orphans, k)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("store: recover sign blocks: %w", err)
	}
	if len(orphans) == 0 {
		return nil
	}
	b := c.kv.NewBatch()
	defer b.Close()
	for _, k := range orphans {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("store: recover sign blocks: %w", err)
		}
	}
	if err := b.Write(); err != nil {
		return fmt.Errorf("store: recover sign blocks: %w", err)
	}
	return nil
}

// SignState implements Store. Everything read is bounded: the record by MaxSignRecordBytes, the
// blocks by MaxSignBlocks of MaxSignBlockBytes each. A sign state saved by a version before sign
// records comes back as the record, with no blocks.
func (c *Core) SignState() ([]byte, map[chain.Hash][]byte, error) {
	if _, _, err := c.committed(); err != nil {
		return nil, nil, err
	}
	raw, err := c.kv.Get(keySignRecord)
	if err != nil {
		return nil, nil, fmt.Errorf("store: sign state: %w", err)
	}
	if raw == nil {
		legacy, err := c.kv.Get(keyLegacySign)
		if err != nil {
			return nil, nil, fmt.Errorf("store: sign state: %w", err)
		}
		if len(legacy) > maxLegacySignBytes {
			return nil, nil, fmt.Errorf("store: old sign state is %d bytes, at most %d", len(legacy), maxLegacySignBytes)
		}
		return legacy, nil, nil
	}
	hashes, record, err := decodeSignRecord(raw)
	if err != nil {
		return nil, nil, err
	}
	blocks := make(map[chain.Hash][]byte, len(hashes))
	for _, h := range hashes {
		size, ok, err := c.signBlockSize(h)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, nil, fmt.Errorf("store: sign record names block %s, which is missing: storage is corrupt", h.Short())
		}
		enc := make([]byte, 0, size)
		for i := range signChunks(size) {
			part, err := c.kv.Get(signChunkKey(h, i))
			if err != nil {
				return nil, nil, fmt.Errorf("store: sign block %s: %w", h.Short(), err)
			}
			want := min(signChunkSize, int(size)-len(enc))
			if len(part) != want {
				return nil, nil, fmt.Errorf("store: sign block %s chunk %d is %d bytes, want %d: storage is corrupt", h.Short(), i, len(part), want)
			}
			enc = append(enc, part...)
		}
		blocks[h] = enc
	}
	return bytes.Clone(record), blocks, nil
}
