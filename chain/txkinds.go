package chain

import (
	"bytes"
	"fmt"
)

// AuthorityAction is what an authority proposal does.
type AuthorityAction uint8

// Authority actions.
const (
	AuthorityAdd    AuthorityAction = 1
	AuthorityRemove AuthorityAction = 2
)

func (a AuthorityAction) String() string {
	switch a {
	case AuthorityAdd:
		return "add"
	case AuthorityRemove:
		return "remove"
	}
	return fmt.Sprintf("action-%d", uint8(a))
}

// AuthorityPropose proposes adding or removing an authority. Only a current authority may propose;
// the proposal counts as its proposer's vote. Its id is the proposing transaction's hash.
type AuthorityPropose struct {
	_       struct{} `cbor:",toarray"`
	Action  AuthorityAction
	Subject Authority
}

// Validate checks the body's form.
func (p *AuthorityPropose) Validate() error {
	if p.Action != AuthorityAdd && p.Action != AuthorityRemove {
		return fmt.Errorf("chain: unknown authority action %d", p.Action)
	}
	if len(p.Subject.Name) > MaxNameLen {
		return fmt.Errorf("chain: authority name longer than %d bytes", MaxNameLen)
	}
	return nil
}

// AuthorityVote is a current authority's vote for an open proposal.
type AuthorityVote struct {
	_        struct{} `cbor:",toarray"`
	Proposal Hash
}

// Validate checks the body's form.
func (v *AuthorityVote) Validate() error {
	if v.Proposal.IsZero() {
		return fmt.Errorf("chain: authority vote without a proposal id")
	}
	return nil
}

// Evidence is two conflicting votes signed by one authority. An authority of the set certifying
// the block submits it, with nonce 0 (see Tx); once verified on the ledger it removes the votes'
// signer from the authority set.
type Evidence struct {
	_ struct{} `cbor:",toarray"`
	A Vote
	B Vote
}

// Validate checks that the two votes conflict and are in canonical order (A's hash < B's), so one
// equivocation has exactly one evidence encoding.
func (e *Evidence) Validate() error {
	if err := e.A.Validate(); err != nil {
		return err
	}
	if err := e.B.Validate(); err != nil {
		return err
	}
	if !e.A.Conflicts(&e.B) {
		return fmt.Errorf("chain: evidence votes do not conflict")
	}
	if bytes.Compare(e.A.BlockHash[:], e.B.BlockHash[:]) >= 0 {
		return fmt.Errorf("chain: evidence votes not in canonical order")
	}
	return nil
}

// NewEvidence orders two conflicting votes canonically.
func NewEvidence(a, b Vote) *Evidence {
	if bytes.Compare(a.BlockHash[:], b.BlockHash[:]) > 0 {
		a, b = b, a
	}
	return &Evidence{A: a, B: b}
}

// Key identifies the equivocation (authority, height, round, type), so the same offence is
// punished once however many vote pairs prove it.
func (e *Evidence) Key() Hash {
	return Sum256(Encode([]any{e.A.Authority, e.A.Height, e.A.Round, uint8(e.A.Type)}))
}

// EvidenceKeyOf returns the offence (Evidence.Key) an evidence transaction reports, and false for
// any other transaction or a payload that is not well-formed evidence. It decodes the payload but
// checks no signature: a mempool deduplicating by it must admit the transaction first (CheckTx),
// or a forged copy could stand in for the real one.
func EvidenceKeyOf(tx *Tx) (Hash, bool) {
	if tx == nil || tx.Kind != TxEvidence {
		return Hash{}, false
	}
	body, err := DecodePayload(TxEvidence, tx.Payload)
	if err != nil {
		return Hash{}, false
	}
	return body.(*Evidence).Key(), true
}

// VerifySig checks both votes' signatures.
func (e *Evidence) VerifySig(chainID string) error {
	if err := e.A.VerifySig(chainID); err != nil {
		return err
	}
	return e.B.VerifySig(chainID)
}

type validatable interface{ Validate() error }

// DecodePayload decodes a transaction's body according to its kind and validates its form. It
// returns one of *RegisterMember, *RegisterPatient, *RevokeAttestation, *RotateKeys, *Leave (roles.go),
// *AuthorityPropose, *AuthorityVote, *Evidence, a record body from records.go, or a billing
// (billing.go) or claim (claims.go) body.
func DecodePayload(kind TxKind, payload []byte) (any, error) {
	var body validatable
	switch kind {
	case TxRegisterMember:
		body = new(RegisterMember)
	case TxRegisterPatient:
		body = new(RegisterPatient)
	case TxAuthorityPropose:
		body = new(AuthorityPropose)
	case TxAuthorityVote:
		body = new(AuthorityVote)
	case TxEvidence:
		body = new(Evidence)
	case TxAnchorRecords:
		body = new(AnchorRecords)
	case TxConsentGrant:
		body = new(ConsentGrant)
	case TxConsentRevoke:
		body = new(ConsentRevoke)
	case TxEmergencyAccess:
		body = new(EmergencyAccess)
	case TxAccessLog:
		body = new(AccessLog)
	case TxRecordErase:
		body = new(RecordErase)
	case TxEraseAck:
		body = new(EraseAck)
	case TxRevokeAttestation:
		body = new(RevokeAttestation)
	case TxRotateKeys:
		body = new(RotateKeys)
	case TxLeave:
		body = new(Leave)
	case TxAccessReceipt:
		body = new(AccessReceipts)
	case TxPlanPublish:
		body = new(PlanPublish)
	case TxPlanRetire:
		body = new(PlanRetire)
	case TxMembershipEnrol:
		body = new(MembershipEnrol)
	case TxMembershipChange:
		body = new(MembershipChange)
	case TxMembershipCancel:
		body = new(MembershipCancel)
	case TxPaymentRecord:
		body = new(PaymentRecord)
	case TxPayerSchedule:
		body = new(PayerSchedule)
	case TxCoverageSet:
		body = new(CoverageSet)
	case TxClaimSubmit:
		body = new(ClaimSubmit)
	case TxClaimDecide:
		body = new(ClaimDecide)
	case TxClaimDispute:
		body = new(ClaimDispute)
	default:
		return nil, fmt.Errorf("chain: unknown transaction kind %d", kind)
	}
	if err := decodeCanonical(kind.String()+" payload", payload, MaxPayloadSize, body); err != nil {
		return nil, err
	}
	if err := body.Validate(); err != nil {
		return nil, err
	}
	return body, nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
