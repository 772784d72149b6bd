package records

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/records/index"
	"github.com/medledger/medledger/wallet/envelope"
)

// sealedRecord is a record sealed and stored locally, waiting for its anchor.
type sealedRecord struct {
	anchor chain.RecordAnchor
	sealed *envelope.Sealed
}

// Amend stores a new version of record id: the FHIR resource replaces it, the old version stays
// readable to those with consent. The resource must have the same type.
func (r *Service) Amend(ctx context.Context, id chain.Hash, data []byte) (*ImportedRecord, error) {
	resources, err := r.fhir.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	if len(resources) != 1 {
		return nil, fmt.Errorf("%w: an amendment is one resource, got %d", ErrInvalidFHIR, len(resources))
	}
	var prev *state.RecordState
	if err := r.query(ctx, func(view state.View) error {
		prev, err = state.Record(view, id)
		return err
	}); err != nil {
		return nil, err
	}
	switch {
	case prev == nil:
		return nil, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	case prev.Erased:
		return nil, fmt.Errorf("%w: %s", ErrRecordErased, id)
	case !prev.SupersededBy.IsZero():
		return nil, fmt.Errorf("%w: record %s is already superseded by %s; amend the latest version", ErrAccessRefused, id, prev.SupersededBy)
	case resources[0].ResourceType != prev.ResourceType:
		return nil, fmt.Errorf("%w: record %s is a %s, the amendment a %s", ErrInvalidFHIR, id, prev.ResourceType, resources[0].ResourceType)
	}
	var nid chain.Hash
	if _, err := rand.Read(nid[:]); err != nil {
		return nil, err
	}
	recs := []sealedRecord{{anchor: chain.RecordAnchor{ID: nid, Patient: prev.Patient, ResourceType: prev.ResourceType, Version: prev.RecVersion + 1, Supersedes: id}}}
	out, err := r.sealAndAnchor(ctx, recs, [][]byte{resources[0].JSON}, nil)
	if err != nil {
		return nil, err
	}
	r.rememberAmendment(prev, nid, resources[0])
	return &out[0], nil
}

// rememberAmendment moves the FHIR key of an imported record to its amended version, so that
// importing the amended resource again is a no-op and the previous one a change.
func (r *Service) rememberAmendment(prev *state.RecordState, nid chain.Hash, res fhir.Resource) {
	if res.ID == "" {
		return
	}
	key := r.names.name(prev.Patient, res.ResourceType+"/"+res.ID)
	e, ok, err := r.idx.FHIR(prev.Patient, key)
	if err != nil || !ok || e.Latest != prev.ID {
		return // not this node's import of that Type/id
	}
	e.Latest, e.Content = nid, sha256.Sum256(res.JSON)
	if err := r.idx.PutFHIR(prev.Patient, map[string]index.FHIREntry{key: e}); err != nil {
		r.log.Error("amend: FHIR key not kept", "record", nid.Short(), "err", err)
	}
}

