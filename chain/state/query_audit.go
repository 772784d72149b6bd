package state

import (
	"github.com/medledger/medledger/chain"
)

// ReceiptGraceBlocks is how many blocks a holder has, after the requester's receipt, to log the
// read before the patient's view flags it as unlogged by the holder.
const ReceiptGraceBlocks = 20

// RecordOfCiphertext returns the id of the record whose anchor named ciphertext, or zero. The
// index outlives erasure, so a node erasing a record deletes a blob only if this names the
// erased record.
func RecordOfCiphertext(view View, ciphertext chain.Hash) (chain.Hash, error) {
	var r blobRecord
	if _, err := get(view, blobKey(ciphertext), "blob index", &r); err != nil {
		return chain.Hash{}, err
	}
	return r.Record, nil
}

// Receipt returns the requester's receipt for request id requestID, or nil, nil.
func Receipt(view View, requestID chain.Hash) (*ReceiptRecord, error) {
	var r ReceiptRecord
	found, err := get(view, receiptKey(requestID), "receipt", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// RefusalThrottled reports whether the ledger would skip a refused entry of requester for rec in
// the window containing block time timeMs (one per record, MaxRefusalsPerPatientWindow per
// patient): a holder may drop such an entry from its journal.
func RefusalThrottled(view View, requester chain.Address, rec *RecordState, timeMs int64) (bool, error) {
	perRecord, err := rateCount(view, rateRefusedRecord, RefusalWindowMs, timeMs, requester[:], rec.ID[:])
	if err != nil {
		return false, err
	}
	perPatient, err := rateCount(view, rateRefusedPatient, RefusalWindowMs, timeMs, requester[:], rec.Patient[:])
	if err != nil {
		return false, err
	}
	return perRecord >= 1 || perPatient >= MaxRefusalsPerPatientWindow, nil
}

// AccessView is one read attempt as the patient's audit shows it: the holder's entry, the
// requester's receipt, or both, joined by request id, with what the two say together.
type AccessView struct {
	RequestID chain.Hash
	Record    chain.Hash
	Patient   chain.Address
	Entry     *AccessRecord  // logged by the holder; nil if not (yet)
	Receipt   *ReceiptRecord // recorded by the requester; nil if none
	// Emergency is the break-glass access an emergency read was made under (its ReasonCode,
	// CoSigned and AfterRevocation flags), or nil.
	Emergency *ConsentRecord
	// UnloggedByHolder: the requester received the record, and ReceiptGraceBlocks after its
	// receipt the holder has logged nothing.
	UnloggedByHolder bool
	// RefusedButReceived: the holder logged a refusal, yet the requester has a receipt.
	RefusedButReceived bool
}

// LoggedBy says who put the read on the ledger: "holder", "requester" or "both".
func (a *AccessView) LoggedBy() string {
	switch {
	case a.Entry != nil && a.Receipt != nil:
		return "both"
	case a.Entry != nil:
		return "holder"
	}
	return "requester"
}

// AccessOf joins the holder's entry and the requester's receipt of request requestID, and
// derives the flags from the current tip height; nil, nil when there is neither.
func AccessOf(view View, requestID chain.Hash) (*AccessView, error) {
	entry, err := Access(view, requestID)
	if err != nil {
		return nil, err
	}
	receipt, err := Receipt(view, requestID)
	if err != nil {
		return nil, err
	}
	if entry == nil && receipt == nil {
		return nil, nil
	}
	a := &AccessView{RequestID: requestID, Entry: entry, Receipt: receipt}
	var consent chain.Hash
	if entry != nil {
		a.Record, a.Patient, consent = entry.Record, entry.Patient, entry.Consent
	} else {
		a.Record, a.Patient, consent = receipt.Record, receipt.Patient, receipt.Consent
	}
	if consent.IsZero() && receipt != nil {
		consent = receipt.Consent
	}
	if !consent.IsZero() {
		if a.Emergency, err = Consent(view, consent); err != nil {
			return nil, err
		}
	}
	if receipt != nil {
		if entry == nil {
			height, _, err := Tip(view)
			if err != nil {
				return nil, err
			}
			a.UnloggedByHolder = height >= receipt.Height+ReceiptGraceBlocks
		} else {
			a.RefusedButReceived = entry.Outcome == chain.AccessRefused
		}
	}
	return a, nil
}

// AccessesOf returns the audit view of each of requestIDs that concerns patient's records, in
// the order given; ids with nothing logged, or of another patient, are left out. A node or
// wallet learns the ids from access-log and access-receipt transactions.
func AccessesOf(view View, patient chain.Address, requestIDs []chain.Hash) ([]*AccessView, error) {
	var out []*AccessView
	for _, id := range requestIDs {
		a, err := AccessOf(view, id)
		if err != nil {
			return nil, err
		}
		if a != nil && a.Patient == patient {
			out = append(out, a)
		}
	}
	return out, nil
}
