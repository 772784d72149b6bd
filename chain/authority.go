package chain

import (
	"bytes"
	"fmt"
	"slices"
)

// MaxNameLen bounds human-readable names (of authorities, licensing bodies) on the ledger.
const MaxNameLen = 128

// MaxAuthorities bounds the authority set; BFT over more than a few dozen voters is not the
// deployment this network is for.
const MaxAuthorities = 256

// Authority is one member of the set that votes on blocks. One authority, one vote.
type Authority struct {
	_    struct{} `cbor:",toarray"`
	Key  PubKey   `json:"key"`
	Name string   `json:"name"`
}

// AuthoritySet is the set of authorities for a height, sorted by key. Proposers rotate through it
// in that order.
type AuthoritySet struct {
	_           struct{} `cbor:",toarray"`
	Authorities []Authority
}

// NewAuthoritySet sorts and checks members: at least one, at most MaxAuthorities, no duplicates.
func NewAuthoritySet(members []Authority) (*AuthoritySet, error) {
	as := slices.Clone(members)
	slices.SortFunc(as, func(a, b Authority) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	s := &AuthoritySet{Authorities: as}
	return s, s.Validate()
}

// Validate checks sortedness, uniqueness and size.
func (s *AuthoritySet) Validate() error {
	if len(s.Authorities) == 0 || len(s.Authorities) > MaxAuthorities {
		return fmt.Errorf("chain: authority set must have 1..%d members, has %d", MaxAuthorities, len(s.Authorities))
	}
	for i, a := range s.Authorities {
		if len(a.Name) > MaxNameLen {
			return fmt.Errorf("chain: authority %s name longer than %d bytes", a.Key.Short(), MaxNameLen)
		}
		if i > 0 && bytes.Compare(s.Authorities[i-1].Key[:], a.Key[:]) >= 0 {
			return fmt.Errorf("chain: authority set not sorted or has duplicate %s", a.Key.Short())
		}
	}
	return nil
}

// Size is the number of authorities.
func (s *AuthoritySet) Size() int { return len(s.Authorities) }

// Quorum is the smallest number of authorities that is more than two thirds of the set.
func (s *AuthoritySet) Quorum() int { return QuorumOf(len(s.Authorities)) }

// QuorumOf is the smallest count greater than 2n/3.
func QuorumOf(n int) int { return 2*n/3 + 1 }

// MaxFaulty is the number of faulty authorities the set tolerates: f with n >= 3f+1.
func (s *AuthoritySet) MaxFaulty() int { return (len(s.Authorities) - 1) / 3 }

// Index returns the position of key in the set, or -1.
func (s *AuthoritySet) Index(key PubKey) int {
	i, ok := slices.BinarySearchFunc(s.Authorities, key, func(a Authority, k PubKey) int { return bytes.Compare(a.Key[:], k[:]) })
	if !ok {
		return -1
	}
	return i
}

// Contains reports membership.
func (s *AuthoritySet) Contains(key PubKey) bool { return s.Index(key) >= 0 }

// Proposer is the round-robin proposer for a height and round.
func (s *AuthoritySet) Proposer(height uint64, round uint32) PubKey {
	n := uint64(len(s.Authorities))
	return s.Authorities[(height+uint64(round))%n].Key
}

// Hash commits to the set; headers carry it so that light clients can follow set changes.
func (s *AuthoritySet) Hash() Hash { return Sum256(Encode(s)) }

// With returns a copy with a added (an error if already present).
func (s *AuthoritySet) With(a Authority) (*AuthoritySet, error) {
	if s.Contains(a.Key) {
		return nil, fmt.Errorf("chain: %s is already an authority", a.Key.Short())
	}
	return NewAuthoritySet(append(slices.Clone(s.Authorities), a))
}

// Without returns a copy with key removed (an error if absent or if the set would be empty).
func (s *AuthoritySet) Without(key PubKey) (*AuthoritySet, error) {
	i := s.Index(key)
	if i < 0 {
		return nil, fmt.Errorf("chain: %s is not an authority", key.Short())
	}
	return NewAuthoritySet(slices.Delete(slices.Clone(s.Authorities), i, i+1))
}

// MaxAuthoritySetBytes bounds an encoded authority set.
const MaxAuthoritySetBytes = MaxAuthorities * (MaxNameLen + 48)

// DecodeAuthoritySet decodes and validates an authority set.
func DecodeAuthoritySet(data []byte) (*AuthoritySet, error) {
	var s AuthoritySet
	if err := decodeCanonical("authority set", data, MaxAuthoritySetBytes, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
