package state

import (
	"time"

	"github.com/medledger/medledger/chain"
)

// What a membership owes is derived, never stored: from its start, segments, end and net
// payments and the block time of the read. No rule and nothing in finish writes at a period
// boundary, so a boundary costs the same for one membership or a million; a read costs
// O(periods elapsed) and reads nothing but the record. The node, the wallet (on a record it
// proved) and the rules all call the same pure function, so they cannot disagree.
//
// Periods. Period k runs from StartMs plus k calendar months (or years), in UTC, to period k+1's
// start, each computed from StartMs with time.AddDate, so there is no drift. AddDate normalises
// a day the month lacks into the next month: a membership starting on Jan 31 has periods
// starting Jan 31, Mar 3 (Mar 2 in a leap year: "Feb 31"), Mar 31, May 1 ("Apr 31"), May 31, ...;
// one starting Feb 29 renews yearly on Mar 1 in common years. Periods stay contiguous whatever
// the normalisation, and each is a whole number of days (UTC has no daylight saving).
//
// Proration. A period's invoice is due at its start (in advance). Within a period, day d is
// [start + d days, start + d+1 days); a segment or the membership's end that begins inside a day
// takes effect from that day's start counted from the period start (times are floored to days),
// so the day of a change is billed at the new price and the day of a cancellation is not billed. The amount is floor(sum(segment price x its days) / days in the period): one
// rounding per invoice, down, in the member's favour; a period under one segment costs exactly
// its price. A mid-period change re-prices the period in progress: an upgrade leaves the
// difference unpaid, a downgrade or a cancellation leaves a credit (negative balance).
//
// Settlement. Net payments (PaidCents) settle invoices oldest first; what is left over is a
// credit. The membership is past due when its oldest invoice not fully paid is still unpaid
// GraceDays (of the segment in force at its due time) after it was due, or after the last change
// inside its period if later (the amount changed then).

// InvoiceStatus says how far payments cover an invoice.
type InvoiceStatus uint8

// Invoice statuses.
const (
	InvoiceUnpaid     InvoiceStatus = 1
	InvoicePartlyPaid InvoiceStatus = 2
	InvoicePaid       InvoiceStatus = 3
)

func (s InvoiceStatus) String() string {
	switch s {
	case InvoiceUnpaid:
		return "unpaid"
	case InvoicePartlyPaid:
		return "partly-paid"
	case InvoicePaid:
		return "paid"
	}
	return "invoice-status-?"
}

// MembershipStatus is where a membership stands at a time.
type MembershipStatus uint8

// Membership statuses.
const (
	StatusPending   MembershipStatus = 1 // before its start
	StatusActive    MembershipStatus = 2
	StatusPastDue   MembershipStatus = 3
	StatusCancelled MembershipStatus = 4 // at or after its end
)

func (s MembershipStatus) String() string {
	switch s {
	case StatusPending:
		return "pending"
	case StatusActive:
		return "active"
	case StatusPastDue:
		return "past-due"
	case StatusCancelled:
		return "cancelled"
	}
	return "membership-status-?"
}

// Invoice is one derived period's bill.
type Invoice struct {
	Period  int   // 0 for the first period
	StartMs int64 // the period's start
	// EndMs is the period's end, or the membership's end when it ends inside the period.
	EndMs int64
	DueMs int64 // the period's start
	// AdjustedMs is the start of the last segment that began inside the period (0 if none):
	// the amount changed then, and the grace counts from it.
	AdjustedMs  int64
	Days        int64 // days in the calendar period
	BilledDays  int64 // days billed (fewer when the membership ends inside it)
	AmountCents uint64
	PaidCents   uint64
	Status      InvoiceStatus
}

// Statement is a membership's account at a time.
type Statement struct {
	AtMs           int64
	Invoices       []Invoice // oldest first; periods with no billed day are left out
	TotalDueCents  uint64    // sum of the invoices
	TotalPaidCents uint64    // net payments recorded
	// BalanceCents is TotalDueCents - TotalPaidCents: negative is a credit.
	BalanceCents int64
	// PaidThroughMs is the end of the last invoice fully paid with all before it (0: none).
	PaidThroughMs int64
	// NextInvoiceMs is the start of the next period not yet invoiced (0 when the membership
	// ends before it).
	NextInvoiceMs int64
	Status        MembershipStatus
	// PastDueSinceMs is when the grace of the oldest invoice not fully paid ran out (past due only).
	PastDueSinceMs int64
}

