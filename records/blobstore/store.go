package blobstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// Store is a holder's durable, content-addressed store of record ciphertexts (dir/blobs/<hash
// hex>) and envelopes (dir/envelopes/<record hex>/<recipient key id hex>). Every write goes to a
// temp file that is fsynced and renamed into place, then the directory is fsynced, so a crash
// leaves either the whole file or none of it. Reads re-check what they return. A Store is safe
// for concurrent use, also by several Stores on the same directory within one process as far as
// single files go; DeleteRecord is atomic only with respect to the Store it is called on.
type Store struct {
	blobs, envelopes string
	// mu serializes changes to the directory tree (renames into place and deletions) so that a
	// DeleteRecord is not interleaved with a PutEnvelope of the same record. Reads take no lock:
	// every file appears by an atomic rename.
	mu sync.Mutex
}

// OpenStore opens (creating if needed, mode 0700) the store in dir and deletes torn writes left
// by a crash.
func OpenStore(dir string) (*Store, error) {
	s := &Store{blobs: filepath.Join(dir, "blobs"), envelopes: filepath.Join(dir, "envelopes")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blobs: open store: %w", err)
	}
	for _, d := range []string{s.blobs, s.envelopes} {
		if err := MkdirDurable(d); err != nil {
			return nil, fmt.Errorf("blobs: open store: %w", err)
		}
	}
	if _, err := RemoveTemps(s.blobs); err != nil {
		return nil, fmt.Errorf("blobs: open store: %w", err)
	}
	records, err := os.ReadDir(s.envelopes)
	if err != nil {
		return nil, fmt.Errorf("blobs: open store: %w", err)
	}
	for _, r := range records {
		if r.IsDir() {
			if _, err := RemoveTemps(filepath.Join(s.envelopes, r.Name())); err != nil {
				return nil, fmt.Errorf("blobs: open store: %w", err)
			}
		}
	}
	return s, nil
}

// Path is the file that holds the ciphertext addressed by hash.
func (s *Store) Path(hash chain.Hash) string { return filepath.Join(s.blobs, hash.String()) }

// Put stores a ciphertext and returns its address, chain.Sum256(ciphertext). Storing one that is
// already there is a no-op (a stored copy that no longer matches its address is replaced).
func (s *Store) Put(ciphertext []byte) (chain.Hash, error) {
	h := chain.Sum256(ciphertext)
	return h, s.put(h, ciphertext)
}

// PutExpect stores a ciphertext that must hash to hash (ErrHashMismatch otherwise).
func (s *Store) PutExpect(hash chain.Hash, ciphertext []byte) error {
	if got := chain.Sum256(ciphertext); got != hash {
		return fmt.Errorf("%w: got %s, want %s", ErrHashMismatch, got.Short(), hash.Short())
	}
	return s.put(hash, ciphertext)
}

func (s *Store) put(h chain.Hash, ciphertext []byte) error {
	if len(ciphertext) == 0 {
		return fmt.Errorf("%w: empty ciphertext", ErrMalformed)
	}
	if len(ciphertext) > envelope.MaxCiphertextLen {
		return fmt.Errorf("%w: ciphertext of %d bytes, limit %d", ErrTooLarge, len(ciphertext), envelope.MaxCiphertextLen)
	}
	if _, err := s.Get(h); err == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := WriteFileAtomic(s.blobs, h.String(), ciphertext); err != nil {
		return fmt.Errorf("blobs: store %s: %w", h.Short(), err)
	}
	return nil
}

// Get returns the ciphertext addressed by hash: ErrNotFound if there is none, ErrCorrupt if the
// stored bytes no longer hash to it (the file is left in place).
func (s *Store) Get(hash chain.Hash) ([]byte, error) {
	f, err := os.Open(s.Path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: blob %s", ErrNotFound, hash.Short())
	}
	if err != nil {
		return nil, fmt.Errorf("blobs: read %s: %w", hash.Short(), err)
	}
	defer f.Close()
	data, err := ReadLimited(f, envelope.MaxCiphertextLen)
	if err != nil {
		return nil, fmt.Errorf("blobs: read %s: %w", hash.Short(), err)
	}
	if got := chain.Sum256(data); got != hash {
		return nil, fmt.Errorf("%w: blob %s hashes to %s", ErrCorrupt, hash.Short(), got.Short())
	}
	return data, nil
}

// ReadLimited reads all of r, failing with ErrCorrupt beyond limit bytes.
func ReadLimited(r io.Reader, limit int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrCorrupt, limit)
	}
	return data, nil
}

// Has reports whether a ciphertext is stored at hash (without checking it).
func (s *Store) Has(hash chain.Hash) bool {
	fi, err := os.Stat(s.Path(hash))
	return err == nil && fi.Mode().IsRegular()
}

// Delete removes the ciphertext at hash; a missing one is not an error.
func (s *Store) Delete(hash chain.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteBlob(hash)
}

func (s *Store) deleteBlob(hash chain.Hash) error {
	err := os.Remove(s.Path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blobs: delete %s: %w", hash.Short(), err)
	}
	return SyncDir(s.blobs)
}

// RecordFiles is one record's ciphertext and envelopes, for PutBatch.
type RecordFiles struct {
	Record     chain.Hash
	Ciphertext []byte
	Envelopes  []envelope.Envelope
}

