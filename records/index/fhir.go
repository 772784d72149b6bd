package index

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/medledger/medledger/chain"
)

// The FHIR keys of the records this node imported, per patient:
//
//	f patient key              root 32 | latest 32 | content 32 | assigned id
//
// key is how an import names a resource ("Observation/obs-1", or for a resource without id its
// conditional request URL, its fullUrl or its content hash); the record service passes it keyed
// and hashed (records/binding.go: localNamer), so no FHIR id is kept in clear. Unlike the rest of the index these
// entries are not derived from the ledger (the ledger never sees a FHIR id): they are this node's
// memory of what it imported, written by the import after its anchors commit, so that importing
// the same resource again is a no-op and a changed one becomes a new version. Apply never touches
// them; Reset (another chain) drops them with everything else.
const tagFHIR = 'f'

// maxFHIRKey bounds a FHIR key kept as given; a longer one (a long conditional URL) is kept as
// its SHA-256.
const maxFHIRKey = 200

// fhirValLen is the fixed part of a FHIR entry's value; the assigned id follows (at most 64).
const fhirValLen = 32 + 32 + 32

// FHIREntry is what the index remembers of an imported resource.
type FHIREntry struct {
	// Root is the record's first version, Latest the version this node last imported.
	Root, Latest chain.Hash
	// Content is the SHA-256 of the stored resource (its canonical JSON) in Latest.
	Content [32]byte
	// AssignedID is the id the import gave a resource that came without one ("" if it had one).
	AssignedID string
}

func fhirKey(patient chain.Address, key string) []byte {
	if len(key) > maxFHIRKey {
		sum := sha256.Sum256([]byte(key))
		key = "#" + hex.EncodeToString(sum[:])
	}
	return append(append([]byte{tagFHIR}, patient[:]...), key...)
}

// FHIR returns what the index remembers of the resource key of patient (false: nothing).
func (x *Index) FHIR(patient chain.Address, key string) (FHIREntry, bool, error) {
	var e FHIREntry
	var ok bool
	err := x.s.db.View(func(txn *bdb.Txn) error {
		v, err := get(txn, fhirKey(patient, key))
		if err != nil || v == nil {
			return err
		}
		if len(v) < fhirValLen || len(v) > fhirValLen+64 {
			return fmt.Errorf("index: corrupt FHIR entry (%d bytes)", len(v))
		}
		copy(e.Root[:], v)
		copy(e.Latest[:], v[32:])
		copy(e.Content[:], v[64:])
		e.AssignedID = string(v[fhirValLen:])
		ok = true
		return nil
	})
	return e, ok, err
}

// PutFHIR remembers imported resources of patient, by key, in one or more Badger transactions.
func (x *Index) PutFHIR(patient chain.Address, entries map[string]FHIREntry) error {
	if x.closed.Load() {
		return errors.New("index: closed")
	}
	w := &writer{db: x.s.db, txn: x.s.db.NewTransaction(true)}
	defer func() { w.txn.Discard() }()
	for k, e := range entries {
		if len(e.AssignedID) > 64 {
			return fmt.Errorf("index: assigned id %q longer than 64", e.AssignedID)
		}
		v := make([]byte, 0, fhirValLen+len(e.AssignedID))
		v = append(append(append(append(v, e.Root[:]...), e.Latest[:]...), e.Content[:]...), e.AssignedID...)
		if err := w.set(fhirKey(patient, k), v); err != nil {
			return err
		}
	}
	if err := w.txn.Commit(); err != nil {
		return fmt.Errorf("index: commit FHIR keys: %w", err)
	}
	return nil
}
