package records

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// pushJob is one record (or envelope update) waiting to be pushed to its replicas.
type pushJob struct {
	id, hash   chain.Hash
	ciphertext []byte // nil for an envelope-only update
	envs       []envelope.Envelope
}

// pushAsync queues a record for replication to up to Replicas peers and, when it carries the
// ciphertext, for announcement in the DHT. The import has already committed; a replica that
// misses the push is repaired by nothing yet (see docs/records.md).
func (r *Service) pushAsync(id, hash chain.Hash, ciphertext []byte, envs []envelope.Envelope) {
	select {
	case r.pushQ <- pushJob{id: id, hash: hash, ciphertext: ciphertext, envs: envs}:
	default:
		r.log.Warn("replication queue full: record not replicated", "record", id.Short())
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
// per-peer rate limit: an import of thousands of records must not look like abuse and get this
// node struck and banned by its peers.
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

func (r *Service) replicate(ctx context.Context, job pushJob) {
	if job.ciphertext != nil {
		r.provideAsync(job.id)
	}
	req := &exchange.PushRequest{Record: job.id, CiphertextHash: job.hash, Ciphertext: job.ciphertext, Envelopes: job.envs}
	req.Sign(r.keys.Signing, r.chainID)
	for _, p := range r.replicaPeers(job.id) {
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if err = r.pace.Wait(ctx, p); err != nil {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = exchange.Push(pctx, r.net.LibP2P(), r.chainID, p, req)
			cancel()
			if err == nil || errors.Is(err, exchange.ErrRefused) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second << attempt):
			}
		}
		if err != nil {
			r.log.Warn("replicate record", "record", job.id.Short(), "peer", p, "err", err)
		}
	}
}

// replicaPeers chooses the record's replica holders among connected peers: the Replicas peers
// closest to the record id by XOR of hashes, so every push of one record goes to the same nodes
// while the peer set is stable.
func (r *Service) replicaPeers(id chain.Hash) []peer.ID {
	if r.replica == 0 {
		return nil
	}
	var ps []peer.ID
	for _, s := range r.net.Peers() {
		if p, err := peer.Decode(s); err == nil {
			ps = append(ps, p)
		}
	}
	dist := func(p peer.ID) chain.Hash {
		h := chain.Sum256([]byte(p))
		for i := range h {
			h[i] ^= id[i]
		}
		return h
	}
	sort.Slice(ps, func(i, j int) bool { a, b := dist(ps[i]), dist(ps[j]); return string(a[:]) < string(b[:]) })
	if len(ps) > r.replica {
		ps = ps[:r.replica]
	}
	return ps
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
		r.mu.RLock()
		var held []chain.Hash
		for id, rec := range r.records {
			if r.blobs.Has(rec.CiphertextHash) {
				held = append(held, id)
			}
		}
		r.mu.RUnlock()
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
