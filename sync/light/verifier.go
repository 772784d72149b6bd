package light

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
)

// ErrUnverified marks an answer that does not verify: a node lied, or served something else.
var ErrUnverified = errors.New("light: answer does not verify")

// Verifier is a light client's trust: the newest header it accepted and the authority set that
// certifies the next one. It is pure (no I/O, no clock): feed it headers in height order.
type Verifier struct {
	chainID, consensusID string
	header               *chain.Header // nil before the first header
	hash                 chain.Hash
	set                  *chain.AuthoritySet // certifies height Height()+1
}

// NewVerifier trusts genesis g alone.
func NewVerifier(g *chain.Genesis) (*Verifier, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &Verifier{chainID: g.ChainID, consensusID: chain.ConsensusID(g.ChainID, g.Hash()), set: g.AuthoritySet()}, nil
}

// NewVerifierAt trusts header h of genesis g's chain, and next, the authority set that
// certifies the header after it (the set h names as next): a header the user confirmed, or the
// one a wallet verified last time. Nothing here checks h's certificate: it is trusted as given.
func NewVerifierAt(g *chain.Genesis, h *chain.Header, next *chain.AuthoritySet) (*Verifier, error) {
	v, err := NewVerifier(g)
	if err != nil {
		return nil, err
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	switch {
	case h.ChainID != g.ChainID:
		return nil, fmt.Errorf("light: trusted header of chain %q, want %q", h.ChainID, g.ChainID)
	case h.Height < 2:
		return nil, errors.New("light: a trusted header must be above height 1")
	case next.Hash() != h.NextAuthoritiesHash:
		return nil, fmt.Errorf("light: the trusted header %d names next set %s, not the one given (%s)", h.Height, h.NextAuthoritiesHash.Short(), next.Hash().Short())
	}
	hc := *h
	v.header, v.hash, v.set = &hc, hc.Hash(), next
	return v, nil
}

// NextSet is the authority set that certifies the header after the newest accepted one.
func (v *Verifier) NextSet() *chain.AuthoritySet { return v.set }

// Height is the newest accepted header's height (0 before the first).
func (v *Verifier) Height() uint64 {
	if v.header == nil {
		return 0
	}
	return v.header.Height
}

// Header is the newest accepted header (nil before the first).
func (v *Verifier) Header() *chain.Header { return v.header }

// Accept verifies sh as the next header and trusts it: its height follows, it links to the
// header before, its time advances, the set it names is the one trusted for its height, more
// than two thirds of that set certified it, and a change of the next set comes with a proof
// against its own state root.
func (v *Verifier) Accept(sh *SignedHeader) error {
	h := &sh.Header
	if err := h.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnverified, err)
	}
	switch {
	case h.ChainID != v.chainID:
		return fmt.Errorf("%w: header of chain %q, want %q", ErrUnverified, h.ChainID, v.chainID)
	case h.Height != v.Height()+1:
		return fmt.Errorf("%w: header %d, want %d", ErrUnverified, h.Height, v.Height()+1)
	case v.header != nil && h.PrevHash != v.hash:
		return fmt.Errorf("%w: header %d does not link to the trusted header %d", ErrUnverified, h.Height, v.header.Height)
	case v.header != nil && h.Time <= v.header.Time:
		return fmt.Errorf("%w: header %d's time does not advance", ErrUnverified, h.Height)
	case h.AuthoritiesHash != v.set.Hash():
		return fmt.Errorf("%w: header %d names authority set %s, the trusted one is %s", ErrUnverified, h.Height, h.AuthoritiesHash.Short(), v.set.Hash().Short())
	}
	hash := h.Hash()
	if err := sh.Cert.Verify(v.consensusID, v.set, h.Height, hash); err != nil {
		return fmt.Errorf("%w: header %d: %w", ErrUnverified, h.Height, err)
	}
	next := v.set
	if h.NextAuthoritiesHash != h.AuthoritiesHash {
		if sh.NextSet == nil {
			return fmt.Errorf("%w: header %d changes the authority set without a proof of the new one", ErrUnverified, h.Height)
		}
		val, err := verifyAgainst(h, sh.NextSet, state.NextSetKey())
		if err != nil {
			return err
		}
		set, err := state.DecodeAuthoritySet(val)
		if err != nil {
			return fmt.Errorf("%w: header %d's next set: %w", ErrUnverified, h.Height, err)
		}
		if set.Hash() != h.NextAuthoritiesHash {
			return fmt.Errorf("%w: header %d's next set hashes to %s, the header names %s", ErrUnverified, h.Height, set.Hash().Short(), h.NextAuthoritiesHash.Short())
		}
		next = set
	}
	hc := *h
	v.header, v.hash, v.set = &hc, hash, next
	return nil
}

// ProofHeight is the state height proofs are checked at: the state after the block before the
// trusted header, which its StateRoot commits to.
func (v *Verifier) ProofHeight() (uint64, error) {
	if v.header == nil || v.header.Height < 2 {
		return 0, errors.New("light: no trusted header above height 1 yet")
	}
	return v.header.Height - 1, nil
}

// Value checks p, a proof of key, against the trusted header and returns key's value (nil:
// proved absent).
func (v *Verifier) Value(p *Proof, key []byte) ([]byte, error) {
	if v.header == nil {
		return nil, errors.New("light: no trusted header yet")
	}
	return verifyAgainst(v.header, p, key)
}

func verifyAgainst(h *chain.Header, p *Proof, key []byte) ([]byte, error) {
	if !bytes.Equal(p.Key, key) {
		return nil, fmt.Errorf("%w: proof of key %x, asked %x", ErrUnverified, p.Key, key)
	}
	if p.Version != int64(h.Height)-1 {
		return nil, fmt.Errorf("%w: proof at state %d, header %d commits to %d", ErrUnverified, p.Version, h.Height, h.Height-1)
	}
	if err := statetree.VerifyProof(h.StateRoot, p.tree()); err != nil {
		return nil, fmt.Errorf("%w: key %x against header %d: %w", ErrUnverified, key, h.Height, err)
	}
	if !p.Exists {
		return nil, nil
	}
	return p.Value, nil
}
