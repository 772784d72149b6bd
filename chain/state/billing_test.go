package state

import (
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// billNet is a recNet with two more patients (carol, dan: alice's family) and helpers for
// billing transactions.
type billNet struct {
	*recNet
	carol, dan chain.PrivKey
	// changes counts changeTx calls, so each names a new contract; lastContract is the last one.
	changes      int
	lastContract chain.Hash
}

func newBillNet(t *testing.T) *billNet {
	t.Helper()
	b := &billNet{recNet: newRecNet(t), carol: testKey(t, "carol"), dan: testKey(t, "dan")}
	b.apply(b.patientTx(b.carol), b.patientTx(b.dan))
	return b
}

func hid(label string) chain.Hash { return chain.Sum256([]byte("billing/" + label)) }

func individualPlan(label string, cents uint64, period chain.Period, grace uint16) chain.Plan {
	return chain.Plan{ID: hid("plan/" + label), Label: label, Currency: "USD", Period: period, MaxMembers: 1,
		Tiers: []chain.PlanTier{{Label: "adult", PriceCents: cents}}, Covered: []string{"99213"}, GraceDays: grace}
}

// familyPlan: adults $99, children $49, at most 6 members, capped at $250 a month.
func familyPlan(label string) chain.Plan {
	return chain.Plan{ID: hid("plan/" + label), Label: label, Currency: "USD", Period: chain.PeriodMonthly, Family: true, MaxMembers: 6,
		Tiers: []chain.PlanTier{{Label: "18-64", PriceCents: 9900}, {Label: "0-17", PriceCents: 4900}}, FamilyCapCents: 25000, GraceDays: 10}
}

func (b *billNet) publishTx(k chain.PrivKey, p chain.Plan) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxPlanPublish, b.nonce(k), &chain.PlanPublish{Plan: p})
}

func (b *billNet) retireTx(k chain.PrivKey, id chain.Hash) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxPlanRetire, b.nonce(k), &chain.PlanRetire{Plan: id})
}

func mt(k chain.PrivKey, tier uint8) chain.MemberTier {
	return chain.MemberTier{Patient: addr(k), Tier: tier}
}

// members sorts ms by patient, as the agreement wants.
func members(ms ...chain.MemberTier) []chain.MemberTier {
	sortMembers(ms)
	return ms
}

func sortMembers(ms []chain.MemberTier) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && compareAddr(ms[j-1].Patient, ms[j].Patient) > 0; j-- {
			ms[j-1], ms[j] = ms[j], ms[j-1]
		}
	}
}

func agreement(label string, plan chain.Hash, sub chain.PrivKey, ms []chain.MemberTier, start int64) chain.MembershipAgreement {
	return chain.MembershipAgreement{ID: hid("mship/" + label), Plan: plan, Subscriber: addr(sub), Members: ms, StartMs: start,
		Contract: hid("contract/" + label)}
}

// enrolMTx enrols a, signed by the subscriber key signer (normally a's subscriber).
func (b *billNet) enrolMTx(provider, signer chain.PrivKey, a chain.MembershipAgreement) *chain.Tx {
	sig := signer.Sign(chain.DomainMembership, testChain, a.AgreementBytes())
	return chain.NewTx(provider, testChain, chain.TxMembershipEnrol, b.nonce(provider), &chain.MembershipEnrol{Agreement: a, SubscriberSig: sig})
}

func (b *billNet) changeTx(provider, signer chain.PrivKey, id, plan chain.Hash, ms []chain.MemberTier) *chain.Tx {
	b.changes++
	b.lastContract = hid("contract/change/" + strconv.Itoa(b.changes))
	return b.changeTxC(provider, signer, id, plan, ms, b.lastContract)
}

func (b *billNet) changeTxC(provider, signer chain.PrivKey, id, plan chain.Hash, ms []chain.MemberTier, contract chain.Hash) *chain.Tx {
	body := &chain.MembershipChange{Membership: id, Plan: plan, Members: ms, Contract: contract}
	body.SubscriberSig = signer.Sign(chain.DomainMembership, testChain, body.ChangeBytes())
	return chain.NewTx(provider, testChain, chain.TxMembershipChange, b.nonce(provider), body)
}

func (b *billNet) cancelTx(k chain.PrivKey, id chain.Hash) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxMembershipCancel, b.nonce(k), &chain.MembershipCancel{Membership: id})
}

