package blobstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// Store is a holder's durable, content-addressed store of record ciphertexts (dir/blobs/<hash
// hex>) and envelopes (dir/envelopes/<record hex>, one file holding all of a record's envelopes,
// envset.go). Every write goes to a temp file that is fsynced and renamed into place, then the
// directory is fsynced, so a crash leaves either the whole file or none of it. Reads re-check what they return. A Store is safe
// for concurrent use, also by several Stores on the same directory within one process as far as
// single files go; DeleteRecord is atomic only with respect to the Store it is called on.
type Store struct {
	blobs, envelopes string
	// mu serializes changes to the directory tree (renames into place and deletions) so that a
	// DeleteRecord is not interleaved with a PutEnvelope of the same record, and two updates of
	// one record's envelope set do not lose each other's envelope. Reads take no lock:
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
	if _, err := RemoveTemps(s.envelopes); err != nil {
		return nil, fmt.Errorf("blobs: open store: %w", err)
	}
	if err := migrateEnvelopes(s.envelopes); err != nil {
		return nil, fmt.Errorf("blobs: open store: %w", err)
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

// ReadLimited reads all of r, failing with ErrCorrupt beyond limit bytes. A file is read into
// a buffer of its size (and a little room to see it end) rather than a doubling one: a 1 MiB
// record would otherwise cost a dozen allocations and twice its size in copies per read.
func ReadLimited(r io.Reader, limit int) ([]byte, error) {
	lr := io.LimitReader(r, int64(limit)+1)
	size := 512
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Size() > 0 && fi.Size() <= int64(limit) {
			size = int(fi.Size()) + 512
		}
	}
	data := make([]byte, 0, size)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)] // the file grew: let append choose the room
		}
		n, err := lr.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
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
// PutEnvelope, with far fewer fsyncs: every file is written to a temp name, the temp files are
// fsynced together (concurrently, so the file system commits them in few journal
// transactions), renamed into place, and each of the two directories is fsynced once. A
// record's envelopes are merged with those already stored for it. It returns the ciphertexts'
// addresses (a nil ciphertext stores only envelopes, and its address is zero). On error some of
// the records may be stored, as with separate calls.
func (s *Store) PutBatch(recs []RecordFiles) ([]chain.Hash, error) {
	hashes := make([]chain.Hash, len(recs))
	for i, r := range recs {
		switch {
		case r.Record.IsZero():
			return nil, fmt.Errorf("%w: envelope for a zero record id", ErrMalformed)
		case r.Ciphertext == nil && len(r.Envelopes) == 0:
			return nil, fmt.Errorf("%w: nothing to store for %s", ErrMalformed, r.Record.Short())
		case r.Ciphertext != nil && len(r.Ciphertext) == 0:
			return nil, fmt.Errorf("%w: empty ciphertext", ErrMalformed)
		case len(r.Ciphertext) > envelope.MaxCiphertextLen:
			return nil, fmt.Errorf("%w: ciphertext of %d bytes, limit %d", ErrTooLarge, len(r.Ciphertext), envelope.MaxCiphertextLen)
		}
		for j := range r.Envelopes {
			if err := r.Envelopes[j].Validate(); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
			}
		}
		if r.Ciphertext != nil {
			hashes[i] = chain.Sum256(r.Ciphertext)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var files []pendingFile
	defer func() {
		for _, f := range files {
			_ = os.Remove(f.tmp) // those renamed are gone already
		}
	}()
	// A record may appear more than once (an envelope update after its ciphertext): its
	// envelope set is built up across the batch and written once.
	sets := map[chain.Hash][]envelope.Envelope{}
	var order []chain.Hash
	for i, r := range recs {
		if r.Ciphertext != nil {
			f, err := writeTemp(s.blobs, hashes[i].String(), r.Ciphertext)
			if err != nil {
				return nil, fmt.Errorf("blobs: store %s: %w", hashes[i].Short(), err)
			}
			files = append(files, f)
		}
		if len(r.Envelopes) == 0 {
			continue
		}
		set, ok := sets[r.Record]
		if !ok {
			var err error
			if set, err = s.readSet(r.Record); err != nil {
				return nil, err
			}
			order = append(order, r.Record)
		}
		set, err := mergeEnvelopes(set, r.Envelopes)
		if err != nil {
			return nil, fmt.Errorf("blobs: envelopes of %s: %w", r.Record.Short(), err)
		}
		sets[r.Record] = set
	}
	for _, rec := range order {
		f, err := writeTemp(s.envelopes, rec.String(), encodeSet(sets[rec]))
		if err != nil {
			return nil, fmt.Errorf("blobs: store envelopes of %s: %w", rec.Short(), err)
		}
		files = append(files, f)
	}
	if err := syncAll(files); err != nil {
		return nil, err
	}
	for len(files) > 0 {
		f := files[0]
		if err := os.Rename(f.tmp, f.path); err != nil {
			return nil, fmt.Errorf("blobs: store %s: %w", f.path, err)
		}
		files = files[1:]
	}
	if err := SyncDir(s.blobs); err != nil {
		return nil, err
	}
	if len(order) > 0 {
		if err := SyncDir(s.envelopes); err != nil {
			return nil, err
		}
	}
	return hashes, nil
}

// recordFile is the file that holds all of record's envelopes.
func (s *Store) recordFile(record chain.Hash) string {
	return filepath.Join(s.envelopes, record.String())
}

// PutEnvelope stores e as record's envelope for e.RecipientKeyID, replacing any earlier one.
func (s *Store) PutEnvelope(record chain.Hash, e envelope.Envelope) error {
	_, err := s.PutBatch([]RecordFiles{{Record: record, Envelopes: []envelope.Envelope{e}}})
	return err
}

// Envelope returns record's envelope for recipient key id keyID (ErrNotFound if none, ErrCorrupt
// if the stored set does not decode).
func (s *Store) Envelope(record, keyID chain.Hash) (envelope.Envelope, error) {
	set, err := s.readSet(record)
	if err != nil {
		return envelope.Envelope{}, err
	}
	for _, e := range set {
		if e.RecipientKeyID == keyID {
			return e, nil
		}
	}
	return envelope.Envelope{}, fmt.Errorf("%w: envelope of %s for %s", ErrNotFound, record.Short(), keyID.Short())
}

// Envelopes returns every envelope stored for record, ordered by recipient key id; none is an
// empty result, not an error. A stored set that does not decode fails with ErrCorrupt.
func (s *Store) Envelopes(record chain.Hash) ([]envelope.Envelope, error) {
	return s.readSet(record)
}

// RemoveEnvelope deletes record's envelope for keyID, if stored (for tests and tools: a grantee's
// envelope the author must wrap again on demand).
func (s *Store) RemoveEnvelope(record, keyID chain.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := s.readSet(record)
	if err != nil {
		return err
	}
	kept := slices.DeleteFunc(set, func(e envelope.Envelope) bool { return e.RecipientKeyID == keyID })
	if len(kept) == 0 {
		if err := os.Remove(s.recordFile(record)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return SyncDir(s.envelopes)
	}
	return WriteFileAtomic(s.envelopes, record.String(), encodeSet(kept))
}

// readSet reads record's envelope set: nil if there is none.
func (s *Store) readSet(record chain.Hash) ([]envelope.Envelope, error) {
	path := s.recordFile(record)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blobs: envelopes of %s: %w", record.Short(), err)
	}
	defer f.Close()
	data, err := ReadLimited(f, maxSetLen)
	if err != nil {
		return nil, fmt.Errorf("blobs: envelopes of %s: %w", record.Short(), err)
	}
	set, err := decodeSet(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	return set, nil
}

// DeleteRecord erases a record: its ciphertext (at ciphertextHash; zero skips it) and every
// envelope. Without the envelopes the data key is unrecoverable from this holder
// (crypto-shredding). Missing files are not an error.
func (s *Store) DeleteRecord(record, ciphertextHash chain.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Envelopes first: once they are gone the ciphertext is unreadable even if deleting it fails.
	if !record.IsZero() {
		if err := os.RemoveAll(s.recordFile(record)); err != nil {
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
