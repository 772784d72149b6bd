package chain

import (
	"fmt"
)

// CertVersion is the commit certificate encoding version.
const CertVersion = 1

// CommitSig is one authority's precommit signature in a certificate.
type CommitSig struct {
	_         struct{} `cbor:",toarray"`
	Authority PubKey
	Sig       Signature
}

// CommitCert proves a block final: precommits for BlockHash at Height and Round from more than two
// thirds of the authority set of that height. It is stored with the block and is what light
// clients verify.
type CommitCert struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	Height    uint64
	Round     uint32
	BlockHash Hash
	Sigs      []CommitSig
}

// Signers lists the authorities whose precommits the certificate holds.
func (c *CommitCert) Signers() []PubKey {
	out := make([]PubKey, len(c.Sigs))
	for i, s := range c.Sigs {
		out[i] = s.Authority
	}
	return out
}

// Verify checks that the certificate finalizes blockHash at height with valid precommits from
// distinct members of set, more than two thirds of it.
func (c *CommitCert) Verify(chainID string, set *AuthoritySet, height uint64, blockHash Hash) error {
	if err := checkVersion("commit certificate", c.Version, CertVersion); err != nil {
		return err
	}
	if c.Height != height || c.BlockHash != blockHash {
		return fmt.Errorf("chain: certificate is for %d/%s, want %d/%s", c.Height, c.BlockHash.Short(), height, blockHash.Short())
	}
	if blockHash.IsZero() {
		return fmt.Errorf("chain: certificate for a nil block")
	}
	seen := make(map[PubKey]bool, len(c.Sigs))
	msg := VoteSignedBytes(Precommit, c.Height, c.Round, c.BlockHash)
	bv := NewBatchVerifier()
	for _, s := range c.Sigs {
		if !set.Contains(s.Authority) {
			return fmt.Errorf("chain: certificate at %d signed by non-authority %s", height, s.Authority.Short())
		}
		if seen[s.Authority] && mutant != "certdup" {
			return fmt.Errorf("chain: certificate at %d has two signatures by %s", height, s.Authority.Short())
		}
		seen[s.Authority] = true
		bv.Add(s.Authority, DomainVote, chainID, msg, s.Sig)
	}
	signers := len(seen)
	if mutant == "certdup" {
		signers = len(c.Sigs)
	}
	if signers < set.Quorum() {
		return fmt.Errorf("chain: certificate at %d has %d of %d signatures, needs %d", height, len(seen), set.Size(), set.Quorum())
	}
	if ok, valid := bv.Verify(); !ok {
		for i, v := range valid {
			if !v {
				return fmt.Errorf("chain: certificate at %d: precommit by %s: %w", height, c.Sigs[i].Authority.Short(), ErrBadSignature)
			}
		}
		return fmt.Errorf("chain: certificate at %d: %w", height, ErrBadSignature)
	}
	return nil
}

// Encode returns the canonical encoding.
func (c *CommitCert) Encode() []byte { return Encode(c) }

// MaxCertBytes bounds an encoded certificate.
const MaxCertBytes = 64 + MaxAuthorities*112

// DecodeCommitCert decodes a certificate (verify it with Verify).
func DecodeCommitCert(data []byte) (*CommitCert, error) {
	var c CommitCert
	if err := decodeCanonical("commit certificate", data, MaxCertBytes, &c); err != nil {
		return nil, err
	}
	if err := checkVersion("commit certificate", c.Version, CertVersion); err != nil {
		return nil, err
	}
	if len(c.Sigs) > MaxAuthorities {
		return nil, fmt.Errorf("%w: certificate has %d signatures", ErrTooLarge, len(c.Sigs))
	}
	return &c, nil
}
