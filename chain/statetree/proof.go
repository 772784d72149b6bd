package statetree

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	ics23 "github.com/cosmos/ics23/go"

	"github.com/medledger/medledger/chain"
)

// MaxProofBytes bounds a marshalled commitment: an IAVL path is at most a few dozen inner nodes of
// under 100 bytes each, two of them for a non-membership proof, plus the leaf's key and value.
const MaxProofBytes = 1 << 20

// Proof shows that Key has Value (Exists) or is absent (!Exists) in the state of Version, against
// that version's root. Commitment is an ICS-23 CommitmentProof in protobuf form; it is empty only
// for a non-membership proof against EmptyRoot.
type Proof struct {
	Version    int64
	Key        []byte
	Value      []byte
	Exists     bool
	Commitment []byte
}

// Prove returns a membership proof for key at version if it is present, else a non-membership proof.
func (t *Tree) Prove(version int64, key []byte) (*Proof, error) {
	if len(key) == 0 {
		return nil, errors.New("statetree: cannot prove an empty key")
	}
	it, err := t.immutable(version)
	if err != nil {
		return nil, err
	}
	p := &Proof{Version: version, Key: slices.Clone(key)}
	t.mu.RLock() // see view: reads must not overlap a commit
	defer t.mu.RUnlock()
	if it == nil || it.Size() == 0 {
		return p, nil
	}
	v, err := it.Get(key)
	if err != nil {
		return nil, fmt.Errorf("statetree: prove: %w", err)
	}
	var cp *ics23.CommitmentProof
	if v != nil {
		p.Exists, p.Value = true, slices.Clone(v)
		cp, err = it.GetMembershipProof(key)
	} else {
		cp, err = it.GetNonMembershipProof(key)
	}
	if err != nil {
		return nil, fmt.Errorf("statetree: prove %x at %d: %w", key, version, err)
	}
	if p.Commitment, err = cp.Marshal(); err != nil {
		return nil, fmt.Errorf("statetree: marshal proof: %w", err)
	}
	return p, nil
}

// ErrBadProof is returned (wrapped) by VerifyProof for every proof that does not verify.
var ErrBadProof = errors.New("statetree: proof does not verify")

// VerifyProof checks p against a trusted root (from a header backed by a commit certificate).
// It is pure and safe on hostile input: light clients call it on proofs from untrusted peers.
func VerifyProof(root chain.Hash, p *Proof) (err error) {
	if p == nil || len(p.Key) == 0 {
		return fmt.Errorf("%w: missing proof or key", ErrBadProof)
	}
	if len(p.Commitment) == 0 {
		if p.Exists || root != EmptyRoot {
			return fmt.Errorf("%w: no commitment", ErrBadProof)
		}
		return nil
	}
	if len(p.Commitment) > MaxProofBytes {
		return fmt.Errorf("%w: commitment is %d bytes, limit %d", ErrBadProof, len(p.Commitment), MaxProofBytes)
	}
	var cp ics23.CommitmentProof
	if err := cp.Unmarshal(p.Commitment); err != nil {
		return fmt.Errorf("%w: decode: %v", ErrBadProof, err)
	}
	// ics23 walks attacker-shaped structures; a bug there must reject the proof, not kill a wallet.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed commitment: %v", ErrBadProof, r)
		}
	}()
	if p.Exists {
		// The leaf must carry exactly the claimed key and value; VerifyMembership checks both.
		if !ics23.VerifyMembership(ics23.IavlSpec, root[:], &cp, p.Key, p.Value) {
			return fmt.Errorf("%w: membership of %x", ErrBadProof, p.Key)
		}
		return nil
	}
	if p.Value != nil && !bytes.Equal(p.Value, []byte{}) {
		return fmt.Errorf("%w: absence proof carries a value", ErrBadProof)
	}
	if !ics23.VerifyNonMembership(ics23.IavlSpec, root[:], &cp, p.Key) {
		return fmt.Errorf("%w: non-membership of %x", ErrBadProof, p.Key)
	}
	return nil
}
