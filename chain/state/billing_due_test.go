package state

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

func ms(y int, mo time.Month, d, h, mi int) int64 {
	return time.Date(y, mo, d, h, mi, 0, 0, time.UTC).UnixMilli()
}

// mship is a membership record as the rules would write it: one segment from start.
func mship(period chain.Period, start int64, price uint64, grace uint16) *MembershipRecord {
	return &MembershipRecord{Version: RecordVersion, ID: hid("m"), Currency: "USD", Period: period, StartMs: start,
		Segments: []MembershipSegment{{FromMs: start, Plan: hid("plan"), PriceCents: price, GraceDays: grace}}}
}

func starts(st Statement) []int64 {
	var out []int64
	for _, inv := range st.Invoices {
		out = append(out, inv.StartMs)
	}
	return out
}

func amounts(st Statement) []uint64 {
	var out []uint64
	for _, inv := range st.Invoices {
		out = append(out, inv.AmountCents)
	}
	return out
}

// A year of a $99 monthly membership paid every month but the last.
func TestStatementYearMonthly(t *testing.T) {
	m := mship(chain.PeriodMonthly, ms(2026, 1, 15, 9, 30), 9900, 10)
	require.Equal(t, StatusPending, m.Statement(ms(2026, 1, 15, 9, 29)).Status)
	require.Empty(t, m.Statement(ms(2026, 1, 15, 9, 29)).Invoices)
	require.Equal(t, ms(2026, 1, 15, 9, 30), m.Statement(ms(2026, 1, 1, 0, 0)).NextInvoiceMs)

	m.PaidCents = 11 * 9900
	st := m.Statement(ms(2026, 12, 20, 0, 0))
	require.Len(t, st.Invoices, 12)
	for i, inv := range st.Invoices {
		require.Equal(t, ms(2026, time.Month(1+i), 15, 9, 30), inv.StartMs, "period %d", i)
		require.Equal(t, inv.StartMs, inv.DueMs)
		require.EqualValues(t, 9900, inv.AmountCents)
	}
	require.EqualValues(t, 118800, st.TotalDueCents)
	require.EqualValues(t, 108900, st.TotalPaidCents)
	require.EqualValues(t, 9900, st.BalanceCents)
	require.Equal(t, InvoicePaid, st.Invoices[10].Status)
	require.Equal(t, InvoiceUnpaid, st.Invoices[11].Status)
	require.Equal(t, ms(2026, 12, 15, 9, 30), st.PaidThroughMs)
	require.Equal(t, ms(2027, 1, 15, 9, 30), st.NextInvoiceMs)
	require.Equal(t, StatusActive, st.Status, "within the 10 days' grace")

	// The grace runs out 10 days after Dec 15 09:30.
	require.Equal(t, StatusActive, m.Statement(ms(2026, 12, 25, 9, 29)).Status)
	st = m.Statement(ms(2026, 12, 25, 9, 30))
	require.Equal(t, StatusPastDue, st.Status)
	require.Equal(t, ms(2026, 12, 25, 9, 30), st.PastDueSinceMs)

	// Half paid is still past due; paid in full it is active again.
	m.PaidCents += 5000
	st = m.Statement(ms(2026, 12, 26, 0, 0))
	require.Equal(t, InvoicePartlyPaid, st.Invoices[11].Status)
	require.EqualValues(t, 5000, st.Invoices[11].PaidCents)
	require.EqualValues(t, 4900, st.BalanceCents)
	require.Equal(t, StatusPastDue, st.Status)
	m.PaidCents += 4900
	st = m.Statement(ms(2026, 12, 26, 0, 0))
	require.Equal(t, StatusActive, st.Status)
	require.Zero(t, st.BalanceCents)
	require.Equal(t, ms(2027, 1, 15, 9, 30), st.PaidThroughMs)
	require.Zero(t, st.PastDueSinceMs)

	// An overpayment is a credit; it does not pay periods not yet invoiced.
	m.PaidCents += 20000
	st = m.Statement(ms(2026, 12, 26, 0, 0))
	require.EqualValues(t, -20000, st.BalanceCents)
	require.Equal(t, ms(2027, 1, 15, 9, 30), st.PaidThroughMs)
}

