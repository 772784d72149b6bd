// Package store keeps a node's chain on disk: blocks, commit certificates, the authenticated state
// tree (chain/statetree), indices by block and transaction hash, and consensus's record of what
// it last signed. Badger is the production backend; Memory is its in-memory twin for tests and
// simulations, running the same commit and recovery code.
//
// A block, its certificate, its state change and its indices become visible together: everything
// is written first, then a small commit marker naming the height, and on open anything above the
// marker is rolled back. docs/storage.md describes the key layout, the commit protocol, recovery
// and what each sync policy survives.
package store

import (
	"errors"
	"log/slog"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
)

// ErrNotFound is returned (possibly wrapped) for a height, hash or key the store does not hold.
var ErrNotFound = errors.New("store: not found")

// Store is what the consensus driver, block sync and the API need from storage.
type Store interface {
	// Height is the last committed height; 0 means genesis only (or nothing, before InitGenesis).
	Height() uint64
	// StateRoot is the state root after Height.
	StateRoot() chain.Hash
	// State is a snapshot of the state after Height.
	State() state.View
	// StateAt is a snapshot of the state after height (0 is the genesis state).
	StateAt(height uint64) (state.View, error)
	Block(height uint64) (*chain.Block, error)
	Cert(height uint64) (*chain.CommitCert, error)
	// HeightOf finds a committed block by hash.
	HeightOf(blockHash chain.Hash) (uint64, error)
	// TxLocation finds the first committed block that included a transaction.
	TxLocation(txHash chain.Hash) (height uint64, index int, err error)
	Genesis() (*chain.Genesis, error)
	// InitGenesis stores genesis and its initial state as state version 0; the store must be empty.
	InitGenesis(g *chain.Genesis, cs state.ChangeSet) (chain.Hash, error)
	// Commit stores block b (height Height()+1, linked to the previous block) with its
	// certificate and applies cs, atomically; it returns the new state root. The caller has
	// validated the block and the certificate.
	Commit(b *chain.Block, cert *chain.CommitCert, cs state.ChangeSet) (chain.Hash, error)
	// Prove proves key present or absent in the state after height.
	Prove(height uint64, key []byte) (*statetree.Proof, error)
	// SaveSignState durably records what consensus last signed before it sends a vote: it is
	// synced to disk before returning whatever the sync policy.
	SaveSignState(data []byte) error
	// SignState returns the last saved sign state, or nil, nil.
	SignState() ([]byte, error)
	Close() error
}

// SyncPolicy says when commits reach stable storage.
type SyncPolicy int

const (
	// SyncEveryCommit fsyncs after every commit marker: a commit that returned survives power
	// loss. The default.
	SyncEveryCommit SyncPolicy = iota
	// SyncNone leaves flushing to the operating system: a commit that returned survives the
	// process being killed (the data is in the OS page cache), not power loss or a kernel
	// crash, after which the store still opens consistently at some earlier height.
	SyncNone
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncEveryCommit:
		return "every-commit"
	case SyncNone:
		return "none"
	}
	return "unknown"
}

// Options configure OpenBadger. The zero value is the documented default.
type Options struct {
	// Sync is the sync policy; default SyncEveryCommit.
	Sync SyncPolicy
	// Logger receives Badger's warnings and errors (its info chatter at debug level); nil
	// discards them.
	Logger *slog.Logger
	// MemTableSize is Badger's memtable size in bytes, default 16 MiB. One Badger transaction
	// holds at most about 15% of it; the store splits larger writes, so this only trades
	// memory for write throughput.
	MemTableSize int64
}

var (
	_ Store = (*Badger)(nil)
	_ Store = (*Memory)(nil)
)
