package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records/blobstore"
)

// maxJournalEntryBytes bounds an encoded AccessEntry: the request, the outcome and the reason.
const maxJournalEntryBytes = chain.MaxAccessRequestBytes + chain.MaxReasonLen + 64

// maxReceiptBytes bounds an encoded AccessReceipt: the request and a hash.
const maxReceiptBytes = chain.MaxAccessRequestBytes + 64

// corruptDir is the journal subdirectory that entries which fail to decode are moved to.
const corruptDir = "corrupt"

// Journal durably holds access entries a holder has decided but not yet seen logged on the
// ledger: one file per request id (dir/<request id hex>, the canonical encoding of the entry).
// Add returns only once the entry is on disk, so an access served just before a crash is still
// submitted after restart (Pending); Remove forgets it once the ledger has it. Safe for
// concurrent use.
type Journal struct{ d *dir[chain.AccessEntry] }

// Open opens (creating if needed, mode 0700) the journal in dir.
func Open(path string) (*Journal, error) {
	d, err := openDir(path, "access entry", maxJournalEntryBytes,
		func(e *chain.AccessEntry) chain.Hash { return e.Request.ID() },
		func(e *chain.AccessEntry) error { return e.Validate() })
	if err != nil {
		return nil, err
	}
	return &Journal{d}, nil
}

// SetLogger sets where Pending reports the corrupt entries it sets aside (slog.Default if never
// set).
func (j *Journal) SetLogger(l *slog.Logger) { j.d.setLogger(l) }

// Add durably records e (the file and the directory are fsynced before it returns). Adding an
// entry for a request id already in the journal replaces it.
func (j *Journal) Add(e chain.AccessEntry) error { return j.d.add(&e) }

// Has reports whether the journal holds an entry for requestID.
func (j *Journal) Has(requestID chain.Hash) (bool, error) { return j.d.has(requestID) }

// Pending returns every entry in the journal, ordered by request id. Torn writes (temp files
// left by a crash) are deleted. A file that does not hold a valid entry for the request id it is
// named after is not returned and does not fail the call: it is moved to dir/corrupt and
// reported on the journal's logger.
func (j *Journal) Pending() ([]chain.AccessEntry, error) { return j.d.pending() }

// Remove forgets the entry for requestID (once the ledger holds it); a missing one is not an
// error.
func (j *Journal) Remove(requestID chain.Hash) error { return j.d.remove(requestID) }

// Receipts durably holds the receipts a requester node has recorded for reads it received
// from remote holders but not yet seen on the ledger, with the same layout and guarantees as
// Journal (one fsynced file per request id). It lives in its own directory.
type Receipts struct{ d *dir[chain.AccessReceipt] }

// OpenReceipts opens (creating if needed, mode 0700) the receipt journal in dir.
func OpenReceipts(path string) (*Receipts, error) {
	d, err := openDir(path, "access receipt", maxReceiptBytes,
		func(r *chain.AccessReceipt) chain.Hash { return r.Request.ID() },
		func(r *chain.AccessReceipt) error { return r.Validate() })
	if err != nil {
		return nil, err
	}
	return &Receipts{d}, nil
}

// SetLogger is Journal.SetLogger.
func (j *Receipts) SetLogger(l *slog.Logger) { j.d.setLogger(l) }

// Add durably records rc, as Journal.Add.
func (j *Receipts) Add(rc chain.AccessReceipt) error { return j.d.add(&rc) }

// Pending returns every receipt in the journal, as Journal.Pending.
func (j *Receipts) Pending() ([]chain.AccessReceipt, error) { return j.d.pending() }

// Remove forgets the receipt for requestID, as Journal.Remove.
func (j *Receipts) Remove(requestID chain.Hash) error { return j.d.remove(requestID) }

// dir is the file layout both journals share: one file per request id, written atomically and
// fsynced.
type dir[T any] struct {
	path     string
	what     string
	maxBytes int
	id       func(*T) chain.Hash
	validate func(*T) error
	mu       sync.Mutex
	log      *slog.Logger
}

func openDir[T any](path, what string, maxBytes int, id func(*T) chain.Hash, validate func(*T) error) (*dir[T], error) {
	if err := blobstore.MkdirDurable(path); err != nil {
		return nil, fmt.Errorf("blobs: open journal: %w", err)
	}
	return &dir[T]{path: path, what: what, maxBytes: maxBytes, id: id, validate: validate, log: slog.Default()}, nil
}

func (j *dir[T]) setLogger(l *slog.Logger) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	j.log = l
}

func (j *dir[T]) add(e *T) error {
	if err := j.validate(e); err != nil {
		return fmt.Errorf("blobs: journal %s: %w", j.what, err)
	}
	data := chain.Encode(e)
	if len(data) > j.maxBytes {
		return fmt.Errorf("%w: journal %s of %d bytes, limit %d", ErrTooLarge, j.what, len(data), j.maxBytes)
	}
	id := j.id(e)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := blobstore.WriteFileAtomic(j.path, id.String(), data); err != nil {
		return fmt.Errorf("blobs: journal %s: %w", id.Short(), err)
	}
	return nil
}

func (j *dir[T]) has(id chain.Hash) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, err := os.Stat(filepath.Join(j.path, id.String()))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("blobs: journal: %w", err)
}

func (j *dir[T]) pending() ([]T, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := blobstore.RemoveTemps(j.path); err != nil {
		return nil, fmt.Errorf("blobs: journal: %w", err)
	}
	entries, err := os.ReadDir(j.path)
	if err != nil {
		return nil, fmt.Errorf("blobs: journal: %w", err)
	}
	var out []T
	for _, ent := range entries {
		if ent.IsDir() && ent.Name() == corruptDir {
			continue
		}
		e, err := j.read(ent)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			j.quarantine(ent.Name(), err)
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func (j *dir[T]) read(ent fs.DirEntry) (T, error) {
	var e T
	id, err := chain.ParseHash(ent.Name())
	if err != nil || ent.IsDir() {
		return e, fmt.Errorf("%w: not a journal entry name", ErrCorrupt)
	}
	f, err := os.Open(filepath.Join(j.path, ent.Name()))
	if err != nil {
		return e, err
	}
	defer f.Close()
	data, err := blobstore.ReadLimited(f, j.maxBytes)
	if err != nil {
		return e, err
	}
	if err := chain.DecodeCanonical(j.what, data, j.maxBytes, &e); err != nil {
		return e, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := j.validate(&e); err != nil {
		return e, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if got := j.id(&e); got != id {
		return e, fmt.Errorf("%w: holds request %s", ErrCorrupt, got.Short())
	}
	return e, nil
}

// quarantine moves a bad journal file to dir/corrupt (kept for inspection, no longer pending)
// and reports it. If it cannot be moved it is left in place and reported again next time.
func (j *dir[T]) quarantine(name string, cause error) {
	from := filepath.Join(j.path, name)
	qdir := filepath.Join(j.path, corruptDir)
	err := blobstore.MkdirDurable(qdir)
	if err == nil {
		err = os.Rename(from, filepath.Join(qdir, strings.TrimPrefix(name, ".")))
	}
	if err == nil {
		err = blobstore.SyncDir(j.path)
	}
	if err == nil {
		err = blobstore.SyncDir(qdir)
	}
	j.log.Warn("blobs: corrupt journal entry set aside", "file", from, "cause", cause, "move_err", err)
}

func (j *dir[T]) remove(id chain.Hash) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := os.Remove(filepath.Join(j.path, id.String()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blobs: journal remove %s: %w", id.Short(), err)
	}
	return blobstore.SyncDir(j.path)
}
