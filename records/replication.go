package records

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// pushJob is one record (or envelope update) waiting to be pushed to its holders.
type pushJob struct {
	id, hash   chain.Hash
	ciphertext []byte // nil for an envelope-only update
	envs       []envelope.Envelope
}

// Timing and bounds of replication and its repair.
const (
	// repairEvery is how often the author re-pushes unconfirmed records and a holder looks
	// for replicas it is missing (repair.go); the first pass runs repairFirst after start.
	repairEvery = 30 * time.Second
	repairFirst = 5 * time.Second
	// repairGrace leaves a fresh record to its import's own pushes before repair touches it.
	repairGrace = 2 * time.Minute
	// repushBatch bounds the unconfirmed records one re-push pass handles.
	repushBatch = 256
	// unpushedOrphan: a listed record still not anchored after this never will be (its
	// import failed); unpushedGiveUp: a listed record is dropped after this even if a holder
	// never confirmed it (the holders' pull repair still covers it).
	unpushedOrphan = 10 * time.Minute
	unpushedGiveUp = 24 * time.Hour
	// pushAttempts and pushBackoff: a push that could not be delivered (or found the holder's
	// ledger behind, or over quota) is tried again, then left to the repair passes.
	pushAttempts = 3
	pushBackoff  = time.Second
)

// repairTiming is the schedule of the repair passes (tests shorten it): the author's re-push
// and the holder's pull each run first after start, then every interval.
type repairTiming struct {
	pushFirst, pushEvery time.Duration
	pullFirst, pullEvery time.Duration
	grace                time.Duration
}

func defaultRepairTiming() repairTiming {
	return repairTiming{pushFirst: repairFirst, pushEvery: repairEvery, pullFirst: repairFirst, pullEvery: repairEvery, grace: repairGrace}
}

// pushAsync queues a record for replication to its assigned holders and, when it carries the
// ciphertext, for announcement in the DHT. The import has already committed and listed the
// record as unpushed (unpushed.go): a push that does not reach every holder is repeated by the
// re-push pass, and a holder that still misses it pulls it (repair.go).
func (r *Service) pushAsync(id, hash chain.Hash, ciphertext []byte, envs []envelope.Envelope) {
	select {
	case r.pushQ <- pushJob{id: id, hash: hash, ciphertext: ciphertext, envs: envs}:
	default:
		r.log.Warn("replication queue full: record left to the repair passes", "record", id.Short())
	}
}

// provideAsync queues a DHT announcement; a full queue drops it (the periodic re-announcement
// catches up).
func (r *Service) provideAsync(id chain.Hash) {
	select {
	case r.provideQ <- id:
	default:
	}
}

// pushWorker replicates queued records. Pushes to one peer are paced below the blob server's
// per-peer rate limit and the holders' per-member quota: an import of thousands of records
// must not look like abuse and get this node struck and banned by its peers.
func (r *Service) pushWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-r.pushQ:
			r.replicate(ctx, job)
		}
	}
}

func (r *Service) provideWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-r.provideQ:
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := r.net.Provide(pctx, id); err != nil && ctx.Err() == nil {
				r.log.Debug("provide record", "record", id.Short(), "err", err)
			}
			cancel()
		}
	}
}

// replicate pushes a job to every holder the ledger assigns the record (never to another
// peer). When a ciphertext push reached them all, the record leaves the unpushed list.
func (r *Service) replicate(ctx context.Context, job pushJob) {
	if job.ciphertext != nil {
		r.provideAsync(job.id)
	}
	targets, ok := r.pushTargets(ctx, job.id)
	if !ok {
		return
	}
	req := &exchange.PushRequest{Record: job.id, CiphertextHash: job.hash, Ciphertext: job.ciphertext, Envelopes: job.envs}
	req.Sign(r.keys.Signing, r.chainID)
	all := true
	for _, p := range targets {
		if err := r.pushTo(ctx, p, req); err != nil {
			all = false
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("replicate record", "record", job.id.Short(), "peer", p, "err", err)
		}
	}
	if all && job.ciphertext != nil {
		if err := r.unpushed.done(job.id); err != nil {
			r.log.Error("unpushed list", "record", job.id.Short(), "err", err)
		}
	}
}