// sealAndAnchor seals, stores and anchors the records and waits for their anchors to commit;
// progress (if not nil) hears 0 once the records are sealed and stored, then how many have
// committed after each anchor transaction does.
func (r *Service) sealAndAnchor(ctx context.Context, recs []sealedRecord, plain [][]byte, progress func(done int)) ([]ImportedRecord, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: nothing to import", ErrInvalidFHIR)
	}
	patient := recs[0].anchor.Patient
	// Recipients come from the ledger as of now; a grant committed later is handled by
	// wrapForGrantee when this node sees it.
	recipients := make([][]envelope.Recipient, len(recs))
	err := r.query(ctx, func(view state.View) error {
		pat, err := state.Patient(view, patient)
		if err != nil {
			return err
		}
		if pat == nil {
			return fmt.Errorf("%w: patient %s is not registered on the ledger", ErrNotRegistered, patient)
		}
		me, err := state.Provider(view, r.self)
		if err != nil {
			return err
		}
		if me == nil {
			return fmt.Errorf("%w: this node's provider %s is not registered yet", ErrNotRegistered, r.self)
		}
		pk, err := envelope.ParsePublicKey(pat.EncryptionKey)
		if err != nil {
			return fmt.Errorf("patient encryption key: %w", err)
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		keys := map[chain.Address]envelope.PublicKey{}
		for i := range recs {
			a := &recs[i].anchor
			root := a.ID
			if a.Version > 1 {
				prev, err := state.Record(view, a.Supersedes)
				if err != nil || prev == nil {
					return fmt.Errorf("%w: %s", ErrRecordNotFound, a.Supersedes)
				}
				root = prev.Root
			}
			probe := &state.RecordState{ID: a.ID, Patient: patient, Author: r.self, ResourceType: a.ResourceType, RecVersion: a.Version, Root: root}
			readers, err := state.Readers(view, now, probe)
			if err != nil {
				return err
			}
			list := []envelope.Recipient{{Key: pk}, {Key: r.keys.Encryption.Public()}}
			for _, g := range readers {
				if g == r.self {
					continue
				}
				k, ok := keys[g]
				if !ok {
					prov, err := state.Provider(view, g)
					if err != nil || prov == nil {
						continue
					}
					if k, err = envelope.ParsePublicKey(prov.EncryptionKey); err != nil {
						continue
					}
					keys[g] = k
				}
				list = append(list, envelope.Recipient{Key: k})
			}
			recipients[i] = list
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Sealing runs on every core, in one envelope.Batch: one HPKE encapsulation per recipient
	// for the whole import, and per record only AEADs (each envelope still opens one record for
	// one recipient). The files are then written with one group of fsyncs.
	batch := envelope.NewBatch(rand.Reader, r.chainID)
	defer batch.Close()
	sealErrs := make([]error, len(recs))
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(recs))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(recs); i += workers {
				a := &recs[i].anchor
				recs[i].sealed, sealErrs[i] = batch.Seal(plain[i], envelope.Context{ChainID: r.chainID, RecordID: a.ID, Version: a.Version}, recipients[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(sealErrs...); err != nil {
		return nil, err
	}
	files := make([]blobstore.RecordFiles, len(recs))
	for i := range recs {
		files[i] = blobstore.RecordFiles{Record: recs[i].anchor.ID, Ciphertext: recs[i].sealed.Ciphertext, Envelopes: recs[i].sealed.Envelopes}
	}
	hashes, err := r.blobs.PutBatch(files)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].anchor.CiphertextHash, recs[i].anchor.Size = hashes[i], uint64(len(recs[i].sealed.Ciphertext))
	}
	if progress != nil {
		progress(0)
	}
	out := make([]ImportedRecord, 0, len(recs))
	type pending struct {
		ch     <-chan Outcome
		cancel func()
		from   int
		to     int
	}
	// Listed as unpushed before the anchors are submitted: if this node stops between commit
	// and push, the re-push pass finds them after its restart.
	ids := make([]chain.Hash, len(recs))
	for i := range recs {
		ids[i] = recs[i].anchor.ID
	}
	if err := r.unpushed.add(ids, r.now()); err != nil {
		r.log.Warn("records not listed for re-push", "records", len(ids), "err", err)
	}
	// Submit every chunk first, then wait: the chunks can share blocks.
	var waits []pending
	defer func() {
		for _, w := range waits {
			w.cancel()
		}
	}()
	for from := 0; from < len(recs); from += chain.MaxAnchorsPerTx {
		to := min(from+chain.MaxAnchorsPerTx, len(recs))
		body := &chain.AnchorRecords{}
		for _, rec := range recs[from:to] {
			body.Records = append(body.Records, rec.anchor)
		}
		_, ch, cancel, err := r.submitExpect(ctx, chain.TxAnchorRecords, body)
		if err != nil {
			return nil, err
		}
		waits = append(waits, pending{ch, cancel, from, to})
	}
	wctx, stop := context.WithTimeout(ctx, commitWait)
	defer stop()
	var top uint64
	for _, w := range waits {
		h, err := waitCommit(wctx, w.ch)
		if err != nil {
			return nil, fmt.Errorf("anchors not committed: %w", err)
		}
		top = max(top, h)
		for _, rec := range recs[w.from:w.to] {
			out = append(out, ImportedRecord{ID: rec.anchor.ID, ResourceType: rec.anchor.ResourceType, Version: rec.anchor.Version, Height: h})
		}
		if progress != nil {
			progress(len(out))
		}
	}
	r.waitIndexed(wctx, top)
	jobs := make([]pushJob, len(recs))
	for i, rec := range recs {
		jobs[i] = pushJob{id: rec.anchor.ID, hash: rec.anchor.CiphertextHash, ciphertext: rec.sealed.Ciphertext, envs: rec.sealed.Envelopes}
	}
	r.pushAllAsync(jobs)
	return out, nil
}

// indexWait bounds how long an import waits for the patient index to apply its anchors.
const indexWait = 2 * time.Second

// waitIndexed returns once the patient index has applied block h (or after indexWait): a client
// that imports and then lists the patient's records expects to see what it imported, and the
// index applies blocks after they commit. The anchors are committed either way.
func (r *Service) waitIndexed(ctx context.Context, h uint64) {
	ctx, cancel := context.WithTimeout(ctx, indexWait)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.RLock()
		done := r.indexed >= h
		r.mu.RUnlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
