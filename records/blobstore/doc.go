// Package blobstore is a holder's durable, content-addressed store of record ciphertexts and
// their key envelopes.
//
// Nothing here decrypts: a ciphertext is addressed by its SHA-256 (chain.Sum256), which is the
// CiphertextHash a RecordAnchor fixes on the ledger, so every copy can be checked before it is
// stored or opened. Envelopes (a record's data key wrapped to one recipient) are kept per record
// and recipient key id; erasing a record deletes the ciphertext and every envelope
// (crypto-shredding). Every write is temp file, fsync, rename, directory fsync; the same durable
// file primitives (WriteFileAtomic and friends) serve the access journal (records/journal).
package blobstore

import "errors"

// Errors returned by this package; test them with errors.Is. The messages keep the "blobs:"
// prefix of the package they came from (sync/blobs), so logs and API answers read as before.
var (
	// ErrNotFound: the store has no such blob or envelope.
	ErrNotFound = errors.New("blobs: not found")
	// ErrCorrupt: a stored file does not hold what its name says (the bytes do not hash to the
	// address, or do not decode), or is larger than anything this store writes.
	ErrCorrupt = errors.New("blobs: stored data is corrupt")
	// ErrHashMismatch: a ciphertext does not hash to the address it was given with.
	ErrHashMismatch = errors.New("blobs: ciphertext does not match its hash")
	// ErrTooLarge: a ciphertext exceeds its limit.
	ErrTooLarge = errors.New("blobs: too large")
	// ErrMalformed: a ciphertext or envelope is not what this package stores.
	ErrMalformed = errors.New("blobs: malformed message")
)
