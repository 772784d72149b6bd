package records

import (
	"context"
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// Ledger is what the record service reads from and writes to the ledger. The node implements it
// over its replica; tests over a one-authority chain in memory. Tip height and time come from
// the view itself (state.Tip).
type Ledger interface {
	// View runs f on the committed state at the tip and returns f's error. f must not keep view
	// nor call back into the Ledger.
	View(ctx context.Context, f func(view state.View) error) error
	// Block returns the committed block at height, or nil (and no error) above the tip.
	Block(ctx context.Context, height uint64) (*chain.Block, error)
	// NextNonce is the nonce signer's next transaction takes: after its committed nonce and
	// the transactions of its own pending in the mempool.
	NextNonce(ctx context.Context, signer chain.PubKey) (uint64, error)
	// Submit hands tx to the mempool. On success the channel receives the transaction's outcome
	// once (interest is registered before the submission, so a quick commit is not missed);
	// cancel stops waiting. A refusal for load rather than for what tx is wraps ErrBacklogged.
	Submit(ctx context.Context, tx *chain.Tx) (hash chain.Hash, outcome <-chan Outcome, cancel func(), err error)
	// Subscribe returns a channel signalled (coalesced) after every commit, and a function that
	// unsubscribes it.
	Subscribe() (commits <-chan struct{}, unsubscribe func())
}

// Outcome is how a submitted transaction ended: committed at Height, or Err (dropped from the
// mempool, with the reason).
type Outcome struct {
	Height uint64
	Err    error
}

// ErrBacklogged marks a submission the mempool refused for load rather than for what it is:
// the pool, the signer's quota, the registration quota, or a nonce beyond the window (own
// nonces come from NextNonce, one past the pending run, so a gap means the signer's pending run
// fills the window). A commit makes room. A Ledger wraps the mempool's own error with it.
var ErrBacklogged = errors.New("records: mempool backlogged")

// waitCommit waits for the outcome ch reports, or ctx: the height the transaction committed
// at, or why it was dropped.
func waitCommit(ctx context.Context, ch <-chan Outcome) (uint64, error) {
	select {
	case o := <-ch:
		return o.Height, o.Err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// query runs f with the committed state (on the replica's goroutine, in the node).
func (r *Service) query(ctx context.Context, f func(view state.View) error) error {
	return r.ledger.View(ctx, f)
}

func tipTime(view state.View) (int64, error) {
	_, t, err := state.Tip(view)
	return t, err
}

// submit signs body with the provider key under the next free nonce and submits it. With
// wait, it returns after the transaction commits.
func (r *Service) submit(ctx context.Context, kind chain.TxKind, body any, wait bool) (chain.Hash, uint64, error) {
	h, ch, cancel, err := r.submitExpect(ctx, kind, body)
	if err != nil {
		return chain.Hash{}, 0, err
	}
	defer cancel()
	if !wait {
		return h, 0, nil
	}
	wctx, stop := context.WithTimeout(ctx, commitWait)
	defer stop()
	height, err := waitCommit(wctx, ch)
	if err != nil {
		return h, 0, fmt.Errorf("%s transaction %s not committed: %w", kind, h.Short(), err)
	}
	return h, height, nil
}

// submitExpect signs body with the provider key under the next free nonce, submits it, and
// returns its hash and a channel that reports its outcome (cancel forgets it). When the mempool
// refuses it for load (ErrBacklogged: typically this node's own backlog, an import's earlier
// chunks filling the signer's quota), it waits for the next commit and tries again, under the
// then next free nonce, until ctx ends (or commitWait passes, if ctx has no deadline); then it
// returns the refusal.
func (r *Service) submitExpect(ctx context.Context, kind chain.TxKind, body any) (chain.Hash, <-chan Outcome, func(), error) {
	if _, ok := ctx.Deadline(); !ok {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, commitWait)
		defer stop()
	}
	// Subscribed before the first try, so a commit between a refusal and the wait is not missed.
	wake, unsubscribe := r.ledger.Subscribe()
	defer unsubscribe()
	for {
		h, ch, cancel, err := r.trySubmit(ctx, kind, body)
		if err == nil || !errors.Is(err, ErrBacklogged) {
			return h, ch, cancel, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return chain.Hash{}, nil, nil, fmt.Errorf("%w (still refused when the deadline came)", err)
		}
	}
}

func (r *Service) trySubmit(ctx context.Context, kind chain.TxKind, body any) (chain.Hash, <-chan Outcome, func(), error) {
	r.txMu.Lock()
	defer r.txMu.Unlock()
	nonce, err := r.ledger.NextNonce(ctx, r.keys.Signing.Public())
	if err != nil {
		return chain.Hash{}, nil, nil, err
	}
	tx := chain.NewTx(r.keys.Signing, r.chainID, kind, nonce, body)
	h, ch, cancel, err := r.ledger.Submit(ctx, tx)
	if err != nil {
		return chain.Hash{}, nil, nil, fmt.Errorf("submit %s: %w", kind, err)
	}
	return h, ch, cancel, nil
}