// PutBatch stores the ciphertexts and envelopes of several records as durably as Put and
// PutEnvelope, with fewer fsyncs: each file is written to a temp name, fsynced and renamed, and
// each directory touched is fsynced once at the end rather than after every file (an import of
// a hundred records otherwise spends most of its time in directory fsyncs). It returns the
// ciphertexts' addresses. On error some of the records may be stored, as with separate calls.
func (s *Store) PutBatch(recs []RecordFiles) ([]chain.Hash, error) {
	hashes := make([]chain.Hash, len(recs))
	for i, r := range recs {
		switch {
		case r.Record.IsZero():
			return nil, fmt.Errorf("%w: envelope for a zero record id", ErrMalformed)
		case len(r.Ciphertext) == 0:
			return nil, fmt.Errorf("%w: empty ciphertext", ErrMalformed)
		case len(r.Ciphertext) > envelope.MaxCiphertextLen:
			return nil, fmt.Errorf("%w: ciphertext of %d bytes, limit %d", ErrTooLarge, len(r.Ciphertext), envelope.MaxCiphertextLen)
		}
		for j := range r.Envelopes {
			if err := r.Envelopes[j].Validate(); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
			}
		}
		hashes[i] = chain.Sum256(r.Ciphertext)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	newDirs := false
	for i, r := range recs {
		if err := writeFileRenamed(s.blobs, hashes[i].String(), r.Ciphertext); err != nil {
			return nil, fmt.Errorf("blobs: store %s: %w", hashes[i].Short(), err)
		}
		if len(r.Envelopes) == 0 {
			continue
		}
		dir := s.recordDir(r.Record)
		if _, err := os.Stat(dir); err != nil {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("blobs: store envelopes of %s: %w", r.Record.Short(), err)
			}
			newDirs = true
		}
		for _, e := range r.Envelopes {
			if err := writeFileRenamed(dir, e.RecipientKeyID.String(), e.Encode()); err != nil {
				return nil, fmt.Errorf("blobs: store envelope of %s: %w", r.Record.Short(), err)
			}
		}
		if err := SyncDir(dir); err != nil {
			return nil, err
		}
	}
	if err := SyncDir(s.blobs); err != nil {
		return nil, err
	}
	if newDirs {
		if err := SyncDir(s.envelopes); err != nil {
			return nil, err
		}
	}
	return hashes, nil
}

func (s *Store) recordDir(record chain.Hash) string {
	return filepath.Join(s.envelopes, record.String())
}

// PutEnvelope stores e as record's envelope for e.RecipientKeyID, replacing any earlier one.
func (s *Store) PutEnvelope(record chain.Hash, e envelope.Envelope) error {
	if record.IsZero() {
		return fmt.Errorf("%w: envelope for a zero record id", ErrMalformed)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.recordDir(record)
	if err := MkdirDurable(dir); err != nil {
		return fmt.Errorf("blobs: store envelope of %s: %w", record.Short(), err)
	}
	if err := WriteFileAtomic(dir, e.RecipientKeyID.String(), e.Encode()); err != nil {
		return fmt.Errorf("blobs: store envelope of %s: %w", record.Short(), err)
	}
	return nil
}

// Envelope returns record's envelope for recipient key id keyID (ErrNotFound if none, ErrCorrupt
// if the stored one does not decode or names another recipient).
func (s *Store) Envelope(record, keyID chain.Hash) (envelope.Envelope, error) {
	e, err := readEnvelope(filepath.Join(s.recordDir(record), keyID.String()), keyID)
	if errors.Is(err, fs.ErrNotExist) {
		return envelope.Envelope{}, fmt.Errorf("%w: envelope of %s for %s", ErrNotFound, record.Short(), keyID.Short())
	}
	if err != nil {
		return envelope.Envelope{}, fmt.Errorf("blobs: envelope of %s: %w", record.Short(), err)
	}
	return e, nil
}

func readEnvelope(path string, keyID chain.Hash) (envelope.Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return envelope.Envelope{}, err
	}
	defer f.Close()
	data, err := ReadLimited(f, envelope.MaxEnvelopeLen)
	if err != nil {
		return envelope.Envelope{}, err
	}
	e, err := envelope.DecodeEnvelope(data)
	if err != nil {
		return envelope.Envelope{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	if e.RecipientKeyID != keyID {
		return envelope.Envelope{}, fmt.Errorf("%w: %s holds the envelope for %s", ErrCorrupt, path, e.RecipientKeyID.Short())
	}
	return *e, nil
}

// Envelopes returns every envelope stored for record, ordered by recipient key id; none is an
// empty result, not an error. A stored envelope that does not decode fails with ErrCorrupt.
func (s *Store) Envelopes(record chain.Hash) ([]envelope.Envelope, error) {
	dir := s.recordDir(record)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blobs: envelopes of %s: %w", record.Short(), err)
	}
	var out []envelope.Envelope
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, TempPrefix) {
			continue
		}
		keyID, err := chain.ParseHash(name)
		if err != nil || ent.IsDir() {
			return nil, fmt.Errorf("%w: unexpected entry %s", ErrCorrupt, filepath.Join(dir, name))
		}
		e, err := readEnvelope(filepath.Join(dir, name), keyID)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("blobs: envelopes of %s: %w", record.Short(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// DeleteRecord erases a record: its ciphertext (at ciphertextHash; zero skips it) and every
// envelope. Without the envelopes the data key is unrecoverable from this holder
// (crypto-shredding). Missing files are not an error.
func (s *Store) DeleteRecord(record, ciphertextHash chain.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Envelopes first: once they are gone the ciphertext is unreadable even if deleting it fails.
	if !record.IsZero() {
		if err := os.RemoveAll(s.recordDir(record)); err != nil {
			return fmt.Errorf("blobs: erase envelopes of %s: %w", record.Short(), err)
		}
		if err := SyncDir(s.envelopes); err != nil {
			return err
		}
	}
	if !ciphertextHash.IsZero() {
		return s.deleteBlob(ciphertextHash)
	}
	return nil
}
