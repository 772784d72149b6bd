package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
)

// Limits on the consent indexes, so every index record stays small and every query a bounded
// number of point reads.
const (
	// MaxConsentsPerPair bounds the non-revoked consents (grants and emergency accesses, expired
	// ones included) from one patient to one provider; the patient revokes one to make room.
	MaxConsentsPerPair = 64
	// MaxGranteesPerPatient bounds the distinct providers holding a non-revoked consent from
	// one patient.
	MaxGranteesPerPatient = 256
	// MaxAcksPerRecord bounds the erase acknowledgements kept on one record, so the record stays
	// far below the decode limit.
	MaxAcksPerRecord = 1024
)

// Event types of record, consent and audit transactions. Their details name ids, addresses and
// heights only: never resource types, purposes or reasons.
const (
	EventRecordAnchored    = "record-anchored"
	EventRecordSuperseded  = "record-superseded"
	EventConsentGranted    = "consent-granted"
	EventConsentRevoked    = "consent-revoked"
	EventEmergencyAccess   = "emergency-access-opened"
	EventAccessLogged      = "access-logged"
	EventAccessDuplicate   = "access-duplicate-skipped"
	EventRecordErased      = "record-erased"
	EventEraseAcked        = "erase-acknowledged"
	EventEraseAckDuplicate = "erase-ack-duplicate-skipped"
	// EventAccessThrottled: a refused entry over the requester's window limit, skipped.
	EventAccessThrottled  = "access-refusal-throttled"
	EventReceiptRecorded  = "receipt-recorded"
	EventReceiptDuplicate = "receipt-duplicate-skipped"
	EventReceiptThrottled = "receipt-throttled"
)

// exists reports whether key is present, without decoding it.
func exists(view View, key []byte, what string) (bool, error) {
	data, err := view.Get(key)
	if err != nil {
		return false, fmt.Errorf("state: read %s: %w", what, err)
	}
	return data != nil, nil
}

// isProvider is the one place outside the executor that the record, consent and audit rules ask
// whether an address holds provider rights at block time timeMs (activeProvider, members.go).
func isProvider(view View, a chain.Address, timeMs int64) (bool, error) {
	m, err := ActiveProvider(view, a, timeMs)
	return m != nil, err
}

// needProvider requires a provider active at the block's time (activeProvider, members.go).
func (e *executor) needProvider(a chain.Address, role string) error {
	_, err := activeProvider(e.o, a, e.h.Time)
	return e.needRole(err, role)
}

// needPatient requires a registered patient that has not left.
func (e *executor) needPatient(a chain.Address, role string) error {
	_, err := activePatient(e.o, a)
	return e.needRole(err, role)
}

// anchorRecords anchors new records and amendments authored by the signer.
func (e *executor) anchorRecords(author chain.Address, b *chain.AnchorRecords, res *TxResult) error {
	if err := e.needProvider(author, "author"); err != nil {
		return err
	}
	for i := range b.Records {
		if err := e.anchor(author, &b.Records[i], res); err != nil {
			return err
		}
	}
	return nil
}