// maxStatementPeriods bounds a statement's periods (a thousand years of months), so a read at an
// absurd time cannot loop for ever; real memberships never come near it.
const maxStatementPeriods = 12_000

// maxSegmentPrice is the most a rule can price a segment at (PriceOf); Statement clamps stored
// prices to it so that no product or sum can overflow: 1.6e9 x 366 days x 64 segments < 2^63.
const maxSegmentPrice = chain.MaxPriceCents * chain.MaxFamilyMembers

// periodStart is the start of period k (see the normalisation above).
func (m *MembershipRecord) periodStart(k int) int64 {
	t := time.UnixMilli(m.StartMs).UTC()
	if m.Period == chain.PeriodAnnual {
		return t.AddDate(k, 0, 0).UnixMilli()
	}
	return t.AddDate(0, k, 0).UnixMilli()
}

// Statement derives what the membership owes and has paid at block time atMs.
func (m *MembershipRecord) Statement(atMs int64) Statement {
	st := Statement{AtMs: atMs, TotalPaidCents: min(m.PaidCents, maxPaidCents)}
	k := 0
	for ; k < maxStatementPeriods; k++ {
		ps := m.periodStart(k)
		if ps > atMs || (m.EndMs != 0 && ps >= m.EndMs) {
			break
		}
		if inv, ok := m.invoice(k, ps, m.periodStart(k+1)); ok {
			st.Invoices = append(st.Invoices, inv)
			st.TotalDueCents += inv.AmountCents
		}
	}
	if next := m.periodStart(k); k < maxStatementPeriods && (m.EndMs == 0 || next < m.EndMs) {
		st.NextInvoiceMs = next
	}
	left := st.TotalPaidCents
	settled := true
	for i := range st.Invoices {
		inv := &st.Invoices[i]
		inv.PaidCents = min(left, inv.AmountCents)
		left -= inv.PaidCents
		switch {
		case inv.PaidCents == inv.AmountCents:
			inv.Status = InvoicePaid
			if settled {
				st.PaidThroughMs = inv.EndMs
			}
			continue
		case inv.PaidCents > 0:
			inv.Status = InvoicePartlyPaid
		default:
			inv.Status = InvoiceUnpaid
		}
		if settled {
			settled = false
			from := max(inv.DueMs, inv.AdjustedMs)
			var grace int64
			if seg := m.SegmentAt(inv.DueMs); seg != nil {
				grace = int64(seg.GraceDays) * chain.DayMs
			}
			if atMs >= from+grace {
				st.PastDueSinceMs = from + grace
			}
		}
	}
	st.BalanceCents = int64(st.TotalDueCents) - int64(st.TotalPaidCents)
	switch {
	case m.EndMs != 0 && atMs >= m.EndMs:
		st.Status, st.PastDueSinceMs = StatusCancelled, 0
	case atMs < m.StartMs:
		st.Status = StatusPending
	case st.PastDueSinceMs != 0:
		st.Status = StatusPastDue
	default:
		st.Status = StatusActive
	}
	return st
}

// invoice prices period k, [ps, pe), by day over the segments in force in it. ok is false when
// no day of it is billed.
func (m *MembershipRecord) invoice(k int, ps, pe int64) (Invoice, bool) {
	inv := Invoice{Period: k, StartMs: ps, EndMs: pe, DueMs: ps, Days: (pe - ps) / chain.DayMs}
	if m.EndMs != 0 && m.EndMs < pe {
		inv.EndMs = m.EndMs
	}
	if inv.Days <= 0 {
		return inv, false
	}
	day := func(t int64) int64 { return (t - ps) / chain.DayMs } // t >= ps: floor
	var num uint64
	for i := range m.Segments {
		seg := &m.Segments[i]
		from, to := seg.FromMs, inv.EndMs
		if i == 0 {
			from = min(from, m.StartMs)
		}
		if i+1 < len(m.Segments) {
			to = min(to, m.Segments[i+1].FromMs)
		}
		from = max(from, ps)
		if to <= from {
			continue
		}
		if from > ps {
			inv.AdjustedMs = from
		}
		days := day(to) - day(from)
		inv.BilledDays += days
		num += min(seg.PriceCents, maxSegmentPrice) * uint64(days)
	}
	if inv.BilledDays == 0 {
		return inv, false
	}
	inv.AmountCents = num / uint64(inv.Days)
	return inv, true
}
