package chain

import (
	"errors"
	"fmt"
	"slices"
)

// Claims (docs/billing.md). A payer (a member of RolePayer) publishes, for each provider it pays,
// a fee schedule and a billing key K shared with that provider; coverage says which patients it
// covers when; a provider files a claim for an encounter it anchored; rules run at filing time.
//
// Service codes never reach the ledger in clear on a claim: each is a fingerprint, HMAC-SHA256
// under K of the code, so the ledger can compare a claim's codes with the payer's schedule, with
// earlier claims and with what a membership covers, while a reader without K learns only which
// claims share a code. The payer checks, reading the sealed FHIR Claim, that the fingerprints are
// those of the claim's codes (chain/state cannot). KeyCommit = Sum256(K) on the schedule binds
// every claim to one key, so a provider cannot dodge the duplicate rule by changing keys.

// Limits on claim transactions.
const (
	MaxFeeEntries      = 1024
	MaxExcludedPlans   = 32
	MaxClaimLines      = 64
	MaxKeyEnvelopeLen  = 4096
	MaxClaimCents      = 1_000_000_000
	MaxCoveragePerPair = 16
)

// Fingerprint is HMAC-SHA256 under a schedule's billing key (billing.CodeFingerprint) of a
// service code, for claim lines, fee entries and exclusions. A claim's
// duplicate print is derived from its lines' fingerprints on the ledger (ClaimDupPrint).
type Fingerprint = Hash

// FeeEntry is what a payer allows for one service code (by fingerprint).
type FeeEntry struct {
	_            struct{} `cbor:",toarray"`
	Code         Fingerprint
	AllowedCents uint64
}

// PlanExclusion lists the codes (by fingerprint) of a provider's membership plan that the payer
// will not pay for a member of that plan: the plan's covered codes, fingerprinted by the payer,
// who can read them from the plan on the ledger.
type PlanExclusion struct {
	_     struct{} `cbor:",toarray"`
	Plan  Hash
	Codes []Fingerprint // sorted, distinct
}

// PayerSchedule (kind 27): a payer publishes its rules for one provider, replacing the previous
// schedule for that pair. KeyEnvelope is the billing key sealed to the provider's encryption key.
type PayerSchedule struct {
	_           struct{} `cbor:",toarray"`
	Provider    Address
	Currency    string
	KeyCommit   Hash            // Sum256 of the billing key
	KeyEnvelope []byte          // the billing key, sealed to the provider
	Fees        []FeeEntry      // sorted by code, distinct
	Excluded    []PlanExclusion // sorted by plan, distinct
	// CoinsurancePct is the patient's share of an allowed amount, in percent.
	CoinsurancePct uint8
}

// Validate checks the body's form.
func (b *PayerSchedule) Validate() error {
	switch {
	case b.Provider == (Address{}):
		return errors.New("chain: payer schedule without a provider")
	case !currencyCode(b.Currency):
		return fmt.Errorf("chain: schedule currency %q is not an ISO 4217 code", b.Currency)
	case b.KeyCommit.IsZero():
		return errors.New("chain: payer schedule without a key commitment")
	case len(b.KeyEnvelope) == 0 || len(b.KeyEnvelope) > MaxKeyEnvelopeLen:
		return fmt.Errorf("chain: key envelope must be 1..%d bytes", MaxKeyEnvelopeLen)
	case len(b.Fees) > MaxFeeEntries:
		return fmt.Errorf("chain: at most %d fee entries", MaxFeeEntries)
	case len(b.Excluded) > MaxExcludedPlans:
		return fmt.Errorf("chain: at most %d excluded plans", MaxExcludedPlans)
	case b.CoinsurancePct > 100:
		return errors.New("chain: coinsurance above 100%")
	}
	for i, f := range b.Fees {
		if f.Code.IsZero() || f.AllowedCents > MaxClaimCents {
			return fmt.Errorf("chain: fee entry %d needs a code and at most %d cents", i, MaxClaimCents)
		}
		if i > 0 && slices.Compare(b.Fees[i-1].Code[:], f.Code[:]) >= 0 {
			return errors.New("chain: fee entries must be sorted by code and distinct")
		}
	}
	for i, x := range b.Excluded {
		if x.Plan.IsZero() || len(x.Codes) == 0 || len(x.Codes) > MaxCoveredCodes {
			return fmt.Errorf("chain: exclusion %d needs a plan and 1..%d codes", i, MaxCoveredCodes)
		}
		if i > 0 && slices.Compare(b.Excluded[i-1].Plan[:], x.Plan[:]) >= 0 {
			return errors.New("chain: exclusions must be sorted by plan and distinct")
		}
		if err := sortedHashes("exclusion codes", x.Codes); err != nil {
			return err
		}
	}
	return nil
}

