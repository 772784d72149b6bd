package store

import iavldb "github.com/cosmos/iavl/db"

// KV is the ordered key-value store a Core runs on: Badger (chain/store/badger) on disk, an
// in-memory map in Memory. The commit protocol and recovery are written once, against it, and
// rely on this contract:
//
//   - Reads see every write that has returned. A write that returned survives a crash of the
//     process.
//   - Under SyncEveryCommit, every write (Set, Delete, a batch's Write) is durable — it survives
//     power loss — before it returns. So writes become durable in the order they return, and a
//     commit marker that survived implies that everything written before it did. A batch may be
//     applied in several atomic parts (Badger caps its transactions), each durable in order.
//   - Under SyncNone, writes need not be durable until Sync, which makes every write that has
//     returned durable.
//   - Background work of the backend (compaction, garbage collection) never loses a durable write.
//
// Values are never nil; a present key may have an empty value.
type KV interface {
	iavldb.DB
	Set(key, value []byte) error
	Delete(key []byte) error
	// Sync makes every write that has returned durable.
	Sync() error
}
