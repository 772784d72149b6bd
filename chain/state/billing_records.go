package state

import (
	"github.com/medledger/medledger/chain"
)

// Billing state records shared by the membership rules (billing.go) and the claim rules
// (claims.go). Key schema (keys.go lists the others):
//
//	plan/<32B id>                    PlanRecord
//	plans/<20B provider>             planIndex: the provider's unretired plans, in publication
//	                                 order (at most MaxOpenPlansPerProvider)
//	mship/<32B id>                   MembershipRecord
//	mships/<20B provider><20B patient>
//	                                 membershipIndex: every membership at provider that ever
//	                                 counted patient among its members (at most
//	                                 MaxMembershipsPerPair)
//	payment/<32B tx hash>            PaymentState
//	payref/<20B provider><1B refund><32B reference>
//	                                 paymentRefRecord: the payment (or refund) that used an
//	                                 external reference, so one charge is not recorded twice
//	schedule/<20B payer><20B provider>
//	                                 ScheduleRecord
//	coverage/<32B id>                CoverageRecord
//	coverages/<20B payer><20B patient>
//	                                 coverageIndex (at most chain.MaxCoveragePerPair)
//	claim/<32B id>                   ClaimRecord
//	claimdup/<20B provider><32B print>
//	                                 claimDupRecord: the claim that holds a duplicate print
//	claimvol/<20B provider>          claimVolumeRecord: the provider's daily claim history
//	claimrec/…, claimlog/…           the claims naming a sealed record and each payer's claim
//	                                 log (claims_access.go)
var (
	prefixPlan      = "plan/"
	prefixMship     = "mship/"
	prefixMships    = "mships/"
	prefixPayment   = "payment/"
	prefixSchedule  = "schedule/"
	prefixCoverage  = "coverage/"
	prefixCoverages = "coverages/"
	prefixClaim     = "claim/"
	prefixClaimDup  = "claimdup/"
	prefixClaimVol  = "claimvol/"
)

// MaxMembershipsPerPair bounds the memberships one patient has had at one practice (ended ones
// included), so the claim rule reads a bounded list.
const MaxMembershipsPerPair = 32

func planKey(id chain.Hash) []byte    { return append([]byte(prefixPlan), id[:]...) }
func mshipKey(id chain.Hash) []byte   { return append([]byte(prefixMship), id[:]...) }
func paymentKey(id chain.Hash) []byte { return append([]byte(prefixPayment), id[:]...) }
func coverageKey(id chain.Hash) []byte {
	return append([]byte(prefixCoverage), id[:]...)
}
func claimKey(id chain.Hash) []byte { return append([]byte(prefixClaim), id[:]...) }
func claimVolKey(provider chain.Address) []byte {
	return append([]byte(prefixClaimVol), provider[:]...)
}
func pairKey(prefix string, a, b chain.Address) []byte {
	k := append([]byte(prefix), a[:]...)
	return append(k, b[:]...)
}
func mshipsKey(provider, patient chain.Address) []byte {
	return pairKey(prefixMships, provider, patient)
}
func scheduleKey(payer, provider chain.Address) []byte {
	return pairKey(prefixSchedule, payer, provider)
}
func coveragesKey(payer, patient chain.Address) []byte {
	return pairKey(prefixCoverages, payer, patient)
}
func claimDupKey(provider chain.Address, print chain.Hash) []byte {
	k := append([]byte(prefixClaimDup), provider[:]...)
	return append(k, print[:]...)
}

// PlanRecord is a published plan.
type PlanRecord struct {
	_               struct{} `cbor:",toarray"`
	Version         uint8
	Plan            chain.Plan
	Provider        chain.Address
	PublishedHeight uint64
	PublishedTime   int64
	Retired         bool
	RetiredHeight   uint64
}

// MembershipSegment is a stretch of a membership under one plan and set of members, from FromMs
// until the next segment's FromMs (or the membership's end). A change of plan or members starts
// a new segment; the period in progress is prorated by day between them.
type MembershipSegment struct {
	_          struct{} `cbor:",toarray"`
	FromMs     int64
	Plan       chain.Hash
	Members    []chain.MemberTier
	PriceCents uint64 // per period, from the plan's tiers (and family cap) when the segment began
	GraceDays  uint16
	Contract   chain.Hash
}