func (e *executor) anchor(author chain.Address, a *chain.RecordAnchor, res *TxResult) error {
	if err := e.needPatient(a.Patient, "patient"); err != nil {
		return err
	}
	found, err := exists(e.o, recordKey(a.ID), "record")
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: record %s already anchored", a.ID.Short())
	}
	// A ciphertext belongs to one record for ever: erasing a record deletes its blob on every
	// node, so an anchor reusing another record's ciphertext would let its author erase (or
	// have the patient erase) someone else's blob. An amendment has a ciphertext of its own.
	owner, err := RecordOfCiphertext(e.o, a.CiphertextHash)
	if err != nil {
		return err
	}
	if !owner.IsZero() {
		return fmt.Errorf("state: record %s names ciphertext %s, already anchored by record %s", a.ID.Short(), a.CiphertextHash.Short(), owner.Short())
	}
	rs := &RecordState{
		Version: RecordVersion, ID: a.ID, Patient: a.Patient, Author: author, ResourceType: a.ResourceType,
		RecVersion: a.Version, Supersedes: a.Supersedes, Root: a.ID, CiphertextHash: a.CiphertextHash, Size: a.Size,
		AnchoredHeight: e.h.Height, AnchoredTime: e.h.Time,
	}
	if a.Version > 1 {
		prev, err := Record(e.o, a.Supersedes)
		if err != nil {
			return err
		}
		switch {
		case prev == nil:
			return fmt.Errorf("state: record %s supersedes unknown record %s", a.ID.Short(), a.Supersedes.Short())
		case prev.Erased:
			return fmt.Errorf("state: record %s supersedes record %s, erased at height %d", a.ID.Short(), prev.ID.Short(), prev.ErasedHeight)
		case !prev.SupersededBy.IsZero():
			return fmt.Errorf("state: record %s supersedes record %s, already superseded by %s", a.ID.Short(), prev.ID.Short(), prev.SupersededBy.Short())
		case prev.Patient != a.Patient:
			return fmt.Errorf("state: record %s names patient %s but supersedes a record of patient %s", a.ID.Short(), a.Patient, prev.Patient)
		case a.Version != prev.RecVersion+1:
			return fmt.Errorf("state: record %s has version %d but supersedes version %d", a.ID.Short(), a.Version, prev.RecVersion)
		case a.ResourceType != prev.ResourceType:
			// A type change would move the record in or out of type-scoped consents.
			return fmt.Errorf("state: record %s is a %s but supersedes a %s", a.ID.Short(), a.ResourceType, prev.ResourceType)
		}
		if author != prev.Author {
			if err := mayAmend(e.o, e.h.Time, author, prev); err != nil {
				return err
			}
		}
		prev.SupersededBy = a.ID
		rs.Root = prev.Root
		e.o.Set(recordKey(prev.ID), chain.Encode(prev))
		res.event(EventRecordSuperseded, "record %s superseded by %s", prev.ID.Short(), a.ID.Short())
	}
	e.o.Set(recordKey(a.ID), chain.Encode(rs))
	e.o.Set(blobKey(a.CiphertextHash), chain.Encode(&blobRecord{Version: RecordVersion, Record: a.ID}))
	if err := e.logForPatient(a.Patient, LogRecord, a.ID); err != nil {
		return err
	}
	res.event(EventRecordAnchored, "record %s (root %s) of patient %s by %s", a.ID.Short(), rs.Root.Short(), a.Patient, author)
	return nil
}

// mayAmend allows a provider other than prev's author to amend it if it holds an active consent,
// for any purpose, ordinary or emergency, whose scope covers prev.
func mayAmend(view View, timeMs int64, who chain.Address, prev *RecordState) error {
	_, err := CheckAccess(view, timeMs, who, prev, "", false)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrNoConsent) {
		return err
	}
	if _, errEm := CheckAccess(view, timeMs, who, prev, "", true); errEm == nil {
		return nil
	} else if !errors.Is(errEm, ErrNoConsent) {
		return errEm
	}
	return &reasonError{
		prefix: fmt.Sprintf("state: %s is not the author of record %s (%s) and holds no consent covering it: ", who, prev.ID.Short(), prev.Author),
		err:    err,
	}
}

// reasonError puts context before a state error without repeating its "state: " prefix.
type reasonError struct {
	prefix string
	err    error
}

func (r *reasonError) Error() string { return r.prefix + strings.TrimPrefix(r.err.Error(), "state: ") }
func (r *reasonError) Unwrap() error { return r.err }

// grantConsent records a patient's consent; its id is the transaction's hash.
func (e *executor) grantConsent(patient chain.Address, id chain.Hash, b *chain.ConsentGrant, res *TxResult) error {
	if err := e.needPatient(patient, "signer"); err != nil {
		return err
	}
	if err := e.needProvider(b.Grantee, "grantee"); err != nil {
		return err
	}
	if b.ExpiresMs != 0 && b.ExpiresMs <= e.h.Time {
		return fmt.Errorf("state: consent expires at %d, not after block time %d", b.ExpiresMs, e.h.Time)
	}
	c := &ConsentRecord{
		Version: RecordVersion, ID: id, Patient: patient, Grantee: b.Grantee, Scope: b.Scope, Purpose: b.Purpose,
		ExpiresMs: b.ExpiresMs, GrantedHeight: e.h.Height, GrantedTime: e.h.Time,
	}
	if err := e.addConsent(c); err != nil {
		return err
	}
	res.event(EventConsentGranted, "consent %s: patient %s to %s", id.Short(), patient, b.Grantee)
	return nil
}