func (b *billNet) payTx(k chain.PrivKey, ref string, refund bool, splits ...chain.PaymentSplit) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxPaymentRecord, b.nonce(k), &chain.PaymentRecord{Reference: hid("ref/" + ref), Refund: refund, Splits: splits})
}

func (b *billNet) membership(id chain.Hash) *MembershipRecord {
	b.t.Helper()
	m, err := Membership(b.view, id)
	require.NoError(b.t, err)
	require.NotNil(b.t, m, "membership %s", id.Short())
	return m
}

// failsIs is fails with a sentinel error checked too.
func (b *billNet) failsIs(tx *chain.Tx, sentinel error, want string) {
	b.t.Helper()
	err := b.fails(tx, want)
	require.True(b.t, errors.Is(err, sentinel), "%v is not %v", err, sentinel)
}

func (b *billNet) logOf(k chain.PrivKey) []PatientLogEntry {
	b.t.Helper()
	log, err := PatientLog(b.view, addr(k), 0, 1000)
	require.NoError(b.t, err)
	return log
}

func TestPlanPublishRetire(t *testing.T) {
	b := newBillNet(t)
	p := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	out := b.apply(b.publishTx(b.doc, p))
	require.Equal(t, []string{EventPlanPublished}, eventTypes(out.Results[0]))
	pr, err := Plan(b.view, p.ID)
	require.NoError(t, err)
	require.Equal(t, &PlanRecord{Version: RecordVersion, Plan: p, Provider: addr(b.doc), PublishedHeight: b.height, PublishedTime: b.time}, pr)
	plans, err := PlansOf(b.view, addr(b.doc))
	require.NoError(t, err)
	require.Len(t, plans, 1)

	b.fails(b.publishTx(b.doc, p), "already published")
	b.fails(b.publishTx(b.nurse, p), "already published")
	b.fails(b.publishTx(b.alice, individualPlan("x", 1, chain.PeriodMonthly, 0)), "is not a registered provider")
	b.fails(b.publishTx(b.stranger, individualPlan("x", 1, chain.PeriodMonthly, 0)), "is not a registered provider")

	b.failsIs(b.retireTx(b.nurse, p.ID), ErrNotYours, "is provider "+addr(b.doc).String()+"'s")
	b.failsIs(b.retireTx(b.doc, hid("nothing")), ErrPlanUnavailable, "no plan")
	b.apply(b.retireTx(b.doc, p.ID))
	pr, err = Plan(b.view, p.ID)
	require.NoError(t, err)
	require.True(t, pr.Retired)
	require.Equal(t, b.height, pr.RetiredHeight)
	plans, err = PlansOf(b.view, addr(b.doc))
	require.NoError(t, err)
	require.Empty(t, plans)
	_, err = b.view.Get(plansKey(addr(b.doc)))
	require.NoError(t, err)
	require.Nil(t, b.view.m[string(plansKey(addr(b.doc)))], "empty plan index kept")
	b.failsIs(b.retireTx(b.doc, p.ID), ErrPlanUnavailable, "already retired")

	// The open-plan index is bounded; retiring makes room.
	for i := range MaxOpenPlansPerProvider {
		b.apply(b.publishTx(b.nurse, individualPlan("n"+strconv.Itoa(i), 100, chain.PeriodMonthly, 0)))
	}
	b.failsIs(b.publishTx(b.nurse, individualPlan("one too many", 100, chain.PeriodMonthly, 0)), ErrBillingLimit, "retire one first")
}

