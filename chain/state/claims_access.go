package state

import (
	"encoding/binary"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Payer access to sealed claims, and the payer's claim log.
//
//	claimrec/<32B record root>       claimRecIndex: the claims that name a sealed Claim record
//	                                 (by its first version), at most MaxClaimsPerRecord
//	claimlog/head/<20B payer>        payerLogHead: how many claims were filed with the payer
//	claimlog/item/<20B payer><8B seq>
//	                                 PayerLogEntry: the seq-th claim filed with it
//
// A claim names its payer; the sealed FHIR Claim it names is a record of the patient, so without
// an index CheckAccess (which sees a record, not a claim) could not find the claims that let a
// payer read it. The index is keyed by the record's root so that an amendment of the sealed claim
// stays readable by the payer, as consents cover amendments through the root too.
var (
	prefixClaimRec     = "claimrec/"
	prefixPayerLogHead = "claimlog/head/"
	prefixPayerLogItem = "claimlog/item/"
)

// MaxClaimsPerRecord bounds the claims that may name one sealed claim record (a resubmission
// after a denial names the same record), so CheckAccess reads a bounded list.
const MaxClaimsPerRecord = 8

// PurposePayment is the access purpose of a payer's read of a claim it is named on: the HL7
// PurposeOfUse code for healthcare payment, beside "TREAT" and "ETREAT". A payer may read for
// this purpose or none ("" accepts any, as for consents); any other purpose is refused: the
// claim lets a payer read for payment, not for treatment or research.
const PurposePayment = "HPAYMT"

func claimRecKey(root chain.Hash) []byte { return append([]byte(prefixClaimRec), root[:]...) }

// PayerLogHeadKey is the state key of payer's claim-log length.
func PayerLogHeadKey(payer chain.Address) []byte {
	return append([]byte(prefixPayerLogHead), payer[:]...)
}

// PayerLogEntryKey is the state key of entry seq of payer's claim log.
func PayerLogEntryKey(payer chain.Address, seq uint64) []byte {
	k := append([]byte(prefixPayerLogItem), payer[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

type claimRecIndex struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Claims  []chain.Hash
}

type payerLogHead struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Count   uint64
}

// PayerLogEntry is one claim filed with a payer.
type PayerLogEntry struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Claim   chain.Hash
	Height  uint64
}

func (r *claimRecIndex) version() uint8 { return r.Version }
func (r *payerLogHead) version() uint8  { return r.Version }
func (r *PayerLogEntry) version() uint8 { return r.Version }

// indexClaim records a new claim under its sealed record's root and in its payer's log. It
// refuses (ErrClaimRecord) a record already named by MaxClaimsPerRecord claims.
func (e *executor) indexClaim(c *ClaimRecord, root chain.Hash) error {
	idx := &claimRecIndex{}
	if _, err := get(e.o, claimRecKey(root), "claim record index", idx); err != nil {
		return err
	}
	if len(idx.Claims) >= MaxClaimsPerRecord {
		return fmt.Errorf("%w: record %s is already named by %d claims, the limit", ErrClaimRecord, root.Short(), len(idx.Claims))
	}
	idx.Version, idx.Claims = RecordVersion, append(idx.Claims, c.ID)
	e.o.Set(claimRecKey(root), chain.Encode(idx))
	var h payerLogHead
	if _, err := get(e.o, PayerLogHeadKey(c.Payer), "payer claim log head", &h); err != nil {
		return err
	}
	e.o.Set(PayerLogEntryKey(c.Payer, h.Count), chain.Encode(&PayerLogEntry{Version: RecordVersion, Claim: c.ID, Height: e.h.Height}))
	e.o.Set(PayerLogHeadKey(c.Payer), chain.Encode(&payerLogHead{Version: RecordVersion, Count: h.Count + 1}))
	return nil
}

// ClaimsOfRecord returns the ids of the claims that name the sealed record with root root, in
// filing order.
func ClaimsOfRecord(view View, root chain.Hash) ([]chain.Hash, error) {
	idx := &claimRecIndex{}
	if _, err := get(view, claimRecKey(root), "claim record index", idx); err != nil {
		return nil, err
	}
	if len(idx.Claims) > MaxClaimsPerRecord {
		return nil, fmt.Errorf("state: stored claim record index has %d entries, limit %d", len(idx.Claims), MaxClaimsPerRecord)
	}
	return idx.Claims, nil
}

// PayerLogLength returns how many claims were filed with payer.
func PayerLogLength(view View, payer chain.Address) (uint64, error) {
	var h payerLogHead
	if _, err := get(view, PayerLogHeadKey(payer), "payer claim log head", &h); err != nil {
		return 0, err
	}
	return h.Count, nil
}

// PayerLog returns up to limit entries of payer's claim log from seq from on.
func PayerLog(view View, payer chain.Address, from uint64, limit int) ([]PayerLogEntry, error) {
	n, err := PayerLogLength(view, payer)
	if err != nil {
		return nil, err
	}
	var out []PayerLogEntry
	for seq := from; seq < n && len(out) < limit; seq++ {
		var e PayerLogEntry
		found, err := get(view, PayerLogEntryKey(payer, seq), "payer claim log entry", &e)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("state: payer %s's claim log entry %d missing (state corrupt?)", payer, seq)
		}
		out = append(out, e)
	}
	return out, nil
}