// addConsent writes a new consent and indexes it under its pair and the patient's grantees.
func (e *executor) addConsent(c *ConsentRecord) error {
	found, err := exists(e.o, consentKey(c.ID), "consent")
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: consent %s already exists", c.ID.Short())
	}
	pair, err := readPair(e.o, c.Patient, c.Grantee)
	if err != nil {
		return err
	}
	if len(pair.IDs) >= MaxConsentsPerPair {
		return fmt.Errorf("state: patient %s already has %d unrevoked consents for %s, the limit: revoke one first", c.Patient, len(pair.IDs), c.Grantee)
	}
	gr, err := readGrantees(e.o, c.Patient)
	if err != nil {
		return err
	}
	i, listed := slices.BinarySearchFunc(gr.Grantees, c.Grantee, compareAddr)
	if !listed {
		if len(gr.Grantees) >= MaxGranteesPerPatient {
			return fmt.Errorf("state: patient %s already has consents for %d providers, the limit: revoke all of one's first", c.Patient, len(gr.Grantees))
		}
		gr.Grantees = slices.Insert(gr.Grantees, i, c.Grantee)
		e.o.Set(granteesKey(c.Patient), chain.Encode(gr))
	}
	pair.IDs = append(pair.IDs, c.ID)
	e.o.Set(grantsKey(c.Patient, c.Grantee), chain.Encode(pair))
	e.o.Set(consentKey(c.ID), chain.Encode(c))
	return e.logForPatient(c.Patient, LogConsent, c.ID)
}

// revokeConsent withdraws one of the signer's consents (or an emergency access to the signer).
func (e *executor) revokeConsent(patient chain.Address, b *chain.ConsentRevoke, res *TxResult) error {
	c, err := Consent(e.o, b.Consent)
	if err != nil {
		return err
	}
	switch {
	case c == nil:
		return fmt.Errorf("state: no consent %s", b.Consent.Short())
	case c.Patient != patient:
		return fmt.Errorf("state: consent %s is patient %s's, not the signer's", c.ID.Short(), c.Patient)
	case c.Revoked:
		return fmt.Errorf("state: consent %s already revoked at height %d", c.ID.Short(), c.RevokedHeight)
	}
	c.Revoked, c.RevokedHeight = true, e.h.Height
	e.o.Set(consentKey(c.ID), chain.Encode(c))
	pair, err := readPair(e.o, c.Patient, c.Grantee)
	if err != nil {
		return err
	}
	i := slices.Index(pair.IDs, c.ID)
	if i < 0 {
		return fmt.Errorf("state: consent %s missing from its index (state corrupt?)", c.ID.Short())
	}
	pair.IDs = slices.Delete(pair.IDs, i, i+1)
	pair.LastRevoked, pair.LastRevokedHeight = c.ID, e.h.Height
	e.o.Set(grantsKey(c.Patient, c.Grantee), chain.Encode(pair))
	if len(pair.IDs) == 0 {
		gr, err := readGrantees(e.o, c.Patient)
		if err != nil {
			return err
		}
		if j, ok := slices.BinarySearchFunc(gr.Grantees, c.Grantee, compareAddr); ok {
			gr.Grantees = slices.Delete(gr.Grantees, j, j+1)
		}
		if len(gr.Grantees) == 0 {
			e.o.Delete(granteesKey(c.Patient))
		} else {
			e.o.Set(granteesKey(c.Patient), chain.Encode(gr))
		}
	}
	res.event(EventConsentRevoked, "consent %s: patient %s to %s", c.ID.Short(), c.Patient, c.Grantee)
	return nil
}

