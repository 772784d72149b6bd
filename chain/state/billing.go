package state

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Rules of plans, memberships and payments (issue 13). The records they write are in
// billing_records.go; what is due is derived on read (billing_due.go), so no rule and nothing in
// finish writes at a period boundary.

// Errors of billing rules, for errors.Is; the wrapping error says which item and why.
var (
	// ErrNotYours: the signer is not the provider (or subscriber) the item belongs to.
	ErrNotYours = errors.New("state: not the signer's")
	// ErrPlanUnavailable: the plan is unknown, retired or another provider's.
	ErrPlanUnavailable = errors.New("state: plan not available")
	// ErrMembershipClosed: the membership is cancelled (or unknown).
	ErrMembershipClosed = errors.New("state: membership not open")
	// ErrAlreadyMember: a member already has an open membership at this practice.
	ErrAlreadyMember = errors.New("state: already a member at this practice")
	// ErrBadAgreement: the agreement's signature, members, tiers or start are not acceptable.
	ErrBadAgreement = errors.New("state: membership agreement refused")
	// ErrOverRefund: a refund would take a membership's payments below zero.
	ErrOverRefund = errors.New("state: refund exceeds payments")
	// ErrDuplicatePayment: the provider already recorded a payment (or refund) with that
	// external reference.
	ErrDuplicatePayment = errors.New("state: payment reference already recorded")
	// ErrBillingLimit: an index or list is full.
	ErrBillingLimit = errors.New("state: billing limit reached")
)

// Limits of billing state, so every record stays small and every read bounded.
const (
	// MaxMembershipSegments bounds the changes of one membership (the first segment included);
	// past it the practice cancels and enrols anew.
	MaxMembershipSegments = 64
	// MaxOpenPlansPerProvider bounds a provider's unretired plans (plans/<provider>).
	MaxOpenPlansPerProvider = 64
	// maxPaidCents bounds a membership's net payments, far above any real figure, so that
	// Statement's signed balance cannot overflow.
	maxPaidCents = 1 << 50
)

// Event types of billing transactions.
const (
	EventPlanPublished       = "plan-published"
	EventPlanRetired         = "plan-retired"
	EventMembershipEnrolled  = "membership-enrolled"
	EventMembershipChanged   = "membership-changed"
	EventMembershipCancelled = "membership-cancelled"
	EventPaymentRecorded     = "payment-recorded"
)

// PaidSplit is the part of a recorded payment that settles one membership, with the
// membership's subscriber (so the wallet can tell whose receipt it is without another read).
type PaidSplit struct {
	_          struct{} `cbor:",toarray"`
	Membership chain.Hash
	Subscriber chain.Address
	Cents      uint64
}

// PaymentState is a recorded payment or refund (chain.PaymentRecord). Its id is the
// transaction's hash. The reference is the hash the practice gave, never the reference itself.
type PaymentState struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	ID        chain.Hash
	Provider  chain.Address
	Reference chain.Hash
	Refund    bool
	Splits    []PaidSplit // sorted by membership
	Height    uint64
	Time      int64
}

// planIndex lists a provider's unretired plans (plans/<provider>), in publication order.
type planIndex struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	IDs     []chain.Hash
}

// Keys of billing_records.go's schema that only these rules use.
var (
	prefixPlans  = "plans/"
	prefixPayRef = "payref/"
)

func plansKey(provider chain.Address) []byte {
	return append([]byte(prefixPlans), provider[:]...)
}

// paymentRefRecord names the payment that used an external reference.
type paymentRefRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Payment chain.Hash
}

func payRefKey(provider chain.Address, refund bool, ref chain.Hash) []byte {
	k := append([]byte(prefixPayRef), provider[:]...)
	if refund {
		k = append(k, 1)
	} else {
		k = append(k, 0)
	}
	return append(k, ref[:]...)
}

func (r *PaymentState) version() uint8     { return r.Version }
func (r *planIndex) version() uint8        { return r.Version }
func (r *paymentRefRecord) version() uint8 { return r.Version }

