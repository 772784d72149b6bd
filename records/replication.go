package records

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

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

// pushAllAsync queues records for replication to their assigned holders and, those that carry
// the ciphertext, for announcement in the DHT; several at once (an import's, or a grant's new
// envelopes) so that they travel in few batches. The import has already committed and listed
// the records as unpushed (unpushed.go): a push that does not reach every holder is repeated
// by the re-push pass, and a holder that still misses it pulls it (repair.go).
func (r *Service) pushAllAsync(jobs []pushJob) {
	for len(jobs) > 0 {
		n := min(len(jobs), pushBatchMax)
		select {
		case r.pushQ <- jobs[:n:n]: // capped: a worker appending to it must not overwrite the next chunk
		default:
			r.log.Warn("replication queue full: records left to the repair passes", "records", len(jobs))
			return
		}
		jobs = jobs[n:]
	}
}

// pushQueueLen bounds the replication queue, in batches of at most pushBatchMax records.
const pushQueueLen = 4096

// provideAsync queues a DHT announcement; a full queue drops it (the periodic re-announcement
// catches up).
func (r *Service) provideAsync(id chain.Hash) {
	select {
	case r.provideQ <- id:
	default:
	}
}

// pushWorker replicates queued records, in batches: what is queued when it wakes (up to
// pushBatchMax records or pushBatchBytes) goes to each holder on one stream. Batches to one
// peer are paced below the blob server's per-peer rate limit and the holders' per-member
// quota: an import of thousands of records must not look like abuse and get this node struck
// and banned by its peers.
func (r *Service) pushWorker(ctx context.Context) {
	var carry []pushJob
	for {
		first := carry
		if first == nil {
			select {
			case <-ctx.Done():
				return
			case first = <-r.pushQ:
			}
		}
		var jobs []pushJob
		jobs, carry = nextBatch(first, r.pushQ)
		r.replicate(ctx, jobs)
	}
}

// nextBatch makes a batch of first and what else q holds now (without waiting), up to
// pushBatchMax jobs and pushBatchBytes; what did not fit is carried to the next batch. The
// batch is a new slice: the queued slices are never appended to.
func nextBatch(first []pushJob, q <-chan []pushJob) (jobs, carry []pushJob) {
	jobs = make([]pushJob, 0, pushBatchMax)
	size := 0
	add := func(more []pushJob) []pushJob {
		for i := range more {
			if len(jobs) == pushBatchMax || (len(jobs) > 0 && size+more[i].size() > pushBatchBytes) {
				return more[i:]
			}
			jobs, size = append(jobs, more[i]), size+more[i].size()
		}
		return nil
	}
	if carry = add(first); carry != nil {
		return jobs, carry
	}
	for len(jobs) < pushBatchMax && size < pushBatchBytes {
		select {
		case more := <-q:
			if carry = add(more); carry != nil {
				return jobs, carry
			}
		default:
			return jobs, nil
		}
	}
	return jobs, nil
}

// Bounds of one push batch (exchange.PushMany): pushBatchBytes stays far below
// exchange.MaxPushBatchBytes, which a single large record may reach alone.
const (
	pushBatchMax   = 64
	pushBatchBytes = 4 << 20
)

// size is about what the job adds to a batch.
func (j *pushJob) size() int {
	n := len(j.ciphertext) + 128
	for i := range j.envs {
		n += len(j.envs[i].Wrapped) + 64
	}
	return n
}

// provideRate bounds DHT announcements of new records, a second. Fetchers find holders through
// the ledger's placement, not the DHT, so announcing is not on any read's path; unbounded, the
// announcements of a large import (a DHT walk and a message to each close peer per record and
// holder) took CPU from the import itself. What the queue drops is announced by the periodic
// re-announcement (reprovideLoop).
const provideRate = 20

func (r *Service) provideWorker(ctx context.Context) {
	lim := rate.NewLimiter(provideRate, 1)
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-r.provideQ:
			if lim.Wait(ctx) != nil {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := r.net.Provide(pctx, id); err != nil && ctx.Err() == nil {
				r.log.Debug("provide record", "record", id.Short(), "err", err)
			}
			cancel()
		}
	}
}