// MembershipRecord is one membership. Invoices are not stored: they are derived from StartMs, the
// segments, EndMs and the block time of the read (billing_due.go), and settled in order by
// PaidCents. Period and currency are fixed for the membership's life (a change keeps them).
type MembershipRecord struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	ID             chain.Hash
	Provider       chain.Address
	Subscriber     chain.Address
	Sponsor        chain.Hash
	Currency       string
	Period         chain.Period
	StartMs        int64
	EndMs          int64 // 0 while open; set by a cancellation
	Segments       []MembershipSegment
	PaidCents      uint64 // payments net of refunds
	Payments       uint32
	EnrolledHeight uint64
	EnrolledTime   int64
}

// SegmentAt returns the segment in force at block time atMs (the first one before the start), or
// nil if the membership has none.
func (m *MembershipRecord) SegmentAt(atMs int64) *MembershipSegment {
	if len(m.Segments) == 0 {
		return nil
	}
	s := &m.Segments[0]
	for i := range m.Segments {
		if m.Segments[i].FromMs <= atMs {
			s = &m.Segments[i]
		}
	}
	return s
}

// InForceOnDay reports whether the membership runs during some part of UTC day day.
func (m *MembershipRecord) InForceOnDay(day uint32) bool {
	from, to := int64(day)*chain.DayMs, int64(day+1)*chain.DayMs
	return m.StartMs < to && (m.EndMs == 0 || m.EndMs > from)
}

type membershipIndex struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	IDs     []chain.Hash // in enrolment order
}

func (r *PlanRecord) version() uint8       { return r.Version }
func (r *MembershipRecord) version() uint8 { return r.Version }
func (r *membershipIndex) version() uint8  { return r.Version }

// MemberOnDay reports whether patient is a member during some part of UTC day day: the
// membership in force then and patient among the members of a segment that runs during it.
func (m *MembershipRecord) MemberOnDay(patient chain.Address, day uint32) bool {
	return len(m.PlansOnDay(patient, day)) > 0
}

// PlansOnDay returns the plans of the segments that run during UTC day day (within the
// membership's start and end) with patient among their members: a plan change during the day
// gives two. The claim rule "covered by membership" checks each.
func (m *MembershipRecord) PlansOnDay(patient chain.Address, day uint32) []chain.Hash {
	if !m.InForceOnDay(day) {
		return nil
	}
	from, to := max(int64(day)*chain.DayMs, m.StartMs), int64(day+1)*chain.DayMs
	if m.EndMs != 0 {
		to = min(to, m.EndMs)
	}
	var out []chain.Hash
	for i, seg := range m.Segments {
		segFrom, segTo := seg.FromMs, int64(1<<62)
		if i+1 < len(m.Segments) {
			segTo = m.Segments[i+1].FromMs
		}
		if i == 0 {
			segFrom = min(segFrom, m.StartMs)
		}
		if segFrom >= to || segTo <= from {
			continue
		}
		for _, mt := range seg.Members {
			if mt.Patient == patient {
				out = append(out, seg.Plan)
				break
			}
		}
	}
	return out
}

// MembershipsOnDay returns the memberships at provider that count patient among their members on
// UTC day day (MemberOnDay). The claim rule "covered by membership" reads it.
func MembershipsOnDay(view View, provider, patient chain.Address, day uint32) ([]*MembershipRecord, error) {
	var idx membershipIndex
	found, err := get(view, mshipsKey(provider, patient), "membership index", &idx)
	if err != nil || !found {
		return nil, err
	}
	var out []*MembershipRecord
	for _, id := range idx.IDs {
		m := new(MembershipRecord)
		found, err := get(view, mshipKey(id), "membership", m)
		if err != nil {
			return nil, err
		}
		if found && m.MemberOnDay(patient, day) {
			out = append(out, m)
		}
	}
	return out, nil
}