// OpenAt reports whether the membership runs, or will, at block time atMs: not cancelled, or
// cancelled with an end still ahead. One cancelled before its start (EndMs == StartMs) never
// runs and is not open.
func (m *MembershipRecord) OpenAt(atMs int64) bool {
	return m.EndMs == 0 || (m.EndMs > atMs && m.EndMs > m.StartMs)
}

func (e *executor) publishPlan(provider chain.Address, b *chain.PlanPublish, res *TxResult) error {
	if err := e.needProvider(provider, "signer"); err != nil {
		return err
	}
	p := &b.Plan
	found, err := exists(e.o, planKey(p.ID), "plan")
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: plan %s already published", p.ID.Short())
	}
	idx, err := readPlanIndex(e.o, provider)
	if err != nil {
		return err
	}
	if len(idx.IDs) >= MaxOpenPlansPerProvider {
		return fmt.Errorf("%w: provider %s already offers %d plans: retire one first", ErrBillingLimit, provider, len(idx.IDs))
	}
	idx.IDs = append(idx.IDs, p.ID)
	e.o.Set(plansKey(provider), chain.Encode(idx))
	e.o.Set(planKey(p.ID), chain.Encode(&PlanRecord{
		Version: RecordVersion, Plan: *p, Provider: provider, PublishedHeight: e.h.Height, PublishedTime: e.h.Time,
	}))
	res.event(EventPlanPublished, "plan %s by %s", p.ID.Short(), provider)
	return nil
}

func (e *executor) retirePlan(provider chain.Address, b *chain.PlanRetire, res *TxResult) error {
	pr, err := Plan(e.o, b.Plan)
	if err != nil {
		return err
	}
	switch {
	case pr == nil:
		return fmt.Errorf("%w: no plan %s", ErrPlanUnavailable, b.Plan.Short())
	case pr.Provider != provider:
		return fmt.Errorf("%w: plan %s is provider %s's", ErrNotYours, b.Plan.Short(), pr.Provider)
	case pr.Retired:
		return fmt.Errorf("%w: plan %s already retired at height %d", ErrPlanUnavailable, b.Plan.Short(), pr.RetiredHeight)
	}
	pr.Retired, pr.RetiredHeight = true, e.h.Height
	e.o.Set(planKey(pr.Plan.ID), chain.Encode(pr))
	idx, err := readPlanIndex(e.o, provider)
	if err != nil {
		return err
	}
	if i := slices.Index(idx.IDs, pr.Plan.ID); i >= 0 {
		idx.IDs = slices.Delete(idx.IDs, i, i+1)
	}
	if len(idx.IDs) == 0 {
		e.o.Delete(plansKey(provider))
	} else {
		e.o.Set(plansKey(provider), chain.Encode(idx))
	}
	res.event(EventPlanRetired, "plan %s by %s", pr.Plan.ID.Short(), provider)
	return nil
}

// offeredPlan returns provider's unretired plan id.
func (e *executor) offeredPlan(provider chain.Address, id chain.Hash) (*PlanRecord, error) {
	pr, err := Plan(e.o, id)
	switch {
	case err != nil:
		return nil, err
	case pr == nil:
		return nil, fmt.Errorf("%w: no plan %s", ErrPlanUnavailable, id.Short())
	case pr.Provider != provider:
		return nil, fmt.Errorf("%w: plan %s is provider %s's, not %s's", ErrPlanUnavailable, id.Short(), pr.Provider, provider)
	case pr.Retired:
		return nil, fmt.Errorf("%w: plan %s retired at height %d", ErrPlanUnavailable, id.Short(), pr.RetiredHeight)
	}
	return pr, nil
}

// PriceOf is the price per period of members under plan: the sum of their tiers' prices, capped
// by a family plan's cap. It checks the member count and tier indexes.
func PriceOf(plan *chain.Plan, members []chain.MemberTier) (uint64, error) {
	if len(members) > int(plan.MaxMembers) {
		return 0, fmt.Errorf("%w: %d members, plan %s allows %d", ErrBadAgreement, len(members), plan.ID.Short(), plan.MaxMembers)
	}
	var sum uint64 // at most MaxFamilyMembers * MaxPriceCents: no overflow
	for _, m := range members {
		if int(m.Tier) >= len(plan.Tiers) {
			return 0, fmt.Errorf("%w: member %s has tier %d, plan %s has %d tiers", ErrBadAgreement, m.Patient, m.Tier, plan.ID.Short(), len(plan.Tiers))
		}
		sum += plan.Tiers[m.Tier].PriceCents
	}
	if plan.Family && plan.FamilyCapCents > 0 {
		sum = min(sum, plan.FamilyCapCents)
	}
	return sum, nil
}

