package chain

import (
	"bytes"
	"fmt"
	"slices"
)

// Membership on the ledger. Every participant is a member with one role. A non-patient member is
// admitted by an attestation (a Licence) from an issuer named in genesis for that role; a patient
// is enrolled by an active provider's co-signature. "Authority" is not a role: an authority is an
// active provider whose key is in the consensus authority set.

// Role is what a member is on the ledger. Numbers are part of the encoding: never reuse one.
type Role uint8

// Roles. Only patients and providers have rules today; the others are admitted (so that later
// issues find them on the ledger) and carry no rights yet.
const (
	RolePatient         Role = 1
	RoleProvider        Role = 2
	RolePayer           Role = 3
	RolePharmacy        Role = 4
	RoleManufacturer    Role = 5
	RoleDistributor     Role = 6
	RoleResearchSponsor Role = 7
	RoleReviewBoard     Role = 8
	maxRole                  = RoleReviewBoard
)

var roleNames = [...]string{
	RolePatient: "patient", RoleProvider: "provider", RolePayer: "payer", RolePharmacy: "pharmacy",
	RoleManufacturer: "manufacturer", RoleDistributor: "distributor", RoleResearchSponsor: "research-sponsor",
	RoleReviewBoard: "review-board",
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r >= RolePatient && r <= maxRole }

// Attested reports whether the role is admitted by an issuer's attestation (every role but
// patient).
func (r Role) Attested() bool { return r.Valid() && r != RolePatient }

func (r Role) String() string {
	if r.Valid() {
		return roleNames[r]
	}
	return fmt.Sprintf("role-%d", uint8(r))
}

// MarshalText gives the JSON form ("provider"). The canonical CBOR encoding stays the number:
// the encoder ignores text marshalers.
func (r Role) MarshalText() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("chain: unknown role %d", uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText parses the JSON form.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRole parses a role's name ("provider", "review-board").
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if n != "" && n == s {
			return Role(i), nil
		}
	}
	return 0, fmt.Errorf("chain: unknown role %q", s)
}

// MaxIssuers bounds the attestation issuers a genesis names.
const MaxIssuers = 256

// Issuer is a body whose attestations admit members of Role (a payers' registry, a pharmacy
// board). Providers' issuers are Genesis.LicensingAuthorities; Genesis.Issuers names the others.
type Issuer struct {
	_    struct{} `cbor:",toarray"`
	Role Role     `json:"role"`
	Key  PubKey   `json:"key"`
	Name string   `json:"name"`
}

// validateIssuers checks genesis issuers: attested roles other than provider (providers' issuers
// are the licensing authorities, named once), names bounded, no key twice for one role, at most
// MaxIssuers, sorted by (role, key) so one genesis has one encoding.
func validateIssuers(is []Issuer) error {
	if len(is) > MaxIssuers {
		return fmt.Errorf("chain: genesis names %d attestation issuers, limit %d", len(is), MaxIssuers)
	}
	for i, x := range is {
		switch {
		case !x.Role.Attested():
			return fmt.Errorf("chain: attestation issuer %s for role %s: only attested roles have issuers", x.Key.Short(), x.Role)
		case x.Role == RoleProvider:
			return fmt.Errorf("chain: attestation issuer %s for providers: name it in licensing_authorities", x.Key.Short())
		case len(x.Name) > MaxNameLen:
			return fmt.Errorf("chain: attestation issuer %s name longer than %d bytes", x.Key.Short(), MaxNameLen)
		case x.Key == PubKey{}:
			return fmt.Errorf("chain: attestation issuer %q without a key", x.Name)
		}
		if i > 0 && compareIssuers(is[i-1], x) >= 0 {
			return fmt.Errorf("chain: attestation issuers not sorted by role and key, or %s named twice for %s", x.Key.Short(), x.Role)
		}
	}
	return nil
}

func compareIssuers(a, b Issuer) int {
	if a.Role != b.Role {
		return int(a.Role) - int(b.Role)
	}
	return bytes.Compare(a.Key[:], b.Key[:])
}

// SortIssuers orders issuers as genesis requires (by role, then key).
func SortIssuers(is []Issuer) []Issuer {
	out := slices.Clone(is)
	slices.SortFunc(out, compareIssuers)
	return out
}

// MaxEncryptionKeyLen bounds an encryption public key (an ML-KEM-768+X25519 hybrid key is about
// 1.2 KB).
const MaxEncryptionKeyLen = 2048

// MaxLicenceFieldLen bounds licence number and jurisdiction strings.
const MaxLicenceFieldLen = 64

// LicenceVersion is the attestation encoding version. Version 1 (no role, no node key) is
// refused.
const LicenceVersion = 2