func TestMembershipEnrol(t *testing.T) {
	b := newBillNet(t)
	adult := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	fam := familyPlan("family")
	retired := individualPlan("old", 5000, chain.PeriodMonthly, 0)
	b.apply(b.publishTx(b.doc, adult), b.publishTx(b.doc, fam), b.publishTx(b.doc, retired), b.publishTx(b.nurse, individualPlan("nurse", 100, chain.PeriodMonthly, 0)))
	b.apply(b.retireTx(b.doc, retired.ID))
	start := b.header().Time

	a := agreement("alice", adult.ID, b.alice, members(mt(b.alice, 0)), start)
	// Refusals first, each leaving no write.
	b.failsIs(b.enrolMTx(b.doc, b.bob, a), ErrBadAgreement, "subscriber "+addr(b.alice).String()+"'s signature")
	b.fails(b.enrolMTx(b.alice, b.alice, a), "is not a registered provider")
	b.failsIs(b.enrolMTx(b.nurse, b.alice, a), ErrPlanUnavailable, "not "+addr(b.nurse).String()+"'s")
	r := a
	r.Plan = retired.ID
	b.failsIs(b.enrolMTx(b.doc, b.alice, r), ErrPlanUnavailable, "retired at height")
	r = a
	r.Plan = hid("nothing")
	b.failsIs(b.enrolMTx(b.doc, b.alice, r), ErrPlanUnavailable, "no plan")
	r = a
	r.Members = []chain.MemberTier{{Patient: addr(b.alice), Tier: 1}}
	b.failsIs(b.enrolMTx(b.doc, b.alice, r), ErrBadAgreement, "has tier 1, plan")
	r = a
	r.Members = members(mt(b.alice, 0), mt(b.bob, 0))
	b.failsIs(b.enrolMTx(b.doc, b.alice, r), ErrBadAgreement, "2 members, plan")
	r = agreement("stranger", fam.ID, b.alice, members(mt(b.alice, 0), mt(b.stranger, 1)), start)
	b.fails(b.enrolMTx(b.doc, b.alice, r), "member "+addr(b.stranger).String()+" is not a registered patient")
	r = a
	r.StartMs = start - chain.DayMs - 1
	b.failsIs(b.enrolMTx(b.doc, b.alice, r), ErrBadAgreement, "within a day before")
	r.StartMs = start + chain.MaxMembershipStartAhead + 1
	b.failsIs(b.enrolMTx(b.doc, b.alice, r), ErrBadAgreement, "within a day before")

	out := b.apply(b.enrolMTx(b.doc, b.alice, a))
	require.Equal(t, []string{EventMembershipEnrolled}, eventTypes(out.Results[0]))
	m := b.membership(a.ID)
	require.Equal(t, &MembershipRecord{
		Version: RecordVersion, ID: a.ID, Provider: addr(b.doc), Subscriber: addr(b.alice), Currency: "USD", Period: chain.PeriodMonthly,
		StartMs: start, Segments: []MembershipSegment{{FromMs: start, Plan: adult.ID, Members: a.Members, PriceCents: 9900, GraceDays: 10, Contract: a.Contract}},
		EnrolledHeight: b.height, EnrolledTime: b.time,
	}, m)
	require.Equal(t, []PatientLogEntry{{Version: RecordVersion, Kind: LogMembership, ID: a.ID, Height: b.height}}, b.logOf(b.alice))
	b.fails(b.enrolMTx(b.doc, b.alice, a), "already exists")

	// One open membership per person per practice; another practice is fine.
	again := agreement("alice-2", adult.ID, b.alice, members(mt(b.alice, 0)), start)
	b.failsIs(b.enrolMTx(b.doc, b.alice, again), ErrAlreadyMember, "is in membership "+a.ID.Short())
	famA := agreement("fam", fam.ID, b.bob, members(mt(b.bob, 0), mt(b.alice, 0)), start)
	b.failsIs(b.enrolMTx(b.doc, b.bob, famA), ErrAlreadyMember, "patient "+addr(b.alice).String())
	elsewhere := agreement("alice-nurse", hid("plan/nurse"), b.alice, members(mt(b.alice, 0)), start)
	b.apply(b.enrolMTx(b.nurse, b.alice, elsewhere))

	// A family: two adults and two children, priced by tier and capped at $250.
	famB := agreement("fam", fam.ID, b.bob, members(mt(b.bob, 0), mt(b.carol, 1), mt(b.dan, 1)), start)
	b.apply(b.enrolMTx(b.doc, b.bob, famB))
	require.EqualValues(t, 9900+4900+4900, b.membership(famB.ID).Segments[0].PriceCents)
	for _, k := range []chain.PrivKey{b.bob, b.carol, b.dan} {
		log := b.logOf(k)
		require.Len(t, log, 1)
		require.Equal(t, LogMembership, log[0].Kind)
		require.Equal(t, famB.ID, log[0].ID)
		ms, err := MembershipsAt(b.view, addr(b.doc), addr(k))
		require.NoError(t, err)
		require.Len(t, ms, 1)
	}
	// The claim rule's view: members on the day, not strangers, not at other practices.
	day := uint32(b.time / chain.DayMs)
	on, err := MembershipsOnDay(b.view, addr(b.doc), addr(b.carol), day)
	require.NoError(t, err)
	require.Len(t, on, 1)
	on, err = MembershipsOnDay(b.view, addr(b.nurse), addr(b.carol), day)
	require.NoError(t, err)
	require.Empty(t, on)
}