// verifySubscriber checks the subscriber's signature over msg with their current signing key.
func (e *executor) verifySubscriber(subscriber chain.Address, msg []byte, sig chain.Signature) error {
	m, err := activePatient(e.o, subscriber)
	if err != nil {
		return e.needRole(err, "subscriber")
	}
	h := sha256.New()
	h.Write([]byte(chain.DomainMembership))
	h.Write(m.Key[:])
	h.Write(sig[:])
	h.Write(msg)
	var key chain.Hash
	h.Sum(key[:0])
	check := func() error { return chain.Verify(m.Key, chain.DomainMembership, e.m.chainID, msg, sig) }
	if err := e.m.verifySig(key, check); err != nil {
		return fmt.Errorf("%w: subscriber %s's signature: %w", ErrBadAgreement, subscriber, err)
	}
	return nil
}

// readMembershipIndex returns the memberships at provider that ever counted patient.
func readMembershipIndex(view View, provider, patient chain.Address) (*membershipIndex, error) {
	idx := &membershipIndex{Version: RecordVersion}
	if _, err := get(view, mshipsKey(provider, patient), "membership index", idx); err != nil {
		return nil, err
	}
	return idx, nil
}

// admitMember checks that patient is an active patient with no open membership at provider
// other than except, and indexes and logs them under membership id unless already indexed.
func (e *executor) admitMember(provider, patient chain.Address, id chain.Hash) error {
	if err := e.needPatient(patient, "member"); err != nil {
		return err
	}
	idx, err := readMembershipIndex(e.o, provider, patient)
	if err != nil {
		return err
	}
	if slices.Contains(idx.IDs, id) {
		return nil
	}
	for _, other := range idx.IDs {
		m, err := Membership(e.o, other)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("state: indexed membership %s missing (state corrupt?)", other.Short())
		}
		if m.OpenAt(e.h.Time) {
			return fmt.Errorf("%w: patient %s is in membership %s at %s", ErrAlreadyMember, patient, other.Short(), provider)
		}
	}
	if len(idx.IDs) >= MaxMembershipsPerPair {
		return fmt.Errorf("%w: patient %s already had %d memberships at %s", ErrBillingLimit, patient, len(idx.IDs), provider)
	}
	idx.IDs = append(idx.IDs, id)
	e.o.Set(mshipsKey(provider, patient), chain.Encode(idx))
	return e.logForPatient(patient, LogMembership, id)
}

func (e *executor) enrolMembership(provider chain.Address, b *chain.MembershipEnrol, res *TxResult) error {
	if err := e.needProvider(provider, "signer"); err != nil {
		return err
	}
	a := &b.Agreement
	pr, err := e.offeredPlan(provider, a.Plan)
	if err != nil {
		return err
	}
	price, err := PriceOf(&pr.Plan, a.Members)
	if err != nil {
		return err
	}
	if a.StartMs < e.h.Time-chain.DayMs || a.StartMs > e.h.Time+chain.MaxMembershipStartAhead {
		return fmt.Errorf("%w: start %d must be within a day before and %d ms after block time %d", ErrBadAgreement, a.StartMs, int64(chain.MaxMembershipStartAhead), e.h.Time)
	}
	found, err := exists(e.o, mshipKey(a.ID), "membership")
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: membership %s already exists", a.ID.Short())
	}
	if err := e.verifySubscriber(a.Subscriber, a.AgreementBytes(), b.SubscriberSig); err != nil {
		return err
	}
	for _, mt := range a.Members {
		if err := e.admitMember(provider, mt.Patient, a.ID); err != nil {
			return err
		}
	}
	e.o.Set(mshipKey(a.ID), chain.Encode(&MembershipRecord{
		Version: RecordVersion, ID: a.ID, Provider: provider, Subscriber: a.Subscriber, Sponsor: a.Sponsor,
		Currency: pr.Plan.Currency, Period: pr.Plan.Period, StartMs: a.StartMs,
		Segments: []MembershipSegment{{
			FromMs: a.StartMs, Plan: a.Plan, Members: a.Members, PriceCents: price, GraceDays: pr.Plan.GraceDays, Contract: a.Contract,
		}},
		EnrolledHeight: e.h.Height, EnrolledTime: e.h.Time,
	}))
	res.event(EventMembershipEnrolled, "membership %s at %s, plan %s, %d members", a.ID.Short(), provider, a.Plan.Short(), len(a.Members))
	return nil
}

