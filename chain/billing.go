package chain

import (
	"errors"
	"fmt"
	"slices"
)

// Memberships and payments (docs/billing.md). A direct-primary-care practice publishes plans; a
// patient enrols under a membership agreement both sign; what is due is derived from block time by
// rule when read (chain/state), so a period boundary costs no transaction and no write. Amounts are
// on the ledger because the rules need them; nothing names a person: patients are addresses,
// sponsors opaque account ids, payment references hashes, agreements the hash of a sealed FHIR
// Contract kept off the ledger.

// Limits on billing transactions.
const (
	MaxPlanLabelLen         = 64
	MaxTierLabelLen         = 16
	MaxPlanTiers            = 8
	MaxFamilyMembers        = 16
	MaxCoveredCodes         = 128
	MaxServiceCodeLen       = 16
	MaxGraceDays            = 90
	MaxPaymentSplits        = 256
	MaxPriceCents           = 100_000_000 // one million in the plan's currency, per period
	MaxPaymentCents         = 1_000_000_000
	MaxMembershipStartAhead = 366 * DayMs // an agreement may start up to a year after it is signed
)

// DayMs is a day of block time in milliseconds. Billing and claim days are UTC days since the Unix
// epoch.
const DayMs = 24 * 60 * 60 * 1000

// DomainMembership signs a patient's side of a membership agreement or change.
const DomainMembership Domain = "medledger/membership/v1"

// Period is how often a plan invoices.
type Period uint8

// Periods. Months and years are calendar months and years in UTC counted from the membership's
// start (chain/state derives them).
const (
	PeriodMonthly Period = 1
	PeriodAnnual  Period = 2
)

func (p Period) String() string {
	switch p {
	case PeriodMonthly:
		return "monthly"
	case PeriodAnnual:
		return "annual"
	}
	return fmt.Sprintf("period-%d", uint8(p))
}

// PlanTier is one price of a plan (an age band, say "0-17" or "65+"): the practice picks the tier
// for each member and the patient signs it; the member's birth date stays off the ledger.
type PlanTier struct {
	_          struct{} `cbor:",toarray"`
	Label      string
	PriceCents uint64 // per member per period
}

// Plan is a membership plan a practice offers. Plans are immutable: a new price is a new plan, and
// PlanRetire stops new enrolments in the old one.
type Plan struct {
	_        struct{} `cbor:",toarray"`
	ID       Hash     // random, unique
	Label    string   // the practice's name for it ("Adult monthly")
	Currency string   // ISO 4217, three upper-case letters
	Period   Period
	Family   bool
	// MaxMembers bounds the members of one family membership (2..MaxFamilyMembers); 1 for an
	// individual plan.
	MaxMembers uint8
	Tiers      []PlanTier
	// FamilyCapCents caps a family membership's price per period (0: no cap); the price is the
	// sum of its members' tier prices.
	FamilyCapCents uint64
	// Covered lists the service codes (CPT/HCPCS, say "99213") the membership covers, sorted and
	// distinct. They describe the practice's offer, not a person; claims for them are refused for
	// members (chain/state, "covered by membership").
	Covered []string
	// GraceDays is how long an invoice may stay unpaid after it is due before the membership is
	// past due.
	GraceDays uint16
}

// Validate checks the plan's form.
func (p *Plan) Validate() error {
	switch {
	case p.ID.IsZero():
		return errors.New("chain: plan without an id")
	case p.Label == "" || len(p.Label) > MaxPlanLabelLen || !printable(p.Label):
		return fmt.Errorf("chain: plan label must be 1..%d printable bytes", MaxPlanLabelLen)
	case !currencyCode(p.Currency):
		return fmt.Errorf("chain: plan currency %q is not an ISO 4217 code", p.Currency)
	case p.Period != PeriodMonthly && p.Period != PeriodAnnual:
		return fmt.Errorf("chain: unknown plan period %d", p.Period)
	case len(p.Tiers) == 0 || len(p.Tiers) > MaxPlanTiers:
		return fmt.Errorf("chain: a plan has 1..%d tiers, got %d", MaxPlanTiers, len(p.Tiers))
	case p.GraceDays > MaxGraceDays:
		return fmt.Errorf("chain: grace of %d days, at most %d", p.GraceDays, MaxGraceDays)
	case len(p.Covered) > MaxCoveredCodes:
		return fmt.Errorf("chain: a plan covers at most %d service codes", MaxCoveredCodes)
	case p.FamilyCapCents > MaxPriceCents*MaxFamilyMembers:
		return errors.New("chain: family cap out of range")
	}
	if p.Family {
		if p.MaxMembers < 2 || p.MaxMembers > MaxFamilyMembers {
			return fmt.Errorf("chain: a family plan has 2..%d members, got %d", MaxFamilyMembers, p.MaxMembers)
		}
	} else if p.MaxMembers != 1 || p.FamilyCapCents != 0 {
		return errors.New("chain: an individual plan has MaxMembers 1 and no family cap")
	}
	for i, t := range p.Tiers {
		if t.Label == "" || len(t.Label) > MaxTierLabelLen || !printable(t.Label) {
			return fmt.Errorf("chain: tier %d label must be 1..%d printable bytes", i, MaxTierLabelLen)
		}
		if t.PriceCents > MaxPriceCents {
			return fmt.Errorf("chain: tier %d price above %d", i, MaxPriceCents)
		}
	}
	return validateCodes("plan covered codes", p.Covered)
}