// replicate pushes jobs to every holder the ledger assigns each record (never to another
// peer), one batch per holder. A record whose ciphertext push reached all its holders leaves
// the unpushed list.
func (r *Service) replicate(ctx context.Context, jobs []pushJob) {
	for _, job := range jobs {
		if job.ciphertext != nil {
			r.provideAsync(job.id)
		}
	}
	targets, ok := r.pushTargets(ctx, jobs)
	if !ok {
		r.log.Warn("replicate: holders unknown; records left to the repair passes", "records", len(jobs))
		return
	}
	reqs := make([]*exchange.PushRequest, len(jobs))
	byPeer := map[peer.ID][]int{}
	var peers []peer.ID
	for i, job := range jobs {
		if targets[i] == nil {
			continue
		}
		reqs[i] = &exchange.PushRequest{Record: job.id, CiphertextHash: job.hash, Ciphertext: job.ciphertext, Envelopes: job.envs}
		reqs[i].Sign(r.keys.Signing, r.chainID)
		for _, p := range targets[i] {
			if _, seen := byPeer[p]; !seen {
				peers = append(peers, p)
			}
			byPeer[p] = append(byPeer[p], i)
		}
	}
	failed := make([]bool, len(jobs))
	for _, p := range peers {
		idx := byPeer[p]
		batch := make([]*exchange.PushRequest, len(idx))
		for k, i := range idx {
			batch[k] = reqs[i]
		}
		errs := r.pushTo(ctx, p, batch)
		if ctx.Err() != nil {
			return
		}
		for k, err := range errs {
			if err != nil {
				failed[idx[k]] = true
				r.log.Warn("replicate record", "record", jobs[idx[k]].id.Short(), "peer", p, "err", err)
			}
		}
	}
	for i, job := range jobs {
		if targets[i] != nil && !failed[i] && job.ciphertext != nil {
			if err := r.unpushed.done(job.id); err != nil {
				r.log.Error("unpushed list", "record", job.id.Short(), "err", err)
			}
		}
	}
}

// pushTargets returns, for each job, its record's assigned holders other than this node, as
// peers (nil when the record cannot be pushed: not anchored, or erased); ok is false when
// nothing can be pushed (no network, or the ledger unreadable).
func (r *Service) pushTargets(ctx context.Context, jobs []pushJob) ([][]peer.ID, bool) {
	if r.net.LibP2P() == nil {
		return nil, false
	}
	assigns := make([]*Assignment, len(jobs))
	missing := 0
	err := r.query(ctx, func(view state.View) error {
		for i, job := range jobs {
			rec, err := state.Record(view, job.id)
			if err != nil {
				return err
			}
			if rec == nil {
				missing++
			}
			if rec == nil || rec.Erased {
				continue
			}
			a, err := r.assignment(view, rec, 0)
			if err != nil {
				return err
			}
			assigns[i] = &a
		}
		return nil
	})
	if err != nil {
		r.log.Warn("replicate: ledger unreadable", "err", err)
		return nil, false
	}
	if missing > 0 {
		r.log.Warn("replicate: records not on this node's ledger; left to the repair passes", "records", missing)
	}
	out := make([][]peer.ID, len(jobs))
	for i, a := range assigns {
		if a != nil {
			out[i] = r.peersOf(Assignment{Holders: a.Holders})
			if out[i] == nil {
				out[i] = []peer.ID{}
			}
		}
	}
	return out, true
}

// pushTo delivers reqs to p in one batch: paced, and the pushes that could not be delivered,
// found the holder's ledger behind, or found its quota spent are tried again, pushAttempts
// times in all with growing pauses. A refusal is final. It returns one error per push. A
// holder that does not speak the batch protocol gets the pushes one by one.
func (r *Service) pushTo(ctx context.Context, p peer.ID, reqs []*exchange.PushRequest) []error {
	errs := make([]error, len(reqs))
	todo := make([]int, len(reqs))
	for i := range todo {
		todo[i] = i
	}
	single := false
	for attempt := range pushAttempts {
		if err := r.pace.Wait(ctx, p); err != nil {
			for _, i := range todo {
				errs[i] = err
			}
			return errs
		}
		batch := make([]*exchange.PushRequest, len(todo))
		for k, i := range todo {
			batch[k] = reqs[i]
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		var got []error
		var err error
		if !single {
			got, err = exchange.PushMany(pctx, r.net.LibP2P(), r.chainID, p, batch)
			if errors.Is(err, exchange.ErrBatchUnsupported) {
				single = true
			}
		}
		if single {
			got, err = make([]error, len(batch)), nil
			for k, req := range batch {
				if k > 0 {
					if err := r.pace.Wait(ctx, p); err != nil {
						got[k] = err
						continue
					}
				}
				got[k] = exchange.Push(pctx, r.net.LibP2P(), r.chainID, p, req)
			}
		}
		cancel()
		var again []int
		for k, i := range todo {
			e := err
			if e == nil {
				e = got[k]
			}
			errs[i] = e
			if e != nil && !errors.Is(e, exchange.ErrRefused) {
				again = append(again, i)
			}
		}
		todo = again
		if len(todo) == 0 || attempt == pushAttempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			for _, i := range todo {
				errs[i] = ctx.Err()
			}
			return errs
		case <-time.After(pushBackoff << attempt):
		}
	}
	return errs
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
	// Pushed in batches, holding at most one batch's ciphertexts in memory.
	var jobs []pushJob
	size := 0
	flush := func() {
		if len(jobs) > 0 && ctx.Err() == nil {
			r.replicate(ctx, jobs)
		}
		jobs, size = nil, 0
	}
	defer flush()
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
				jobs, size = append(jobs, job), size+job.size()
				if len(jobs) == pushBatchMax || size >= pushBatchBytes {
					flush()
				}
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