// Licence is an issuer's signed attestation that Subject holds Role (licence Number in
// Jurisdiction) until NotAfter (Unix milliseconds, compared with block time), and that the
// member's node runs under the libp2p identity whose raw Ed25519 public key is NodeKey.
type Licence struct {
	_            struct{} `cbor:",toarray"`
	Version      uint8
	Role         Role
	Subject      PubKey
	NodeKey      PubKey
	Number       string
	Jurisdiction string
	NotAfter     int64
	Issuer       PubKey
	Sig          Signature
}

type licenceSigned struct {
	_            struct{} `cbor:",toarray"`
	Version      uint8
	Role         Role
	Subject      PubKey
	NodeKey      PubKey
	Number       string
	Jurisdiction string
	NotAfter     int64
	Issuer       PubKey
}

// SignedBytes is what the issuer signs: every field but the signature.
func (l *Licence) SignedBytes() []byte {
	return Encode(licenceSigned{Version: l.Version, Role: l.Role, Subject: l.Subject, NodeKey: l.NodeKey, Number: l.Number,
		Jurisdiction: l.Jurisdiction, NotAfter: l.NotAfter, Issuer: l.Issuer})
}

// Sign fills in Version, Issuer and Sig.
func (l *Licence) Sign(issuer PrivKey, chainID string) {
	l.Version = LicenceVersion
	l.Issuer = issuer.Public()
	l.Sig = issuer.Sign(DomainLicence, chainID, l.SignedBytes())
}

// VerifySig checks the issuer's signature.
func (l *Licence) VerifySig(chainID string) error {
	if err := Verify(l.Issuer, DomainLicence, chainID, l.SignedBytes(), l.Sig); err != nil {
		return fmt.Errorf("chain: licence %q: %w", l.Number, err)
	}
	return nil
}

// Validate checks the licence's form.
func (l *Licence) Validate() error {
	if err := checkVersion("licence", l.Version, LicenceVersion); err != nil {
		return err
	}
	switch {
	case !l.Role.Attested():
		return fmt.Errorf("chain: licence for role %s: only attested roles carry a licence", l.Role)
	case l.NodeKey == PubKey{}:
		return fmt.Errorf("chain: licence %q names no node key", l.Number)
	case l.Number == "" || len(l.Number) > MaxLicenceFieldLen || len(l.Jurisdiction) > MaxLicenceFieldLen:
		return fmt.Errorf("chain: licence number must be 1..%d bytes and jurisdiction at most %d", MaxLicenceFieldLen, MaxLicenceFieldLen)
	}
	return nil
}

// RegisterMember (kind 1) registers the signer as a member of Licence.Role: the licence's Subject
// must be the signer and its issuer one named in genesis for the role. One registration per
// address; the licence's NodeKey must not be bound to another member.
type RegisterMember struct {
	_             struct{} `cbor:",toarray"`
	Licence       Licence
	EncryptionKey []byte
}

// RegisterProvider is the former name of RegisterMember, kept for callers.
type RegisterProvider = RegisterMember

// Validate checks the body's form.
func (r *RegisterMember) Validate() error {
	if err := r.Licence.Validate(); err != nil {
		return err
	}
	return validateEncryptionKey(r.EncryptionKey)
}

// RegisterPatient registers the signer's key as a patient. The patient's pseudonymous id is the
// signer's Address; nothing else about the person is on the ledger. Enroller is the active
// provider (the practice) that enrols the patient; EnrollerSig is its signature over
// EnrolmentBytes, made with its current signing key. Without it nobody can register.
type RegisterPatient struct {
	_             struct{} `cbor:",toarray"`
	EncryptionKey []byte
	Enroller      Address
	EnrollerSig   Signature
}

type enrolmentSigned struct {
	_             struct{} `cbor:",toarray"`
	Patient       PubKey
	EncryptionKey []byte
}

// EnrolmentBytes is what an enroller signs (in DomainEnrolment, with the chain id): the
// patient's signing key and encryption key.
func EnrolmentBytes(patient PubKey, encryptionKey []byte) []byte {
	return Encode(enrolmentSigned{Patient: patient, EncryptionKey: encryptionKey})
}

// NewEnrolment returns a RegisterPatient body for patient, co-signed by enroller (whose member id
// is enrollerID: the address of its first key).
func NewEnrolment(enroller PrivKey, enrollerID Address, chainID string, patient PubKey, encryptionKey []byte) *RegisterPatient {
	return &RegisterPatient{
		EncryptionKey: encryptionKey, Enroller: enrollerID,
		EnrollerSig: enroller.Sign(DomainEnrolment, chainID, EnrolmentBytes(patient, encryptionKey)),
	}
}

// VerifyEnrolment checks the enroller's signature with its current signing key.
func (r *RegisterPatient) VerifyEnrolment(enrollerKey PubKey, chainID string, patient PubKey) error {
	if err := Verify(enrollerKey, DomainEnrolment, chainID, EnrolmentBytes(patient, r.EncryptionKey), r.EnrollerSig); err != nil {
		return fmt.Errorf("chain: enrolment co-signature: %w", err)
	}
	return nil
}