// Two adults and two children: 2 x $99 + 2 x $49 = $296, capped at $250 a month.
func TestStatementFamily(t *testing.T) {
	plan := familyPlan("family")
	ms4 := []chain.MemberTier{{Patient: chain.Address{1}, Tier: 0}, {Patient: chain.Address{2}, Tier: 0}, {Patient: chain.Address{3}, Tier: 1}, {Patient: chain.Address{4}, Tier: 1}}
	price, err := PriceOf(&plan, ms4)
	require.NoError(t, err)
	require.EqualValues(t, 25000, price)
	price, err = PriceOf(&plan, ms4[1:]) // one adult, two children: $197, under the cap
	require.NoError(t, err)
	require.EqualValues(t, 19700, price)
	_, err = PriceOf(&plan, append(ms4, chain.MemberTier{Patient: chain.Address{5}, Tier: 8}))
	require.ErrorIs(t, err, ErrBadAgreement)

	m := mship(chain.PeriodMonthly, ms(2026, 3, 1, 0, 0), 25000, 10)
	m.PaidCents = 50000
	st := m.Statement(ms(2026, 5, 2, 0, 0))
	require.Equal(t, []uint64{25000, 25000, 25000}, amounts(st))
	require.EqualValues(t, 25000, st.BalanceCents)
	require.Equal(t, ms(2026, 5, 1, 0, 0), st.PaidThroughMs)
}

// An upgrade on Mar 11 at noon from $99 to $150: 10 March days at $99, 21 at $150.
func TestStatementChangeMidMonth(t *testing.T) {
	m := mship(chain.PeriodMonthly, ms(2026, 3, 1, 0, 0), 9900, 10)
	m.Segments = append(m.Segments, MembershipSegment{FromMs: ms(2026, 3, 11, 12, 0), Plan: hid("family"), PriceCents: 15000, GraceDays: 10})
	m.PaidCents = 9900
	st := m.Statement(ms(2026, 3, 15, 0, 0))
	require.Len(t, st.Invoices, 1)
	inv := st.Invoices[0]
	require.EqualValues(t, 31, inv.Days)
	require.EqualValues(t, 31, inv.BilledDays)
	require.EqualValues(t, (10*9900+21*15000)/31, inv.AmountCents) // 414000/31 = 13354.8, down
	require.EqualValues(t, 13354, inv.AmountCents)
	require.Equal(t, InvoicePartlyPaid, inv.Status)
	require.Equal(t, ms(2026, 3, 11, 12, 0), inv.AdjustedMs)
	require.EqualValues(t, 3454, st.BalanceCents)
	// The grace of the difference counts from the change, not from Mar 1.
	require.Equal(t, StatusActive, st.Status)
	require.Equal(t, StatusActive, m.Statement(ms(2026, 3, 21, 11, 59)).Status)
	require.Equal(t, StatusPastDue, m.Statement(ms(2026, 3, 21, 12, 0)).Status)
	// April is all at the new price.
	st = m.Statement(ms(2026, 4, 1, 0, 0))
	require.Equal(t, []uint64{13354, 15000}, amounts(st))
}

