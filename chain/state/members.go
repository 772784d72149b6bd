package state

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// The member registry: records, indexes and the queries other parts call. The rules that write
// them are in roles.go.

// MaxMembersPerRole bounds the members of one attested role (providers, payers, ...), so that
// listing a role is one read of one record: a registration beyond it is refused. Patients are
// not listed and not bounded.
const MaxMembersPerRole = 4096

// MemberRecord is a registered member. Its id is the address of the key it registered with and
// never changes; Key is its current signing key (RotateKeys). Non-patient members carry the
// attestation that admitted them and their node's libp2p key; patients carry the provider that
// enrolled them. A record stays after revocation or leaving, marked, so its id is never reused.
type MemberRecord struct {
	_                struct{} `cbor:",toarray"`
	Version          uint8
	ID               chain.Address
	Role             chain.Role
	Key              chain.PubKey
	EncryptionKey    []byte
	NodeKey          chain.PubKey  // zero for patients
	Licence          chain.Licence // zero for patients
	Enroller         chain.Address // patients only
	RegisteredHeight uint64
	RegisteredTime   int64
	Revoked          bool
	RevokedHeight    uint64
	RevokedTime      int64
	RevokeReason     chain.RevocationReason
	Left             bool
	LeftHeight       uint64
}

// ProviderRecord and PatientRecord are the member records of the two roles, by their old names.
type (
	ProviderRecord = MemberRecord
	PatientRecord  = MemberRecord
)

// ActiveAt reports whether the member holds its role's rights at block time timeMs: registered
// (non-nil), not revoked, not left, and for attested roles its licence's NotAfter after timeMs.
// Lapse and revocation need no transaction: every rule compares with the block's time.
func (m *MemberRecord) ActiveAt(timeMs int64) bool {
	if m == nil || m.Revoked || m.Left {
		return false
	}
	return m.Role == chain.RolePatient || m.Licence.NotAfter > timeMs
}

// signerRecord maps a signing key's address to the member it signs for. Absent: the address is
// its own member id (or nobody's). Retired: the key was rotated away and is refused.
type signerRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Member  chain.Address
	Retired bool
}

// nodeRecord binds a member node's libp2p key to the member.
type nodeRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Member  chain.Address
}

// RoleEntry is one member in a role's list.
type RoleEntry struct {
	_        struct{} `cbor:",toarray"`
	ID       chain.Address
	NotAfter int64 // the licence's expiry: callers compare block time
}

// roleRecord lists the registered, unrevoked, not-left members of one attested role.
type roleRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Members []RoleEntry // sorted by ID
}

// enrolRecord counts a provider's enrolments in one window of block time.
type enrolRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Window  uint64 // block time / window length
	Count   uint32
}

// issuersRecord holds the genesis attestation issuers (chain.Genesis.Issuers).
type issuersRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Issuers []chain.Issuer // sorted by (role, key)
}

// AutoProposal is an open automatic removal proposal.
type AutoProposal struct {
	_             struct{} `cbor:",toarray"`
	Subject       chain.PubKey
	ID            chain.Hash
	ExpiresHeight uint64
}

// autoRecord lists the open automatic proposals, at most one per subject (at most
// chain.MaxAuthorities), sorted by subject.
type autoRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Open    []AutoProposal
}

