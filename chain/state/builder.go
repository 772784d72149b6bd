package state

import (
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Builder packs a block for a proposer: each Add executes a transaction on top of the ones
// already added and keeps it only if it is valid, so the finished block passes ApplyBlock.
type Builder struct {
	e        *executor
	err      error // from begin: every call reports it
	verified VerifiedSet
	txs      []*chain.Tx
	results  []TxResult
	bytes    int
	done     bool
}

// NewBuilder starts a block at h on view (the state after h.Height-1). An unusable header or
// view is reported by every later call.
func (m *Machine) NewBuilder(view View, h *chain.Header, verified VerifiedSet) *Builder {
	e, err := m.begin(view, h, true)
	return &Builder{e: e, err: err, verified: verified}
}

// Add executes tx after the transactions already added. If tx is invalid (or the block is full:
// ErrBlockFull), Add reverts its effects and returns the reason; the block is unchanged.
func (b *Builder) Add(tx *chain.Tx) error {
	if b.err != nil {
		return b.err
	}
	if b.done {
		return fmt.Errorf("state: builder already finished")
	}
	if tx == nil {
		return fmt.Errorf("state: empty transaction")
	}
	if len(b.txs) >= int(b.e.params.MaxBlockTxs) {
		return fmt.Errorf("%w: %d transactions", ErrBlockFull, len(b.txs))
	}
	enc := tx.Encode()
	if b.bytes+len(enc) > txBytesBudget(&b.e.params) {
		return fmt.Errorf("%w: %d bytes of transactions, this one is %d", ErrBlockFull, b.bytes, len(enc))
	}
	hash := chain.Sum256(enc)
	res, err := b.e.apply(tx, hash, b.verified != nil && b.verified.Verified(hash))
	if err != nil {
		return err
	}
	b.txs = append(b.txs, tx)
	b.results = append(b.results, res)
	b.bytes += len(enc)
	return nil
}

// Len is the number of transactions added.
func (b *Builder) Len() int { return len(b.txs) }

// Txs returns the accepted transactions in block order.
func (b *Builder) Txs() []*chain.Tx { return slices.Clone(b.txs) }

// Finish ends the block and returns its outcome, identical to what ApplyBlock returns for the
// same header and Txs(). The builder accepts nothing afterwards.
func (b *Builder) Finish() (*Outcome, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.done {
		return nil, fmt.Errorf("state: builder already finished")
	}
	b.done = true
	return b.e.finish(b.results)
}