// Cancelled on Apr 16 at 08:00 after paying April: 15 of 30 days billed, half back as credit.
func TestStatementCancelMidMonth(t *testing.T) {
	m := mship(chain.PeriodMonthly, ms(2026, 4, 1, 0, 0), 9900, 10)
	m.PaidCents = 9900
	m.EndMs = ms(2026, 4, 16, 8, 0)
	st := m.Statement(ms(2026, 6, 1, 0, 0))
	require.Len(t, st.Invoices, 1)
	require.EqualValues(t, 15, st.Invoices[0].BilledDays)
	require.EqualValues(t, 4950, st.Invoices[0].AmountCents)
	require.Equal(t, m.EndMs, st.Invoices[0].EndMs)
	require.EqualValues(t, 4950, st.TotalDueCents)
	require.EqualValues(t, -4950, st.BalanceCents)
	require.Equal(t, StatusCancelled, st.Status)
	require.Zero(t, st.NextInvoiceMs)
	require.Equal(t, StatusActive, m.Statement(ms(2026, 4, 16, 7, 59)).Status)
	// Unpaid and cancelled: still owed, never "past due" (it is over).
	m.PaidCents = 0
	st = m.Statement(ms(2026, 6, 1, 0, 0))
	require.EqualValues(t, 4950, st.BalanceCents)
	require.Equal(t, StatusCancelled, st.Status)
	require.Zero(t, st.PastDueSinceMs)
	// Cancelled on its first day: nothing billed, no invoice.
	m.EndMs = ms(2026, 4, 1, 23, 0)
	st = m.Statement(ms(2026, 6, 1, 0, 0))
	require.Empty(t, st.Invoices)
	require.Zero(t, st.BalanceCents)
}

// An annual plan from Feb 29 2024 renews on Mar 1 in common years (AddDate's normalisation),
// and a cancellation is prorated over the year's days.
func TestStatementAnnual(t *testing.T) {
	m := mship(chain.PeriodAnnual, ms(2024, 2, 29, 0, 0), 99000, 30)
	st := m.Statement(ms(2026, 6, 1, 0, 0))
	require.Equal(t, []int64{ms(2024, 2, 29, 0, 0), ms(2025, 3, 1, 0, 0), ms(2026, 3, 1, 0, 0)}, starts(st))
	require.Equal(t, []uint64{99000, 99000, 99000}, amounts(st))
	require.EqualValues(t, 366, st.Invoices[0].Days) // Feb 29 2024 - Mar 1 2025
	require.Equal(t, ms(2027, 3, 1, 0, 0), st.NextInvoiceMs)

	m.EndMs = ms(2025, 8, 1, 0, 0) // 153 days into a 365-day year
	st = m.Statement(ms(2026, 6, 1, 0, 0))
	require.Equal(t, []uint64{99000, 99000 * 153 / 365}, amounts(st))
	require.EqualValues(t, 41498, st.Invoices[1].AmountCents)
}

// A start on Jan 31 follows time.AddDate: "Feb 31" is Mar 3 (Mar 2 in a leap year), then Mar 31,
// "Apr 31" = May 1, May 31; periods stay contiguous and each is billed in full.
func TestStatementMonthEnd(t *testing.T) {
	m := mship(chain.PeriodMonthly, ms(2026, 1, 31, 10, 0), 9900, 10)
	st := m.Statement(ms(2026, 6, 1, 0, 0))
	require.Equal(t, []int64{ms(2026, 1, 31, 10, 0), ms(2026, 3, 3, 10, 0), ms(2026, 3, 31, 10, 0), ms(2026, 5, 1, 10, 0), ms(2026, 5, 31, 10, 0)}, starts(st))
	require.Equal(t, []uint64{9900, 9900, 9900, 9900, 9900}, amounts(st))
	require.EqualValues(t, 31, st.Invoices[0].Days)
	require.EqualValues(t, 28, st.Invoices[1].Days)
	for i := 1; i < len(st.Invoices); i++ {
		require.Equal(t, st.Invoices[i-1].EndMs, st.Invoices[i].StartMs, "contiguous")
	}
	leap := mship(chain.PeriodMonthly, ms(2028, 1, 31, 0, 0), 9900, 10)
	require.Equal(t, []int64{ms(2028, 1, 31, 0, 0), ms(2028, 3, 2, 0, 0)}, starts(leap.Statement(ms(2028, 3, 2, 0, 0))))
}

