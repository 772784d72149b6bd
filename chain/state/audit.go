package state

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// holderMatches reports whether the signer of an access log, at signerAddr (a member id), is the
// holder node holderKey a request was addressed to (chain.AccessRequest.Holder): its registered
// node key must be that key, so only the addressed holder can log the read.
func holderMatches(view View, signerAddr chain.Address, holderKey chain.PubKey) (bool, error) {
	m, err := Member(view, signerAddr)
	if err != nil || m == nil {
		return false, err
	}
	return m.NodeKey == holderKey, nil
}

// blobRecord names the record whose anchor first named a ciphertext.
type blobRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Record  chain.Hash
}

// ReceiptRecord is a requester's receipt of a read: it received the record from the holder its
// request was addressed to, and the ciphertext it received was the record's.
type ReceiptRecord struct {
	_             struct{} `cbor:",toarray"`
	Version       uint8
	RequestID     chain.Hash
	Record        chain.Hash
	Patient       chain.Address
	Requester     chain.Address
	RequesterNode chain.PubKey
	HolderNode    chain.PubKey // the holder the request was addressed to
	Purpose       string
	Emergency     bool
	Height        uint64
	Time          int64
	// Consent is the emergency access an emergency read was made under, as for AccessRecord.
	Consent chain.Hash
	Role    string // the role the request named (chain.AccessRequest.Role)
}

// accessReceipts records the reads the signer received, once per request id. Each receipt must
// carry a request the signer signed, for a known record, with that record's ciphertext hash.
// Receipts over MaxReceiptsPerPatientWindow per (requester, patient) are skipped.
func (e *executor) accessReceipts(signer chain.Address, b *chain.AccessReceipts, res *TxResult) error {
	// A payer reading a claim it is named on receipts its reads as a provider does.
	if p, err := ActivePayer(e.o, signer, e.h.Time); err != nil {
		return err
	} else if p == nil {
		if err := e.needProvider(signer, "signer"); err != nil {
			return err
		}
	}
	seen := make(map[chain.Hash]bool, len(b.Receipts))
	for i := range b.Receipts {
		rc := &b.Receipts[i]
		id := rc.Request.ID()
		if seen[id] {
			res.event(EventReceiptDuplicate, "request %s repeated in this transaction", id.Short())
			continue
		}
		found, err := exists(e.o, receiptKey(id), "receipt")
		if err != nil {
			return err
		}
		if found {
			res.event(EventReceiptDuplicate, "request %s already has a receipt", id.Short())
			continue
		}
		seen[id] = true
		if err := rc.Request.VerifySig(e.m.chainID); err != nil {
			return fmt.Errorf("state: access receipt %d (request %s): %w", i, id.Short(), err)
		}
		if req := rc.Request.Requester.Address(); req != signer {
			return fmt.Errorf("state: access receipt %d: request %s is %s's, not the signer %s's", i, id.Short(), req, signer)
		}
		if err := CheckRequestRole(rc.Request.Role, false); err != nil {
			return fmt.Errorf("state: access receipt %d (request %s): %w", i, id.Short(), err)
		}
		rec, err := Record(e.o, rc.Request.Record)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("state: access receipt %d (request %s) names unknown record %s", i, id.Short(), rc.Request.Record.Short())
		}
		// Through the blob index, which outlives erasure: a receipt of a read made before the
		// record was erased is still checked.
		owner, err := RecordOfCiphertext(e.o, rc.CiphertextHash)
		if err != nil {
			return err
		}
		if owner != rec.ID {
			return fmt.Errorf("state: access receipt %d (request %s): ciphertext %s is not record %s's", i, id.Short(), rc.CiphertextHash.Short(), rec.ID.Short())
		}
		ok, err := e.bump(rateReceipts, ReceiptWindowMs, MaxReceiptsPerPatientWindow, signer[:], rec.Patient[:])
		if err != nil {
			return err
		}
		if !ok {
			res.event(EventReceiptThrottled, "request %s: %s is over the window's receipt limit for patient %s", id.Short(), signer, rec.Patient)
			continue
		}
		var consent chain.Hash
		if rc.Request.Emergency {
			if consent, err = e.emergencyConsent(signer, rec, rc.Request.Purpose); err != nil {
				return err
			}
		}
		e.o.Set(receiptKey(id), chain.Encode(&ReceiptRecord{
			Version: RecordVersion, RequestID: id, Record: rec.ID, Patient: rec.Patient, Requester: signer,
			RequesterNode: rc.Request.RequesterNode, HolderNode: rc.Request.Holder, Purpose: rc.Request.Purpose,
			Emergency: rc.Request.Emergency, Height: e.h.Height, Time: e.h.Time, Consent: consent, Role: rc.Request.Role,
		}))
		if err := e.logForPatient(rec.Patient, LogReceipt, id); err != nil {
			return err
		}
		res.event(EventReceiptRecorded, "request %s: record %s of patient %s received by %s", id.Short(), rec.ID.Short(), rec.Patient, signer)
	}
	return nil
}

// emergencyConsent returns the id of the emergency access under which requester may read rec
// for purpose at block time, or zero if none is in force (or the record is erased).
func (e *executor) emergencyConsent(requester chain.Address, rec *RecordState, purpose string) (chain.Hash, error) {
	c, err := CheckAccess(e.o, e.h.Time, requester, rec, purpose, true)
	switch {
	case err == nil && c != nil:
		return c.ID, nil
	case err == nil, errors.Is(err, ErrNoConsent), errors.Is(err, ErrErased):
		return chain.Hash{}, nil
	}
	return chain.Hash{}, err
}