// payerNamedOn returns the first claim on the sealed record rec (by its root) that names payer,
// or zero.
func payerNamedOn(view View, payer chain.Address, rec *RecordState) (chain.Hash, error) {
	ids, err := ClaimsOfRecord(view, rec.Root)
	if err != nil {
		return chain.Hash{}, err
	}
	for _, id := range ids {
		c, err := Claim(view, id)
		if err != nil {
			return chain.Hash{}, err
		}
		if c == nil {
			return chain.Hash{}, fmt.Errorf("state: indexed claim %s missing (state corrupt?)", id.Short())
		}
		if c.Payer == payer && c.Patient == rec.Patient {
			return id, nil
		}
	}
	return chain.Hash{}, nil
}

// checkPayerAccess is CheckAccess for a requester registered as a payer: an active payer may
// read a record a claim names it on, for PurposePayment (or any: ""), never as an emergency.
func checkPayerAccess(view View, timeMs int64, payer *MemberRecord, rec *RecordState, purpose string, emergency bool) error {
	switch {
	case !payer.ActiveAt(timeMs):
		return fmt.Errorf("%w: payer %s is not active (left, revoked or lapsed)", ErrNoConsent, payer.ID)
	case emergency:
		return fmt.Errorf("%w: payer %s may not read as an emergency", ErrNoConsent, payer.ID)
	case purpose != "" && purpose != PurposePayment:
		return fmt.Errorf("%w: a payer reads claims for purpose %q, the request is for %q", ErrNoConsent, PurposePayment, purpose)
	}
	id, err := payerNamedOn(view, payer.ID, rec)
	if err != nil {
		return err
	}
	if id.IsZero() {
		return fmt.Errorf("%w: no claim names payer %s on record %s", ErrNoConsent, payer.ID, rec.ID.Short())
	}
	return nil
}

// ClaimPayers returns the active payers at block time timeMs that a claim names on rec (by its
// root): the payers a node wraps the sealed claim's data key for, beside Readers.
func ClaimPayers(view View, timeMs int64, rec *RecordState) ([]chain.Address, error) {
	if rec == nil || rec.Erased {
		return nil, nil
	}
	ids, err := ClaimsOfRecord(view, rec.Root)
	if err != nil {
		return nil, err
	}
	var out []chain.Address
	for _, id := range ids {
		c, err := Claim(view, id)
		if err != nil {
			return nil, err
		}
		if c == nil || c.Patient != rec.Patient {
			continue
		}
		m, err := ActivePayer(view, c.Payer, timeMs)
		if err != nil {
			return nil, err
		}
		if m != nil && !containsAddr(out, c.Payer) {
			out = append(out, c.Payer)
		}
	}
	return out, nil
}

func containsAddr(as []chain.Address, a chain.Address) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// Reader returns the member at a if it reads records through the record service: a provider,
// or a payer (which reads only the sealed claims that name it). nil, nil otherwise.
func Reader(view View, a chain.Address) (*MemberRecord, error) {
	m, err := Member(view, a)
	if err != nil || m == nil || (m.Role != chain.RoleProvider && m.Role != chain.RolePayer) {
		return nil, err
	}
	return m, nil
}
