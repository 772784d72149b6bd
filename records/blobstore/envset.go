package blobstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// A record's envelopes live in one file, envelopes/<record hex>: the canonical CBOR of an
// envelopeSet, its envelopes ordered by recipient key id, at most envelope.MaxEnvelopes. One
// file per record rather than one per recipient: an import writes and fsyncs a third as many
// files and creates no directory per record.

// setVersion is the encoding version of an envelope set file.
const setVersion = 1

// maxSetLen bounds an envelope set file.
const maxSetLen = envelope.MaxEnvelopes*envelope.MaxEnvelopeLen + 64

type envelopeSet struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	Envelopes []envelope.Envelope
}

func encodeSet(es []envelope.Envelope) []byte {
	return chain.Encode(&envelopeSet{Version: setVersion, Envelopes: es})
}

func decodeSet(data []byte) ([]envelope.Envelope, error) {
	var set envelopeSet
	if err := chain.DecodeCanonical("envelope set", data, maxSetLen, &set); err != nil {
		return nil, err
	}
	if set.Version != setVersion {
		return nil, fmt.Errorf("%w: envelope set version %d", chain.ErrUnknownVersion, set.Version)
	}
	if len(set.Envelopes) > envelope.MaxEnvelopes {
		return nil, fmt.Errorf("%d envelopes, limit %d", len(set.Envelopes), envelope.MaxEnvelopes)
	}
	for i := range set.Envelopes {
		if err := set.Envelopes[i].Validate(); err != nil {
			return nil, err
		}
		if i > 0 && bytes.Compare(set.Envelopes[i-1].RecipientKeyID[:], set.Envelopes[i].RecipientKeyID[:]) >= 0 {
			return nil, errors.New("envelopes not in strict key id order")
		}
	}
	return set.Envelopes, nil
}

// ReadEnvelopes reads record's envelopes from the store in dir without opening it (for tests
// and tools looking at a running node's store): none is an empty result.
func ReadEnvelopes(dir string, record chain.Hash) ([]envelope.Envelope, error) {
	return (&Store{envelopes: filepath.Join(dir, "envelopes")}).readSet(record)
}

// mergeEnvelopes returns set with add merged in (an envelope for a key id already there
// replaces it), ordered by key id, refusing more than envelope.MaxEnvelopes.
func mergeEnvelopes(set, add []envelope.Envelope) ([]envelope.Envelope, error) {
	out := slices.Clone(set)
	for _, e := range add {
		i, found := slices.BinarySearchFunc(out, e.RecipientKeyID, func(x envelope.Envelope, k chain.Hash) int {
			return bytes.Compare(x.RecipientKeyID[:], k[:])
		})
		if found {
			out[i] = e
			continue
		}
		if len(out) == envelope.MaxEnvelopes {
			return nil, fmt.Errorf("%w: more than %d envelopes", ErrTooLarge, envelope.MaxEnvelopes)
		}
		out = slices.Insert(out, i, e)
	}
	return out, nil
}

// pendingFile is a file written to a temp name, waiting to be fsynced and renamed to path.
type pendingFile struct {
	f         *os.File
	tmp, path string
}

// writeTemp writes data to a temp file in dir that is to become dir/name; the file stays open
// for syncAll.
func writeTemp(dir, name string, data []byte) (pendingFile, error) {
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return pendingFile{}, err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return pendingFile{}, err
	}
	return pendingFile{f: f, tmp: f.Name(), path: filepath.Join(dir, name)}, nil
}

// syncWorkers is how many fsyncs syncAll has in flight: concurrent fsyncs of many small files
// share the file system's journal commits instead of paying one each.
const syncWorkers = 16

// syncAll fsyncs and closes every file.
func syncAll(files []pendingFile) error {
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	workers := min(syncWorkers, len(files))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(files); i += workers {
				err := files[i].f.Sync()
				if cerr := files[i].f.Close(); err == nil {
					err = cerr
				}
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("blobs: sync: %w", err)
	}
	return nil
}

// migrateSuffix names an envelope set being converted from the old layout (a directory per
// record with one file per recipient): the set is written durably under <record>+migrateSuffix,
// the directory removed, then the file renamed to <record>. A crash anywhere in between is
// finished at the next open.
const migrateSuffix = ".migrating"

// migrateEnvelopes converts every record directory of the old layout in dir to a set file.
func migrateEnvelopes(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, migrateSuffix) && e.Type().IsRegular():
			// The set is durable: drop what is left of the directory, then put it in place.
			rec := filepath.Join(dir, strings.TrimSuffix(name, migrateSuffix))
			if err := os.RemoveAll(rec); err != nil {
				return err
			}
			if err := os.Rename(filepath.Join(dir, name), rec); err != nil {
				return err
			}
			if err := SyncDir(dir); err != nil {
				return err
			}
		case e.IsDir():
			if _, err := os.Stat(filepath.Join(dir, name+migrateSuffix)); err == nil {
				continue // handled by the case above, in this loop or the next open
			}
			if err := migrateRecordDir(dir, name); err != nil {
				return fmt.Errorf("migrate envelopes of %s: %w", name, err)
			}
		}
	}
	return nil
}

func migrateRecordDir(dir, name string) error {
	old := filepath.Join(dir, name)
	ents, err := os.ReadDir(old)
	if err != nil {
		return err
	}
	var set []envelope.Envelope
	for _, ent := range ents {
		if strings.HasPrefix(ent.Name(), TempPrefix) {
			continue
		}
		// An entry that is not an envelope could not be read before either: it is dropped.
		keyID, err := chain.ParseHash(ent.Name())
		if err != nil || ent.IsDir() {
			continue
		}
		e, err := readOldEnvelope(filepath.Join(old, ent.Name()), keyID)
		if err != nil {
			continue
		}
		if set, err = mergeEnvelopes(set, []envelope.Envelope{e}); err != nil {
			return err
		}
	}
	if len(set) > 0 {
		if err := WriteFileAtomic(dir, name+migrateSuffix, encodeSet(set)); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if len(set) > 0 {
		if err := os.Rename(filepath.Join(dir, name+migrateSuffix), old); err != nil {
			return err
		}
	}
	return SyncDir(dir)
}

func readOldEnvelope(path string, keyID chain.Hash) (envelope.Envelope, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return envelope.Envelope{}, err
	}
	if len(data) > envelope.MaxEnvelopeLen {
		return envelope.Envelope{}, fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, path, len(data))
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
