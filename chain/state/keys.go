package state

import (
	"encoding/binary"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Key schema. Every key is an ASCII prefix followed by fixed-size raw bytes, so no key of one
// kind is a prefix of a key of another kind and the store's tree stays grouped by kind:
//
//	meta/params            paramsRecord: chain id, genesis hash, consensus parameters
//	meta/tip               tipRecord: height and time of the last executed block (0 = genesis)
//	auth/next              setRecord: the authority set certifying the next block (H+1)
//	auth/after             setRecord: the set certifying H+2
//	auth/licensing         setRecord: licensing authorities from genesis (may be empty)
//	auth/epochs            epochsRecord: (first height, set hash) of every authority set that
//	                       certified a height evidence may still name, oldest first (at most
//	                       MaxAuthorityEpochs; see epochs.go)
//	auth/set/<32B hash>    setRecord: a set named by a retained epoch (hash = AuthoritySet.Hash),
//	                       deleted when no retained epoch names it
//	auth/proposal/<32B id> ProposalRecord (id = hash of the proposing transaction); deleted when
//	                       block ExpiresHeight finishes, whatever its status
//	auth/issuers           issuersRecord: genesis attestation issuers of roles other than provider
//	auth/auto              autoRecord: open automatic removal proposals, one per subject (roles.go)
//	nonce/<20B address>    accountRecord: last accepted nonce of the signing key with that address
//	member/<20B id>        MemberRecord (id = the address of the member's first signing key)
//	signer/<20B address>   signerRecord: a rotated signing key's address -> its member id, or a
//	                       retired key (absent: the key's address is its own member id)
//	node/<32B node key>    nodeRecord: a member node's libp2p Ed25519 key -> its member id
//	role/<1B role>         roleRecord: the registered, unrevoked members of an attested role,
//	                       sorted by id, with their licence expiry (at most MaxMembersPerRole)
//	enrol/<20B provider>   enrolRecord: patients the provider enrolled in the current window
//	evidence/<32B key>     EvidenceRecord (key = chain.Evidence.Key(), one per offence); deleted
//	                       when block VoteHeight+MaxEvidenceAge+1 finishes, the first height
//	                       that refuses evidence of that offence by its age
//	expire/<8B height><4B page>
//	                       expiryRecord: keys to delete when block <height> finishes (big-endian
//	                       height and page; page 0 also holds the page count, see expiry.go)
//	record/<32B id>        RecordState: one version of one record (id = chain.RecordAnchor.ID)
//	consent/<32B id>       ConsentRecord: a grant or an emergency access (id = its transaction's hash)
//	grants/<20B patient><20B grantee>
//	                       pairRecord: ids of the non-revoked consents from patient to grantee, in
//	                       grant order (at most MaxConsentsPerPair), and the last one revoked
//	grantees/<20B patient> granteesRecord: sorted distinct grantees with at least one non-revoked
//	                       consent from patient (at most MaxGranteesPerPatient)
//	access/<32B id>        AccessRecord: one logged access (id = chain.AccessRequest.ID())
//	blob/<32B image>       blobRecord: the record whose anchor named a ciphertext (image =
//	                       Sum256 of the ciphertext hash, see blobKey); never deleted, so a
//	                       ciphertext belongs to one record for ever
//	receipt/<32B id>       ReceiptRecord: a requester's receipt of a read (id = the request's id)
//	plog/head/<20B patient>
//	                       patientLogHead: the length of the patient's log (patientlog.go)
//	plog/item/<20B patient><8B seq>
//	                       PatientLogEntry: the seq-th state item concerning the patient (a
//	                       record version, consent, access entry or receipt), so that a wallet
//	                       can prove it was told all of them
//	plan/, plans/, mship/, mships/, payment/, payref/, schedule/, coverage/, coverages/,
//	claim/, claimdup/, claimvol/
//	                       billing and claims (listed in billing_records.go)
//	rate/<1B kind><subject><8B window>
//	                       rateRecord: a per-window counter (see ratelimit.go); deleted through
//	                       the expiry index once its window has certainly ended
//
// Every query is a point lookup: a record's readers are found through grantees/ then grants/
// then consent/, never by scanning.
//
// Values are canonical CBOR (chain.Encode) of versioned records encoded as arrays. Nothing here
// is personal data: keys, pseudonymous addresses, licence numbers issued to providers, hashes.
var (
	keyParams    = []byte("meta/params")
	keyTip       = []byte("meta/tip")
	keyNext      = []byte("auth/next")
	keyAfter     = []byte("auth/after")
	keyLicensing = []byte("auth/licensing")
	keyEpochs    = []byte("auth/epochs")
	keyIssuers   = []byte("auth/issuers")
	keyAuto      = []byte("auth/auto")

	prefixAuthSet  = "auth/set/"
	prefixProposal = "auth/proposal/"
	prefixNonce    = "nonce/"
	prefixMember   = "member/"
	prefixSigner   = "signer/"
	prefixNode     = "node/"
	prefixRole     = "role/"
	prefixEnrol    = "enrol/"
	prefixEvidence = "evidence/"
	prefixRecord   = "record/"
	prefixConsent  = "consent/"
	prefixGrants   = "grants/"
	prefixGrantees = "grantees/"
	prefixAccess   = "access/"
	prefixBlob     = "blob/"
	prefixReceipt  = "receipt/"
	prefixRate     = "rate/"
	prefixExpire   = "expire/"
)

func authSetKey(h chain.Hash) []byte     { return append([]byte(prefixAuthSet), h[:]...) }
func proposalKey(id chain.Hash) []byte   { return append([]byte(prefixProposal), id[:]...) }
func nonceKey(a chain.Address) []byte    { return append([]byte(prefixNonce), a[:]...) }
func memberKey(a chain.Address) []byte   { return append([]byte(prefixMember), a[:]...) }
func signerKey(a chain.Address) []byte   { return append([]byte(prefixSigner), a[:]...) }
func nodeIndexKey(k chain.PubKey) []byte { return append([]byte(prefixNode), k[:]...) }
func roleKey(r chain.Role) []byte        { return append([]byte(prefixRole), byte(r)) }
func enrolKey(a chain.Address) []byte    { return append([]byte(prefixEnrol), a[:]...) }
func evidenceKey(key chain.Hash) []byte  { return append([]byte(prefixEvidence), key[:]...) }
func recordKey(id chain.Hash) []byte     { return append([]byte(prefixRecord), id[:]...) }
func consentKey(id chain.Hash) []byte    { return append([]byte(prefixConsent), id[:]...) }
func accessKey(id chain.Hash) []byte     { return append([]byte(prefixAccess), id[:]...) }
func receiptKey(id chain.Hash) []byte    { return append([]byte(prefixReceipt), id[:]...) }

// blobKey indexes a ciphertext by a hash of its hash, so that after an erasure, which clears the
// record's ciphertext hash, the ledger still holds no ciphertext hash in clear.
func blobKey(ciphertext chain.Hash) []byte {
	img := chain.Sum256(ciphertext[:])
	return append([]byte(prefixBlob), img[:]...)
}
func granteesKey(p chain.Address) []byte { return append([]byte(prefixGrantees), p[:]...) }
func grantsKey(patient, grantee chain.Address) []byte {
	k := append([]byte(prefixGrants), patient[:]...)
	return append(k, grantee[:]...)
}

func expiryKey(height uint64, page uint32) []byte {
	k := binary.BigEndian.AppendUint64([]byte(prefixExpire), height)
	return binary.BigEndian.AppendUint32(k, page)
}

// RecordVersion is the encoding version of every record this package writes. A node refuses to
// read a record of another version rather than guess at its meaning. Version 2 added the
// requester's role to access entries and receipts.
const RecordVersion = 2

// maxRecordBytes bounds what a record decode will accept; the largest records are a full role
// list (MaxMembersPerRole entries of about 31 bytes) and a set record (MaxAuthoritySetBytes);
// a member with a maximal encryption key and licence is a few KiB.
const maxRecordBytes = 256 << 10

type paramsRecord struct {
	_           struct{} `cbor:",toarray"`
	Version     uint8
	ChainID     string
	GenesisHash chain.Hash
	Params      chain.Params
}

type tipRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Height  uint64
	Time    int64
}

