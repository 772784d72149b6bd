package records

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// follow indexes every committed block in order and reacts to consent and erasure.
func (r *Service) follow(ctx context.Context) {
	wake, unsubscribe := r.ledger.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		for {
			// Only this goroutine advances indexed.
			r.mu.RLock()
			next := r.indexed + 1
			r.mu.RUnlock()
			b, err := r.ledger.Block(ctx, next)
			if err != nil || b == nil {
				break
			}
			r.indexBlock(b)
			r.react(ctx, b)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// indexBlock adds a block's records, consents and accesses to the per-patient index.
func (r *Service) indexBlock(b *chain.Block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tx := range b.Txs {
		body, err := chain.DecodePayload(tx.Kind, tx.Payload)
		if err != nil {
			continue
		}
		switch v := body.(type) {
		case *chain.AnchorRecords:
			for _, a := range v.Records {
				if _, ok := r.records[a.ID]; ok {
					continue
				}
				r.records[a.ID] = indexedRecord{Patient: a.Patient, Author: tx.Signer.Address(), CiphertextHash: a.CiphertextHash}
				r.order = append(r.order, a.ID)
				r.byPatient[a.Patient] = append(r.byPatient[a.Patient], a.ID)
			}
		case *chain.ConsentGrant:
			p := tx.Signer.Address()
			r.consents[p] = append(r.consents[p], tx.Hash())
		case *chain.EmergencyAccess:
			r.consents[v.Patient] = append(r.consents[v.Patient], tx.Hash())
		case *chain.AccessLog:
			for i := range v.Entries {
				r.indexAccessLocked(&v.Entries[i].Request)
			}
		case *chain.AccessReceipts:
			for i := range v.Receipts {
				r.indexAccessLocked(&v.Receipts[i].Request)
			}
		}
	}
	r.indexed = b.Header.Height
}

// indexAccessLocked adds a request logged by its holder or received by its requester to its
// patient's access list, once.
func (r *Service) indexAccessLocked(req *chain.AccessRequest) {
	id := req.ID()
	rec, ok := r.records[req.Record]
	if !ok || r.seenReq[id] {
		return
	}
	r.seenReq[id] = true
	r.accesses[rec.Patient] = append(r.accesses[rec.Patient], id)
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
	r.mu.RLock()
	rec, ok := r.records[id]
	r.mu.RUnlock()
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
