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

// corruptDir is the journal subdirectory that entries which fail to decode are moved to.
const corruptDir = "corrupt"

// Journal durably holds access entries a holder has decided but not yet seen logged on the
// ledger: one file per request id (dir/<request id hex>, the canonical encoding of the entry).
// Add returns only once the entry is on disk, so an access served just before a crash is still
// submitted after restart (Pending); Remove forgets it once the ledger has it. Safe for
// concurrent use.
type Journal struct {
	dir string
	mu  sync.Mutex
	log *slog.Logger
}

// Open opens (creating if needed, mode 0700) the journal in dir.
func Open(dir string) (*Journal, error) {
	if err := blobstore.MkdirDurable(dir); err != nil {
		return nil, fmt.Errorf("blobs: open journal: %w", err)
	}
	return &Journal{dir: dir, log: slog.Default()}, nil
}

// SetLogger sets where Pending reports the corrupt entries it sets aside (slog.Default if never
// set).
func (j *Journal) SetLogger(l *slog.Logger) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	j.log = l
}

// Add durably records e (the file and the directory are fsynced before it returns). Adding an
// entry for a request id already in the journal replaces it.
func (j *Journal) Add(e chain.AccessEntry) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("blobs: journal entry: %w", err)
	}
	data := chain.Encode(&e)
	if len(data) > maxJournalEntryBytes {
		return fmt.Errorf("%w: journal entry of %d bytes, limit %d", ErrTooLarge, len(data), maxJournalEntryBytes)
	}
	id := e.Request.ID()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := blobstore.WriteFileAtomic(j.dir, id.String(), data); err != nil {
		return fmt.Errorf("blobs: journal %s: %w", id.Short(), err)
	}
	return nil
}

// Pending returns every entry in the journal, ordered by request id. Torn writes (temp files
// left by a crash) are deleted. A file that does not hold a valid entry for the request id it is
// named after is not returned and does not fail the call: it is moved to dir/corrupt and
// reported on the journal's logger.
func (j *Journal) Pending() ([]chain.AccessEntry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := blobstore.RemoveTemps(j.dir); err != nil {
		return nil, fmt.Errorf("blobs: journal: %w", err)
	}
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("blobs: journal: %w", err)
	}
	var out []chain.AccessEntry
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

func (j *Journal) read(ent fs.DirEntry) (chain.AccessEntry, error) {
	var e chain.AccessEntry
	id, err := chain.ParseHash(ent.Name())
	if err != nil || ent.IsDir() {
		return e, fmt.Errorf("%w: not a journal entry name", ErrCorrupt)
	}
	f, err := os.Open(filepath.Join(j.dir, ent.Name()))
	if err != nil {
		return e, err
	}
	defer f.Close()
	data, err := blobstore.ReadLimited(f, maxJournalEntryBytes)
	if err != nil {
		return e, err
	}
	if err := chain.DecodeCanonical("access entry", data, maxJournalEntryBytes, &e); err != nil {
		return e, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if got := e.Request.ID(); got != id {
		return e, fmt.Errorf("%w: holds request %s", ErrCorrupt, got.Short())
	}
	return e, nil
}

// quarantine moves a bad journal file to dir/corrupt (kept for inspection, no longer pending)
// and reports it. If it cannot be moved it is left in place and reported again next time.
func (j *Journal) quarantine(name string, cause error) {
	from := filepath.Join(j.dir, name)
	qdir := filepath.Join(j.dir, corruptDir)
	err := blobstore.MkdirDurable(qdir)
	if err == nil {
		err = os.Rename(from, filepath.Join(qdir, strings.TrimPrefix(name, ".")))
	}
	if err == nil {
		err = blobstore.SyncDir(j.dir)
	}
	if err == nil {
		err = blobstore.SyncDir(qdir)
	}
	j.log.Warn("blobs: corrupt journal entry set aside", "file", from, "cause", cause, "move_err", err)
}

// Remove forgets the entry for requestID (once the ledger holds it); a missing one is not an
// error.
func (j *Journal) Remove(requestID chain.Hash) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := os.Remove(filepath.Join(j.dir, requestID.String()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blobs: journal remove %s: %w", requestID.Short(), err)
	}
	return blobstore.SyncDir(j.dir)
}