// The largest price over the longest period with the most segments does not overflow.
func TestStatementNoOverflow(t *testing.T) {
	m := mship(chain.PeriodAnnual, ms(2024, 1, 1, 0, 0), maxSegmentPrice, 0)
	for i := 1; i < MaxMembershipSegments; i++ {
		m.Segments = append(m.Segments, MembershipSegment{FromMs: ms(2024, 1, 1, 0, 0) + int64(i)*chain.DayMs, PriceCents: ^uint64(0)})
	}
	st := m.Statement(ms(2024, 6, 1, 0, 0))
	require.Equal(t, []uint64{maxSegmentPrice}, amounts(st), "every segment priced at the clamp: the full price")
	require.EqualValues(t, maxSegmentPrice, st.BalanceCents)
}

// countingView counts reads by key prefix.
type countingView struct {
	View
	reads map[string]int
}

func (v *countingView) Get(key []byte) ([]byte, error) {
	if i := strings.IndexByte(string(key), '/'); i >= 0 {
		v.reads[string(key[:i+1])]++
	}
	return v.View.Get(key)
}

// TestPeriodBoundaryCostsNothing enrols 2,000 memberships starting in the same block (so every
// one of them crosses a period boundary in the same later block) and runs empty blocks across
// the boundary: the block writes only the tip and reads no billing key. The number does not
// matter because nothing iterates memberships: invoices exist only when Statement is called, so
// 100,000 (or any number) cost what 2,000 do at a boundary, which is nothing.
func TestPeriodBoundaryCostsNothing(t *testing.T) {
	const n = 2000
	b := newBillNet(t)
	plan := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	b.apply(b.publishTx(b.doc, plan))
	keys := make([]chain.PrivKey, n)
	var regs []*chain.Tx
	for i := range keys {
		keys[i] = testKey(t, "member-"+strconv.Itoa(i))
		regs = append(regs, b.patientTx(keys[i]))
	}
	b.apply(regs...)
	start := b.header().Time
	var ids []chain.Hash
	for half := 0; half < 2; half++ {
		var txs []*chain.Tx
		for _, k := range keys[half*n/2 : (half+1)*n/2] {
			a := agreement("m/"+k.Public().Short(), plan.ID, k, members(mt(k, 0)), start)
			ids = append(ids, a.ID)
			txs = append(txs, b.enrolMTx(b.doc, k, a))
		}
		b.apply(txs...)
	}
	m := b.membership(ids[n-1])
	require.Equal(t, start, m.StartMs)
	boundary := m.periodStart(1)

	b.time = boundary - 1500 // the next block is 500 ms before the boundary
	b.apply()
	require.Len(t, m.Statement(b.time).Invoices, 1)
	cv := &countingView{View: b.view, reads: map[string]int{}}
	out, err := b.m.ApplyBlock(cv, b.header(), nil, nil)
	require.NoError(t, err)
	require.Greater(t, b.header().Time, boundary)
	require.Len(t, out.Changes.Changes, 1)
	require.Equal(t, keyTip, out.Changes.Changes[0].Key)
	for _, p := range []string{prefixMship, prefixMships, prefixPlan, prefixPlans, prefixPayment} {
		require.Zero(t, cv.reads[p], "block read %s keys", p)
	}
	b.view.commit(out.Changes)
	b.height, b.time = b.height+1, b.time+1000
	// The new invoice exists on read.
	st := b.membership(ids[0]).Statement(b.time)
	require.Len(t, st.Invoices, 2)
	require.EqualValues(t, 19800, st.BalanceCents)
}

