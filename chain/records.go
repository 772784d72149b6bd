package chain

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Record, consent and audit transaction bodies. None of them carries record contents or anything
// that names a person: records are known by random ids, patients by the address of their key,
// providers by the address of theirs. The resource type (e.g. "Observation") is on the ledger in
// clear because consent scopes name types and every holder must be able to check them.

// Limits on record transactions.
const (
	MaxAnchorsPerTx       = 64
	MaxResourceTypeLen    = 64
	MaxPurposeLen         = 64
	MaxReasonLen          = 256 // a holder's refusal reason
	MaxScopeItems         = 64
	MaxAccessEntriesPerTx = 128
	MaxEraseRecords       = 256
	// EmergencyAccessMs is how long a break-glass access stays open after the block that records
	// it: 24 hours.
	EmergencyAccessMs = 24 * 60 * 60 * 1000
)

// DomainAccess signs AccessRequests.
const DomainAccess Domain = "medledger/access-request/v1"

// AccessRequestVersion is the access request encoding version. Version 2 bound the request to
// the requester's node and to the one holder it is addressed to; version 3 adds the role of the
// person who asked. Earlier versions are refused.
const AccessRequestVersion = 3

// AccessRolePatient is the access role of a patient reading their own records with their wallet key.
// Other roles are the requesting practice's staff roles (clinician, operator, …), as it states
// them: the ledger checks their form, not who holds them.
const AccessRolePatient = "patient"

// MaxRoleLen bounds an access request's role.
const MaxRoleLen = 24

// RecordAnchor anchors one version of one record. The record's ciphertext (a blob) lives off the
// ledger; the anchor fixes its hash and size so every fetcher can check a copy before decrypting.
type RecordAnchor struct {
	_            struct{} `cbor:",toarray"`
	ID           Hash     // random and unique per version
	Patient      Address  // the patient's pseudonymous id
	ResourceType string   // FHIR resource type
	Version      uint64   // 1 for a new record, previous + 1 for an amendment
	Supersedes   Hash     // the previous version's ID; zero for version 1
	// CiphertextHash is Sum256 of the encoded ciphertext, which is also its blob address.
	CiphertextHash Hash
	Size           uint64 // bytes of encoded ciphertext
}

// Validate checks the anchor's form.
func (a *RecordAnchor) Validate() error {
	switch {
	case a.ID.IsZero():
		return errors.New("chain: record anchor without an id")
	case a.Patient == (Address{}):
		return errors.New("chain: record anchor without a patient")
	case a.CiphertextHash.IsZero():
		return errors.New("chain: record anchor without a ciphertext hash")
	case a.Size == 0:
		return errors.New("chain: record anchor with size 0")
	case a.Version == 0:
		return errors.New("chain: record version must start at 1")
	case a.Version == 1 && !a.Supersedes.IsZero():
		return errors.New("chain: record version 1 cannot supersede another")
	case a.Version > 1 && a.Supersedes.IsZero():
		return fmt.Errorf("chain: record version %d must name the version it supersedes", a.Version)
	case a.Supersedes == a.ID:
		return errors.New("chain: record cannot supersede itself")
	}
	return validateResourceType(a.ResourceType)
}

// AnchorRecords anchors records authored by the signer, a registered provider.
type AnchorRecords struct {
	_       struct{} `cbor:",toarray"`
	Records []RecordAnchor
}

// Validate checks the body's form: 1..MaxAnchorsPerTx anchors with distinct ids.
func (b *AnchorRecords) Validate() error {
	if len(b.Records) == 0 || len(b.Records) > MaxAnchorsPerTx {
		return fmt.Errorf("chain: anchor transaction must hold 1..%d records, got %d", MaxAnchorsPerTx, len(b.Records))
	}
	seen := make(map[Hash]bool, len(b.Records))
	for i := range b.Records {
		if err := b.Records[i].Validate(); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if seen[b.Records[i].ID] {
			return fmt.Errorf("chain: record %s anchored twice in one transaction", b.Records[i].ID.Short())
		}
		seen[b.Records[i].ID] = true
	}
	return nil
}