// openMembership loads membership id, which must be open at block time.
func (e *executor) openMembership(id chain.Hash) (*MembershipRecord, error) {
	m, err := Membership(e.o, id)
	switch {
	case err != nil:
		return nil, err
	case m == nil:
		return nil, fmt.Errorf("%w: no membership %s", ErrMembershipClosed, id.Short())
	case m.EndMs != 0:
		return nil, fmt.Errorf("%w: membership %s cancelled with end %d", ErrMembershipClosed, id.Short(), m.EndMs)
	}
	return m, nil
}

func (e *executor) changeMembership(provider chain.Address, b *chain.MembershipChange, res *TxResult) error {
	m, err := e.openMembership(b.Membership)
	if err != nil {
		return err
	}
	if m.Provider != provider {
		return fmt.Errorf("%w: membership %s is at %s", ErrNotYours, m.ID.Short(), m.Provider)
	}
	if err := e.needProvider(provider, "signer"); err != nil {
		return err
	}
	pr, err := e.offeredPlan(provider, b.Plan)
	if err != nil {
		return err
	}
	if pr.Plan.Period != m.Period || pr.Plan.Currency != m.Currency {
		return fmt.Errorf("%w: plan %s is %s in %s, membership %s is %s in %s", ErrBadAgreement, b.Plan.Short(),
			pr.Plan.Period, pr.Plan.Currency, m.ID.Short(), m.Period, m.Currency)
	}
	// Every change names a new contract, so the practice cannot replay a change the subscriber
	// signed earlier.
	if slices.ContainsFunc(m.Segments, func(s MembershipSegment) bool { return s.Contract == b.Contract }) {
		return fmt.Errorf("%w: contract %s already used by membership %s", ErrBadAgreement, b.Contract.Short(), m.ID.Short())
	}
	if !slices.ContainsFunc(b.Members, func(mt chain.MemberTier) bool { return mt.Patient == m.Subscriber }) {
		return fmt.Errorf("%w: the subscriber %s must stay a member", ErrBadAgreement, m.Subscriber)
	}
	price, err := PriceOf(&pr.Plan, b.Members)
	if err != nil {
		return err
	}
	if err := e.verifySubscriber(m.Subscriber, b.ChangeBytes(), b.SubscriberSig); err != nil {
		return err
	}
	for _, mt := range b.Members {
		if err := e.admitMember(provider, mt.Patient, m.ID); err != nil {
			return err
		}
	}
	// A change before the start replaces the first segment: segments start strictly in order.
	seg := MembershipSegment{
		FromMs: max(e.h.Time, m.StartMs), Plan: b.Plan, Members: b.Members, PriceCents: price, GraceDays: pr.Plan.GraceDays, Contract: b.Contract,
	}
	if last := &m.Segments[len(m.Segments)-1]; last.FromMs >= seg.FromMs {
		*last = seg
	} else {
		if len(m.Segments) >= MaxMembershipSegments {
			return fmt.Errorf("%w: membership %s already has %d segments: cancel and enrol anew", ErrBillingLimit, m.ID.Short(), len(m.Segments))
		}
		m.Segments = append(m.Segments, seg)
	}
	e.o.Set(mshipKey(m.ID), chain.Encode(m))
	res.event(EventMembershipChanged, "membership %s to plan %s from %d, %d members", m.ID.Short(), b.Plan.Short(), seg.FromMs, len(b.Members))
	return nil
}