// PlanPublish (kind 21): an active provider publishes a plan.
type PlanPublish struct {
	_    struct{} `cbor:",toarray"`
	Plan Plan
}

// Validate checks the body's form.
func (b *PlanPublish) Validate() error { return b.Plan.Validate() }

// PlanRetire (kind 22): the plan's provider stops new enrolments and changes into it. Memberships
// already in it go on.
type PlanRetire struct {
	_    struct{} `cbor:",toarray"`
	Plan Hash
}

// Validate checks the body's form.
func (b *PlanRetire) Validate() error {
	if b.Plan.IsZero() {
		return errors.New("chain: plan retirement without a plan")
	}
	return nil
}

// MemberTier is one member of a membership and the plan tier the practice priced them at.
type MemberTier struct {
	_       struct{} `cbor:",toarray"`
	Patient Address
	Tier    uint8 // index into the plan's tiers
}

func validateMembers(ms []MemberTier) error {
	if len(ms) == 0 || len(ms) > MaxFamilyMembers {
		return fmt.Errorf("chain: a membership has 1..%d members, got %d", MaxFamilyMembers, len(ms))
	}
	for i, m := range ms {
		if m.Patient == (Address{}) {
			return errors.New("chain: membership member without a patient")
		}
		if i > 0 && slices.Compare(ms[i-1].Patient[:], m.Patient[:]) >= 0 {
			return errors.New("chain: membership members must be sorted by patient and distinct")
		}
	}
	return nil
}

// MembershipAgreement is what the practice and the subscribing patient agree to. Its id is
// random. The subscriber is one of the members (the parent of a family) and signs for all of them.
// Sponsor, when not zero, is an opaque account id the practice gives an employer or other payer of
// several memberships: payments can then settle them together, and the ledger never learns who it
// is. Contract is the hash of the sealed FHIR Contract (the signed agreement), kept off the ledger.
type MembershipAgreement struct {
	_          struct{} `cbor:",toarray"`
	ID         Hash
	Plan       Hash
	Subscriber Address
	Members    []MemberTier // sorted by patient; the subscriber among them
	Sponsor    Hash
	StartMs    int64 // block time from which the first period runs
	Contract   Hash
}

// Validate checks the agreement's form.
func (a *MembershipAgreement) Validate() error {
	switch {
	case a.ID.IsZero() || a.Plan.IsZero():
		return errors.New("chain: membership agreement needs an id and a plan")
	case a.Subscriber == (Address{}):
		return errors.New("chain: membership agreement without a subscriber")
	case a.StartMs <= 0:
		return errors.New("chain: membership agreement without a start")
	case a.Contract.IsZero():
		return errors.New("chain: membership agreement without its contract's hash")
	}
	if err := validateMembers(a.Members); err != nil {
		return err
	}
	if !slices.ContainsFunc(a.Members, func(m MemberTier) bool { return m.Patient == a.Subscriber }) {
		return errors.New("chain: the subscriber must be one of the members")
	}
	return nil
}

type membershipSigned struct {
	_         struct{} `cbor:",toarray"`
	What      string
	Agreement MembershipAgreement
}

// AgreementBytes is what the subscriber signs (in DomainMembership, with the chain id) to enrol.
func (a *MembershipAgreement) AgreementBytes() []byte {
	return Encode(membershipSigned{What: "enrol", Agreement: *a})
}