type setRecord struct {
	_           struct{} `cbor:",toarray"`
	Version     uint8
	Authorities []chain.Authority
}

type accountRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Nonce   uint64
}

// ProposalStatus is where an authority proposal stands.
type ProposalStatus uint8

// Proposal statuses. Every proposal, whatever its status, is deleted when the block at its
// ExpiresHeight finishes (through the expiry index); until then an open proposal is still
// rewritten only by votes, so readers compare heights (OpenAt).
const (
	ProposalOpen   ProposalStatus = 1
	ProposalPassed ProposalStatus = 2
	// ProposalVoid: it reached quorum but no longer applied (its subject was already added or
	// removed by another proposal or by evidence, or removal would have emptied the set).
	ProposalVoid ProposalStatus = 3
)

func (s ProposalStatus) String() string {
	switch s {
	case ProposalOpen:
		return "open"
	case ProposalPassed:
		return "passed"
	case ProposalVoid:
		return "void"
	}
	return fmt.Sprintf("status-%d", uint8(s))
}

// ProposalRecord is an authority add/remove proposal and the authorities that voted for it
// (sorted by key; the proposer is the first vote).
type ProposalRecord struct {
	_             struct{} `cbor:",toarray"`
	Version       uint8
	ID            chain.Hash
	Proposer      chain.PubKey
	Action        chain.AuthorityAction
	Subject       chain.Authority
	OpenedHeight  uint64
	ExpiresHeight uint64 // last height at which a vote is accepted
	Voters        []chain.PubKey
	Status        ProposalStatus
	ClosedHeight  uint64 // 0 while open
	// Automatic: filed by the state machine itself for an authority whose provider registration
	// lapsed or was revoked (roles.go); it has no proposer (zero key) and no first vote.
	Automatic bool
}

