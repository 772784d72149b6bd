package node

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"github.com/medledger/medledger/chain/store"
	"log/slog"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus"
	"github.com/medledger/medledger/consensus/replica"
)

// Runner drives one replica from a single goroutine.
type Runner struct {
	rep     *replica.Replica
	tr      Transport
	log     *slog.Logger
	now     func() time.Time
	submits chan submission
	queries chan func(*replica.Replica)
	timers  timerHeap
	hooks   Hooks
	backlog clientBacklog
}

// Hooks are told, on the runner's goroutine, what became of blocks and transactions. They must
// not block. Either may be nil.
type Hooks struct {
	// Committed is called for every committed block.
	Committed func(*chain.Block)
	// Dropped is called for every transaction that left the mempool without being committed,
	// after the blocks committed in the same step.
	Dropped func(replica.Dropped)
}

type submission struct {
	tx    *chain.Tx
	reply chan submitResult
	// A batch instead of tx: transactions the Gate accepted, with what it found.
	batch      []*chain.Tx
	chks       []replica.TxCheck
	batchReply chan batchResult
}

type submitResult struct {
	hash chain.Hash
	err  error
}

type batchResult struct {
	hashes []chain.Hash
	errs   []error
	err    error
}

// NewRunner wires a replica to a transport. now is the clock (time.Now in production).
func NewRunner(rep *replica.Replica, tr Transport, log *slog.Logger, now func() time.Time, hooks Hooks) *Runner {
	return &Runner{
		rep: rep, tr: tr, log: log, now: now, hooks: hooks,
		submits: make(chan submission), queries: make(chan func(*replica.Replica)),
	}
}

// Run drives the replica until ctx ends or the replica fails. A replica failure (store error,
// divergence) is returned: the node must stop rather than continue on a state it cannot trust.
func (r *Runner) Run(ctx context.Context) error {
	out, err := r.rep.Start(r.ms())
	if err != nil {
		return err
	}
	r.emit(out)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.resetTimer(timer)
		select {
		case <-ctx.Done():
			return nil
		case in := <-r.tr.Inbox():
			out, err := r.rep.HandleInbound(in, r.ms())
			if err != nil {
				if !errors.Is(err, replica.ErrInvalid) {
					return err
				}
				r.tr.Penalize(in.From, err)
			}
			r.emit(out)
		case <-timer.C:
			for r.timers.Len() > 0 && r.timers[0].at <= r.ms() {
				t := heap.Pop(&r.timers).(*timerEntry)
				out, err := r.rep.HandleTimeout(t.t, r.ms())
				if err != nil {
					return err
				}
				r.emit(out)
			}
		case s := <-r.submits:
			if s.batch != nil {
				hashes, errs, out, err := r.rep.SubmitTxs(s.batch, s.chks, r.ms())
				s.batchReply <- batchResult{hashes, errs, err}
				if errors.Is(err, replica.ErrHalted) {
					return err
				}
				r.emit(out)
				continue
			}
			hash, out, err := r.rep.SubmitTx(s.tx, r.ms())
			if errors.Is(err, replica.ErrHalted) {
				s.reply <- submitResult{hash, err}
				return err
			}
			s.reply <- submitResult{hash, err}
			r.emit(out)
		case q := <-r.queries:
			q(r.rep)
		}
	}
}

// Chain is the replica's store, for reads only (Backend.Chain): the store's reads take only
// its publication lock, so they run beside the replica's commits.
func (r *Runner) Chain() store.Store { return r.rep.Store() }

// ClientBacklog returns ErrBacklog (wrapped) while clients' transactions are refused for the
// backlog (backlog.go); the node's own services submit regardless.
func (r *Runner) ClientBacklog() error { return r.backlog.check() }

// Submit hands a transaction to the replica's mempool and gossips it.
func (r *Runner) Submit(ctx context.Context, tx *chain.Tx) (chain.Hash, error) {
	reply := make(chan submitResult, 1)
	select {
	case r.submits <- submission{tx: tx, reply: reply}:
	case <-ctx.Done():
		return chain.Hash{}, ctx.Err()
	}
	select {
	case res := <-reply:
		return res.hash, res.err
	case <-ctx.Done():
		return chain.Hash{}, ctx.Err()
	}
}