// MembershipEnrol (kind 23): the practice (signer, an active provider) enrols the agreement's
// members; SubscriberSig is the subscriber's signature over AgreementBytes with their current key.
type MembershipEnrol struct {
	_             struct{} `cbor:",toarray"`
	Agreement     MembershipAgreement
	SubscriberSig Signature
}

// Validate checks the body's form.
func (b *MembershipEnrol) Validate() error { return b.Agreement.Validate() }

// MembershipChange (kind 24): the practice moves a membership to another plan or set of members
// from the block's time; the period in progress is prorated by day. The subscriber signs
// ChangeBytes. Contract must be new to the membership (chain/state refuses one it already used),
// so a signed change cannot be replayed; the subscriber stays a member.
type MembershipChange struct {
	_             struct{} `cbor:",toarray"`
	Membership    Hash
	Plan          Hash
	Members       []MemberTier
	Contract      Hash // the hash of the sealed amended Contract
	SubscriberSig Signature
}

type changeSigned struct {
	_          struct{} `cbor:",toarray"`
	What       string
	Membership Hash
	Plan       Hash
	Members    []MemberTier
	Contract   Hash
}

// ChangeBytes is what the subscriber signs (in DomainMembership) to agree to the change.
func (b *MembershipChange) ChangeBytes() []byte {
	return Encode(changeSigned{What: "change", Membership: b.Membership, Plan: b.Plan, Members: b.Members, Contract: b.Contract})
}

// Validate checks the body's form.
func (b *MembershipChange) Validate() error {
	if b.Membership.IsZero() || b.Plan.IsZero() || b.Contract.IsZero() {
		return errors.New("chain: membership change needs a membership, a plan and a contract hash")
	}
	return validateMembers(b.Members)
}

// MembershipCancel (kind 25) ends a membership at the block's time; the period in progress is
// prorated by day. The practice or the subscriber may send it.
type MembershipCancel struct {
	_          struct{} `cbor:",toarray"`
	Membership Hash
}

// Validate checks the body's form.
func (b *MembershipCancel) Validate() error {
	if b.Membership.IsZero() {
		return errors.New("chain: membership cancellation without a membership")
	}
	return nil
}

// PaymentSplit is the part of a payment that settles one membership.
type PaymentSplit struct {
	_          struct{} `cbor:",toarray"`
	Membership Hash
	Cents      uint64
}

// PaymentRecord (kind 26): the practice records a payment it received outside the ledger (card,
// bank, cash) or a refund it made, split over its memberships (one, or a sponsor's several).
// Reference is Sum256 of the external reference (a card processor's charge id): the ledger can
// tell two payments apart without holding the reference, and refuses a reference the provider
// already recorded in the same direction (payment or refund). The payment's id is its
// transaction's hash; the subscriber's wallet shows it as the receipt.
type PaymentRecord struct {
	_         struct{} `cbor:",toarray"`
	Reference Hash
	Refund    bool
	Splits    []PaymentSplit // sorted by membership, distinct
}

// Validate checks the body's form.
func (b *PaymentRecord) Validate() error {
	if b.Reference.IsZero() {
		return errors.New("chain: payment without a reference")
	}
	if len(b.Splits) == 0 || len(b.Splits) > MaxPaymentSplits {
		return fmt.Errorf("chain: a payment settles 1..%d memberships, got %d", MaxPaymentSplits, len(b.Splits))
	}
	for i, s := range b.Splits {
		if s.Membership.IsZero() || s.Cents == 0 || s.Cents > MaxPaymentCents {
			return fmt.Errorf("chain: payment split %d needs a membership and 1..%d cents", i, MaxPaymentCents)
		}
		if i > 0 && slices.Compare(b.Splits[i-1].Membership[:], s.Membership[:]) >= 0 {
			return errors.New("chain: payment splits must be sorted by membership and distinct")
		}
	}
	return nil
}

// validateCodes checks a sorted, distinct list of service codes of printable ASCII.
func validateCodes(what string, codes []string) error {
	for i, c := range codes {
		if c == "" || len(c) > MaxServiceCodeLen || !printable(c) {
			return fmt.Errorf("chain: %s: code %d must be 1..%d printable bytes", what, i, MaxServiceCodeLen)
		}
		if i > 0 && codes[i-1] >= c {
			return fmt.Errorf("chain: %s must be sorted and distinct", what)
		}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func currencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
