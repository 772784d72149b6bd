package records

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records/blobstore"
)

// maxUnpushedBatches bounds the author's list of unconfirmed pushes, in imports. Beyond it an
// import is not listed: its holders still repair their copies by pulling (repair.go), only
// later.
const maxUnpushedBatches = 4096

// unpushed is the author's durable list of records whose push has not reached every assigned
// holder. An import writes its records here before it submits their anchors, so a crash
// between commit and push leaves them listed; the re-push pass (replication.go) pushes them
// again after a restart and periodically, and a record leaves the list once every holder the
// ledger assigns has accepted it (or it was erased, or never anchored).
//
// One file per import, named after its first record, holding the record ids (32 bytes each);
// the file goes when the last of its records is confirmed.
type unpushed struct {
	dir string

	mu      sync.Mutex
	batches map[string]*unpushedBatch
	byID    map[chain.Hash]string // record → batch file
}

type unpushedBatch struct {
	left    int
	created time.Time // when the file was written
	loaded  bool      // found at start: due at once
}

func openUnpushed(dir string) (*unpushed, error) {
	if err := blobstore.MkdirDurable(dir); err != nil {
		return nil, err
	}
	if _, err := blobstore.RemoveTemps(dir); err != nil {
		return nil, err
	}
	u := &unpushed{dir: dir, batches: make(map[string]*unpushedBatch), byID: make(map[chain.Hash]string)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), blobstore.TempPrefix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if len(data)%len(chain.Hash{}) != 0 {
			return nil, fmt.Errorf("records: unpushed list %s: %d bytes is not a list of record ids", e.Name(), len(data))
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		b := &unpushedBatch{created: info.ModTime(), loaded: true}
		for i := 0; i < len(data); i += len(chain.Hash{}) {
			id := chain.Hash(data[i : i+len(chain.Hash{})])
			if _, dup := u.byID[id]; !dup {
				u.byID[id] = e.Name()
				b.left++
			}
		}
		u.batches[e.Name()] = b
	}
	return u, nil
}

// add lists ids durably (one fsynced file) before their anchors are submitted. A full list
// refuses with an error the caller only logs.
func (u *unpushed) add(ids []chain.Hash, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.batches) >= maxUnpushedBatches {
		return fmt.Errorf("records: %d imports await confirmed pushes; this one is left to the holders' repair", len(u.batches))
	}
	name := hex.EncodeToString(ids[0][:])
	data := make([]byte, 0, len(ids)*len(chain.Hash{}))
	for _, id := range ids {
		data = append(data, id[:]...)
	}
	if err := blobstore.WriteFileAtomic(u.dir, name, data); err != nil {
		return err
	}
	b := u.batches[name]
	if b == nil {
		b = &unpushedBatch{}
		u.batches[name] = b
	}
	b.created, b.loaded = now, false
	for _, id := range ids {
		if _, dup := u.byID[id]; !dup {
			u.byID[id] = name
			b.left++
		}
	}
	return nil
}

// done removes a record from the list; the last one of an import removes its file.
func (u *unpushed) done(id chain.Hash) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	name, ok := u.byID[id]
	if !ok {
		return nil
	}
	delete(u.byID, id)
	b := u.batches[name]
	if b.left--; b.left > 0 {
		return nil
	}
	delete(u.batches, name)
	if err := os.Remove(filepath.Join(u.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return blobstore.SyncDir(u.dir)
}

// due returns up to max listed records whose import is older than grace (or was listed before
// this start), so pushes still queued from the import itself are not doubled.
func (u *unpushed) due(now time.Time, grace time.Duration, max int) []chain.Hash {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []chain.Hash
	for id, name := range u.byID {
		if len(out) == max {
			break
		}
		if b := u.batches[name]; b.loaded || now.Sub(b.created) >= grace {
			out = append(out, id)
		}
	}
	return out
}

// age is how long ago id's import was listed; ok is false if id is not listed.
func (u *unpushed) age(id chain.Hash, now time.Time) (d time.Duration, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	name, ok := u.byID[id]
	if !ok {
		return 0, false
	}
	return now.Sub(u.batches[name].created), true
}

// len is the number of listed records.
func (u *unpushed) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.byID)
}
