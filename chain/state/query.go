package state

import (
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Authorities returns, after block H has been executed, the sets certifying H+1 and H+2.
func Authorities(view View) (next, afterNext *chain.AuthoritySet, err error) {
	if next, err = readSet(view, keyNext, "authority set (next)"); err != nil {
		return nil, nil, err
	}
	if afterNext, err = readSet(view, keyAfter, "authority set (after next)"); err != nil {
		return nil, nil, err
	}
	return next, afterNext, nil
}

// CheckHeaderAuthorities checks that h (the next block) names the authority sets state
// schedules for it: AuthoritiesHash = set(h.Height), NextAuthoritiesHash = set(h.Height+1).
// view is the state after block h.Height-1. ApplyBlock does not call it: consensus checks headers.
func CheckHeaderAuthorities(view View, h *chain.Header) error {
	next, after, err := Authorities(view)
	if err != nil {
		return err
	}
	if h.AuthoritiesHash != next.Hash() {
		return fmt.Errorf("state: header %d authorities hash %s, state has %s", h.Height, h.AuthoritiesHash.Short(), next.Hash().Short())
	}
	if h.NextAuthoritiesHash != after.Hash() {
		return fmt.Errorf("state: header %d next authorities hash %s, state has %s", h.Height, h.NextAuthoritiesHash.Short(), after.Hash().Short())
	}
	return nil
}

// Nonce returns the last accepted nonce of address a (0 if it never sent a transaction).
func Nonce(view View, a chain.Address) (uint64, error) {
	var r accountRecord
	if _, err := get(view, nonceKey(a), "account", &r); err != nil {
		return 0, err
	}
	return r.Nonce, nil
}

// AuthorityProposal returns the proposal with id, or nil, nil (also once the block at its
// ExpiresHeight has run: expired proposals leave state).
func AuthorityProposal(view View, id chain.Hash) (*ProposalRecord, error) {
	var r ProposalRecord
	found, err := get(view, proposalKey(id), "proposal", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// EvidenceAccepted returns the record of a punished offence (chain.Evidence.Key()), or nil, nil
// (also once the block at VoteHeight+MaxEvidenceAge+1 has run and the record expired).
func EvidenceAccepted(view View, key chain.Hash) (*EvidenceRecord, error) {
	var r EvidenceRecord
	found, err := get(view, evidenceKey(key), "evidence", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// LicensingAuthorities returns the genesis licensing authorities; the set may be empty (then no
// provider can register), so callers must not Validate it.
func LicensingAuthorities(view View) (*chain.AuthoritySet, error) {
	return readSet(view, keyLicensing, "licensing authorities")
}

// SignerInfo is what a mempool needs to admit a signing key's transaction, read from committed
// state after block H.
type SignerInfo struct {
	// Registered: the key is the current key of a member that has not left, an authority of
	// set(H+1) or set(H+2), or an attestation issuer named in genesis. The ledger accepts nothing
	// from anyone else but a registration (chain.TxKind.IsRegistration), so a mempool can hold
	// unregistered signers' transactions to a quota of their own. A revoked or lapsed member is
	// still registered here (it may leave); the rules refuse what it may no longer do.
	Registered bool
	Patient    bool
	Provider   bool
	// Issuer: named in genesis as an issuer of some role's attestations (may revoke them).
	Issuer bool
	// Authority: a member of set(H+1) or set(H+2).
	Authority bool
	// Certifying: a member of set(H+1), the set certifying the next block; only its members'
	// evidence, authority proposals and authority votes can be valid there.
	Certifying bool
	// Member is the member id the key signs for (its own address unless it was rotated in);
	// zero for a key rotated away.
	Member chain.Address
	// Nonce is the key's last accepted nonce (0 before the first transaction); the next
	// transaction that uses a nonce carries Nonce+1.
	Nonce uint64
}

// Signer answers, by point lookups on committed state, whether the signing key pub may submit
// transactions and what its last nonce is: the signer index, the member record, the key's
// account record, the two scheduled authority sets and, for a key that is none of these, the
// genesis issuers.
func Signer(view View, pub chain.PubKey) (SignerInfo, error) {
	var s SignerInfo
	var err error
	if s.Nonce, err = Nonce(view, pub.Address()); err != nil {
		return SignerInfo{}, err
	}
	id, retired, err := ResolveSigner(view, pub)
	if err != nil {
		return SignerInfo{}, err
	}
	if !retired {
		s.Member = id
		m, err := Member(view, id)
		if err != nil {
			return SignerInfo{}, err
		}
		if m != nil && !m.Left && m.Key == pub {
			s.Registered = true
			s.Patient, s.Provider = m.Role == chain.RolePatient, m.Role == chain.RoleProvider
		}
	}
	next, after, err := Authorities(view)
	if err != nil {
		return SignerInfo{}, err
	}
	s.Certifying = next.Contains(pub)
	s.Authority = s.Certifying || after.Contains(pub)
	if !s.Registered && !s.Authority {
		if s.Issuer, err = isAnyIssuer(view, pub); err != nil {
			return SignerInfo{}, err
		}
	}
	s.Registered = s.Registered || s.Authority || s.Issuer
	return s, nil
}