// ScopeKind says which records a consent covers.
type ScopeKind uint8

// Scope kinds.
const (
	ScopeAll     ScopeKind = 1 // every record of the patient, present and future
	ScopeTypes   ScopeKind = 2 // records of the listed FHIR resource types
	ScopeRecords ScopeKind = 3 // the listed records (by the id of their first version) and their amendments
)

func (k ScopeKind) String() string {
	switch k {
	case ScopeAll:
		return "all"
	case ScopeTypes:
		return "types"
	case ScopeRecords:
		return "records"
	}
	return fmt.Sprintf("scope-%d", uint8(k))
}

// ConsentScope is what a consent covers.
type ConsentScope struct {
	_       struct{} `cbor:",toarray"`
	Kind    ScopeKind
	Types   []string // ScopeTypes only: sorted, distinct
	Records []Hash   // ScopeRecords only: sorted, distinct first-version ids
}

// Validate checks the scope's form: the list its kind uses is 1..MaxScopeItems sorted distinct
// items and the other list is empty.
func (s *ConsentScope) Validate() error {
	switch s.Kind {
	case ScopeAll:
		if len(s.Types) != 0 || len(s.Records) != 0 {
			return errors.New("chain: scope all lists no types or records")
		}
	case ScopeTypes:
		if len(s.Types) == 0 || len(s.Types) > MaxScopeItems || len(s.Records) != 0 {
			return fmt.Errorf("chain: scope types lists 1..%d types and no records", MaxScopeItems)
		}
		for i, t := range s.Types {
			if err := validateResourceType(t); err != nil {
				return err
			}
			if i > 0 && s.Types[i-1] >= t {
				return errors.New("chain: scope types must be sorted and distinct")
			}
		}
	case ScopeRecords:
		if len(s.Records) == 0 || len(s.Records) > MaxScopeItems || len(s.Types) != 0 {
			return fmt.Errorf("chain: scope records lists 1..%d records and no types", MaxScopeItems)
		}
		for i, r := range s.Records {
			if r.IsZero() {
				return errors.New("chain: scope names a zero record id")
			}
			if i > 0 && slices.Compare(s.Records[i-1][:], r[:]) >= 0 {
				return errors.New("chain: scope records must be sorted and distinct")
			}
		}
	default:
		return fmt.Errorf("chain: unknown scope kind %d", s.Kind)
	}
	return nil
}

// Covers reports whether the scope covers a record whose first version has id root and whose
// resource type is typ.
func (s *ConsentScope) Covers(root Hash, typ string) bool {
	switch s.Kind {
	case ScopeAll:
		return true
	case ScopeTypes:
		_, ok := slices.BinarySearch(s.Types, typ)
		return ok
	case ScopeRecords:
		_, ok := slices.BinarySearchFunc(s.Records, root, func(a, b Hash) int { return slices.Compare(a[:], b[:]) })
		return ok
	}
	return false
}

// ConsentGrant is a patient's (the signer's) consent for a provider to read records. Its id is
// the granting transaction's hash.
type ConsentGrant struct {
	_       struct{} `cbor:",toarray"`
	Grantee Address  // a registered provider
	Scope   ConsentScope
	Purpose string // what the grantee may read for (a PurposeOfUse code such as "TREAT"); must match the request's
	// ExpiresMs is the block time (Unix ms) from which the consent no longer applies; 0 means
	// until revoked.
	ExpiresMs int64
}

// Validate checks the body's form.
func (g *ConsentGrant) Validate() error {
	if g.Grantee == (Address{}) {
		return errors.New("chain: consent without a grantee")
	}
	if err := validatePurpose(g.Purpose); err != nil {
		return err
	}
	if g.ExpiresMs < 0 {
		return errors.New("chain: consent expiry is negative")
	}
	return g.Scope.Validate()
}

// ConsentRevoke withdraws one of the signer's (the patient's) consents.
type ConsentRevoke struct {
	_       struct{} `cbor:",toarray"`
	Consent Hash     // the granting transaction's hash
}

// Validate checks the body's form.
func (r *ConsentRevoke) Validate() error {
	if r.Consent.IsZero() {
		return errors.New("chain: revoke without a consent id")
	}
	return nil
}

