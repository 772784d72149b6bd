package node

import (
	"context"
	"errors"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/records"
)

// commitWait bounds how long a submission with wait=commit waits for its block.
const commitWait = 60 * time.Second

// ledger is the record service's view of this node's replica (records.Ledger): reads and
// submissions go through the Runner's goroutine, outcomes and commit signals come from the
// commit hub the Runner's hooks feed.
type ledger struct {
	b       Backend
	commits *commitHub
}

var _ records.Ledger = ledger{}

func newLedger(b Backend, commits *commitHub) ledger { return ledger{b: b, commits: commits} }

func (l ledger) View(ctx context.Context, f func(view state.View) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f(l.b.Chain().State())
}

func (l ledger) Block(ctx context.Context, height uint64) (*chain.Block, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := l.b.Chain()
	if height > s.Height() {
		return nil, nil
	}
	return s.Block(height)
}

func (l ledger) NextNonce(ctx context.Context, signer chain.PubKey) (uint64, error) {
	var nonce uint64
	var nerr error
	err := l.b.Query(ctx, func(rep *replica.Replica) {
		var committed uint64
		committed, nerr = state.Nonce(rep.Store().State(), signer.Address())
		nonce = rep.Mempool().NextNonce(signer, committed)
	})
	return nonce, errors.Join(err, nerr)
}

func (l ledger) Submit(ctx context.Context, tx *chain.Tx) (chain.Hash, <-chan records.Outcome, func(), error) {
	ch, cancel := l.commits.expect(tx.Hash())
	h, err := l.b.Submit(ctx, tx)
	if err != nil {
		cancel()
		if backlogged(err) {
			err = backlog{err}
		}
		return chain.Hash{}, nil, nil, err
	}
	return h, ch, cancel, nil
}

func (l ledger) Subscribe() (<-chan struct{}, func()) { return l.commits.subscribe() }

// backlogged reports whether the mempool refused one of this node's own transactions for load
// rather than for what it is: the pool, the signer's quota, the registration quota, or a nonce
// beyond the window (own nonces come from Mempool.NextNonce, one past the pending run, so a gap
// means the signer's pending run fills the window). A commit makes room.
func backlogged(err error) bool {
	return errors.Is(err, replica.ErrSignerFull) || errors.Is(err, replica.ErrMempoolFull) ||
		errors.Is(err, replica.ErrRegistrationsFull) || errors.Is(err, replica.ErrNonceGap)
}

// backlog marks a refusal for load as records.ErrBacklogged; it reads as, and unwraps to, the
// mempool's own error, so messages and the API's status mapping stay as they are.
type backlog struct{ error }

func (b backlog) Is(target error) bool { return target == records.ErrBacklogged }
func (b backlog) Unwrap() error        { return b.error }