// accessLog records the accesses a holder served or refused, once per request id. The holder
// must be the one the request is addressed to. Refused entries are bounded per requester and
// window (one per record, MaxRefusalsPerPatientWindow per patient); the excess is skipped, not
// refused, so a requester spamming a holder cannot make the holder's served entries fail with
// them.
func (e *executor) accessLog(holder chain.Address, b *chain.AccessLog, res *TxResult) error {
	// A payer's node logs the refusals of its own reads (records.Service.Read) as a holder would.
	if p, err := ActivePayer(e.o, holder, e.h.Time); err != nil {
		return err
	} else if p == nil {
		if err := e.needProvider(holder, "holder"); err != nil {
			return err
		}
	}
	seen := make(map[chain.Hash]bool, len(b.Entries))
	for i := range b.Entries {
		en := &b.Entries[i]
		id := en.Request.ID()
		// The id covers the whole request, signature included, so a repeat is byte-identical to
		// an entry already verified and logged.
		if seen[id] {
			res.event(EventAccessDuplicate, "request %s repeated in this transaction", id.Short())
			continue
		}
		logged, err := exists(e.o, accessKey(id), "access")
		if err != nil {
			return err
		}
		if logged {
			res.event(EventAccessDuplicate, "request %s already logged", id.Short())
			continue
		}
		seen[id] = true
		if err := en.Request.VerifySig(e.m.chainID); err != nil {
			return fmt.Errorf("state: access entry %d (request %s): %w", i, id.Short(), err)
		}
		rec, err := Record(e.o, en.Request.Record)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("state: access entry %d (request %s) names unknown record %s", i, id.Short(), en.Request.Record.Short())
		}
		requester, err := e.requesterOf(&en.Request, rec)
		if err != nil {
			return err
		}
		ok, err := holderMatches(e.o, holder, en.Request.Holder)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("state: access entry %d (request %s) is addressed to holder node %s, not to the signer %s", i, id.Short(), en.Request.Holder.Short(), holder)
		}
		if en.Outcome == chain.AccessRefused {
			ok, err := e.countRefusal(requester, rec)
			if err != nil {
				return err
			}
			if !ok {
				res.event(EventAccessThrottled, "request %s: refusal of %s for record %s over the window's limit", id.Short(), requester, rec.ID.Short())
				continue
			}
		}
		var consent chain.Hash
		if en.Outcome == chain.AccessServed && en.Request.Emergency {
			if consent, err = e.emergencyConsent(requester, rec, en.Request.Purpose); err != nil {
				return err
			}
		}
		e.o.Set(accessKey(id), chain.Encode(&AccessRecord{
			Version: RecordVersion, RequestID: id, Record: rec.ID, Patient: rec.Patient, Accessor: requester, Holder: holder,
			Purpose: en.Request.Purpose, Emergency: en.Request.Emergency, Outcome: en.Outcome, Reason: en.Reason,
			Height: e.h.Height, Time: e.h.Time, Consent: consent, Role: en.Request.Role,
		}))
		if err := e.logForPatient(rec.Patient, LogAccess, id); err != nil {
			return err
		}
		res.event(EventAccessLogged, "request %s: record %s of patient %s by %s, held by %s", id.Short(), rec.ID.Short(), rec.Patient, requester, holder)
	}
	return nil
}

// requesterOf is the member id behind an access request for rec: a provider (any record, by
// consent or emergency access), the record's own patient reading it with their wallet key
// (never as an emergency), or an active payer (never as an emergency).
func (e *executor) requesterOf(q *chain.AccessRequest, rec *RecordState) (chain.Address, error) {
	id, perr := e.providerByKey(q.Requester, "requester")
	if perr == nil {
		return id, CheckRequestRole(q.Role, false)
	}
	m, err := MemberByKey(e.o, q.Requester)
	if err != nil {
		return chain.Address{}, err
	}
	if m != nil && m.Role == chain.RolePatient && m.ID == rec.Patient && !q.Emergency {
		return m.ID, CheckRequestRole(q.Role, true)
	}
	// A payer reads the sealed claims that name it (checkPayerAccess); its reads and refusals
	// are logged like a provider's, so the patient sees them.
	if m != nil && m.Role == chain.RolePayer && m.ActiveAt(e.h.Time) && !q.Emergency {
		return m.ID, CheckRequestRole(q.Role, false)
	}
	return chain.Address{}, perr
}

// CheckRequestRole checks an access request's role against who signed it: the patient role is
// the record's own patient's, and theirs alone, so a patient's audit can trust "patient" to mean
// their own read.
func CheckRequestRole(role string, byPatient bool) error {
	switch {
	case byPatient && role != chain.AccessRolePatient:
		return fmt.Errorf("state: a patient's own read has role %q, not %q", chain.AccessRolePatient, role)
	case !byPatient && role == chain.AccessRolePatient:
		return fmt.Errorf("state: a provider's request claims the %q role", chain.AccessRolePatient)
	}
	return nil
}

