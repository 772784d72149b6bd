// Package journal is a holder's durable journal of access entries it has decided (a fetch
// served or refused) but not yet seen logged on the ledger: one fsynced file per request id, so
// an access served just before a crash is still logged after restart; and a requester's
// journal of receipts (Receipts) for reads it received, in its own directory.
package journal

import "errors"

// Errors returned by this package; test them with errors.Is. The messages keep the "blobs:"
// prefix of the package they came from (sync/blobs).
var (
	// ErrCorrupt: a journal file does not hold a valid entry for the request id it is named
	// after.
	ErrCorrupt = errors.New("blobs: stored data is corrupt")
	// ErrTooLarge: an entry exceeds its limit.
	ErrTooLarge = errors.New("blobs: too large")
)