func TestFamilyCapAndRotatedKey(t *testing.T) {
	b := newBillNet(t)
	fam := familyPlan("family")
	b.apply(b.publishTx(b.doc, fam))
	// Alice rotates her signing key: the old key's signature is refused, the new one's accepted.
	newKey := testKey(t, "alice-2")
	b.apply(chain.NewTx(b.alice, testChain, chain.TxRotateKeys, b.nonce(b.alice), chain.NewSigningKeyRotation(b.alice.Public(), newKey, testChain)))
	a := agreement("fam", fam.ID, b.alice, members(mt(b.alice, 0), mt(b.bob, 0), mt(b.carol, 1), mt(b.dan, 1)), b.header().Time)
	b.failsIs(b.enrolMTx(b.doc, b.alice, a), ErrBadAgreement, "signature")
	b.apply(b.enrolMTx(b.doc, newKey, a))
	require.EqualValues(t, 25000, b.membership(a.ID).Segments[0].PriceCents, "2x$99 + 2x$49 = $296, capped at $250")
}

func TestMembershipChangeCancel(t *testing.T) {
	b := newBillNet(t)
	adult := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	fam := familyPlan("family")
	annual := individualPlan("annual", 99000, chain.PeriodAnnual, 10)
	euro := individualPlan("euro", 9900, chain.PeriodMonthly, 10)
	euro.Currency = "EUR"
	other := individualPlan("other", 100, chain.PeriodMonthly, 0)
	b.apply(b.publishTx(b.doc, adult), b.publishTx(b.doc, fam), b.publishTx(b.doc, annual), b.publishTx(b.doc, euro), b.publishTx(b.nurse, other))
	a := agreement("alice", adult.ID, b.alice, members(mt(b.alice, 0)), b.header().Time)
	bobs := agreement("bob", adult.ID, b.bob, members(mt(b.bob, 0)), b.header().Time)
	b.apply(b.enrolMTx(b.doc, b.alice, a), b.enrolMTx(b.doc, b.bob, bobs))

	famMembers := members(mt(b.alice, 0), mt(b.carol, 1))
	b.failsIs(b.changeTx(b.nurse, b.alice, a.ID, fam.ID, famMembers), ErrNotYours, "is at "+addr(b.doc).String())
	b.failsIs(b.changeTx(b.doc, b.bob, a.ID, fam.ID, famMembers), ErrBadAgreement, "signature")
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, annual.ID, a.Members), ErrBadAgreement, "is annual in USD")
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, euro.ID, a.Members), ErrBadAgreement, "in EUR")
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, other.ID, a.Members), ErrPlanUnavailable, "provider")
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, fam.ID, members(mt(b.carol, 1))), ErrBadAgreement, "must stay a member")
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, fam.ID, members(mt(b.alice, 0), mt(b.bob, 0))), ErrAlreadyMember, "patient "+addr(b.bob).String())
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, fam.ID, members(mt(b.alice, 0), mt(b.carol, 2))), ErrBadAgreement, "tier 2")
	b.failsIs(b.changeTx(b.doc, b.alice, hid("nothing"), fam.ID, famMembers), ErrMembershipClosed, "no membership")

	out := b.apply(b.changeTx(b.doc, b.alice, a.ID, fam.ID, famMembers))
	require.Equal(t, []string{EventMembershipChanged}, eventTypes(out.Results[0]))
	m := b.membership(a.ID)
	require.Len(t, m.Segments, 2)
	require.Equal(t, MembershipSegment{FromMs: b.time, Plan: fam.ID, Members: famMembers, PriceCents: 9900 + 4900, GraceDays: 10,
		Contract: b.lastContract}, m.Segments[1])
	// The practice cannot replay a change the subscriber signed: each names a new contract.
	b.failsIs(b.changeTxC(b.doc, b.alice, a.ID, fam.ID, famMembers, b.lastContract), ErrBadAgreement, "already used")
	b.failsIs(b.changeTxC(b.doc, b.alice, a.ID, fam.ID, famMembers, a.Contract), ErrBadAgreement, "already used")
	// Carol, new, is indexed and logged; alice is not logged twice.
	require.Len(t, b.logOf(b.alice), 1)
	require.Len(t, b.logOf(b.carol), 1)
	require.Equal(t, a.ID, b.logOf(b.carol)[0].ID)

	// Cancel: the subscriber or the practice, not anyone else.
	b.failsIs(b.cancelTx(b.carol, a.ID), ErrNotYours, "subscriber")
	b.failsIs(b.cancelTx(b.nurse, a.ID), ErrNotYours, "subscriber")
	out = b.apply(b.cancelTx(b.alice, a.ID))
	require.Equal(t, []string{EventMembershipCancelled}, eventTypes(out.Results[0]))
	require.Equal(t, b.time, b.membership(a.ID).EndMs)
	b.failsIs(b.cancelTx(b.doc, a.ID), ErrMembershipClosed, "cancelled")
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, adult.ID, a.Members), ErrMembershipClosed, "cancelled")
	b.apply(b.cancelTx(b.doc, bobs.ID))

	// Once it ended, alice may enrol again.
	again := agreement("alice-2", adult.ID, b.alice, members(mt(b.alice, 0)), b.header().Time)
	b.apply(b.enrolMTx(b.doc, b.alice, again))
	ms, err := MembershipsAt(b.view, addr(b.doc), addr(b.alice))
	require.NoError(t, err)
	require.Len(t, ms, 2)
	open, err := OpenMembershipAt(b.view, addr(b.doc), addr(b.alice), b.time)
	require.NoError(t, err)
	require.Equal(t, again.ID, open.ID)

	// A future membership cancelled before its start never runs: EndMs = StartMs, nothing due,
	// and it does not block a new one.
	later := agreement("carol-later", adult.ID, b.carol, members(mt(b.carol, 0)), b.header().Time+30*chain.DayMs)
	b.apply(b.enrolMTx(b.doc, b.carol, later))
	b.apply(b.cancelTx(b.carol, later.ID))
	require.Equal(t, later.StartMs, b.membership(later.ID).EndMs)
	st := b.membership(later.ID).Statement(later.StartMs + 90*chain.DayMs)
	require.Zero(t, st.TotalDueCents)
	require.Empty(t, st.Invoices)
	require.Equal(t, StatusCancelled, st.Status)
	b.apply(b.enrolMTx(b.doc, b.carol, agreement("carol-now", adult.ID, b.carol, members(mt(b.carol, 0)), b.header().Time)))
}