// Through the rules: an employer pays two memberships with one payment; one member goes past
// due after the grace and comes back by paying; a change and a cancellation re-price the period
// in progress.
func TestBillingThroughBlocks(t *testing.T) {
	b := newBillNet(t)
	plan := individualPlan("adult", 9900, chain.PeriodMonthly, 10)
	fam := familyPlan("family")
	b.apply(b.publishTx(b.doc, plan), b.publishTx(b.doc, fam))
	start := b.header().Time
	acme := hid("sponsor/acme")
	alice := agreement("alice", plan.ID, b.alice, members(mt(b.alice, 0)), start)
	bob := agreement("bob", plan.ID, b.bob, members(mt(b.bob, 0)), start)
	alice.Sponsor, bob.Sponsor = acme, acme
	b.apply(b.enrolMTx(b.doc, b.alice, alice), b.enrolMTx(b.doc, b.bob, bob))
	splits := []chain.PaymentSplit{{Membership: alice.ID, Cents: 9900}, {Membership: bob.ID, Cents: 9900}}
	sortSplits(splits)
	b.apply(b.payTx(b.doc, "acme-1", false, splits...))
	for _, id := range []chain.Hash{alice.ID, bob.ID} {
		st := b.membership(id).Statement(b.time)
		require.Zero(t, st.BalanceCents)
		require.Equal(t, StatusActive, st.Status)
		require.Equal(t, acme, b.membership(id).Sponsor)
	}

	// A month and eleven days later, the second invoice is past its grace.
	m := b.membership(alice.ID)
	b.time = m.periodStart(1) + 11*chain.DayMs
	b.apply()
	st := b.membership(alice.ID).Statement(b.time)
	require.Equal(t, StatusPastDue, st.Status)
	require.Equal(t, m.periodStart(1)+10*chain.DayMs, st.PastDueSinceMs)
	require.EqualValues(t, 9900, st.BalanceCents)
	b.apply(b.payTx(b.doc, "alice-2", false, chain.PaymentSplit{Membership: alice.ID, Cents: 9900}))
	st = b.membership(alice.ID).Statement(b.time)
	require.Equal(t, StatusActive, st.Status)
	require.Equal(t, m.periodStart(2), st.PaidThroughMs)

	// Bob cancels 15 whole days (and a bit) into the second period, which he has not paid.
	bm := b.membership(bob.ID)
	b.time = bm.periodStart(1) + 15*chain.DayMs + 3_600_000 - 1000
	b.apply(b.cancelTx(b.bob, bob.ID))
	st = b.membership(bob.ID).Statement(b.time + 40*chain.DayMs)
	days := (bm.periodStart(2) - bm.periodStart(1)) / chain.DayMs
	require.Len(t, st.Invoices, 2)
	require.EqualValues(t, 15, st.Invoices[1].BilledDays)
	require.EqualValues(t, 9900*15/uint64(days), st.Invoices[1].AmountCents)
	require.Equal(t, StatusCancelled, st.Status)

	// Alice adds carol 5 days and a bit into her third period: 5 days at $99, the rest at
	// $99 + $49 on the family plan.
	b.time = m.periodStart(2) + 5*chain.DayMs + 1
	b.apply(b.changeTx(b.doc, b.alice, alice.ID, fam.ID, members(mt(b.alice, 0), mt(b.carol, 1))))
	st = b.membership(alice.ID).Statement(b.time)
	days = (m.periodStart(3) - m.periodStart(2)) / chain.DayMs
	want := (5*9900 + uint64(days-5)*14800) / uint64(days)
	require.Equal(t, []uint64{9900, 9900, want}, amounts(st))
	require.Equal(t, StatusActive, st.Status)
	// The claim rule sees carol as a member from the change's day on, not before.
	day := uint32(b.time / chain.DayMs)
	on, err := MembershipsOnDay(b.view, addr(b.doc), addr(b.carol), day)
	require.NoError(t, err)
	require.Len(t, on, 1)
	on, err = MembershipsOnDay(b.view, addr(b.doc), addr(b.carol), day-1)
	require.NoError(t, err)
	require.Empty(t, on)
}