// OpenAt reports whether the proposal accepts votes in a block at height.
func (p *ProposalRecord) OpenAt(height uint64) bool {
	return p.Status == ProposalOpen && height <= p.ExpiresHeight
}

// EvidenceRecord marks an equivocation as punished, so it is accepted once. It is deleted when
// the block at VoteHeight+MaxEvidenceAge+1 finishes: from that height on the offence's evidence
// is refused by its age, so it is still never punished twice.
type EvidenceRecord struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	Offender       chain.PubKey
	VoteHeight     uint64
	AcceptedHeight uint64
	// Removed is false when the offender was no longer in the set taking effect, or was its
	// last member.
	Removed bool
}

// RecordState is one version of one record. An erased record keeps its place in the version
// chain (ids, patient, author, heights) but not what described the ciphertext: ResourceType,
// CiphertextHash and Size are cleared and AnchorHash keeps the hash of the original anchor, so
// whoever still has the anchor can prove what was erased.
type RecordState struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	ID             chain.Hash
	Patient        chain.Address
	Author         chain.Address // the provider that anchored this version
	ResourceType   string
	RecVersion     uint64     // 1 for a new record, previous + 1 for an amendment
	Supersedes     chain.Hash // zero for version 1
	Root           chain.Hash // the id of version 1: consent scopes name records by it
	CiphertextHash chain.Hash
	Size           uint64
	AnchoredHeight uint64
	AnchoredTime   int64
	SupersededBy   chain.Hash // the next version's id; zero while this is the latest
	Erased         bool
	ErasedHeight   uint64
	AnchorHash     chain.Hash      // erased only: chain.Sum256(chain.Encode(&original chain.RecordAnchor))
	Acks           []chain.Address // erased only: providers that acknowledged deletion, sorted
}

// ConsentRecord is a patient's consent for a provider (Grantee) or a provider's emergency
// (break-glass) access to a patient's records. Revoked consents stay, marked.
type ConsentRecord struct {
	_             struct{} `cbor:",toarray"`
	Version       uint8
	ID            chain.Hash // the transaction's hash
	Patient       chain.Address
	Grantee       chain.Address
	Scope         chain.ConsentScope
	Purpose       string
	ExpiresMs     int64 // block time from which it no longer applies; 0: until revoked
	GrantedHeight uint64
	GrantedTime   int64
	Emergency     bool
	// Emergency only: the reason code, whether an authority co-signed it, and whether the
	// patient had revoked a consent of this grantee before (the grantee broke the glass after
	// being shut out). The wallet shows all three prominently.
	ReasonCode      chain.EmergencyReason
	CoSigned        bool
	AfterRevocation bool
	Revoked         bool
	RevokedHeight   uint64
}

// ActiveAt reports whether the consent applies at block time timeMs: not revoked and, if it
// expires, timeMs is before the expiry.
func (c *ConsentRecord) ActiveAt(timeMs int64) bool {
	return !c.Revoked && (c.ExpiresMs == 0 || timeMs < c.ExpiresMs)
}