func TestChangeBeforeStartReplacesSegment(t *testing.T) {
	b := newBillNet(t)
	adult := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	cheap := individualPlan("cheap", 5000, chain.PeriodMonthly, 5)
	b.apply(b.publishTx(b.doc, adult), b.publishTx(b.doc, cheap))
	a := agreement("alice", adult.ID, b.alice, members(mt(b.alice, 0)), b.header().Time+10*chain.DayMs)
	b.apply(b.enrolMTx(b.doc, b.alice, a))
	b.apply(b.changeTx(b.doc, b.alice, a.ID, cheap.ID, a.Members))
	m := b.membership(a.ID)
	require.Len(t, m.Segments, 1)
	require.Equal(t, a.StartMs, m.Segments[0].FromMs)
	require.EqualValues(t, 5000, m.Segments[0].PriceCents)
}

func TestMembershipSegmentsBounded(t *testing.T) {
	b := newBillNet(t)
	p1, p2 := individualPlan("p1", 100, chain.PeriodMonthly, 0), individualPlan("p2", 200, chain.PeriodMonthly, 0)
	b.apply(b.publishTx(b.doc, p1), b.publishTx(b.doc, p2))
	a := agreement("alice", p1.ID, b.alice, members(mt(b.alice, 0)), b.header().Time)
	b.apply(b.enrolMTx(b.doc, b.alice, a))
	plans := []chain.Hash{p2.ID, p1.ID}
	for i := 1; i < MaxMembershipSegments; i++ {
		b.apply(b.changeTx(b.doc, b.alice, a.ID, plans[i%2], a.Members))
	}
	require.Len(t, b.membership(a.ID).Segments, MaxMembershipSegments)
	b.failsIs(b.changeTx(b.doc, b.alice, a.ID, p1.ID, a.Members), ErrBillingLimit, "segments")
}