// EmergencyReason is why a provider breaks the glass: a code from a fixed list, so no free text
// (which could name the patient or describe the condition) ever reaches the ledger. The node
// keeps whatever the provider typed in its own local log.
type EmergencyReason uint8

// Emergency reasons. Numbers are part of the encoding: never reuse one.
const (
	// ReasonUnableToConsent: the patient is unconscious or otherwise unable to consent.
	ReasonUnableToConsent EmergencyReason = 1
	// ReasonLifeThreatening: a life-threatening emergency.
	ReasonLifeThreatening EmergencyReason = 2
	// ReasonUrgentTreatment: urgent treatment for which consent cannot be obtained in time.
	ReasonUrgentTreatment EmergencyReason = 3
	// ReasonPublicHealth: a declared public-health emergency.
	ReasonPublicHealth EmergencyReason = 4
	// ReasonContinuityOfCare: continuity of care while the patient cannot be reached.
	ReasonContinuityOfCare EmergencyReason = 5
)

var emergencyReasonNames = [...]string{
	ReasonUnableToConsent:  "unable-to-consent",
	ReasonLifeThreatening:  "life-threatening",
	ReasonUrgentTreatment:  "urgent-treatment",
	ReasonPublicHealth:     "public-health",
	ReasonContinuityOfCare: "continuity-of-care",
}

// Valid reports whether r is on the list.
func (r EmergencyReason) Valid() bool {
	return r >= ReasonUnableToConsent && int(r) < len(emergencyReasonNames)
}

