package node

import (
	"bytes"
	"crypto/rand"
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
	"time"

	"github.com/medledger/medledger/chain"
)

// billingBook is what the practice keeps about billing that must never reach the ledger, in
// HOME/billing/ (mode 0700):
//
//	book.json        a secret that derives the opaque sponsor ids from sponsor names, the names
//	                 and the memberships enrolled under each (rewritten whole: sponsors are few)
//	payments.jsonl   one line per payment or refund the node recorded: its id and the clear
//	                 external reference (the ledger holds only its hash), so the practice can
//	                 reconcile against its card processor or bank; appended, never rewritten
//	contracts/ID.json the latest signed FHIR Contract of each membership (the ledger holds its hash)
type billingBook struct {
	dir      string
	mu       sync.Mutex
	data     billingBookData
	payments map[chain.Hash]*billingPayment // payments.jsonl, read at open
}

type billingBookData struct {
	Secret   string                   `json:"secret"` // hex, 32 random bytes
	Sponsors map[string]*sponsorEntry `json:"sponsors"`
}

// sponsorEntry is one sponsor, by its ledger id in hex.
type sponsorEntry struct {
	Name        string   `json:"name"`
	Memberships []string `json:"memberships,omitempty"` // ids in hex, in enrolment order
}

// billingPayment is one line of payments.jsonl.
type billingPayment struct {
	ID        chain.Hash `json:"id"` // the transaction's hash
	Reference string     `json:"reference"`
	Refund    bool       `json:"refund,omitempty"`
	Recorded  time.Time  `json:"recorded"`
}

// BillingDir is HOME/billing, the practice's local billing book.
func (h Home) BillingDir() string { return filepath.Join(string(h), "billing") }

// openBillingBook reads the book in dir, creating it (and its secret) when absent.
func openBillingBook(dir string) (*billingBook, error) {
	b := &billingBook{dir: dir, payments: map[chain.Hash]*billingPayment{}}
	if err := os.MkdirAll(filepath.Join(dir, "contracts"), 0o700); err != nil {
		return nil, fmt.Errorf("billing book: %w", err)
	}
	data, err := os.ReadFile(b.file())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var secret [32]byte
		if _, err := rand.Read(secret[:]); err != nil {
			return nil, err
		}
		b.data.Secret = hex.EncodeToString(secret[:])
		b.data.Sponsors = map[string]*sponsorEntry{}
		if err := b.saveLocked(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("billing book: %w", err)
	default:
		if err := json.Unmarshal(data, &b.data); err != nil {
			return nil, fmt.Errorf("billing book %s: %w", b.file(), err)
		}
		if s, err := hex.DecodeString(b.data.Secret); err != nil || len(s) != 32 {
			return nil, fmt.Errorf("billing book %s: the secret is not 32 bytes of hex", b.file())
		}
	}
	if b.data.Sponsors == nil {
		b.data.Sponsors = map[string]*sponsorEntry{}
	}
	return b, b.loadPayments()
}

func (b *billingBook) file() string         { return filepath.Join(b.dir, "book.json") }
func (b *billingBook) paymentsFile() string { return filepath.Join(b.dir, "payments.jsonl") }

// loadPayments reads payments.jsonl. A torn last line (a crash mid-append) is skipped: the
// payment is on the ledger, only its clear reference is lost.
func (b *billingBook) loadPayments() error {
	data, err := os.ReadFile(b.paymentsFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("billing book: %w", err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var p billingPayment
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &p) != nil {
			continue
		}
		b.payments[p.ID] = &p
	}
	return nil
}

// writeFileAtomic writes data through a temporary file, so a crash leaves the old or the new.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("billing book: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("billing book: %w", err)
	}
	return nil
}