func (e *executor) cancelMembership(signer chain.Address, b *chain.MembershipCancel, res *TxResult) error {
	m, err := e.openMembership(b.Membership)
	if err != nil {
		return err
	}
	if signer != m.Provider && signer != m.Subscriber {
		return fmt.Errorf("%w: membership %s is at %s with subscriber %s", ErrNotYours, m.ID.Short(), m.Provider, m.Subscriber)
	}
	// Cancelled before its start, it never ran: nothing is due.
	m.EndMs = max(e.h.Time, m.StartMs)
	e.o.Set(mshipKey(m.ID), chain.Encode(m))
	res.event(EventMembershipCancelled, "membership %s at %s, end %d", m.ID.Short(), m.Provider, m.EndMs)
	return nil
}

// recordPayment settles (or refunds) memberships of the signer. The payment is logged for each
// split's subscriber, who pays and receives the receipt; other members see the settled
// membership through its own log entry. The provider need not be active (nor for a
// cancellation): a practice whose licence lapsed still records arrears and refunds.
func (e *executor) recordPayment(provider chain.Address, id chain.Hash, b *chain.PaymentRecord, res *TxResult) error {
	found, err := exists(e.o, paymentKey(id), "payment")
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: payment %s already recorded", id.Short())
	}
	// A refund may name the charge it refunds: references are unique per provider and direction.
	var prev paymentRefRecord
	found, err = get(e.o, payRefKey(provider, b.Refund, b.Reference), "payment reference", &prev)
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("%w: reference %s already recorded by %s", ErrDuplicatePayment, b.Reference.Short(), prev.Payment.Short())
	}
	e.o.Set(payRefKey(provider, b.Refund, b.Reference), chain.Encode(&paymentRefRecord{Version: RecordVersion, Payment: id}))
	ps := &PaymentState{Version: RecordVersion, ID: id, Provider: provider, Reference: b.Reference, Refund: b.Refund, Height: e.h.Height, Time: e.h.Time}
	var subscribers []chain.Address
	for _, s := range b.Splits {
		m, err := Membership(e.o, s.Membership)
		if err != nil {
			return err
		}
		switch {
		case m == nil:
			return fmt.Errorf("%w: payment names unknown membership %s", ErrMembershipClosed, s.Membership.Short())
		case m.Provider != provider:
			return fmt.Errorf("%w: membership %s is at %s, not the signer %s", ErrNotYours, m.ID.Short(), m.Provider, provider)
		case b.Refund && s.Cents > m.PaidCents:
			return fmt.Errorf("%w: refund of %d cents on membership %s, which holds %d", ErrOverRefund, s.Cents, m.ID.Short(), m.PaidCents)
		case !b.Refund && m.PaidCents+s.Cents > maxPaidCents:
			return fmt.Errorf("%w: membership %s would hold more than %d cents", ErrBillingLimit, m.ID.Short(), uint64(maxPaidCents))
		}
		if b.Refund {
			m.PaidCents -= s.Cents
		} else {
			m.PaidCents += s.Cents
		}
		if m.Payments < math.MaxUint32 {
			m.Payments++
		}
		e.o.Set(mshipKey(m.ID), chain.Encode(m))
		ps.Splits = append(ps.Splits, PaidSplit{Membership: m.ID, Subscriber: m.Subscriber, Cents: s.Cents})
		if !slices.Contains(subscribers, m.Subscriber) {
			subscribers = append(subscribers, m.Subscriber)
		}
	}
	e.o.Set(paymentKey(id), chain.Encode(ps))
	for _, p := range subscribers {
		if err := e.logForPatient(p, LogPayment, id); err != nil {
			return err
		}
	}
	what := "payment"
	if b.Refund {
		what = "refund"
	}
	res.event(EventPaymentRecorded, "%s %s by %s over %d memberships", what, id.Short(), provider, len(b.Splits))
	return nil
}

func readPlanIndex(view View, provider chain.Address) (*planIndex, error) {
	idx := &planIndex{Version: RecordVersion}
	if _, err := get(view, plansKey(provider), "plan index", idx); err != nil {
		return nil, err
	}
	if len(idx.IDs) > MaxOpenPlansPerProvider {
		return nil, fmt.Errorf("state: stored plan index of %s has %d plans, limit %d", provider, len(idx.IDs), MaxOpenPlansPerProvider)
	}
	return idx, nil
}