// Member returns the member with id, or nil, nil. The record may be lapsed, revoked or left:
// callers that grant rights ask ActiveAt.
func Member(view View, id chain.Address) (*MemberRecord, error) {
	var r MemberRecord
	found, err := get(view, memberKey(id), "member", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// ResolveSigner returns the member id a signing key signs for: the id its rotation bound it to,
// or its own address. retired is true for a key rotated away, which signs for nobody.
func ResolveSigner(view View, key chain.PubKey) (id chain.Address, retired bool, err error) {
	a := key.Address()
	var r signerRecord
	found, err := get(view, signerKey(a), "signer index", &r)
	if err != nil {
		return chain.Address{}, false, err
	}
	if !found {
		return a, false, nil
	}
	if r.Retired {
		return chain.Address{}, true, nil
	}
	return r.Member, false, nil
}

// MemberByKey returns the member whose current signing key is key, or nil, nil (never a member,
// or a key rotated away). Use it for keys that sign outside transactions (access requests).
func MemberByKey(view View, key chain.PubKey) (*MemberRecord, error) {
	id, retired, err := ResolveSigner(view, key)
	if err != nil || retired {
		return nil, err
	}
	m, err := Member(view, id)
	if err != nil || m == nil || m.Key != key {
		return nil, err
	}
	return m, nil
}

// MemberByNode returns the member whose node runs under the libp2p identity with raw Ed25519
// public key nodeKey, or nil, nil. A member that left has no node; a revoked or lapsed one is
// returned (ActiveAt says whether to admit it).
func MemberByNode(view View, nodeKey chain.PubKey) (*MemberRecord, error) {
	var r nodeRecord
	found, err := get(view, nodeIndexKey(nodeKey), "node index", &r)
	if err != nil || !found {
		return nil, err
	}
	m, err := Member(view, r.Member)
	if err != nil {
		return nil, err
	}
	if m == nil || m.NodeKey != nodeKey {
		return nil, fmt.Errorf("state: node index names member %s, which does not hold the key (state corrupt?)", r.Member)
	}
	return m, nil
}

// Provider returns the provider registered at a, or nil, nil (also when a is a member of another
// role). It may be lapsed, revoked or left: ActiveProvider is the one that grants rights.
func Provider(view View, a chain.Address) (*MemberRecord, error) {
	return memberOfRole(view, a, chain.RoleProvider)
}

// Patient returns the patient registered at a, or nil, nil. A patient that left is returned,
// marked Left.
func Patient(view View, a chain.Address) (*MemberRecord, error) {
	return memberOfRole(view, a, chain.RolePatient)
}

func memberOfRole(view View, a chain.Address, role chain.Role) (*MemberRecord, error) {
	m, err := Member(view, a)
	if err != nil || m == nil || m.Role != role {
		return nil, err
	}
	return m, nil
}

// ActiveProvider returns the provider at a if it is active at block time timeMs, or nil, nil.
func ActiveProvider(view View, a chain.Address, timeMs int64) (*MemberRecord, error) {
	m, err := activeProvider(view, a, timeMs)
	if err != nil {
		if _, refused := err.(*notActiveError); refused {
			return nil, nil
		}
		return nil, err
	}
	return m, nil
}

// notActiveError is activeProvider's refusal (as opposed to a storage error).
type notActiveError struct{ msg string }

func (e *notActiveError) Error() string { return e.msg }

// activeProvider is the one test behind every provider right in the state machine (authoring,
// granting to, holding, requesting, emergency access, enrolling): a provider registered at a and
// active at block time timeMs. It says why not, for error messages.
func activeProvider(view View, a chain.Address, timeMs int64) (*MemberRecord, error) {
	m, err := Member(view, a)
	if err != nil {
		return nil, err
	}
	switch {
	case m == nil || m.Role != chain.RoleProvider:
		return nil, &notActiveError{fmt.Sprintf("state: %s is not a registered provider", a)}
	case m.Left:
		return nil, &notActiveError{fmt.Sprintf("state: provider %s left at height %d", a, m.LeftHeight)}
	case m.Revoked:
		return nil, &notActiveError{fmt.Sprintf("state: provider %s's licence was revoked (%s) at height %d", a, m.RevokeReason, m.RevokedHeight)}
	case m.Licence.NotAfter <= timeMs:
		return nil, &notActiveError{fmt.Sprintf("state: provider %s's licence expired at %d (block time %d)", a, m.Licence.NotAfter, timeMs)}
	}
	return m, nil
}

// activePatient is the test behind every patient right: registered as a patient and not left.
func activePatient(view View, a chain.Address) (*MemberRecord, error) {
	m, err := Member(view, a)
	if err != nil {
		return nil, err
	}
	switch {
	case m == nil || m.Role != chain.RolePatient:
		return nil, &notActiveError{fmt.Sprintf("state: %s is not a registered patient", a)}
	case m.Left:
		return nil, &notActiveError{fmt.Sprintf("state: patient %s left at height %d", a, m.LeftHeight)}
	}
	return m, nil
}

// Members returns the registered, unrevoked, not-left members of an attested role, sorted by id,
// with their licence expiry (lapsed ones included: compare NotAfter with the time). One read.
func Members(view View, role chain.Role) ([]RoleEntry, error) {
	r, err := readRole(view, role)
	if err != nil {
		return nil, err
	}
	return r.Members, nil
}

// ActiveProviders returns, sorted, the ids of the providers active at block time timeMs.
func ActiveProviders(view View, timeMs int64) ([]chain.Address, error) {
	es, err := Members(view, chain.RoleProvider)
	if err != nil {
		return nil, err
	}
	var out []chain.Address
	for _, e := range es {
		if e.NotAfter > timeMs {
			out = append(out, e.ID)
		}
	}
	return out, nil
}

func readRole(view View, role chain.Role) (*roleRecord, error) {
	r := &roleRecord{Version: RecordVersion}
	if _, err := get(view, roleKey(role), "role list", r); err != nil {
		return nil, err
	}
	if len(r.Members) > MaxMembersPerRole {
		return nil, fmt.Errorf("state: stored %s list has %d members, limit %d", role, len(r.Members), MaxMembersPerRole)
	}
	return r, nil
}

// Issuers returns the genesis attestation issuers of roles other than provider (those are
// LicensingAuthorities), sorted by role and key.
func Issuers(view View) ([]chain.Issuer, error) {
	var r issuersRecord
	if err := mustGet(view, keyIssuers, "attestation issuers", &r); err != nil {
		return nil, err
	}
	return r.Issuers, nil
}

// IsIssuer reports whether key is named in genesis as an issuer of role's attestations.
func IsIssuer(view View, role chain.Role, key chain.PubKey) (bool, error) {
	if role == chain.RoleProvider {
		lic, err := LicensingAuthorities(view)
		if err != nil {
			return false, err
		}
		return lic.Contains(key), nil
	}
	is, err := Issuers(view)
	if err != nil {
		return false, err
	}
	_, found := slices.BinarySearchFunc(is, chain.Issuer{Role: role, Key: key}, compareIssuer)
	return found, nil
}

// isAnyIssuer reports whether key issues attestations of any role.
func isAnyIssuer(view View, key chain.PubKey) (bool, error) {
	lic, err := LicensingAuthorities(view)
	if err != nil {
		return false, err
	}
	if lic.Contains(key) {
		return true, nil
	}
	is, err := Issuers(view)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(is, func(x chain.Issuer) bool { return x.Key == key }), nil
}

func compareIssuer(a, b chain.Issuer) int {
	if a.Role != b.Role {
		return int(a.Role) - int(b.Role)
	}
	return compareKeys(a.Key, b.Key)
}

// Enrolments returns how many patients provider enrolled in the window holding block time
// timeMs, and the limit per window.
func Enrolments(view View, provider chain.Address, timeMs int64) (used, limit uint32, err error) {
	p, err := Params(view)
	if err != nil {
		return 0, 0, err
	}
	limit, window := p.EnrolmentQuota()
	var r enrolRecord
	if _, err := get(view, enrolKey(provider), "enrolment counter", &r); err != nil {
		return 0, 0, err
	}
	if r.Window == enrolWindow(timeMs, window) {
		used = r.Count
	}
	return used, limit, nil
}

func enrolWindow(timeMs, windowMs int64) uint64 {
	if timeMs < 0 {
		return 0
	}
	return uint64(timeMs / windowMs)
}

// OpenAutomaticProposals returns the automatic removal proposals still open for the next block,
// in subject order: honest authorities vote for each (see docs/security.md, "Roles").
func OpenAutomaticProposals(view View) ([]*ProposalRecord, error) {
	h, _, err := Tip(view)
	if err != nil {
		return nil, err
	}
	r, err := readAuto(view)
	if err != nil {
		return nil, err
	}
	var out []*ProposalRecord
	for _, a := range r.Open {
		p, err := AuthorityProposal(view, a.ID)
		if err != nil {
			return nil, err
		}
		if p != nil && p.OpenAt(h+1) {
			out = append(out, p)
		}
	}
	return out, nil
}

func readAuto(view View) (*autoRecord, error) {
	r := &autoRecord{Version: RecordVersion}
	if _, err := get(view, keyAuto, "automatic proposals", r); err != nil {
		return nil, err
	}
	if len(r.Open) > chain.MaxAuthorities {
		return nil, fmt.Errorf("state: stored automatic proposals: %d, limit %d", len(r.Open), chain.MaxAuthorities)
	}
	return r, nil
}

func compareKeys(a, b chain.PubKey) int { return bytes.Compare(a[:], b[:]) }
