package records

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// refusalKey is what refusals are rate-limited by: who asked for which record. Never the
// purpose or any other free text, which a requester could vary to get past the limit.
type refusalKey struct {
	requester chain.Address
	record    chain.Hash
}

// logAccess journals an access entry durably and wakes the flusher.
func (r *Service) logAccess(e chain.AccessEntry) error {
	if err := r.journal.Add(e); err != nil {
		r.log.Error("access journal", "err", err)
		return err
	}
	select {
	case r.flushNow <- struct{}{}:
	default:
	}
	return nil
}

// logReceipt journals this node's receipt of a read a remote holder served, durably, and wakes
// the flusher.
func (r *Service) logReceipt(rc chain.AccessReceipt) error {
	if err := r.receipts.Add(rc); err != nil {
		r.log.Error("receipt journal", "err", err)
		return err
	}
	select {
	case r.flushNow <- struct{}{}:
	default:
	}
	return nil
}

func (r *Service) flushLoop(ctx context.Context) {
	t := time.NewTicker(journalFlushEvery)
	defer t.Stop()
	for {
		r.flushJournal(ctx)
		r.flushReceipts(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.flushNow:
		}
	}
}

// flushJournal submits journalled access entries that are not on the ledger yet and forgets
// those that are.
func (r *Service) flushJournal(ctx context.Context) {
	pending, err := r.journal.Pending()
	if err != nil {
		r.log.Error("access journal", "err", err)
		return
	}
	if len(pending) == 0 {
		return
	}
	registered := false
	var todo []chain.AccessEntry
	err = r.query(ctx, func(view state.View) error {
		me, err := state.Reader(view, r.self)
		registered = err == nil && me != nil
		for _, e := range pending {
			id := e.Request.ID()
			a, err := state.Access(view, id)
			if err != nil {
				return err
			}
			if a != nil {
				if err := r.journal.Remove(id); err != nil {
					return err
				}
				delete(r.submitted, id)
				continue
			}
			if t, ok := r.submitted[id]; ok && r.now().Sub(t) < journalResubmitAfter {
				continue
			}
			if e.Outcome == chain.AccessRefused {
				// The ledger keeps one refusal per requester and record per window and skips
				// the rest: such an entry would never appear, so it leaves the journal.
				if skip, err := r.refusalThrottled(view, &e); err != nil {
					return err
				} else if skip {
					if err := r.journal.Remove(id); err != nil {
						return err
					}
					delete(r.submitted, id)
					continue
				}
			}
			todo = append(todo, e)
		}
		return nil
	})
	if err != nil || len(todo) == 0 || !registered {
		return
	}
	for len(todo) > 0 {
		body := &chain.AccessLog{}
		size := 0
		for len(todo) > 0 && len(body.Entries) < chain.MaxAccessEntriesPerTx {
			n := len(chain.Encode(&todo[0]))
			if size+n > accessLogPayloadBudget && len(body.Entries) > 0 {
				break
			}
			body.Entries = append(body.Entries, todo[0])
			size += n
			todo = todo[1:]
		}
		if _, _, err := r.submit(ctx, chain.TxAccessLog, body, false); err != nil {
			r.log.Warn("access log not submitted; will retry", "entries", len(body.Entries), "err", err)
			return
		}
		for _, e := range body.Entries {
			r.submitted[e.Request.ID()] = r.now()
		}
	}
}

// shouldLogRefusal reports whether a refusal for k is to be logged: at most one per
// refusalLogEvery. The map holds at most maxRefusalKeys pairs: expired ones go first, then
// arbitrary ones (forgetting a pair costs at most one more entry, which the ledger bounds too).
func (r *Service) shouldLogRefusal(k refusalKey) bool {
	r.limMu.Lock()
	defer r.limMu.Unlock()
	now := r.now()
	if t, ok := r.refused[k]; ok && now.Sub(t) < refusalLogEvery {
		return false
	}
	if len(r.refused) >= maxRefusalKeys {
		for key, t := range r.refused {
			if now.Sub(t) >= refusalLogEvery {
				delete(r.refused, key)
			}
		}
		for key := range r.refused {
			if len(r.refused) < maxRefusalKeys {
				break
			}
			delete(r.refused, key)
		}
	}
	r.refused[k] = now
	return true
}

// flushReceipts submits journalled receipts that are not on the ledger yet, in batches of at
// most chain.MaxReceiptsPerTx signed by the provider key, and forgets those that are. A
// receipt the ledger skipped (over the per-patient window limit) stays and is submitted again
// every journalResubmitAfter until a later window takes it.
func (r *Service) flushReceipts(ctx context.Context) {
	pending, err := r.receipts.Pending()
	if err != nil {
		r.log.Error("receipt journal", "err", err)
		return
	}
	if len(pending) == 0 {
		return
	}
	registered := false
	var todo []chain.AccessReceipt
	err = r.query(ctx, func(view state.View) error {
		me, err := state.Reader(view, r.self)
		registered = err == nil && me != nil
		for _, rc := range pending {
			id := rc.Request.ID()
			got, err := state.Receipt(view, id)
			if err != nil {
				return err
			}
			if got != nil {
				if err := r.receipts.Remove(id); err != nil {
					return err
				}
				delete(r.sentRc, id)
				continue
			}
			if t, ok := r.sentRc[id]; ok && r.now().Sub(t) < journalResubmitAfter {
				continue
			}
			todo = append(todo, rc)
		}
		return nil
	})
	if err != nil || len(todo) == 0 || !registered {
		return
	}
	for len(todo) > 0 {
		n := min(len(todo), chain.MaxReceiptsPerTx)
		body := &chain.AccessReceipts{Receipts: todo[:n]}
		if _, _, err := r.submit(ctx, chain.TxAccessReceipt, body, false); err != nil {
			r.log.Warn("access receipts not submitted; will retry", "receipts", n, "err", err)
			return
		}
		for _, rc := range body.Receipts {
			r.sentRc[rc.Request.ID()] = r.now()
		}
		todo = todo[n:]
	}
}

// truncateReason fits a refusal reason into an access entry, on a UTF-8 boundary.
func truncateReason(s string) string {
	if len(s) <= chain.MaxReasonLen {
		return s
	}
	s = s[:chain.MaxReasonLen]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// consentReason is the state machine's refusal as a person reads it, without the package prefix.
func consentReason(err error) string { return strings.TrimPrefix(err.Error(), "state: ") }

// refusalThrottled reports whether the ledger would skip a refused entry now.
func (r *Service) refusalThrottled(view state.View, e *chain.AccessEntry) (bool, error) {
	rec, err := state.Record(view, e.Request.Record)
	if err != nil || rec == nil {
		return false, err
	}
	_, now, err := state.Tip(view)
	if err != nil {
		return false, err
	}
	return state.RefusalThrottled(view, e.Request.Requester.Address(), rec, now)
}
