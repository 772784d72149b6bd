package state

import (
	"encoding/binary"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Per-window counters bound what one member can add to another's audit view (refused accesses,
// receipts) and how often a provider breaks the glass. A window is a fixed slice of block time:
// window w covers [w*size, (w+1)*size) milliseconds. Each (kind, subject, window) has its own
// counter key, so a new window never reads an old count; the key leaves state through the expiry
// index at a height by which its window has certainly ended: block times strictly increase, by
// at least 1 ms per block, so the block at height h + (windowEnd - time) is past windowEnd.

// Windows and limits.
const (
	// RefusalWindowMs is the window of refused-access limits: an hour.
	RefusalWindowMs = 60 * 60 * 1000
	// MaxRefusalsPerPatientWindow bounds the refused entries of one requester on one patient's
	// records per window (and at most one per record, see accessLog).
	MaxRefusalsPerPatientWindow = 16
	// ReceiptWindowMs is the window of the receipt limit: an hour.
	ReceiptWindowMs = 60 * 60 * 1000
	// MaxReceiptsPerPatientWindow bounds the receipts one requester records for one patient's
	// records per window; above it receipts are skipped, so a requester cannot flood the view.
	MaxReceiptsPerPatientWindow = 256
	// EmergencyWindowMs is the break-glass window: 24 hours of block time.
	EmergencyWindowMs = 24 * 60 * 60 * 1000
	// MaxEmergencyPerWindow is the hard cap of emergency accesses per provider per window, with
	// co-signatures; the first of a window needs none.
	MaxEmergencyPerWindow = 10
)

// Counter kinds: the byte after "rate/". Each kind has a fixed subject length.
const (
	rateRefusedRecord  byte = 'r' // subject: requester address, record id (a marker: limit 1)
	rateRefusedPatient byte = 'p' // subject: requester address, patient address
	rateReceipts       byte = 'c' // subject: requester address, patient address
	rateEmergency      byte = 'e' // subject: provider address
)

// rateRecord is one counter.
type rateRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Count   uint32
}

// Window returns the index of the window of size windowMs that contains block time timeMs.
func Window(timeMs, windowMs int64) uint64 {
	if timeMs <= 0 || windowMs <= 0 {
		return 0
	}
	return uint64(timeMs / windowMs)
}

func rateKey(kind byte, window uint64, subject ...[]byte) []byte {
	k := append([]byte(prefixRate), kind)
	for _, s := range subject {
		k = append(k, s...)
	}
	return binary.BigEndian.AppendUint64(k, window)
}

// rateCount reads the counter of kind and subject for the window containing timeMs.
func rateCount(view View, kind byte, windowMs, timeMs int64, subject ...[]byte) (uint32, error) {
	var r rateRecord
	if _, err := get(view, rateKey(kind, Window(timeMs, windowMs), subject...), "rate counter", &r); err != nil {
		return 0, err
	}
	return r.Count, nil
}

// bump adds one to the counter of kind and subject in the executing block's window, unless it
// is already at limit: then it reports false and writes nothing. A new counter is scheduled for
// deletion once its window has ended.
func (e *executor) bump(kind byte, windowMs int64, limit uint32, subject ...[]byte) (bool, error) {
	w := Window(e.h.Time, windowMs)
	key := rateKey(kind, w, subject...)
	var r rateRecord
	found, err := get(e.o, key, "rate counter", &r)
	if err != nil {
		return false, err
	}
	if r.Count >= limit {
		return false, nil
	}
	if !found {
		end := int64(w+1) * windowMs
		if end <= e.h.Time {
			return false, fmt.Errorf("state: window %d of %d ms ends at %d, before block time %d", w, windowMs, end, e.h.Time)
		}
		if err := e.expireAt(e.h.Height+uint64(end-e.h.Time), key); err != nil {
			return false, err
		}
	}
	r.Version, r.Count = RecordVersion, r.Count+1
	e.o.Set(key, chain.Encode(&r))
	return true, nil
}