// countRefusal admits one more refused entry of requester for rec in this window, or reports
// false: at most one per (requester, record) and MaxRefusalsPerPatientWindow per (requester,
// patient). Both limits are checked before either counter moves.
func (e *executor) countRefusal(requester chain.Address, rec *RecordState) (bool, error) {
	perRecord, err := rateCount(e.o, rateRefusedRecord, RefusalWindowMs, e.h.Time, requester[:], rec.ID[:])
	if err != nil {
		return false, err
	}
	perPatient, err := rateCount(e.o, rateRefusedPatient, RefusalWindowMs, e.h.Time, requester[:], rec.Patient[:])
	if err != nil {
		return false, err
	}
	if perRecord >= 1 || perPatient >= MaxRefusalsPerPatientWindow {
		return false, nil
	}
	if _, err := e.bump(rateRefusedRecord, RefusalWindowMs, 1, requester[:], rec.ID[:]); err != nil {
		return false, err
	}
	_, err = e.bump(rateRefusedPatient, RefusalWindowMs, MaxRefusalsPerPatientWindow, requester[:], rec.Patient[:])
	return err == nil, err
}

// eraseRecords crypto-shreds the signer's records: the ledger keeps the version chain and a hash
// of each anchor, not what described the ciphertext.
func (e *executor) eraseRecords(patient chain.Address, b *chain.RecordErase, res *TxResult) error {
	for _, id := range b.Records {
		rec, err := Record(e.o, id)
		if err != nil {
			return err
		}
		switch {
		case rec == nil:
			return fmt.Errorf("state: cannot erase unknown record %s", id.Short())
		case rec.Patient != patient:
			return fmt.Errorf("state: record %s is patient %s's, not the signer's", id.Short(), rec.Patient)
		case rec.Erased:
			return fmt.Errorf("state: record %s already erased at height %d", id.Short(), rec.ErasedHeight)
		}
		rec.AnchorHash = chain.Sum256(chain.Encode(&chain.RecordAnchor{
			ID: rec.ID, Patient: rec.Patient, ResourceType: rec.ResourceType, Version: rec.RecVersion,
			Supersedes: rec.Supersedes, CiphertextHash: rec.CiphertextHash, Size: rec.Size,
		}))
		rec.ResourceType, rec.CiphertextHash, rec.Size = "", chain.Hash{}, 0
		rec.Erased, rec.ErasedHeight = true, e.h.Height
		e.o.Set(recordKey(id), chain.Encode(rec))
		res.event(EventRecordErased, "record %s of patient %s", id.Short(), patient)
	}
	return nil
}

// ackErase records a holder's acknowledgement that it deleted erased records.
func (e *executor) ackErase(holder chain.Address, b *chain.EraseAck, res *TxResult) error {
	if err := e.needProvider(holder, "signer"); err != nil {
		return err
	}
	for _, id := range b.Records {
		rec, err := Record(e.o, id)
		if err != nil {
			return err
		}
		switch {
		case rec == nil:
			return fmt.Errorf("state: cannot acknowledge erasure of unknown record %s", id.Short())
		case !rec.Erased:
			return fmt.Errorf("state: record %s is not erased", id.Short())
		}
		i, found := slices.BinarySearchFunc(rec.Acks, holder, compareAddr)
		if found {
			res.event(EventEraseAckDuplicate, "record %s: %s already acknowledged", id.Short(), holder)
			continue
		}
		if len(rec.Acks) >= MaxAcksPerRecord {
			return fmt.Errorf("state: record %s already has %d erase acknowledgements, the limit", id.Short(), len(rec.Acks))
		}
		rec.Acks = slices.Insert(rec.Acks, i, holder)
		e.o.Set(recordKey(id), chain.Encode(rec))
		res.event(EventEraseAcked, "record %s: erasure acknowledged by %s", id.Short(), holder)
	}
	return nil
}

func compareAddr(a, b chain.Address) int { return bytes.Compare(a[:], b[:]) }

func readPair(view View, patient, grantee chain.Address) (*pairRecord, error) {
	r := &pairRecord{Version: RecordVersion}
	if _, err := get(view, grantsKey(patient, grantee), "consent index", r); err != nil {
		return nil, err
	}
	return r, nil
}

func readGrantees(view View, patient chain.Address) (*granteesRecord, error) {
	r := &granteesRecord{Version: RecordVersion}
	if _, err := get(view, granteesKey(patient), "grantee index", r); err != nil {
		return nil, err
	}
	return r, nil
}
