package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
)

// The billing book's lists of what this node did, for the practice's billing and claims pages:
// the ledger indexes memberships by (provider, patient) and claims by patient or payer, never
// by provider alone, so "every membership of this practice" and "every claim it filed" are
// only known locally. They are derived data about the node's own transactions, in HOME/billing:
//
//	contracts/ID.json  (billing_local.go) one per membership enrolled or changed through this node
//	claims.jsonl       one line per claim this node filed; appended, never rewritten

// billingClaim is one line of claims.jsonl.
type billingClaim struct {
	ID    chain.Hash `json:"id"`
	Filed time.Time  `json:"filed"`
}

func (b *billingBook) claimsFile() string { return filepath.Join(b.dir, "claims.jsonl") }

// noteClaim appends a claim this node filed.
func (b *billingBook) noteClaim(id chain.Hash, at time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	line, err := json.Marshal(billingClaim{ID: id, Filed: at.UTC()})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(b.claimsFile(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("billing book: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("billing book: %w", err)
	}
	return f.Close()
}

// filedClaims lists the claims this node filed, newest first. A torn line (a crash mid-append)
// is skipped: the claim is on the ledger and in its patient's log.
func (b *billingBook) filedClaims() ([]chain.Hash, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, err := os.ReadFile(b.claimsFile())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("billing book: %w", err)
	}
	var out []chain.Hash
	seen := map[chain.Hash]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		var c billingClaim
		if strings.TrimSpace(line) == "" || json.Unmarshal([]byte(line), &c) != nil || seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		out = append(out, c.ID)
	}
	slices.Reverse(out)
	return out, nil
}

// memberships lists the memberships this node enrolled (its kept contracts, and the sponsors'
// lists for a contract that could not be written), in no particular order.
func (b *billingBook) memberships() ([]chain.Hash, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "contracts"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("billing book: %w", err)
	}
	seen := map[chain.Hash]bool{}
	var out []chain.Hash
	add := func(s string) {
		var h chain.Hash
		if h.UnmarshalText([]byte(s)) == nil && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			add(name)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.data.Sponsors {
		for _, m := range s.Memberships {
			add(m)
		}
	}
	return out, nil
}

// recordedPayments lists the payments and refunds this node recorded, newest first.
func (b *billingBook) recordedPayments() []billingPayment {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]billingPayment, 0, len(b.payments))
	for _, p := range b.payments {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(x, y billingPayment) int {
		if c := y.Recorded.Compare(x.Recorded); c != 0 {
			return c
		}
		return strings.Compare(x.ID.String(), y.ID.String())
	})
	return out
}
