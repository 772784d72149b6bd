package records

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/index"
)

// openIndex opens the persisted per-patient index in dir and returns it with the last block
// whose effects were carried out.
func openIndex(dir string, log *slog.Logger) (*index.Index, uint64, error) {
	idx, err := index.Open(dir, index.Options{Logger: log})
	if err != nil {
		// The index is derived from the chain: one that does not open (Badger can fail to
		// reopen after a kill -9 in the middle of creating a memtable file) is rebuilt from
		// block 1 rather than keeping the node down.
		if log != nil {
			log.Warn("record index does not open; rebuilding it from the chain", "dir", dir, "err", err)
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			return nil, 0, fmt.Errorf("records: %w (and removing it: %w)", err, rerr)
		}
		if idx, err = index.Open(dir, index.Options{Logger: log}); err != nil {
			return nil, 0, fmt.Errorf("records: %w", err)
		}
	}
	reacted, err := idx.Reacted()
	if err != nil {
		_ = idx.Close()
		return nil, 0, fmt.Errorf("records: %w", err)
	}
	return idx, min(reacted, idx.Height()), nil
}

// Close releases the index. Call it after Run has returned.
func (r *Service) Close() error { return r.idx.Close() }

// follow applies every committed block to the persisted index, in order, from the last one
// applied (not from block 1: a restart does not replay the chain), and then reacts to it
// (consent and erasure); the last block reacted to is persisted after the reaction, so a crash
// between the two repeats the (idempotent) reaction rather than skipping it.
func (r *Service) follow(ctx context.Context) {
	wake, unsubscribe := r.ledger.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	r.checkIndex(ctx)
	for {
		for ctx.Err() == nil {
			// Only this goroutine advances indexed.
			r.mu.RLock()
			next := r.indexed + 1
			r.mu.RUnlock()
			b, err := r.ledger.Block(ctx, next)
			if err != nil || b == nil {
				break
			}
			if err := r.idx.ApplyBlock(b); err != nil {
				r.log.Error("record index: block not indexed", "height", next, "err", err)
				break
			}
			r.react(ctx, b)
			if err := r.idx.SetReacted(next); err != nil {
				r.log.Warn("record index: reaction not persisted", "height", next, "err", err)
			}
			r.mu.Lock()
			r.indexed = next
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// checkIndex empties the index if the ledger's block at the index's tip is not the one the
// index applied (another chain in this data directory), so it is rebuilt from block 1.
func (r *Service) checkIndex(ctx context.Context) {
	h, hash := r.idx.Tip()
	if h == 0 {
		return
	}
	b, err := r.ledger.Block(ctx, h)
	if err != nil || b == nil || b.Hash() == hash {
		return // the same chain, or a ledger behind its index (it catches up with the same blocks)
	}
	r.log.Warn("record index: built from another chain; rebuilding", "height", h)
	if err := r.idx.Reset(); err != nil {
		r.log.Error("record index: reset", "err", err)
		return
	}
	r.mu.Lock()
	r.indexed = 0
	r.mu.Unlock()
}

// indexedRecord is what the index holds of record id; ok is false if it is not indexed.
func (r *Service) indexedRecord(id chain.Hash) (index.Record, bool) {
	rec, ok, err := r.idx.Record(id)
	if err != nil {
		r.log.Error("record index", "record", id.Short(), "err", err)
	}
	return rec, ok && err == nil
}

// authoredFor is the ids of patient's records that this node authored.
func (r *Service) authoredFor(patient chain.Address) []chain.Hash {
	var mine []chain.Hash
	after := ""
	for {
		page, next, err := r.idx.Records(patient, after, index.MaxPage)
		if err != nil {
			r.log.Error("record index", "patient", patient, "err", err)
			return mine
		}
		for _, rec := range page {
			if rec.Author == r.self {
				mine = append(mine, rec.ID)
			}
		}
		if next == "" {
			return mine
		}
		after = next
	}
}

// indexScan returns up to n records in anchor order from position from (wrapping), and how
// many the index holds: the repair pass walks the index with it.
func (r *Service) indexScan(from, n int) ([]index.Record, int) {
	recs, total, err := r.idx.Scan(uint64(from), n)
	if err != nil {
		r.log.Error("record index: scan", "err", err)
	}
	return recs, int(total)
}

// heldRecords is the ids of every indexed record whose ciphertext this node holds.
func (r *Service) heldRecords() []chain.Hash {
	var held []chain.Hash
	if err := r.idx.Each(func(rec index.Record) bool {
		if r.blobs.Has(rec.CiphertextHash) {
			held = append(held, rec.ID)
		}
		return true
	}); err != nil {
		r.log.Error("record index: walk", "err", err)
	}
	return held
}

// react does what a holder must after a block: wrap data keys for new grantees of records this
// node authored, and delete erased records' blobs and acknowledge.
func (r *Service) react(ctx context.Context, b *chain.Block) {
	var erasedHeld []chain.Hash
	for _, tx := range b.Txs {
		body, err := chain.DecodePayload(tx.Kind, tx.Payload)
		if err != nil {
			continue
		}
		switch v := body.(type) {
		case *chain.ConsentGrant:
			r.wrapForGrantee(ctx, tx.Signer.Address(), v.Grantee)
		case *chain.EmergencyAccess:
			r.wrapForGrantee(ctx, v.Patient, tx.Signer.Address())
		case *chain.RecordErase:
			for _, id := range v.Records {
				if r.shred(id) {
					erasedHeld = append(erasedHeld, id)
				}
			}
		}
	}
	if len(erasedHeld) > 0 {
		r.ackErase(ctx, erasedHeld)
	}
}

// shred deletes an erased record's ciphertext and envelopes; it reports whether this node held
// (or authored) the record.
func (r *Service) shred(id chain.Hash) bool {
	rec, ok := r.indexedRecord(id)
	if !ok {
		return false
	}
	// Envelopes are only ever stored next to a ciphertext, so the ciphertext says who holds it.
	held := rec.Author == r.self || r.blobs.Has(rec.CiphertextHash)
	// The blob goes only if the ledger says it is this record's: another record's ciphertext
	// must survive this erasure whatever the local index says.
	var owner chain.Hash
	if err := r.query(context.Background(), func(view state.View) error {
		var err error
		owner, err = state.RecordOfCiphertext(view, rec.CiphertextHash)
		return err
	}); err != nil || owner != id {
		r.log.Error("erase: blob not deleted: not this record's on the ledger", "record", id.Short(), "owner", owner.Short(), "err", err)
		return false
	}
	if err := r.blobs.DeleteRecord(id, rec.CiphertextHash); err != nil {
		r.log.Error("erase: delete blob", "record", id.Short(), "err", err)
		return false
	}
	return held
}

func (r *Service) ackErase(ctx context.Context, ids []chain.Hash) {
	var todo []chain.Hash
	_ = r.query(ctx, func(view state.View) error {
		for _, id := range ids {
			rec, err := state.Record(view, id)
			if err != nil || rec == nil || !rec.Erased || slices.Contains(rec.Acks, r.self) {
				continue
			}
			todo = append(todo, id)
		}
		return nil
	})
	sort.Slice(todo, func(i, j int) bool { return string(todo[i][:]) < string(todo[j][:]) })
	for len(todo) > 0 {
		n := min(len(todo), chain.MaxEraseRecords)
		if _, _, err := r.submit(ctx, chain.TxEraseAck, &chain.EraseAck{Records: todo[:n]}, false); err != nil {
			r.log.Warn("erase acknowledgement not submitted", "err", err)
			return
		}
		todo = todo[n:]
	}
}