// pushTargets returns the record's assigned holders other than this node, as peers; ok is
// false when the record cannot be pushed (no network, ledger unreadable, or not anchored).
func (r *Service) pushTargets(ctx context.Context, id chain.Hash) ([]peer.ID, bool) {
	if r.net.LibP2P() == nil {
		return nil, false
	}
	var a Assignment
	var found bool
	err := r.query(ctx, func(view state.View) error {
		rec, err := state.Record(view, id)
		if err != nil || rec == nil || rec.Erased {
			return err
		}
		found = true
		a, err = r.assignment(view, rec, 0)
		return err
	})
	if err != nil || !found {
		return nil, false
	}
	return r.peersOf(Assignment{Holders: a.Holders}), true
}

// pushTo delivers req to p: paced, tried pushAttempts times with growing pauses while the
// holder cannot be reached, has not seen the anchor yet, or says its quota is spent. A refusal
// is final.
func (r *Service) pushTo(ctx context.Context, p peer.ID, req *exchange.PushRequest) error {
	var err error
	for attempt := range pushAttempts {
		if err = r.pace.Wait(ctx, p); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = exchange.Push(pctx, r.net.LibP2P(), r.chainID, p, req)
		cancel()
		if err == nil || errors.Is(err, exchange.ErrRefused) || attempt == pushAttempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pushBackoff << attempt):
		}
	}
	return err
}

// repushLoop is the author's repair: after start and every repair interval it pushes again
// the records of its unpushed list, so a crash between commit and push, or a holder that was
// unreachable, is made whole.
func (r *Service) repushLoop(ctx context.Context) {
	wait := r.timing.pushFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = r.timing.pushEvery
		r.repushPass(ctx)
	}
}

// repushPass pushes up to repushBatch due records of the unpushed list, and drops those the
// ledger says need no push (erased, never anchored, or listed for too long).
func (r *Service) repushPass(ctx context.Context) {
	now := r.now()
	for _, id := range r.unpushed.due(now, r.timing.grace, repushBatch) {
		if ctx.Err() != nil {
			return
		}
		var rec *state.RecordState
		if err := r.query(ctx, func(view state.View) error {
			var err error
			rec, err = state.Record(view, id)
			return err
		}); err != nil {
			return
		}
		age, _ := r.unpushed.age(id, now)
		drop := ""
		switch {
		case rec == nil && age > unpushedOrphan:
			drop = "never anchored"
		case rec == nil:
			continue // its anchor may still commit
		case rec.Erased:
			drop = "erased"
		case rec.Author != r.self:
			drop = "anchored by another provider"
		case age > unpushedGiveUp:
			drop = "holders did not confirm in time; left to their repair"
		}
		if drop == "" {
			job, err := r.jobOf(rec)
			if err != nil {
				drop = "no local copy: " + err.Error()
			} else {
				r.replicate(ctx, job)
				continue
			}
		}
		r.log.Info("record leaves the unpushed list", "record", id.Short(), "why", drop)
		if err := r.unpushed.done(id); err != nil {
			r.log.Error("unpushed list", "record", id.Short(), "err", err)
		}
	}
}

// jobOf is a push of this node's whole copy of rec: ciphertext and every envelope.
func (r *Service) jobOf(rec *state.RecordState) (pushJob, error) {
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		return pushJob{}, err
	}
	envs, err := r.blobs.Envelopes(rec.ID)
	if err != nil {
		return pushJob{}, err
	}
	if len(envs) > envelope.MaxEnvelopes {
		envs = envs[:envelope.MaxEnvelopes]
	}
	return pushJob{id: rec.ID, hash: rec.CiphertextHash, ciphertext: ct, envs: envs}, nil
}

// reprovideLoop announces every record whose ciphertext this node holds, after start and then
// periodically, so DHT provider records survive restarts and expiry.
func (r *Service) reprovideLoop(ctx context.Context) {
	wait := 10 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = reprovideEvery
		held := r.heldRecords()
		for _, id := range held {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := r.net.Provide(pctx, id)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				r.log.Debug("re-provide record", "record", id.Short(), "err", err)
			}
		}
	}
}
