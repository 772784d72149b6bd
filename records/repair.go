package records

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// Replica repair by pull: a holder that the ledger assigns a record but that has no copy (it
// missed the push, or a membership change made it a holder) asks the record's author or another
// assigned holder for the ciphertext and envelopes. Copying ciphertext between assigned holders
// is not a read: the data stays encrypted to the keys the patient's consents produced, so there
// is no consent check and no access entry. What a pull gets is what a push would have brought.

// Bounds of one pull pass.
const (
	// repairScan is how many indexed records one pass looks at (a file stat each); a node
	// walks its whole index in index size / repairScan passes.
	repairScan = 1024
	// repairBatch is how many missing replicas one pass pulls.
	repairBatch = 64
)

// Pull is the blob protocol's replica-pull handler: it sends this node's copy of a record (the
// ciphertext and every envelope held) to a node the ledger assigns as the record's holder, one
// place of slack allowed, or to its author. The requester is known by its stream's peer id,
// which the ledger binds to a member; a pulling member is held to its quota like a pushing one.
func (r *Service) Pull(ctx context.Context, from peer.ID, req *exchange.PullRequest) *exchange.FetchResponse {
	refuse := func(st exchange.Status, reason string) *exchange.FetchResponse {
		return &exchange.FetchResponse{Status: st, Reason: reason}
	}
	fromKey, err := NodeKeyOf(from)
	if err != nil {
		return refuse(exchange.StatusRefused, "the pulling peer's identity is not a member node key")
	}
	rec, puller, active, assign, err := r.replicaPeer(ctx, req.Record, fromKey)
	if err != nil {
		return refuse(exchange.StatusError, "ledger unavailable")
	}
	switch {
	case rec == nil:
		return refuse(exchange.StatusNotFound, "no such record on this node's ledger")
	case rec.Erased:
		return refuse(exchange.StatusNotFound, "record erased")
	case !active:
		return refuse(exchange.StatusRefused, "the pulling node is not an active provider's")
	case !assign.Includes(fromKey):
		return refuse(exchange.StatusRefused, "the ledger does not assign this record to the pulling node")
	case rec.CiphertextHash != req.CiphertextHash:
		return refuse(exchange.StatusRefused, "ciphertext hash does not match the anchor")
	case !r.blobs.Has(rec.CiphertextHash):
		return refuse(exchange.StatusNotFound, "not held here")
	}
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		return refuse(exchange.StatusNotFound, "no intact copy here")
	}
	envs, err := r.blobs.Envelopes(rec.ID)
	if err != nil {
		return refuse(exchange.StatusNotFound, "no intact envelopes here")
	}
	if len(envs) > envelope.MaxEnvelopes {
		envs = envs[:envelope.MaxEnvelopes]
	}
	size := len(ct)
	for i := range envs {
		size += len(envs[i].Wrapped) + 64
	}
	if err := r.pullQuota.take(puller.ID, size, r.now()); err != nil {
		return refuse(exchange.StatusBusy, err.Error())
	}
	return &exchange.FetchResponse{Status: exchange.StatusOK, Ciphertext: ct, Envelopes: envs}
}

// repairLoop is the holder's repair: after start and every repair interval it looks for
// records the ledger assigns to this node that it holds no copy of, and pulls them.
func (r *Service) repairLoop(ctx context.Context) {
	wait := r.timing.pullFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = r.timing.pullEvery
		r.repairPass(ctx)
	}
}

// pullJob is a missing replica and where to pull it from, in order.
type pullJob struct {
	id, hash chain.Hash
	from     []peer.ID
}

// repairPass walks the next repairScan records of the index (from where the last pass
// stopped), and pulls up to repairBatch of those this node should hold but lacks. Passes run
// one at a time.
func (r *Service) repairPass(ctx context.Context) {
	if r.net.LibP2P() == nil {
		return
	}
	r.repairMu.Lock()
	defer r.repairMu.Unlock()
	type cand struct{ id, hash chain.Hash }
	var missing []cand
	recs, n := r.indexScan(r.repairCursor, repairScan)
	for _, rec := range recs {
		missing = append(missing, cand{rec.ID, rec.CiphertextHash})
	}
	if n > 0 {
		r.repairCursor = (r.repairCursor + min(repairScan, n)) % n
	}
	// Stat outside the lock and outside the ledger view.
	kept := missing[:0]
	for _, c := range missing {
		if !r.blobs.Has(c.hash) {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		return
	}
	var jobs []pullJob
	err := r.query(ctx, func(view state.View) error {
		_, tip, err := state.Tip(view)
		if err != nil {
			return err
		}
		for _, c := range kept {
			if len(jobs) == repairBatch {
				break
			}
			rec, err := state.Record(view, c.id)
			if err != nil {
				return err
			}
			// A fresh record is left to its author's push for a while.
			if rec == nil || rec.Erased || rec.AnchoredTime > tip-r.timing.grace.Milliseconds() {
				continue
			}
			exact, err := r.assignment(view, rec, 0)
			if err != nil {
				return err
			}
			if !exact.Includes(r.nodeKey) {
				continue
			}
			wide, err := r.assignment(view, rec, holdSlack)
			if err != nil {
				return err
			}
			jobs = append(jobs, pullJob{id: rec.ID, hash: rec.CiphertextHash, from: r.peersOf(wide)})
		}
		return nil
	})
	if err != nil {
		r.log.Warn("replica repair: ledger unavailable", "err", err)
		return
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		if err := r.pull(ctx, j); err != nil {
			r.log.Warn("replica repair: record still missing", "record", j.id.Short(), "err", err)
		}
	}
}

// pull asks j's sources in turn for the record and stores the first good copy.
func (r *Service) pull(ctx context.Context, j pullJob) error {
	var errs []error
	for _, p := range j.from {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := exchange.Pull(pctx, r.net.LibP2P(), r.chainID, p, &exchange.PullRequest{Record: j.id, CiphertextHash: j.hash})
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := r.blobs.PutBatch([]blobstore.RecordFiles{{Record: j.id, Ciphertext: resp.Ciphertext, Envelopes: resp.Envelopes}}); err != nil {
			return err
		}
		r.log.Info("replica repaired", "record", j.id.Short(), "from", p)
		r.provideAsync(j.id)
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no other holder to pull from")
	}
	return errors.Join(errs...)
}
