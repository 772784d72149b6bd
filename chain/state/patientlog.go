package state

import (
	"encoding/binary"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// The patient log: for every patient, the ledger keeps a numbered list of the state items that
// concern them (record versions anchored, consents and emergency accesses, access entries,
// receipts), and its length. A wallet that trusts one header can then check that a node told it
// everything: it proves the length against the header's state root, proves each entry 0..n-1,
// and proves each item the entries name. An omitted item is a missing entry, which the length
// gives away; an entry cannot be forged or reordered without breaking its proof. Items change in
// place (a consent revoked, a record erased or superseded) and the wallet reads their value at
// the header it trusts, so changes need no entries of their own.
//
//	plog/head/<20B patient>            patientLogHead: how many entries the patient's log holds
//	plog/item/<20B patient><8B seq>    PatientLogEntry: the seq-th item (big-endian seq from 0)
//
// The log costs two state writes per item. Registration is not logged: the patient's member
// record is its own proof, and enrolments, the ledger's most frequent transaction, stay as cheap
// as they were.
var (
	prefixLogHead = "plog/head/"
	prefixLogItem = "plog/item/"
)

// LogKind says what kind of state item a patient-log entry names.
type LogKind uint8

const (
	LogRecord  LogKind = 1 // record/<id>: a record version anchored for the patient
	LogConsent LogKind = 2 // consent/<id>: a consent the patient granted, or an emergency access to them
	LogAccess  LogKind = 3 // access/<id>: a holder's access entry for one of the patient's records
	LogReceipt LogKind = 4 // receipt/<id>: a requester's receipt of a read of one of them
	// Billing (billing_records.go).
	LogMembership LogKind = 5 // mship/<id>: a membership that counts the patient among its members
	LogPayment    LogKind = 6 // payment/<id>: a payment or refund settling such a membership
	LogClaim      LogKind = 7 // claim/<id>: a claim filed in the patient's name
)

func (k LogKind) String() string {
	switch k {
	case LogRecord:
		return "record"
	case LogConsent:
		return "consent"
	case LogAccess:
		return "access"
	case LogReceipt:
		return "receipt"
	case LogMembership:
		return "membership"
	case LogPayment:
		return "payment"
	case LogClaim:
		return "claim"
	}
	return fmt.Sprintf("log-kind-%d", uint8(k))
}

// ItemKey is the state key of the item an entry of kind k with id names.
func ItemKey(k LogKind, id chain.Hash) ([]byte, error) {
	switch k {
	case LogRecord:
		return recordKey(id), nil
	case LogConsent:
		return consentKey(id), nil
	case LogAccess:
		return accessKey(id), nil
	case LogReceipt:
		return receiptKey(id), nil
	case LogMembership:
		return mshipKey(id), nil
	case LogPayment:
		return paymentKey(id), nil
	case LogClaim:
		return claimKey(id), nil
	}
	return nil, fmt.Errorf("state: unknown patient-log kind %d", uint8(k))
}

// PatientLogHeadKey is the state key of patient's log length, for proofs.
func PatientLogHeadKey(patient chain.Address) []byte {
	return append([]byte(prefixLogHead), patient[:]...)
}

// PatientLogEntryKey is the state key of entry seq of patient's log, for proofs.
func PatientLogEntryKey(patient chain.Address, seq uint64) []byte {
	k := append([]byte(prefixLogItem), patient[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

type patientLogHead struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Count   uint64
}

// PatientLogEntry is one entry of a patient's log.
type PatientLogEntry struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Kind    LogKind
	ID      chain.Hash // the item's id: record, consent, or access request
	Height  uint64     // the block that added it
}

func (r *patientLogHead) version() uint8  { return r.Version }
func (r *PatientLogEntry) version() uint8 { return r.Version }

// DecodePatientLogLength decodes the value at PatientLogHeadKey (nil: an empty log), for a
// wallet that proved it.
func DecodePatientLogLength(data []byte) (uint64, error) {
	if data == nil {
		return 0, nil
	}
	var h patientLogHead
	if err := decodeProved("patient log head", data, &h); err != nil {
		return 0, err
	}
	return h.Count, nil
}

// DecodePatientLogEntry decodes the value at PatientLogEntryKey, for a wallet that proved it.
func DecodePatientLogEntry(data []byte) (*PatientLogEntry, error) {
	var e PatientLogEntry
	if err := decodeProved("patient log entry", data, &e); err != nil {
		return nil, err
	}
	if _, err := ItemKey(e.Kind, e.ID); err != nil {
		return nil, err
	}
	return &e, nil
}

// decodeProved decodes a stored value that arrived from elsewhere, with the checks get makes.
func decodeProved(what string, data []byte, v versioned) error {
	if data == nil {
		return fmt.Errorf("state: %s is absent", what)
	}
	if err := chain.DecodeStored(what, data, maxRecordBytes, v); err != nil {
		return fmt.Errorf("state: %s: %w", what, err)
	}
	if v.version() != RecordVersion {
		return fmt.Errorf("state: %s has version %d, this node understands %d", what, v.version(), RecordVersion)
	}
	return nil
}

// PatientLogLength returns how many entries patient's log holds.
func PatientLogLength(view View, patient chain.Address) (uint64, error) {
	var h patientLogHead
	if _, err := get(view, PatientLogHeadKey(patient), "patient log head", &h); err != nil {
		return 0, err
	}
	return h.Count, nil
}

// PatientLog returns up to limit entries of patient's log from seq from on.
func PatientLog(view View, patient chain.Address, from uint64, limit int) ([]PatientLogEntry, error) {
	n, err := PatientLogLength(view, patient)
	if err != nil {
		return nil, err
	}
	var out []PatientLogEntry
	for seq := from; seq < n && len(out) < limit; seq++ {
		var e PatientLogEntry
		found, err := get(view, PatientLogEntryKey(patient, seq), "patient log entry", &e)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("state: patient %s's log has %d entries but no entry %d (state corrupt?)", patient, n, seq)
		}
		out = append(out, e)
	}
	return out, nil
}

// logForPatient appends an item to patient's log.
func (e *executor) logForPatient(patient chain.Address, kind LogKind, id chain.Hash) error {
	var h patientLogHead
	if _, err := get(e.o, PatientLogHeadKey(patient), "patient log head", &h); err != nil {
		return err
	}
	e.o.Set(PatientLogEntryKey(patient, h.Count), chain.Encode(&PatientLogEntry{Version: RecordVersion, Kind: kind, ID: id, Height: e.h.Height}))
	e.o.Set(PatientLogHeadKey(patient), chain.Encode(&patientLogHead{Version: RecordVersion, Count: h.Count + 1}))
	return nil
}