// CoverageSet (kind 28): a payer records that it covers a patient from FromDay to ToDay (UTC days
// since the epoch, inclusive; ToDay 0: open-ended), or ends that coverage (End: no day from the
// block's day on is covered; an end names only ID and Patient, FromDay and ToDay zero). The FHIR
// Coverage itself stays off the ledger. ID is random and names this coverage.
type CoverageSet struct {
	_       struct{} `cbor:",toarray"`
	ID      Hash
	Patient Address
	FromDay uint32
	ToDay   uint32
	End     bool
}

// Validate checks the body's form.
func (b *CoverageSet) Validate() error {
	switch {
	case b.ID.IsZero() || b.Patient == (Address{}):
		return errors.New("chain: coverage needs an id and a patient")
	case !b.End && b.FromDay == 0:
		return errors.New("chain: coverage without a first day")
	case b.End && (b.FromDay != 0 || b.ToDay != 0):
		return errors.New("chain: a coverage end names no days")
	case b.ToDay != 0 && b.ToDay < b.FromDay:
		return errors.New("chain: coverage ends before it starts")
	}
	return nil
}

// ClaimLine is one service of a claim: its code's fingerprint and the amount billed.
type ClaimLine struct {
	_           struct{} `cbor:",toarray"`
	Code        Fingerprint
	BilledCents uint64
}

// ClaimSubmit (kind 29): a provider files a claim with a payer for a patient's encounter.
// Encounter is the id of an Encounter record the provider anchored for the patient; Record the
// id of the sealed FHIR Claim it anchored for the patient (readable by the patient and, through
// this claim, the payer). DupPrint is ClaimDupPrint of the claim (Validate checks it): an exact
// duplicate has the same one. ID is random and names the claim.
type ClaimSubmit struct {
	_          struct{} `cbor:",toarray"`
	ID         Hash
	Patient    Address
	Payer      Address
	Encounter  Hash
	Record     Hash
	ServiceDay uint32
	KeyCommit  Hash
	Lines      []ClaimLine
	DupPrint   Fingerprint
}

// Validate checks the body's form.
func (b *ClaimSubmit) Validate() error {
	switch {
	case b.ID.IsZero() || b.Patient == (Address{}) || b.Payer == (Address{}):
		return errors.New("chain: claim needs an id, a patient and a payer")
	case b.Encounter.IsZero() || b.Record.IsZero():
		return errors.New("chain: claim needs its encounter and its sealed claim record")
	case b.ServiceDay == 0:
		return errors.New("chain: claim without a service day")
	case b.KeyCommit.IsZero() || b.DupPrint.IsZero():
		return errors.New("chain: claim without its key commitment or duplicate print")
	case len(b.Lines) == 0 || len(b.Lines) > MaxClaimLines:
		return fmt.Errorf("chain: a claim has 1..%d lines, got %d", MaxClaimLines, len(b.Lines))
	}
	for i, l := range b.Lines {
		if l.Code.IsZero() || l.BilledCents == 0 || l.BilledCents > MaxClaimCents {
			return fmt.Errorf("chain: claim line %d needs a code and 1..%d cents", i, MaxClaimCents)
		}
	}
	if b.DupPrint != ClaimDupPrint(b.Patient, b.ServiceDay, b.Lines) {
		return errors.New("chain: claim duplicate print is not ClaimDupPrint of its patient, day and codes")
	}
	return nil
}

// ClaimDupPrint is the duplicate print of a claim: a hash of the patient, the service day and the
// sorted distinct code fingerprints of its lines. The ledger recomputes it rather than trusting a
// print the provider chose (a random one would dodge the duplicate rule); it is built from
// fingerprints keyed under the schedule's billing key, so it tells a reader without the key no
// more than the claim's lines already do.
func ClaimDupPrint(patient Address, serviceDay uint32, lines []ClaimLine) Fingerprint {
	codes := make([]Hash, 0, len(lines))
	for _, l := range lines {
		codes = append(codes, l.Code)
	}
	slices.SortFunc(codes, func(a, b Hash) int { return slices.Compare(a[:], b[:]) })
	codes = slices.Compact(codes)
	return Sum256(Encode([]any{"medledger/claim-dup/v1", patient, serviceDay, codes}))
}

