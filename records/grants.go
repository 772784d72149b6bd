package records

import (
	"context"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/wallet/envelope"
)

// wrapForGrantee wraps the data key of every record this node authored for patient to grantee,
// where the ledger says grantee may now read it, and pushes the new envelopes to replicas.
func (r *Service) wrapForGrantee(ctx context.Context, patient, grantee chain.Address) {
	r.mu.RLock()
	var mine []chain.Hash
	for _, id := range r.byPatient[patient] {
		if r.records[id].Author == r.self {
			mine = append(mine, id)
		}
	}
	r.mu.RUnlock()
	if len(mine) == 0 {
		return
	}
	type job struct {
		rec *state.RecordState
	}
	var jobs []job
	var to envelope.PublicKey
	err := r.query(ctx, func(view state.View) error {
		prov, err := state.Provider(view, grantee)
		if err != nil || prov == nil {
			return fmt.Errorf("grantee %s is not a registered provider", grantee)
		}
		if to, err = envelope.ParsePublicKey(prov.EncryptionKey); err != nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		for _, id := range mine {
			rec, err := state.Record(view, id)
			if err != nil || rec == nil || rec.Erased {
				continue
			}
			readers, err := state.Readers(view, now, rec)
			if err != nil || !slices.Contains(readers, grantee) {
				continue
			}
			jobs = append(jobs, job{rec})
		}
		return nil
	})
	if err != nil {
		r.log.Warn("wrap for grantee", "grantee", grantee, "err", err)
		return
	}
	wrapped := 0
	for _, j := range jobs {
		if _, err := r.blobs.Envelope(j.rec.ID, to.KeyID()); err == nil {
			continue
		}
		env, err := r.wrap(j.rec, to)
		if err != nil {
			r.log.Warn("wrap for grantee", "record", j.rec.ID.Short(), "err", err)
			continue
		}
		wrapped++
		r.pushAsync(j.rec.ID, j.rec.CiphertextHash, nil, []envelope.Envelope{env})
	}
	if wrapped > 0 {
		r.log.Info("wrapped data keys for a new grantee", "grantee", grantee, "records", wrapped)
	}
}

// wrap opens this node's own envelope of rec and wraps the data key to to.
func (r *Service) wrap(rec *state.RecordState, to envelope.PublicKey) (envelope.Envelope, error) {
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		return envelope.Envelope{}, err
	}
	own, err := r.blobs.Envelope(rec.ID, r.keyID)
	if err != nil {
		return envelope.Envelope{}, err
	}
	s := &envelope.Sealed{Ciphertext: ct, Envelopes: []envelope.Envelope{own}}
	env, err := envelope.WrapFor(r.keys.Encryption, s, r.context(rec), to)
	if err != nil {
		return envelope.Envelope{}, err
	}
	if err := r.blobs.PutEnvelope(rec.ID, env); err != nil {
		return envelope.Envelope{}, err
	}
	return env, nil
}

func (r *Service) context(rec *state.RecordState) envelope.Context {
	return envelope.Context{ChainID: r.chainID, RecordID: rec.ID, Version: rec.RecVersion}
}

// EmergencyAccess records a break-glass access to a patient's records on the ledger, with a
// reason code, and waits for it to commit. The free-text note stays in this node's log, never
// on the ledger.
func (r *Service) EmergencyAccess(ctx context.Context, patient chain.Address, purpose string, code chain.EmergencyReason, note string) (chain.Hash, uint64, error) {
	body := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: patient, Purpose: purpose, ReasonCode: code}
	if err := body.Validate(); err != nil {
		return chain.Hash{}, 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	h, height, err := r.submit(ctx, chain.TxEmergencyAccess, body, true)
	r.log.Info("break-glass access (the note is kept here only)", "patient", patient, "reason", code, "note", note, "tx", h.Short(), "err", err)
	return h, height, err
}
