package records

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/medledger/medledger/chain"
)

// The patient binding: which FHIR Patient a ledger patient is, as this practice knows them.
//
// A ledger patient is bound to the names other systems give the person: identifiers
// ("?identifier=system|value", from the Patient resource's identifiers or a conditional
// reference) and Patient ids or fullUrls as sent. The first import binds the patient to the one
// Patient of the document (or the one patient its resources name); later imports must be about a
// Patient sharing a name with the binding, and every name they bring is added. Anything about
// another person is refused unless the operator links the name explicitly (ImportOptions.Links).
// The binding is the practice's own data: one file per patient in BLOBS/bindings/, mode 0600,
// never on the ledger and never sent to another node. It holds no name in clear: each is a keyed
// hash (localNamer), so the file can say whether a document is about the patient but not who the
// patient is.

// localNamer turns names that identify a person or a resource in another system (Patient ids,
// identifiers, Type/ids) into keyed hashes, HMAC-SHA256 under a key derived with HKDF from this
// provider's signing key, so the node's local files hold none of them in clear and nobody without
// that key can test a guess against them.
type localNamer struct{ key []byte }

func newLocalNamer(seed []byte) (*localNamer, error) {
	k, err := hkdf.Key(sha256.New, seed, nil, "medledger records local names v1", 32)
	if err != nil {
		return nil, fmt.Errorf("records: local names: %w", err)
	}
	return &localNamer{key: k}, nil
}

// name is the keyed hash of s as a name of patient p's, in hex.
func (n *localNamer) name(p chain.Address, s string) string {
	m := hmac.New(sha256.New, n.key)
	m.Write(p[:])
	m.Write([]byte{0})
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// maxBindingNames bounds one patient's binding (a person has a handful of identifiers).
const maxBindingNames = 256

// bindingFile is the JSON of one patient's binding.
type bindingFile struct {
	Names []string `json:"names"`
}

// bindings stores the per-patient bindings.
type bindings struct {
	dir string
	mu  sync.Mutex
}

func openBindings(dir string) (*bindings, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("records: bindings: %w", err)
	}
	return &bindings{dir: dir}, nil
}

func (b *bindings) path(p chain.Address) string { return filepath.Join(b.dir, p.String()+".json") }

// get returns the names patient p is bound to (none: not bound yet).
func (b *bindings) get(p chain.Address) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, err := os.ReadFile(b.path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("records: binding of %s: %w", p, err)
	}
	var f bindingFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("records: binding of %s: %w", p, err)
	}
	return f.Names, nil
}

// add adds names to patient p's binding, writing the file atomically (fsynced, mode 0600).
func (b *bindings) add(p chain.Address, names []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var f bindingFile
	if data, err := os.ReadFile(b.path(p)); err == nil {
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("records: binding of %s: %w", p, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("records: binding of %s: %w", p, err)
	}
	n := len(f.Names)
	for _, name := range names {
		if !slices.Contains(f.Names, name) {
			f.Names = append(f.Names, name)
		}
	}
	if len(f.Names) == n {
		return nil
	}
	if len(f.Names) > maxBindingNames {
		return fmt.Errorf("%w: patient %s would be bound to %d names, more than %d", ErrBadRequest, p, len(f.Names), maxBindingNames)
	}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(b.dir, ".binding-*")
	if err != nil {
		return fmt.Errorf("records: binding: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("records: binding: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("records: binding: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("records: binding: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("records: binding: %w", err)
	}
	if err := os.Rename(tmp.Name(), b.path(p)); err != nil {
		return fmt.Errorf("records: binding: %w", err)
	}
	d, err := os.Open(b.dir)
	if err != nil {
		return fmt.Errorf("records: binding: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("records: binding: %w", err)
	}
	return nil
}

// ParseLink turns an operator's link ("system|value", "identifier=system|value" or
// "Patient/id") into a binding name.
func ParseLink(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "Patient/") && len(s) > len("Patient/") && !strings.ContainsAny(s[len("Patient/"):], "/?|"):
		return s[len("Patient/"):], nil
	case strings.HasPrefix(s, "identifier="):
		s = s[len("identifier="):]
		fallthrough
	case strings.Contains(s, "|"):
		if i := strings.LastIndex(s, "|"); i == len(s)-1 {
			return "", fmt.Errorf("%w: link %q: the identifier has no value", ErrBadRequest, s)
		}
		return "?identifier=" + s, nil
	}
	return "", fmt.Errorf("%w: link %q: want system|value (an identifier) or Patient/id", ErrBadRequest, s)
}

// describeName renders a binding name for people.
func describeName(n string) string {
	switch {
	case strings.HasPrefix(n, "?identifier="):
		return "identifier " + strings.TrimPrefix(n, "?identifier=")
	case strings.Contains(n, ":"):
		return n
	}
	return "Patient/" + n
}

func describeNames(names []string) string {
	out := make([]string, 0, 3)
	for i, n := range names {
		if i == 3 {
			out = append(out, fmt.Sprintf("%d more", len(names)-3))
			break
		}
		out = append(out, describeName(n))
	}
	return strings.Join(out, ", ")
}