func TestPaymentRecord(t *testing.T) {
	b := newBillNet(t)
	adult := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	b.apply(b.publishTx(b.doc, adult), b.publishTx(b.nurse, individualPlan("n", 5000, chain.PeriodMonthly, 0)))
	a := agreement("alice", adult.ID, b.alice, members(mt(b.alice, 0)), b.header().Time)
	bob := agreement("bob", adult.ID, b.bob, members(mt(b.bob, 0)), b.header().Time)
	bob.Sponsor = hid("sponsor/acme")
	a.Sponsor = bob.Sponsor
	carol := agreement("carol", hid("plan/n"), b.carol, members(mt(b.carol, 0)), b.header().Time)
	b.apply(b.enrolMTx(b.doc, b.alice, a), b.enrolMTx(b.doc, b.bob, bob), b.enrolMTx(b.nurse, b.carol, carol))

	splits := []chain.PaymentSplit{{Membership: a.ID, Cents: 9900}, {Membership: bob.ID, Cents: 19800}}
	if compareHash(a.ID, bob.ID) > 0 {
		splits[0], splits[1] = splits[1], splits[0]
	}
	// Refusals: a foreign membership in the splits, a stranger, a patient, an over-refund.
	foreign := append([]chain.PaymentSplit{}, splits...)
	foreign = append(foreign, chain.PaymentSplit{Membership: carol.ID, Cents: 1})
	sortSplits(foreign)
	b.failsIs(b.payTx(b.doc, "x", false, foreign...), ErrNotYours, "membership "+carol.ID.Short()+" is at "+addr(b.nurse).String())
	b.failsIs(b.payTx(b.alice, "x", false, splits...), ErrNotYours, "not the signer")
	b.failsIs(b.payTx(b.doc, "x", false, chain.PaymentSplit{Membership: hid("nothing"), Cents: 1}), ErrMembershipClosed, "unknown membership")
	b.failsIs(b.payTx(b.doc, "x", true, chain.PaymentSplit{Membership: a.ID, Cents: 1}), ErrOverRefund, "holds 0")
	b.apply(b.payTx(b.doc, "dup", false, chain.PaymentSplit{Membership: a.ID, Cents: 1}))
	b.failsIs(b.payTx(b.doc, "dup", false, chain.PaymentSplit{Membership: a.ID, Cents: 1}), ErrDuplicatePayment, "already recorded")
	b.apply(b.payTx(b.doc, "dup", true, chain.PaymentSplit{Membership: a.ID, Cents: 1})) // the refund of that charge
	b.failsIs(b.payTx(b.doc, "dup", true, chain.PaymentSplit{Membership: a.ID, Cents: 1}), ErrDuplicatePayment, "already recorded")
	b.apply(b.payTx(b.nurse, "dup", false, chain.PaymentSplit{Membership: carol.ID, Cents: 1}))  // another practice's reference space
	b.apply(b.payTx(b.nurse, "dup-r", true, chain.PaymentSplit{Membership: carol.ID, Cents: 1})) // back to zero

	tx := b.payTx(b.doc, "acme-march", false, splits...)
	out := b.apply(tx)
	require.Equal(t, []string{EventPaymentRecorded}, eventTypes(out.Results[0]))
	ps, err := Payment(b.view, tx.Hash())
	require.NoError(t, err)
	require.Equal(t, tx.Hash(), ps.ID)
	require.Equal(t, addr(b.doc), ps.Provider)
	require.Equal(t, hid("ref/acme-march"), ps.Reference)
	require.Equal(t, b.height, ps.Height)
	require.Len(t, ps.Splits, 2)
	require.EqualValues(t, 9900, b.membership(a.ID).PaidCents)
	require.EqualValues(t, 19800, b.membership(bob.ID).PaidCents)
	require.EqualValues(t, 1, b.membership(bob.ID).Payments)
	for k, n := range map[chain.Address]int{addr(b.alice): 4, addr(b.bob): 2} { // alice: membership, dup, dup refund, this
		log, err := PatientLog(b.view, k, 0, 100)
		require.NoError(t, err)
		require.Len(t, log, n)
		require.Equal(t, PatientLogEntry{Version: RecordVersion, Kind: LogPayment, ID: tx.Hash(), Height: b.height}, log[n-1])
	}
	// A refund down to zero is fine; one cent more is not.
	b.failsIs(b.payTx(b.doc, "r", true, chain.PaymentSplit{Membership: a.ID, Cents: 9901}), ErrOverRefund, "refund of 9901 cents")
	rtx := b.payTx(b.doc, "r", true, chain.PaymentSplit{Membership: a.ID, Cents: 9900})
	b.apply(rtx)
	require.Zero(t, b.membership(a.ID).PaidCents)
	ps, err = Payment(b.view, rtx.Hash())
	require.NoError(t, err)
	require.True(t, ps.Refund)
	require.Equal(t, []PaidSplit{{Membership: a.ID, Subscriber: addr(b.alice), Cents: 9900}}, ps.Splits)

	// Payments settle cancelled memberships too (arrears after leaving).
	b.apply(b.cancelTx(b.bob, bob.ID))
	b.apply(b.payTx(b.doc, "late", false, chain.PaymentSplit{Membership: bob.ID, Cents: 100}))
	require.EqualValues(t, 19900, b.membership(bob.ID).PaidCents)
}