// DenialReason says why a payer denied a claim or a line: a code, so no free text reaches the
// ledger.
type DenialReason uint8

// Denial reasons (0: not denied).
const (
	DenyNone            DenialReason = 0
	DenyNotCovered      DenialReason = 1 // the service is not covered by the patient's plan
	DenyContentMismatch DenialReason = 2 // the sealed claim does not match the ledger's fingerprints
	DenyNotNecessary    DenialReason = 3
	DenyDuplicate       DenialReason = 4 // a duplicate the exact rule could not see
	DenyInformation     DenialReason = 5 // more information needed
	DenyOther           DenialReason = 6
)

func (r DenialReason) String() string {
	switch r {
	case DenyNone:
		return "none"
	case DenyNotCovered:
		return "not-covered"
	case DenyContentMismatch:
		return "content-mismatch"
	case DenyNotNecessary:
		return "not-medically-necessary"
	case DenyDuplicate:
		return "duplicate"
	case DenyInformation:
		return "information-needed"
	case DenyOther:
		return "other"
	}
	return fmt.Sprintf("denial-%d", uint8(r))
}

// LineDecision is the payer's decision on one claim line: what it pays and what the patient owes
// (their sum is the allowed amount, at most the billed amount).
type LineDecision struct {
	_            struct{} `cbor:",toarray"`
	PaidCents    uint64
	PatientCents uint64
	Reason       DenialReason // why PaidCents is below the billed amount, if it is
}

// ClaimDecide (kind 30): the claim's payer decides it by signed decision, one entry per line (it
// replaces the rule's adjudication, for a pended, flagged or disputed claim).
type ClaimDecide struct {
	_     struct{} `cbor:",toarray"`
	Claim Hash
	Lines []LineDecision
}

// Validate checks the body's form.
func (b *ClaimDecide) Validate() error {
	if b.Claim.IsZero() {
		return errors.New("chain: claim decision without a claim")
	}
	if len(b.Lines) == 0 || len(b.Lines) > MaxClaimLines {
		return fmt.Errorf("chain: a decision has 1..%d lines", MaxClaimLines)
	}
	for i, l := range b.Lines {
		if l.Reason > DenyOther || l.PaidCents > MaxClaimCents || l.PatientCents > MaxClaimCents {
			return fmt.Errorf("chain: decision line %d out of range", i)
		}
	}
	return nil
}

// DisputeReason says why a patient disputes a claim.
type DisputeReason uint8

// Dispute reasons.
const (
	DisputeNotReceived      DisputeReason = 1 // the service was never received
	DisputeWrongService     DisputeReason = 2
	DisputeWrongAmount      DisputeReason = 3
	DisputeMembershipCovers DisputeReason = 4 // the patient's membership covers it
	DisputeOther            DisputeReason = 5
)

func (r DisputeReason) String() string {
	switch r {
	case DisputeNotReceived:
		return "service-not-received"
	case DisputeWrongService:
		return "wrong-service"
	case DisputeWrongAmount:
		return "wrong-amount"
	case DisputeMembershipCovers:
		return "membership-covers"
	case DisputeOther:
		return "other"
	}
	return fmt.Sprintf("dispute-%d", uint8(r))
}

// ClaimDispute (kind 31): the patient a claim names disputes it, with their own key. Statement is
// the hash of a sealed statement kept off the ledger (zero: none).
type ClaimDispute struct {
	_         struct{} `cbor:",toarray"`
	Claim     Hash
	Reason    DisputeReason
	Statement Hash
}

// Validate checks the body's form.
func (b *ClaimDispute) Validate() error {
	if b.Claim.IsZero() {
		return errors.New("chain: dispute without a claim")
	}
	if b.Reason < DisputeNotReceived || b.Reason > DisputeOther {
		return fmt.Errorf("chain: unknown dispute reason %d", b.Reason)
	}
	return nil
}

func sortedHashes(what string, hs []Hash) error {
	for i, h := range hs {
		if h.IsZero() {
			return fmt.Errorf("chain: %s: zero hash", what)
		}
		if i > 0 && slices.Compare(hs[i-1][:], h[:]) >= 0 {
			return fmt.Errorf("chain: %s must be sorted and distinct", what)
		}
	}
	return nil
}