func (b *billingBook) saveLocked() error {
	data, err := json.MarshalIndent(&b.data, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(b.file(), data)
}

// normSponsor is the form of a sponsor name its id is derived from: spaces trimmed and
// collapsed, case kept for display but folded for the id.
func normSponsor(name string) string { return strings.Join(strings.Fields(name), " ") }

// sponsorID derives the opaque ledger id of a sponsor name: Sum256 of the secret and the folded
// name. Without the secret the id says nothing about the name, and other practices' ids for the
// same employer differ.
func (b *billingBook) sponsorID(name string) chain.Hash {
	secret, _ := hex.DecodeString(b.data.Secret)
	return chain.Sum256(append(append(secret, 0), strings.ToLower(normSponsor(name))...))
}

// noteSponsor remembers the name of the sponsor an agreement was drafted for.
func (b *billingBook) noteSponsor(name string) (chain.Hash, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.sponsorID(name)
	if _, ok := b.data.Sponsors[id.String()]; ok {
		return id, nil
	}
	b.data.Sponsors[id.String()] = &sponsorEntry{Name: normSponsor(name)}
	return id, b.saveLocked()
}

// noteSponsored adds an enrolled membership to its sponsor's list (a sponsor id the book does
// not know, from an agreement drafted elsewhere, is kept without a name).
func (b *billingBook) noteSponsored(sponsor, membership chain.Hash) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.data.Sponsors[sponsor.String()]
	if e == nil {
		e = &sponsorEntry{}
		b.data.Sponsors[sponsor.String()] = e
	}
	if slices.Contains(e.Memberships, membership.String()) {
		return nil
	}
	e.Memberships = append(e.Memberships, membership.String())
	return b.saveLocked()
}

// sponsor returns the sponsor named name: its id and memberships, or ok false.
func (b *billingBook) sponsor(name string) (id chain.Hash, entry sponsorEntry, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id = b.sponsorID(name)
	e := b.data.Sponsors[id.String()]
	if e == nil {
		return id, entry, false
	}
	return id, sponsorEntry{Name: e.Name, Memberships: slices.Clone(e.Memberships)}, true
}

// sponsorName returns the name of sponsor id, or "".
func (b *billingBook) sponsorName(id chain.Hash) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.data.Sponsors[id.String()]; e != nil {
		return e.Name
	}
	return ""
}

// notePayment appends a recorded payment's clear reference.
func (b *billingBook) notePayment(id chain.Hash, ref string, refund bool, at time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := &billingPayment{ID: id, Reference: ref, Refund: refund, Recorded: at.UTC()}
	line, err := json.Marshal(p)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(b.paymentsFile(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("billing book: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("billing book: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("billing book: %w", err)
	}
	b.payments[id] = p
	return f.Close()
}

// payment returns a payment's clear reference, or "".
func (b *billingBook) payment(id chain.Hash) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.payments[id]; p != nil {
		return p.Reference
	}
	return ""
}

// noteContract keeps the FHIR Contract of an enrolment or change the ledger recorded (by its
// hash only), for the statement's FHIR Bundle.
func (b *billingBook) noteContract(membership chain.Hash, contract json.RawMessage) error {
	return writeFileAtomic(b.contractFile(membership), contract)
}

// contract returns the latest Contract kept for membership, or nil.
func (b *billingBook) contract(membership chain.Hash) json.RawMessage {
	data, err := os.ReadFile(b.contractFile(membership))
	if err != nil {
		return nil
	}
	return data
}

func (b *billingBook) contractFile(membership chain.Hash) string {
	return filepath.Join(b.dir, "contracts", membership.String()+".json")
}

// SponsorSummaryJSON is one sponsor of the book with the number of memberships it sponsors.
type SponsorSummaryJSON struct {
	Name        string     `json:"name"`
	ID          chain.Hash `json:"id"`
	Memberships int        `json:"memberships"`
}

// sponsors lists the named sponsors, by name.
func (b *billingBook) sponsors() []SponsorSummaryJSON {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []SponsorSummaryJSON{}
	for id, e := range b.data.Sponsors {
		var h chain.Hash
		if e.Name == "" || h.UnmarshalText([]byte(id)) != nil {
			continue
		}
		out = append(out, SponsorSummaryJSON{Name: e.Name, ID: h, Memberships: len(e.Memberships)})
	}
	slices.SortFunc(out, func(x, y SponsorSummaryJSON) int { return strings.Compare(x.Name, y.Name) })
	return out
}