func sortSplits(s []chain.PaymentSplit) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && compareHash(s[j-1].Membership, s[j].Membership) > 0; j-- {
			s[j-1], s[j] = s[j], s[j-1]
		}
	}
}

// A wallet decodes every billing item in its log, each concerns it, and the node lets every
// patient a membership or payment concerns prove it, and no other.
func TestBillingProvedItems(t *testing.T) {
	b := newBillNet(t)
	fam := familyPlan("family")
	b.apply(b.publishTx(b.doc, fam))
	a := agreement("fam", fam.ID, b.bob, members(mt(b.bob, 0), mt(b.carol, 1), mt(b.dan, 1)), b.header().Time)
	b.apply(b.enrolMTx(b.doc, b.bob, a))
	pay := b.payTx(b.doc, "p", false, chain.PaymentSplit{Membership: a.ID, Cents: 1000})
	b.apply(pay)

	for _, k := range []chain.PrivKey{b.bob, b.carol, b.dan} {
		log := b.logOf(k)
		if addr(k) == addr(b.bob) {
			require.Len(t, log, 2, "the subscriber gets the receipt")
		} else {
			require.Len(t, log, 1, "members see the membership, not the receipts")
		}
		for _, e := range log {
			key, err := ItemKey(e.Kind, e.ID)
			require.NoError(t, err)
			data, err := b.view.Get(key)
			require.NoError(t, err)
			it, err := DecodeItem(e.Kind, e.ID, data)
			require.NoError(t, err)
			require.True(t, it.Concerns(addr(k)))
			require.False(t, it.Concerns(addr(b.alice)))
			require.Equal(t, addr(b.bob), it.Patient())
			ok, err := KeyConcerns(b.view, key, addr(k))
			require.NoError(t, err)
			require.True(t, ok)
			ok, err = KeyConcerns(b.view, key, addr(b.alice))
			require.NoError(t, err)
			require.False(t, ok)
			about, public, ok, err := KeyAbout(b.view, key)
			require.NoError(t, err)
			require.True(t, ok)
			require.False(t, public)
			require.Equal(t, addr(b.bob), about)
			if e.Kind == LogMembership {
				require.EqualValues(t, 1000, it.Membership.Statement(b.time).TotalPaidCents)
			} else {
				require.Equal(t, LogPayment, e.Kind)
				require.Equal(t, pay.Hash(), it.Payment.ID)
			}
		}
	}
	// An item stored under another id is refused; an absent one is public.
	data, err := b.view.Get(mshipKey(a.ID))
	require.NoError(t, err)
	_, err = DecodeItem(LogMembership, hid("other"), data)
	require.ErrorContains(t, err, "names")
	ok, err := KeyConcerns(b.view, mshipKey(hid("nothing")), addr(b.alice))
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = KeyConcerns(b.view, planKey(fam.ID), addr(b.alice))
	require.NoError(t, err)
	require.False(t, ok, "plans are not wallet keys")
}
