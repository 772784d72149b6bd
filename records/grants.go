package records

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/wallet/envelope"
)

// wrapForGrantee wraps the data key of every record this node authored for patient to grantee,
// where the ledger says grantee may now read it, and pushes the new envelopes to replicas.
func (r *Service) wrapForGrantee(ctx context.Context, patient, grantee chain.Address) {
	mine := r.authoredFor(patient)
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
	// Wrapped in chunks, each stored with one group of fsyncs: a read of one of these records
	// by the grantee meanwhile is served by wrapping its key on the fly (Fetch).
	var pushes []pushJob
	var files []blobstore.RecordFiles
	var hashes []chain.Hash
	store := func() {
		if len(files) == 0 {
			return
		}
		if _, err := r.blobs.PutBatch(files); err != nil {
			r.log.Warn("wrap for grantee", "grantee", grantee, "err", err)
		} else {
			for i, f := range files {
				pushes = append(pushes, pushJob{id: f.Record, hash: hashes[i], envs: f.Envelopes})
			}
		}
		files, hashes = files[:0], hashes[:0]
	}
	// One batch for the grantee: one HPKE encapsulation for all these records, and this node's
	// own batch keys opened once per import rather than once per record.
	batch := envelope.NewBatch(rand.Reader, r.chainID)
	defer batch.Close()
	for _, j := range jobs {
		if _, err := r.blobs.Envelope(j.rec.ID, to.KeyID()); err == nil {
			continue
		}
		env, err := r.wrapKeyIn(batch, j.rec, to)
		if err != nil {
			r.log.Warn("wrap for grantee", "record", j.rec.ID.Short(), "err", err)
			continue
		}
		files = append(files, blobstore.RecordFiles{Record: j.rec.ID, Envelopes: []envelope.Envelope{env}})
		hashes = append(hashes, j.rec.CiphertextHash)
		if len(files) == pushBatchMax {
			store()
		}
	}
	store()
	if len(pushes) > 0 {
		r.pushAllAsync(pushes)
		r.log.Info("wrapped data keys for a new grantee", "grantee", grantee, "records", len(pushes))
	}
}

// wrap opens this node's own envelope of rec, wraps the data key to to and stores the new
// envelope.
func (r *Service) wrap(rec *state.RecordState, to envelope.PublicKey) (envelope.Envelope, error) {
	env, err := r.wrapKey(rec, to)
	if err != nil {
		return envelope.Envelope{}, err
	}
	if err := r.blobs.PutEnvelope(rec.ID, env); err != nil {
		return envelope.Envelope{}, err
	}
	return env, nil
}

// wrapKey is wrap without storing.
func (r *Service) wrapKey(rec *state.RecordState, to envelope.PublicKey) (envelope.Envelope, error) {
	return r.wrapKeyIn(nil, rec, to)
}

// wrapKeyIn is wrapKey in batch (a single envelope if batch is nil).
func (r *Service) wrapKeyIn(batch *envelope.Batch, rec *state.RecordState, to envelope.PublicKey) (envelope.Envelope, error) {
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		return envelope.Envelope{}, err
	}
	own, err := r.blobs.Envelope(rec.ID, r.keyID)
	if err != nil {
		return envelope.Envelope{}, err
	}
	s := &envelope.Sealed{Ciphertext: ct, Envelopes: []envelope.Envelope{own}}
	if batch != nil {
		return batch.WrapFor(r.keys.Encryption, s, r.context(rec), to)
	}
	return envelope.WrapFor(r.keys.Encryption, s, r.context(rec), to)
}

func (r *Service) context(rec *state.RecordState) envelope.Context {
	return envelope.Context{ChainID: r.chainID, RecordID: rec.ID, Version: rec.RecVersion}
}

// ErrCoSignNeeded: the ledger would refuse this break-glass access without an authority's
// co-signature (or the one given does not match it).
var ErrCoSignNeeded = errors.New("co-signature needed")

// Emergency is a break-glass access this node's provider asks for.
type Emergency struct {
	Patient    chain.Address
	Purpose    string
	ReasonCode chain.EmergencyReason
	// Note is free text; it stays in this node's log, never on the ledger.
	Note string
	// CoSigner and CoSig: an authority's co-signature (CoSignEmergency), needed from the
	// second access in a window on; zero otherwise.
	CoSigner chain.PubKey
	CoSig    chain.Signature
}

// EmergencyAccess records a break-glass access to a patient's records on the ledger, with a
// reason code, and waits for it to commit. The free-text note stays in this node's log, never
// on the ledger. When the ledger would need a co-signature this node does not have, it says so
// (ErrCoSignNeeded) and what to ask an authority for, before submitting anything.
func (r *Service) EmergencyAccess(ctx context.Context, e Emergency) (chain.Hash, uint64, error) {
	body := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: e.Patient, Purpose: e.Purpose, ReasonCode: e.ReasonCode,
		CoSigner: e.CoSigner, CoSig: e.CoSig}
	if err := body.Validate(); err != nil {
		return chain.Hash{}, 0, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	var window uint64
	var count uint32
	if err := r.query(ctx, func(view state.View) error {
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		window, count, err = state.EmergencyAccessesIn(view, r.self, now)
		return err
	}); err != nil {
		return chain.Hash{}, 0, err
	}
	hours := state.EmergencyWindowMs / 3_600_000
	switch {
	case count >= state.MaxEmergencyPerWindow:
		return chain.Hash{}, 0, fmt.Errorf("%w: this provider opened %d break-glass accesses in this %d h window, the cap even with co-signatures",
			ErrAccessRefused, count, hours)
	case count > 0 && !body.CoSigned():
		return chain.Hash{}, 0, fmt.Errorf("%w: a second break-glass access within %d h needs an authority's co-signature: ask an authority to run "+
			"`medledger records cosign --home AUTHORITY_HOME --provider %s --patient %s --purpose %s --reason-code %s` and pass its co_signer and co_sig "+
			"(--co-signer, --co-sig)", ErrCoSignNeeded, hours, r.self, e.Patient, e.Purpose, e.ReasonCode)
	case body.CoSigned():
		if err := body.VerifyCoSig(r.chainID, r.keys.Signing.Public(), window, count+1); err != nil {
			return chain.Hash{}, 0, fmt.Errorf("%w: the co-signature is not for this access (window %d, access %d of the window: it names the "+
				"provider, patient, purpose and reason code, and a window's accesses in turn): ask for a fresh one: %w", ErrCoSignNeeded, window, count+1, err)
		}
	}
	h, height, err := r.submit(ctx, chain.TxEmergencyAccess, body, true)
	r.log.Info("break-glass access (the note is kept here only)", "patient", e.Patient, "reason", e.ReasonCode, "co_signed", body.CoSigned(),
		"note", e.Note, "tx", h.Short(), "err", err)
	return h, height, err
}