// Validate checks the body's form.
func (r *RegisterPatient) Validate() error {
	if r.Enroller == (Address{}) {
		return fmt.Errorf("chain: patient registration without an enrolling provider")
	}
	return validateEncryptionKey(r.EncryptionKey)
}

func validateEncryptionKey(k []byte) error {
	if len(k) == 0 || len(k) > MaxEncryptionKeyLen {
		return fmt.Errorf("chain: encryption key must be 1..%d bytes, got %d", MaxEncryptionKeyLen, len(k))
	}
	return nil
}

// RevocationReason says why an issuer revoked an attestation: a code from a fixed list, so no
// free text reaches the ledger.
type RevocationReason uint8

// Revocation reasons.
const (
	RevokeSuspended     RevocationReason = 1 // licence suspended by the issuer
	RevokeWithdrawn     RevocationReason = 2 // licence withdrawn or surrendered
	RevokeKeyCompromise RevocationReason = 3 // the member's keys are not under its control
	RevokeMisconduct    RevocationReason = 4
	RevokeOther         RevocationReason = 5
)

func (r RevocationReason) String() string {
	switch r {
	case RevokeSuspended:
		return "suspended"
	case RevokeWithdrawn:
		return "withdrawn"
	case RevokeKeyCompromise:
		return "key-compromise"
	case RevokeMisconduct:
		return "misconduct"
	case RevokeOther:
		return "other"
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// RevokeAttestation (kind 13) revokes the attestation of member Subject (its member id) for Role.
// Only an issuer named in genesis for Role may send it; issuers are not members, yet their
// transactions are admitted. It takes effect at the block's time.
type RevokeAttestation struct {
	_       struct{} `cbor:",toarray"`
	Subject Address
	Role    Role
	Reason  RevocationReason
}

// Validate checks the body's form.
func (r *RevokeAttestation) Validate() error {
	switch {
	case r.Subject == (Address{}):
		return fmt.Errorf("chain: revocation without a subject")
	case !r.Role.Attested():
		return fmt.Errorf("chain: revocation for role %s: only attested roles can be revoked", r.Role)
	case r.Reason < RevokeSuspended || r.Reason > RevokeOther:
		return fmt.Errorf("chain: unknown revocation reason %d", r.Reason)
	}
	return nil
}

// RotateKeys (kind 14) replaces some of the signing member's keys; a zero field is left as it
// is. A new signing key proves possession by signing RotationProofBytes (in DomainKeyRotation):
// the member keeps its id, and its old key is refused from then on. Patients have no node key.
type RotateKeys struct {
	_             struct{} `cbor:",toarray"`
	NodeKey       PubKey
	EncryptionKey []byte
	SigningKey    PubKey
	Proof         Signature // by SigningKey; zero when SigningKey is
}

type rotationSigned struct {
	_       struct{} `cbor:",toarray"`
	OldAddr Address
	NewKey  PubKey
}

// RotationProofBytes is what a new signing key signs: the address of the key it replaces and
// itself, so the proof binds one rotation of one member.
func RotationProofBytes(old Address, newKey PubKey) []byte {
	return Encode(rotationSigned{OldAddr: old, NewKey: newKey})
}

// NewSigningKeyRotation returns a RotateKeys body moving the member signing with old to newKey.
func NewSigningKeyRotation(old PubKey, newKey PrivKey, chainID string) *RotateKeys {
	return &RotateKeys{
		SigningKey: newKey.Public(),
		Proof:      newKey.Sign(DomainKeyRotation, chainID, RotationProofBytes(old.Address(), newKey.Public())),
	}
}

// VerifyProof checks the new signing key's proof of possession.
func (r *RotateKeys) VerifyProof(chainID string, old Address) error {
	if err := Verify(r.SigningKey, DomainKeyRotation, chainID, RotationProofBytes(old, r.SigningKey), r.Proof); err != nil {
		return fmt.Errorf("chain: new signing key's proof of possession: %w", err)
	}
	return nil
}

// Validate checks the body's form.
func (r *RotateKeys) Validate() error {
	if r.NodeKey == (PubKey{}) && len(r.EncryptionKey) == 0 && r.SigningKey == (PubKey{}) {
		return fmt.Errorf("chain: key rotation changes no key")
	}
	if len(r.EncryptionKey) > 0 {
		if err := validateEncryptionKey(r.EncryptionKey); err != nil {
			return err
		}
	}
	if (r.SigningKey == PubKey{}) != (r.Proof == Signature{}) {
		return fmt.Errorf("chain: a new signing key needs its proof of possession, and only then")
	}
	return nil
}

// Leave (kind 15): the signing member leaves the network and loses every right. An authority
// must be removed from the set first.
type Leave struct {
	_ struct{} `cbor:",toarray"`
}

// Validate checks the body's form (there is nothing in it).
func (*Leave) Validate() error { return nil }
