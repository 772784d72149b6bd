package state

import (
	"errors"
	"fmt"
	"strings"

	"github.com/medledger/medledger/chain"
)

// Errors of access checks, for errors.Is.
var (
	// ErrNoConsent: the requester is not the record's author and holds no consent that allows
	// the read. The wrapping error says why (none, revoked, expired, purpose, scope, emergency).
	ErrNoConsent = errors.New("state: no consent")
	// ErrErased: the record was erased; nobody may read it.
	ErrErased = errors.New("state: record erased")
)

// Record returns the record version with id, or nil, nil.
func Record(view View, id chain.Hash) (*RecordState, error) {
	var r RecordState
	found, err := get(view, recordKey(id), "record", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// Consent returns the consent (or emergency access) with id, or nil, nil.
func Consent(view View, id chain.Hash) (*ConsentRecord, error) {
	var r ConsentRecord
	found, err := get(view, consentKey(id), "consent", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// ConsentsBetween returns the non-revoked consents (grants and emergency accesses) from patient
// to grantee in the order they were granted, expired ones included: callers compare times
// (ConsentRecord.ActiveAt). It returns nil, nil when there are none.
func ConsentsBetween(view View, patient, grantee chain.Address) ([]*ConsentRecord, error) {
	pair, err := readPair(view, patient, grantee)
	if err != nil {
		return nil, err
	}
	return loadConsents(view, pair.IDs)
}

func loadConsents(view View, ids []chain.Hash) ([]*ConsentRecord, error) {
	var out []*ConsentRecord
	for _, id := range ids {
		c, err := Consent(view, id)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("state: indexed consent %s missing (state corrupt?)", id.Short())
		}
		out = append(out, c)
	}
	return out, nil
}

// Grantees returns, sorted, the providers holding at least one non-revoked consent (possibly
// expired) from patient, or nil, nil.
func Grantees(view View, patient chain.Address) ([]chain.Address, error) {
	gr, err := readGrantees(view, patient)
	if err != nil {
		return nil, err
	}
	if len(gr.Grantees) == 0 {
		return nil, nil
	}
	return gr.Grantees, nil
}

// Access returns the logged access with request id requestID, or nil, nil.
func Access(view View, requestID chain.Hash) (*AccessRecord, error) {
	var r AccessRecord
	found, err := get(view, accessKey(requestID), "access", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// CheckAccess decides whether requester may read rec at block time timeMs for purpose, as an
// emergency (break-glass) read or not. The record's author may always read it: (nil, nil); so
// may an active payer that a claim on the record names, for purpose "payment" or "" and never as
// an emergency (checkPayerAccess).
// Otherwise it returns the first non-revoked consent, in grant order, from rec.Patient to
// requester that is active at timeMs (ExpiresMs == 0 or timeMs < ExpiresMs), is an emergency
// access exactly when emergency is set, is for purpose (purpose "" accepts any) and whose scope
// covers rec (through rec.Root, so amendments stay covered). An erased record yields ErrErased;
// no suitable consent an error wrapping ErrNoConsent that says what was missing.
func CheckAccess(view View, timeMs int64, requester chain.Address, rec *RecordState, purpose string, emergency bool) (*ConsentRecord, error) {
	if rec == nil {
		return nil, fmt.Errorf("state: access check without a record")
	}
	if rec.Erased {
		return nil, fmt.Errorf("%w: record %s was erased at height %d", ErrErased, rec.ID.Short(), rec.ErasedHeight)
	}
	// A payer reads only the sealed claims that name it (claims_access.go).
	if p, err := memberOfRole(view, requester, chain.RolePayer); err != nil {
		return nil, err
	} else if p != nil {
		return nil, checkPayerAccess(view, timeMs, p, rec, purpose, emergency)
	}
	// Reading is a provider right: a provider whose licence lapsed or was revoked, or that left,
	// reads nothing, not even what it authored.
	if _, err := activeProvider(view, requester, timeMs); err != nil {
		if na, ok := err.(*notActiveError); ok {
			return nil, fmt.Errorf("%w: %s", ErrNoConsent, strings.TrimPrefix(na.msg, "state: "))
		}
		return nil, err
	}
	if requester == rec.Author {
		return nil, nil
	}
	pair, err := readPair(view, rec.Patient, requester)
	if err != nil {
		return nil, err
	}
	if len(pair.IDs) == 0 {
		if !pair.LastRevoked.IsZero() {
			return nil, fmt.Errorf("%w: patient %s revoked consent %s for %s at height %d and has given it no other",
				ErrNoConsent, rec.Patient, pair.LastRevoked.Short(), requester, pair.LastRevokedHeight)
		}
		return nil, fmt.Errorf("%w: patient %s has given %s no consent", ErrNoConsent, rec.Patient, requester)
	}
	consents, err := loadConsents(view, pair.IDs)
	if err != nil {
		return nil, err
	}
	best, why := -1, ""
	for _, c := range consents {
		stage, reason := judgeConsent(c, timeMs, requester, rec, purpose, emergency)
		if stage == stageOK {
			return c, nil
		}
		if stage > best {
			best, why = stage, reason
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoConsent, why)
}

// How far a consent got through CheckAccess's tests; the refusal reports the consent that got
// furthest, which is the most useful reason to show.
const (
	stageRevoked = iota
	stageKind
	stagePurpose
	stageScope
	stageExpired
	stageOK
)

func judgeConsent(c *ConsentRecord, timeMs int64, requester chain.Address, rec *RecordState, purpose string, emergency bool) (int, string) {
	switch {
	case c.Revoked:
		return stageRevoked, fmt.Sprintf("consent %s was revoked at height %d", c.ID.Short(), c.RevokedHeight)
	case c.Emergency != emergency && emergency:
		return stageKind, fmt.Sprintf("the request is an emergency read but %s has no emergency access to patient %s, only consent %s", requester, rec.Patient, c.ID.Short())
	case c.Emergency != emergency:
		return stageKind, fmt.Sprintf("%s has only emergency access %s to patient %s and the request is not marked emergency", requester, c.ID.Short(), rec.Patient)
	case purpose != "" && c.Purpose != purpose:
		return stagePurpose, fmt.Sprintf("consent %s is for purpose %q, the request for %q", c.ID.Short(), c.Purpose, purpose)
	case !c.Scope.Covers(rec.Root, rec.ResourceType):
		return stageScope, fmt.Sprintf("consent %s (scope %s) does not cover record %s (type %s, first version %s)",
			c.ID.Short(), c.Scope.Kind, rec.ID.Short(), rec.ResourceType, rec.Root.Short())
	case !c.ActiveAt(timeMs):
		return stageExpired, fmt.Sprintf("consent %s expired at %d (time is %d)", c.ID.Short(), c.ExpiresMs, timeMs)
	}
	return stageOK, ""
}

// Readers returns, sorted, the providers that at block time timeMs hold an active consent or
// emergency access, for any purpose, whose scope covers rec: the providers a node wraps the
// record's data key for. The author is not included unless it is also such a grantee. An erased
// record has no readers: ErrErased.
func Readers(view View, timeMs int64, rec *RecordState) ([]chain.Address, error) {
	if rec == nil {
		return nil, fmt.Errorf("state: readers without a record")
	}
	if rec.Erased {
		return nil, fmt.Errorf("%w: record %s was erased at height %d", ErrErased, rec.ID.Short(), rec.ErasedHeight)
	}
	grantees, err := Grantees(view, rec.Patient)
	if err != nil {
		return nil, err
	}
	var out []chain.Address
	for _, g := range grantees {
		// A grantee without provider rights at timeMs gets no key, whatever its consents say.
		if m, err := ActiveProvider(view, g, timeMs); err != nil {
			return nil, err
		} else if m == nil {
			continue
		}
		consents, err := ConsentsBetween(view, rec.Patient, g)
		if err != nil {
			return nil, err
		}
		for _, c := range consents {
			if c.ActiveAt(timeMs) && c.Scope.Covers(rec.Root, rec.ResourceType) {
				out = append(out, g)
				break
			}
		}
	}
	return out, nil
}