// CoSignature is an authority's co-signature of a provider's next break-glass access.
type CoSignature struct {
	CoSigner chain.PubKey    `json:"co_signer"`
	CoSig    chain.Signature `json:"co_sig"`
	Window   uint64          `json:"window"`
	Ordinal  uint32          `json:"ordinal"`
}

// CoSignEmergency co-signs, with authority key key, provider's next break-glass access to
// patient for purpose and code: the access's window and ordinal come from the ledger at the
// tip, so the co-signature is good for exactly that access (if it commits in the same window).
// key must be a current authority's and not the provider's.
func (r *Service) CoSignEmergency(ctx context.Context, key chain.PrivKey, provider, patient chain.Address, purpose string,
	code chain.EmergencyReason) (*CoSignature, error) {
	body := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: patient, Purpose: purpose, ReasonCode: code}
	if err := body.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	var providerKey chain.PubKey
	var window uint64
	var count uint32
	if err := r.query(ctx, func(view state.View) error {
		next, _, err := state.Authorities(view)
		if err != nil {
			return err
		}
		if !next.Contains(key.Public()) {
			return fmt.Errorf("%w: this node's authority key %s is not in the current authority set", ErrAccessRefused, key.Public().Short())
		}
		m, err := state.Member(view, provider)
		if err != nil {
			return err
		}
		if m == nil || m.Role != chain.RoleProvider {
			return fmt.Errorf("%w: %s is not a registered provider", ErrBadRequest, provider)
		}
		if m.Key == key.Public() {
			return fmt.Errorf("%w: an authority cannot co-sign its own break-glass access", ErrBadRequest)
		}
		providerKey = m.Key
		if p, err := state.Patient(view, patient); err != nil || p == nil {
			return errors.Join(err, fmt.Errorf("%w: %s is not a registered patient", ErrBadRequest, patient))
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		window, count, err = state.EmergencyAccessesIn(view, provider, now)
		return err
	}); err != nil {
		return nil, err
	}
	if count >= state.MaxEmergencyPerWindow {
		return nil, fmt.Errorf("%w: provider %s opened %d break-glass accesses in this window, the cap even with co-signatures", ErrAccessRefused, provider, count)
	}
	body.CoSign(key, r.chainID, providerKey, window, count+1)
	r.log.Info("co-signed a break-glass access", "provider", provider, "patient", patient, "reason", code, "window", window, "ordinal", count+1)
	return &CoSignature{CoSigner: body.CoSigner, CoSig: body.CoSig, Window: window, Ordinal: count + 1}, nil
}

// WrapForClaim wraps the data key of the sealed claim record id (which this node authored) to
// every active payer a claim on the ledger names on it (state.ClaimPayers), stores the envelopes
// and pushes them to the replicas, so the payer can read the claim from any holder. A payer's read
// from this node is also served by wrapping on the fly (Fetch); this only saves it the trip.
// It returns the payers wrapped for.
func (r *Service) WrapForClaim(ctx context.Context, id chain.Hash) ([]chain.Address, error) {
	var rec *state.RecordState
	var payers []chain.Address
	keys := map[chain.Address]envelope.PublicKey{}
	err := r.query(ctx, func(view state.View) error {
		var err error
		if rec, err = state.Record(view, id); err != nil || rec == nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		if payers, err = state.ClaimPayers(view, now, rec); err != nil {
			return err
		}
		for _, p := range payers {
			m, err := state.Member(view, p)
			if err != nil {
				return err
			}
			k, err := envelope.ParsePublicKey(m.EncryptionKey)
			if err != nil {
				return fmt.Errorf("payer %s's encryption key: %w", p, err)
			}
			keys[p] = k
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case rec == nil:
		return nil, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	case rec.Author != r.self:
		return nil, fmt.Errorf("%w: record %s was authored by %s, not this node's provider", ErrBadRequest, id.Short(), rec.Author)
	}
	var envs []envelope.Envelope
	var done []chain.Address
	for _, p := range payers {
		to := keys[p]
		if _, err := r.blobs.Envelope(rec.ID, to.KeyID()); err == nil {
			done = append(done, p)
			continue
		}
		env, err := r.wrap(rec, to)
		if err != nil {
			return done, fmt.Errorf("wrap record %s for payer %s: %w", id.Short(), p, err)
		}
		envs = append(envs, env)
		done = append(done, p)
	}
	if len(envs) > 0 {
		r.pushAllAsync([]pushJob{{id: rec.ID, hash: rec.CiphertextHash, envs: envs}})
	}
	return done, nil
}