func (r EmergencyReason) String() string {
	if r.Valid() {
		return emergencyReasonNames[r]
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// EmergencyReasons lists every valid reason, in code order.
func EmergencyReasons() []EmergencyReason {
	out := make([]EmergencyReason, 0, len(emergencyReasonNames)-1)
	for r := ReasonUnableToConsent; r.Valid(); r++ {
		out = append(out, r)
	}
	return out
}

// ParseEmergencyReason accepts a reason's name (String) or its number.
func ParseEmergencyReason(s string) (EmergencyReason, error) {
	for _, r := range EmergencyReasons() {
		if s == r.String() || s == fmt.Sprint(uint8(r)) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("chain: unknown emergency reason %q (one of %v)", s, EmergencyReasons())
}

// EmergencyAccessVersion is the emergency access body's encoding version. Version 1 had a
// free-text reason and no version field; it no longer decodes.
const EmergencyAccessVersion = 2

// DomainEmergencyCoSign signs an authority's co-signature of an emergency access.
const DomainEmergencyCoSign Domain = "medledger/emergency-cosign/v1"

// EmergencyAccess is a provider's (the signer's) break-glass access to a patient's records
// without consent. It gives a reason code; it opens access for EmergencyAccessMs from the
// block's time and shows in the patient's audit view. Its id is the transaction's hash.
//
// The ledger allows a provider one emergency access per window without a co-signature; further
// ones in the window need CoSig, by a current authority other than the provider (CoSigner), over
// EmergencyAccess.CoSignedBytes, and a hard cap applies even then (see chain/state).
type EmergencyAccess struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Patient    Address
	Purpose    string
	ReasonCode EmergencyReason
	CoSigner   PubKey    // zero when not co-signed
	CoSig      Signature // zero when not co-signed
}

// Validate checks the body's form: a listed reason code, and a co-signer exactly when a
// co-signature.
func (e *EmergencyAccess) Validate() error {
	if err := checkVersion("emergency access", e.Version, EmergencyAccessVersion); err != nil {
		return err
	}
	if e.Patient == (Address{}) {
		return errors.New("chain: emergency access without a patient")
	}
	if err := validatePurpose(e.Purpose); err != nil {
		return err
	}
	if !e.ReasonCode.Valid() {
		return fmt.Errorf("chain: emergency access needs a reason code from the list (1..%d), got %d", len(emergencyReasonNames)-1, e.ReasonCode)
	}
	if (e.CoSigner == PubKey{}) != (e.CoSig == Signature{}) {
		return errors.New("chain: emergency access co-signer and co-signature go together")
	}
	return nil
}

// CoSigned reports whether the body carries a co-signature.
func (e *EmergencyAccess) CoSigned() bool { return e.CoSigner != PubKey{} }

type emergencyCoSigned struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Provider   PubKey
	Patient    Address
	Purpose    string
	ReasonCode EmergencyReason
	CoSigner   PubKey
	Window     uint64
	Ordinal    uint32
}

// CoSignedBytes is what the co-signer signs: the body without the co-signature, the provider
// that will submit it, and the provider's emergency window and the ordinal of this access in it
// (chain/state counts them). The provider binds the signature to one submitter, and the window
// and ordinal make it good for exactly one access, so it can be neither copied from the ledger
// by another provider nor replayed by the same one.
func (e *EmergencyAccess) CoSignedBytes(provider PubKey, window uint64, ordinal uint32) []byte {
	return Encode(emergencyCoSigned{Version: e.Version, Provider: provider, Patient: e.Patient, Purpose: e.Purpose,
		ReasonCode: e.ReasonCode, CoSigner: e.CoSigner, Window: window, Ordinal: ordinal})
}

// CoSign fills in Version, CoSigner and CoSig for the given provider, window and ordinal.
func (e *EmergencyAccess) CoSign(key PrivKey, chainID string, provider PubKey, window uint64, ordinal uint32) {
	e.Version = EmergencyAccessVersion
	e.CoSigner = key.Public()
	e.CoSig = key.Sign(DomainEmergencyCoSign, chainID, e.CoSignedBytes(provider, window, ordinal))
}

// VerifyCoSig checks the co-signature under chainID for the given provider, window and ordinal.
func (e *EmergencyAccess) VerifyCoSig(chainID string, provider PubKey, window uint64, ordinal uint32) error {
	if !e.CoSigned() {
		return errors.New("chain: emergency access is not co-signed")
	}
	if err := Verify(e.CoSigner, DomainEmergencyCoSign, chainID, e.CoSignedBytes(provider, window, ordinal), e.CoSig); err != nil {
		return fmt.Errorf("chain: emergency access co-signature: %w", err)
	}
	return nil
}

// AccessRequest is a provider's signed request to read one record, sent to one holder of its
// blob. The holder logs it on the ledger (in an AccessEntry) whether it serves or refuses, so the
// requester's signature proves to the patient who asked, when, and for what.
//
// A request is good for one read from one holder: RequesterNode binds it to the libp2p identity
// the requester's node connects with (a holder serves only a stream whose remote peer has that
// key, so a request copied from the ledger is useless to anyone else), and Holder to the node it
// is addressed to (the ledger accepts its entry only from that holder, so sending one request to
// several holders cannot buy several unlogged reads).
type AccessRequest struct {
	_             struct{} `cbor:",toarray"`
	Version       uint8
	ChainID       string
	Record        Hash
	Requester     PubKey // a registered provider's signing key
	RequesterNode PubKey // raw Ed25519 key of the requester node's libp2p identity
	Holder        PubKey // raw Ed25519 key of the libp2p identity of the holder addressed
	Purpose       string
	Emergency     bool // read under an EmergencyAccess rather than a consent
	// Role is the role (never the name) of the person at the requester who asked: a staff role
	// of the practice, or AccessRolePatient; the patient sees it in their audit.
	Role     string
	IssuedMs int64  // the requester's clock; a holder refuses requests far from its own
	Nonce    uint64 // random: makes every request, and so its id, unique
	Sig      Signature
}

type accessRequestSigned struct {
	_             struct{} `cbor:",toarray"`
	Version       uint8
	ChainID       string
	Record        Hash
	Requester     PubKey
	RequesterNode PubKey
	Holder        PubKey
	Purpose       string
	Emergency     bool
	Role          string
	IssuedMs      int64
	Nonce         uint64
}

// SignedBytes is what the requester signs.
func (r *AccessRequest) SignedBytes() []byte {
	return Encode(accessRequestSigned{Version: r.Version, ChainID: r.ChainID, Record: r.Record, Requester: r.Requester,
		RequesterNode: r.RequesterNode, Holder: r.Holder, Purpose: r.Purpose, Emergency: r.Emergency, Role: r.Role, IssuedMs: r.IssuedMs, Nonce: r.Nonce})
}

// Sign fills in Version, ChainID, Requester and Sig.
func (r *AccessRequest) Sign(key PrivKey, chainID string) {
	r.Version = AccessRequestVersion
	r.ChainID = chainID
	r.Requester = key.Public()
	r.Sig = key.Sign(DomainAccess, chainID, r.SignedBytes())
}

// VerifySig checks the requester's signature under chainID.
func (r *AccessRequest) VerifySig(chainID string) error {
	if r.ChainID != chainID {
		return fmt.Errorf("chain: access request for chain %q, this is %q", r.ChainID, chainID)
	}
	if err := Verify(r.Requester, DomainAccess, chainID, r.SignedBytes(), r.Sig); err != nil {
		return fmt.Errorf("chain: access request signature: %w", err)
	}
	return nil
}

// ID identifies the request (the hash of its full encoding): the ledger accepts one access
// entry per request id, so a holder that re-submits after a crash cannot log a read twice.
func (r *AccessRequest) ID() Hash { return Sum256(Encode(r)) }

// Validate checks the request's form.
func (r *AccessRequest) Validate() error {
	if err := checkVersion("access request", r.Version, AccessRequestVersion); err != nil {
		return err
	}
	if err := validateChainID(r.ChainID); err != nil {
		return err
	}
	if r.Record.IsZero() {
		return errors.New("chain: access request without a record")
	}
	if r.RequesterNode == (PubKey{}) {
		return errors.New("chain: access request without the requester's node key")
	}
	if r.Holder == (PubKey{}) {
		return errors.New("chain: access request without the holder it is addressed to")
	}
	if err := ValidateRole(r.Role); err != nil {
		return err
	}
	return validatePurpose(r.Purpose)
}

// ValidateRole checks an access role's form: 1..MaxRoleLen lower-case letters and hyphens, a
// role's name and never a person's.
func ValidateRole(role string) error {
	if role == "" || len(role) > MaxRoleLen {
		return fmt.Errorf("chain: access role must be 1..%d characters, got %d", MaxRoleLen, len(role))
	}
	for _, c := range role {
		if (c < 'a' || c > 'z') && c != '-' {
			return fmt.Errorf("chain: access role %q: only lower-case letters and hyphens", role)
		}
	}
	return nil
}

// MaxAccessRequestBytes bounds an encoded AccessRequest.
const MaxAccessRequestBytes = 512

// DecodeAccessRequest decodes and validates (without checking the signature) a request.
func DecodeAccessRequest(data []byte) (*AccessRequest, error) {
	var r AccessRequest
	if err := decodeCanonical("access request", data, MaxAccessRequestBytes, &r); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// AccessOutcome is what a holder did with a request.
type AccessOutcome uint8

// Access outcomes.
const (
	AccessServed  AccessOutcome = 1
	AccessRefused AccessOutcome = 2
)

func (o AccessOutcome) String() string {
	switch o {
	case AccessServed:
		return "served"
	case AccessRefused:
		return "refused"
	}
	return fmt.Sprintf("outcome-%d", uint8(o))
}

// AccessEntry is one request and what the holder (the AccessLog's signer) did with it.
type AccessEntry struct {
	_       struct{} `cbor:",toarray"`
	Request AccessRequest
	Outcome AccessOutcome
	Reason  string // why it was refused; empty when served
}

// Validate checks the entry's form.
func (e *AccessEntry) Validate() error {
	if err := e.Request.Validate(); err != nil {
		return err
	}
	if e.Outcome != AccessServed && e.Outcome != AccessRefused {
		return fmt.Errorf("chain: unknown access outcome %d", e.Outcome)
	}
	if len(e.Reason) > MaxReasonLen || !utf8.ValidString(e.Reason) {
		return fmt.Errorf("chain: access reason must be at most %d bytes of UTF-8", MaxReasonLen)
	}
	if e.Outcome == AccessServed && e.Reason != "" {
		return errors.New("chain: a served access has no refusal reason")
	}
	return nil
}

// AccessLog records accesses a holder (the signer, a registered provider) served or refused.
type AccessLog struct {
	_       struct{} `cbor:",toarray"`
	Entries []AccessEntry
}

// Validate checks the body's form.
func (l *AccessLog) Validate() error {
	if len(l.Entries) == 0 || len(l.Entries) > MaxAccessEntriesPerTx {
		return fmt.Errorf("chain: access log must hold 1..%d entries, got %d", MaxAccessEntriesPerTx, len(l.Entries))
	}
	for i := range l.Entries {
		if err := l.Entries[i].Validate(); err != nil {
			return fmt.Errorf("access entry %d: %w", i, err)
		}
	}
	return nil
}

// MaxReceiptsPerTx bounds the receipts of one AccessReceipts transaction.
const MaxReceiptsPerTx = 64

// AccessReceipt is a requester's statement that it received a record: the signed request it
// sent (which names the record and the holder it was addressed to) and the hash of the
// ciphertext it received and checked. It lets the patient see a read even when the holder never
// logs it.
type AccessReceipt struct {
	_              struct{} `cbor:",toarray"`
	Request        AccessRequest
	CiphertextHash Hash
}

// Validate checks the receipt's form.
func (r *AccessReceipt) Validate() error {
	if err := r.Request.Validate(); err != nil {
		return err
	}
	if r.CiphertextHash.IsZero() {
		return errors.New("chain: access receipt without a ciphertext hash")
	}
	return nil
}

// AccessReceipts records reads the signer (the requester of every receipt's request, a
// registered provider) received.
type AccessReceipts struct {
	_        struct{} `cbor:",toarray"`
	Receipts []AccessReceipt
}

// Validate checks the body's form.
func (b *AccessReceipts) Validate() error {
	if len(b.Receipts) == 0 || len(b.Receipts) > MaxReceiptsPerTx {
		return fmt.Errorf("chain: access receipt transaction must hold 1..%d receipts, got %d", MaxReceiptsPerTx, len(b.Receipts))
	}
	for i := range b.Receipts {
		if err := b.Receipts[i].Validate(); err != nil {
			return fmt.Errorf("access receipt %d: %w", i, err)
		}
	}
	return nil
}

// RecordErase is the patient's (the signer's) request to erase records: crypto-shredding. After
// it every holder deletes the ciphertext and envelopes and acknowledges with an EraseAck; the
// ledger keeps only a hash of each anchor.
type RecordErase struct {
	_       struct{} `cbor:",toarray"`
	Records []Hash
}

// Validate checks the body's form.
func (e *RecordErase) Validate() error { return validateRecordList("erase", e.Records) }

// EraseAck is a holder's (the signer's) acknowledgement that it deleted erased records.
type EraseAck struct {
	_       struct{} `cbor:",toarray"`
	Records []Hash
}

// Validate checks the body's form.
func (a *EraseAck) Validate() error { return validateRecordList("erase acknowledgement", a.Records) }

func validateRecordList(what string, ids []Hash) error {
	if len(ids) == 0 || len(ids) > MaxEraseRecords {
		return fmt.Errorf("chain: %s must name 1..%d records, got %d", what, MaxEraseRecords, len(ids))
	}
	for i, id := range ids {
		if id.IsZero() {
			return fmt.Errorf("chain: %s names a zero record id", what)
		}
		if i > 0 && slices.Compare(ids[i-1][:], id[:]) >= 0 {
			return fmt.Errorf("chain: %s records must be sorted and distinct", what)
		}
	}
	return nil
}

func validateResourceType(t string) error {
	if t == "" || len(t) > MaxResourceTypeLen {
		return fmt.Errorf("chain: resource type must be 1..%d bytes", MaxResourceTypeLen)
	}
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("chain: resource type %q is not a FHIR type name", t)
		}
	}
	return nil
}

func validatePurpose(p string) error {
	if p == "" || len(p) > MaxPurposeLen || !utf8.ValidString(p) {
		return fmt.Errorf("chain: purpose must be 1..%d bytes of UTF-8", MaxPurposeLen)
	}
	return nil
}
