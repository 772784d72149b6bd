// Package patientdir is a practice's local patient directory: the display name, birth date and
// medical record number of each ledger patient, taken from the FHIR Patient resources the
// practice imported, so that its staff can find a patient by name. The ledger holds no name
// (DESIGN.md invariant 1) and the import's binding keeps only keyed hashes of identifiers
// (records/binding.go), so this is the one place a name lives, and it never leaves the node.
//
// The directory is one file (HOME/patients.dir, mode 0600) sealed with XChaCha20-Poly1305 under a
// key derived with HKDF-SHA256 from the provider's signing seed, the way the binding derives its
// HMAC key. What a reader of the disk can and cannot learn is in docs/webui.md.
package patientdir

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/medledger/medledger/chain"
)

// keyInfo is the HKDF info of the directory's key; the file's version is in it, so a new format
// gets a new key.
const keyInfo = "medledger patient directory v1"

// MaxEntries bounds the directory (a small practice has a few thousand patients).
const MaxEntries = 100_000

// maxFileBytes bounds the file read back (MaxEntries entries of a few hundred bytes).
const maxFileBytes = 64 << 20

// Entry is one patient as the practice knows them.
type Entry struct {
	Patient   chain.Address `json:"patient"`
	Name      string        `json:"name"`
	BirthDate string        `json:"birth_date,omitempty"`
	MRN       string        `json:"mrn,omitempty"`
	Updated   time.Time     `json:"updated"`
}

// Dir is the open directory. Its methods are safe for concurrent use.
type Dir struct {
	path string
	aead interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
		NonceSize() int
	}
	now func() time.Time

	mu      sync.Mutex
	entries map[chain.Address]Entry
}

// Open opens the directory at path (creating nothing until the first Note), sealed under a key
// derived from seed (the provider's signing seed).
func Open(path string, seed []byte, now func() time.Time) (*Dir, error) {
	if len(seed) < 32 {
		return nil, errors.New("patientdir: the key seed is shorter than 32 bytes")
	}
	k, err := hkdf.Key(sha256.New, seed, nil, keyInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("patientdir: key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("patientdir: key: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	d := &Dir{path: path, aead: aead, now: now, entries: map[chain.Address]Entry{}}
	if err := d.load(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Dir) load() error {
	f, err := os.Open(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patientdir: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return fmt.Errorf("patientdir: %w", err)
	}
	if len(data) > maxFileBytes {
		return fmt.Errorf("patientdir: %s is larger than %d bytes", d.path, maxFileBytes)
	}
	ns := d.aead.NonceSize()
	if len(data) < ns {
		return fmt.Errorf("patientdir: %s is truncated", d.path)
	}
	plain, err := d.aead.Open(nil, data[:ns], data[ns:], []byte(keyInfo))
	if err != nil {
		return fmt.Errorf("patientdir: %s does not open with this provider's key (altered, or another node's)", d.path)
	}
	var list []Entry
	if err := json.Unmarshal(plain, &list); err != nil {
		return fmt.Errorf("patientdir: %s: %w", d.path, err)
	}
	for _, e := range list {
		d.entries[e.Patient] = e
	}
	return nil
}

// saveLocked writes the whole directory: a fresh nonce, then the sealed JSON, through a
// temporary file renamed over the old one so a crash leaves one or the other.
func (d *Dir) saveLocked() error {
	list := make([]Entry, 0, len(d.entries))
	for _, e := range d.entries {
		list = append(list, e)
	}
	slices.SortFunc(list, func(a, b Entry) int { return bytes.Compare(a.Patient[:], b.Patient[:]) })
	plain, err := json.Marshal(list)
	if err != nil {
		return fmt.Errorf("patientdir: %w", err)
	}
	nonce := make([]byte, d.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("patientdir: nonce: %w", err)
	}
	out := d.aead.Seal(nonce, nonce, plain, []byte(keyInfo))
	if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
		return fmt.Errorf("patientdir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(d.path), ".patients-*")
	if err != nil {
		return fmt.Errorf("patientdir: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(out)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), d.path)
	}
	if err != nil {
		return fmt.Errorf("patientdir: %w", err)
	}
	return nil
}

// Note adds or updates the patient's entry from the FHIR Patient resources of doc (one
// resource, a Bundle, or NDJSON, as records.ImportDocument takes it). A document without a
// Patient changes nothing. The first Patient with a name wins; an MRN or birth date it lacks
// keeps the one known before.
func (d *Dir) Note(patient chain.Address, doc []byte) error {
	found := Patients(doc)
	if len(found) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, had := d.entries[patient]
	if !had && len(d.entries) >= MaxEntries {
		return fmt.Errorf("patientdir: the directory holds %d patients, its limit", MaxEntries)
	}
	e.Patient = patient
	for _, p := range found {
		if p.Name != "" {
			e.Name = p.Name
		}
		if p.BirthDate != "" {
			e.BirthDate = p.BirthDate
		}
		if p.MRN != "" {
			e.MRN = p.MRN
		}
		if p.Name != "" {
			break
		}
	}
	e.Updated = d.now().UTC()
	d.entries[patient] = e
	return d.saveLocked()
}

// Get returns the patient's entry.
func (d *Dir) Get(patient chain.Address) (Entry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[patient]
	return e, ok
}

// Search returns the entries whose name, MRN, birth date or patient id contains q (ignoring
// case; every word of q must match), sorted by name, at most limit of them.
func (d *Dir) Search(q string, limit int) []Entry {
	words := strings.Fields(strings.ToLower(q))
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Entry
	for _, e := range d.entries {
		hay := strings.ToLower(e.Name + " " + e.MRN + " " + e.BirthDate + " " + e.Patient.String())
		ok := len(words) > 0
		for _, w := range words {
			if !strings.Contains(hay, w) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return bytes.Compare(a.Patient[:], b.Patient[:])
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
