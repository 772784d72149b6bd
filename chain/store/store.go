// Package store keeps a node's chain: blocks, commit certificates, the authenticated state tree
// (chain/statetree), indices by block and transaction hash, and consensus's record of what it
// last signed. Core implements the commit protocol and recovery once, over a small ordered
// key-value interface (KV); chain/store/badger is the disk backend, and Memory is the in-memory
// twin for tests and simulations, which can also crash, lose power and fail between any two writes.
//
// A block, its certificate, its state change and its indices become visible together: everything
// is written first, then a small commit marker naming the height, and on open anything above the
// marker is rolled back. docs/storage.md describes the key layout, the commit protocol, recovery,
// pruning and what each sync policy survives.
package store

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
)

var (
	// ErrNotFound is returned (possibly wrapped) for a height, hash or key the store does not hold.
	ErrNotFound = errors.New("store: not found")
	// ErrPruned is returned (wrapped) for the state at a height this store has pruned (see
	// Options.KeepVersions); an archive node (KeepVersions 0) still has it.
	ErrPruned = errors.New("store: state pruned here (an archive node keeps every height)")
	// ErrCrashed is returned by a store whose fault injection fired (Memory.FailAfterWrites): the
	// write that returned it and every later one were not applied.
	ErrCrashed = errors.New("store: crashed (injected fault)")
)

// Store is what the consensus driver, block sync and the API need from storage.
type Store interface {
	// Height is the last committed height; 0 means genesis only (or nothing, before InitGenesis).
	Height() uint64
	// StateRoot is the state root after Height.
	StateRoot() chain.Hash
	// State is a snapshot of the state after Height.
	State() state.View
	// StateAt is a snapshot of the state after height (0 is the genesis state). A height the
	// store has pruned gives an error wrapping ErrPruned.
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
	// Prove proves key present or absent in the state after height (ErrPruned as for StateAt).
	Prove(height uint64, key []byte) (*statetree.Proof, error)
	// SaveSignState durably records consensus's small sign record and the blocks it refers to.
	// Blocks not listed are deleted; listed blocks already stored are not written again. It is
	// durable before returning, whatever the sync policy: a vote goes out right after.
	SaveSignState(record []byte, blocks []SignBlock) error
	// SignState returns the last saved record (nil if none) and its blocks by hash.
	SignState() (record []byte, blocks map[chain.Hash][]byte, err error)
	Close() error
}

// SignBlock is a block the sign state refers to by hash; Encode is called only if the store does
// not hold it yet.
type SignBlock struct {
	Hash   chain.Hash
	Encode func() []byte
}

// Bounds of a sign state, checked when saving and when reading back.
const (
	// MaxSignRecordBytes bounds the sign record: heights, rounds, the signed messages and
	// proof-of-lock votes, never blocks.
	MaxSignRecordBytes = 1 << 20
	// MaxSignBlocks bounds the blocks of one sign state (consensus keeps three: locked, valid
	// and proposed).
	MaxSignBlocks = 4
	// MaxSignBlockBytes bounds each of its blocks.
	MaxSignBlockBytes = chain.MaxBlockBytes
)

// SyncPolicy says when commits reach stable storage.
type SyncPolicy int

const (
	// SyncEveryCommit makes every commit durable before Commit returns: a commit that returned
	// survives power loss. The default.
	SyncEveryCommit SyncPolicy = iota
	// SyncNone leaves flushing to the operating system: a commit that returned survives the
	// process being killed (the data is in the OS page cache), not power loss or a kernel crash.
	// docs/storage.md says what a power loss can do then.
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

// Options configure a store. The zero value is the documented default.
type Options struct {
	// Sync is the sync policy; default SyncEveryCommit.
	Sync SyncPolicy
	// KeepVersions is how many of the latest state versions stay readable and provable: 0 (the
	// default) keeps every version (an archive node); N > 0 prunes older ones right after each
	// commit, and StateAt and Prove below them return ErrPruned. Blocks and certificates are
	// always kept.
	KeepVersions uint64
}

func (o Options) validate() error {
	if o.Sync != SyncEveryCommit && o.Sync != SyncNone {
		return fmt.Errorf("store: unknown sync policy %d", o.Sync)
	}
	return nil
}

var (
	_ Store = (*Core)(nil)
	_ Store = (*Memory)(nil)
)