// SubmitBatch submits txs: the Gate judges them on the caller's goroutine (form, standing,
// nonce window, signatures in one batch, the state check), so that the replica's loop, which
// also runs consensus, only adds the accepted ones to the mempool, all in one step. It returns
// one hash and one error per transaction; err is set only if the replica did not answer.
func (r *Runner) SubmitBatch(ctx context.Context, txs []*chain.Tx) ([]chain.Hash, []error, error) {
	hashes, errs := make([]chain.Hash, len(txs)), make([]error, len(txs))
	if err := r.backlog.check(); err != nil {
		// Refused before any signature is checked: the cheapest answer to overload.
		for i, tx := range txs {
			hashes[i], errs[i] = tx.Hash(), err
		}
		return hashes, errs, nil
	}
	verdicts, chks, gerrs := r.rep.Gate().Txs(txs)
	var ok []*chain.Tx
	var okChks []replica.TxCheck
	var at []int
	for i, v := range verdicts {
		hashes[i] = txs[i].Hash()
		switch v {
		case replica.Accept:
			ok, okChks, at = append(ok, txs[i]), append(okChks, chks[i]), append(at, i)
		case replica.Reject:
			errs[i] = fmt.Errorf("%w: %w", replica.ErrInvalid, gerrs[i])
		default:
			errs[i] = gerrs[i]
		}
	}
	if len(ok) == 0 {
		return hashes, errs, nil
	}
	reply := make(chan batchResult, 1)
	select {
	case r.submits <- submission{batch: ok, chks: okChks, batchReply: reply}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	var res batchResult
	select {
	case res = <-reply:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if res.err != nil {
		return nil, nil, res.err
	}
	for j, i := range at {
		hashes[i], errs[i] = res.hashes[j], res.errs[j]
	}
	return hashes, errs, nil
}

// Query runs f on the runner's goroutine, where reading the replica is safe. Once the runner
// has taken f (the channel is unbuffered, and the runner calls what it takes at once), Query
// waits for f to finish even if ctx ends: returning early would let the caller read what f is
// still writing.
func (r *Runner) Query(ctx context.Context, f func(*replica.Replica)) error {
	done := make(chan struct{})
	select {
	case r.queries <- func(rep *replica.Replica) { f(rep); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func (r *Runner) ms() int64 { return r.now().UnixMilli() }

// emit carries out what one replica call handed back: hooks first (a waiter learns its
// transaction committed or was dropped), then messages, penalties and timers.
func (r *Runner) emit(out replica.Output) {
	at := r.now()
	for _, b := range out.Committed {
		r.backlog.committed(at, len(b.Txs))
		if r.hooks.Committed != nil {
			r.hooks.Committed(b)
		}
	}
	r.backlog.update(at, r.rep.Mempool().Len())
	if r.hooks.Dropped != nil {
		for _, d := range out.Dropped {
			r.hooks.Dropped(d)
		}
	}
	for _, m := range out.Broadcast {
		r.tr.Broadcast(m)
	}
	for _, m := range out.Resend {
		r.tr.Resend(m)
	}
	for _, p := range out.Penalties {
		r.tr.Penalize(p.Peer, p.Err)
	}
	for _, a := range out.Unicast {
		r.tr.Send(a.To, a.Msg)
	}
	now := r.ms()
	for _, t := range out.Timeouts {
		heap.Push(&r.timers, &timerEntry{at: now + t.DelayMs, t: t})
	}
}

func (r *Runner) resetTimer(t *time.Timer) {
	d := time.Hour
	if r.timers.Len() > 0 {
		d = max(0, time.Duration(r.timers[0].at-r.ms())*time.Millisecond)
	}
	t.Reset(d)
}

type timerEntry struct {
	at int64
	t  consensus.Timeout
}

type timerHeap []*timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(*timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
