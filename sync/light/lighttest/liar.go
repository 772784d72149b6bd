// Package lighttest holds a lying wallet-protocol source for tests: the in-process light client
// tests and the liar program of the multi-process tests serve a real chain through it.
package lighttest

import (
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/statetree"
	"github.com/medledger/medledger/sync/light"
)

// Lie is what a Liar falsifies.
type Lie string

// Lies a Liar can tell.
const (
	// None serves the source as it is (a frozen store is then simply an old view).
	None Lie = "none"
	// StaleProofs proves every key from StaleBy blocks earlier, labelled as the height asked:
	// what a node must do to omit an access entry or show a revoked consent as active.
	StaleProofs Lie = "stale-proofs"
	// AlteredValues flips a bit of every proved value.
	AlteredValues Lie = "altered-values"
	// ForkedHeader alters the state root of the header at ForkAt.
	ForkedHeader Lie = "forked-header"
)

// Lies lists every Lie, for flag help.
var Lies = []Lie{None, StaleProofs, AlteredValues, ForkedHeader}

// ParseLie parses a Lie by name.
func ParseLie(s string) (Lie, error) {
	for _, l := range Lies {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("unknown lie %q, want one of %v", s, Lies)
}

// StaleBy is how many blocks old a StaleProofs liar's proofs are.
const StaleBy = 3

// Liar serves Source with one lie.
type Liar struct {
	light.Source
	Lie    Lie
	ForkAt uint64 // for ForkedHeader
	// HideAbove, if not zero, serves the chain as if its head were there: an old view.
	HideAbove uint64
}

// Height is the source's head, or HideAbove if lower.
func (s *Liar) Height() uint64 {
	h := s.Source.Height()
	if s.HideAbove > 0 {
		h = min(h, s.HideAbove)
	}
	return h
}

// Prove proves key at h, or lies about it.
func (s *Liar) Prove(h uint64, key []byte) (*statetree.Proof, error) {
	at := h
	if s.Lie == StaleProofs && h > StaleBy {
		at = h - StaleBy
	}
	p, err := s.Source.Prove(at, key)
	if err != nil {
		return nil, err
	}
	p.Version = int64(h)
	if s.Lie == AlteredValues && p.Exists {
		p.Value = append([]byte(nil), p.Value...)
		p.Value[len(p.Value)-1] ^= 1
	}
	return p, nil
}

// Block returns block h, with a forged state root at ForkAt for ForkedHeader.
func (s *Liar) Block(h uint64) (*chain.Block, error) {
	if h > s.Height() {
		return nil, fmt.Errorf("lighttest: no block %d (head %d)", h, s.Height())
	}
	b, err := s.Source.Block(h)
	if err == nil && s.Lie == ForkedHeader && h == s.ForkAt {
		c := *b
		c.Header.StateRoot[0] ^= 1
		return &c, nil
	}
	return b, err
}