// AccessRecord is one access request a holder logged, served or refused.
type AccessRecord struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	RequestID chain.Hash
	Record    chain.Hash
	Patient   chain.Address
	Accessor  chain.Address // the requester
	Holder    chain.Address // the provider that logged it
	Purpose   string
	Emergency bool
	Outcome   chain.AccessOutcome
	Reason    string
	Height    uint64
	Time      int64
	// Consent is the emergency access a served emergency read was granted under (zero for other
	// reads, or if none was in force when the entry was logged); its flags show with the read.
	Consent chain.Hash
	// Role is the role (not the person) at the requester that asked, as the request named it.
	Role string
}

// pairRecord indexes the consents from one patient to one grantee.
type pairRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	IDs     []chain.Hash // non-revoked consents, in grant order
	// LastRevoked is the most recently revoked consent of the pair (zero if none), kept so a
	// refusal can say "revoked" rather than "no consent".
	LastRevoked       chain.Hash
	LastRevokedHeight uint64
}

// granteesRecord lists a patient's grantees.
type granteesRecord struct {
	_        struct{} `cbor:",toarray"`
	Version  uint8
	Grantees []chain.Address // sorted, distinct
}

// versioned lets get check every record's version in one place.
type versioned interface{ version() uint8 }

func (r *paramsRecord) version() uint8   { return r.Version }
func (r *tipRecord) version() uint8      { return r.Version }
func (r *setRecord) version() uint8      { return r.Version }
func (r *accountRecord) version() uint8  { return r.Version }
func (r *MemberRecord) version() uint8   { return r.Version }
func (r *signerRecord) version() uint8   { return r.Version }
func (r *nodeRecord) version() uint8     { return r.Version }
func (r *roleRecord) version() uint8     { return r.Version }
func (r *enrolRecord) version() uint8    { return r.Version }
func (r *issuersRecord) version() uint8  { return r.Version }
func (r *autoRecord) version() uint8     { return r.Version }
func (r *ProposalRecord) version() uint8 { return r.Version }
func (r *EvidenceRecord) version() uint8 { return r.Version }
func (r *RecordState) version() uint8    { return r.Version }
func (r *ConsentRecord) version() uint8  { return r.Version }
func (r *AccessRecord) version() uint8   { return r.Version }
func (r *ReceiptRecord) version() uint8  { return r.Version }
func (r *blobRecord) version() uint8     { return r.Version }
func (r *rateRecord) version() uint8     { return r.Version }
func (r *pairRecord) version() uint8     { return r.Version }
func (r *granteesRecord) version() uint8 { return r.Version }
func (r *expiryRecord) version() uint8   { return r.Version }
func (r *epochsRecord) version() uint8   { return r.Version }

// get reads and decodes the record at key into v; found is false when the key is absent.
func get(view View, key []byte, what string, v versioned) (found bool, err error) {
	data, err := view.Get(key)
	if err != nil {
		return false, fmt.Errorf("state: read %s: %w", what, err)
	}
	if data == nil {
		return false, nil
	}
	if err := chain.DecodeStored(what, data, maxRecordBytes, v); err != nil {
		return false, fmt.Errorf("state: stored %s: %w", what, err)
	}
	if v.version() != RecordVersion {
		return false, fmt.Errorf("state: stored %s has version %d, this node understands %d", what, v.version(), RecordVersion)
	}
	return true, nil
}

// mustGet is get for records that genesis always writes: absence means the view is not a
// MedLedger state.
func mustGet(view View, key []byte, what string, v versioned) error {
	found, err := get(view, key, what, v)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("state: %s missing (state not initialised by Genesis?)", what)
	}
	return nil
}

func readSet(view View, key []byte, what string) (*chain.AuthoritySet, error) {
	var r setRecord
	if err := mustGet(view, key, what, &r); err != nil {
		return nil, err
	}
	s := &chain.AuthoritySet{Authorities: r.Authorities}
	if len(r.Authorities) == 0 && string(key) == string(keyLicensing) {
		return s, nil // no licensing authorities: no provider can register
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("state: stored %s: %w", what, err)
	}
	return s, nil
}

func writeSet(o *Overlay, key []byte, s *chain.AuthoritySet) {
	o.Set(key, chain.Encode(&setRecord{Version: RecordVersion, Authorities: s.Authorities}))
}

func setsEqual(a, b *chain.AuthoritySet) bool { return a.Hash() == b.Hash() }
