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

// Provider returns the provider registered at a, or nil, nil.
func Provider(view View, a chain.Address) (*ProviderRecord, error) {
	var r ProviderRecord
	found, err := get(view, providerKey(a), "provider", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// Patient returns the patient registered at a, or nil, nil.
func Patient(view View, a chain.Address) (*PatientRecord, error) {
	var r PatientRecord
	found, err := get(view, patientKey(a), "patient", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
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

// MemberInfo is what a mempool needs to admit a signer's transaction, read from committed state
// after block H.
type MemberInfo struct {
	// Registered: a patient, a provider, or an authority of set(H+1) or set(H+2). The ledger
	// accepts nothing from anyone else but a registration (chain.TxKind.IsRegistration), so a
	// mempool can hold unregistered signers' transactions to a quota of their own.
	Registered bool
	Patient    bool
	Provider   bool
	// Authority: a member of set(H+1) or set(H+2).
	Authority bool
	// Certifying: a member of set(H+1), the set certifying the next block; only its members'
	// evidence, authority proposals and authority votes can be valid there.
	Certifying bool
	// Nonce is the last accepted nonce (0 before the first transaction); the next transaction
	// that uses a nonce carries Nonce+1.
	Nonce uint64
}

// Member answers, by point lookups on committed state, whether pub may submit transactions and
// what its last nonce is: it reads the patient and provider records of pub's address (without
// decoding them), its account record and the two scheduled authority sets.
func Member(view View, pub chain.PubKey) (MemberInfo, error) {
	a := pub.Address()
	var m MemberInfo
	var err error
	if m.Patient, err = exists(view, patientKey(a), "patient"); err != nil {
		return MemberInfo{}, err
	}
	if m.Provider, err = exists(view, providerKey(a), "provider"); err != nil {
		return MemberInfo{}, err
	}
	if m.Nonce, err = Nonce(view, a); err != nil {
		return MemberInfo{}, err
	}
	next, after, err := Authorities(view)
	if err != nil {
		return MemberInfo{}, err
	}
	m.Certifying = next.Contains(pub)
	m.Authority = m.Certifying || after.Contains(pub)
	m.Registered = m.Patient || m.Provider || m.Authority
	return m, nil
}
