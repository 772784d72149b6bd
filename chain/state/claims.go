package state

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/medledger/medledger/chain"
)

// Claims: the records of payer schedules, coverage and claims (keys in billing_records.go), and
// the provider's daily claim volume. The rules that write them are in claims_rules.go, the
// queries in claims_query.go.

// Errors of the claim rules, for errors.Is. The wrapping error says which party or record.
var (
	// ErrClaimRole: a party is not active in the role the transaction needs (payer, provider,
	// patient) or is not the claim's own payer or patient.
	ErrClaimRole = errors.New("state: claim party not in its role")
	// ErrClaimExists: a claim or coverage id is already taken.
	ErrClaimExists = errors.New("state: id already used")
	// ErrNoClaim: no claim or coverage has the id.
	ErrNoClaim = errors.New("state: no such claim or coverage")
	// ErrNoSchedule: the payer has no schedule for the provider, or the claim names another key.
	ErrNoSchedule = errors.New("state: no matching payer schedule")
	// ErrNotCovered: no coverage of the payer for the patient covers the service day.
	ErrNotCovered = errors.New("state: patient not covered")
	// ErrServiceDay: the service day is after the block's day or older than ClaimFilingDays.
	ErrServiceDay = errors.New("state: service day out of range")
	// ErrClaimRecord: the sealed claim record is missing or is not the signer's Claim for the
	// patient.
	ErrClaimRecord = errors.New("state: bad sealed claim record")
	// ErrDuplicateClaim: the provider already filed a claim with the same print.
	ErrDuplicateClaim = errors.New("state: duplicate claim")
	// ErrPhantomVisit: the claimed encounter is not one the provider anchored for the patient on
	// or before the service day.
	ErrPhantomVisit = errors.New("state: no matching encounter")
	// ErrMemberCare: a line's service is covered by the patient's membership at the provider.
	ErrMemberCare = errors.New("state: service covered by membership")
	// ErrCoverageLimit: the payer already has MaxCoveragePerPair coverages for the patient.
	ErrCoverageLimit = errors.New("state: coverage limit")
	// ErrClaimState: the claim's status does not allow the decision or dispute.
	ErrClaimState = errors.New("state: claim status does not allow it")
	// ErrDecision: a decision does not fit the claim's lines.
	ErrDecision = errors.New("state: decision does not fit the claim")
)

// Event types of claim transactions. Details name ids, addresses, days and counts only.
const (
	EventScheduleSet      = "payer-schedule-set"
	EventCoverageSet      = "coverage-set"
	EventCoverageEnded    = "coverage-ended"
	EventClaimFiled       = "claim-filed"
	EventClaimAdjudicated = "claim-adjudicated-by-rule"
	EventClaimPended      = "claim-pended"
	// EventClaimFlagged: the provider's volume today is far above its own history; the claim is
	// pended for the payer's decision.
	EventClaimFlagged  = "claim-volume-flagged"
	EventClaimDecided  = "claim-decided"
	EventClaimDisputed = "claim-disputed"
)

// Claim rule limits.
const (
	// ClaimFilingDays bounds how long after the service a claim may be filed (timely filing). It
	// also lets a coverage index forget coverages that ended longer ago than that.
	ClaimFilingDays = 365
	// MaxDisputesPerClaim bounds the disputes of one claim (each needs a decision in between).
	MaxDisputesPerClaim = 4
)

// Volume rule: a provider's claims filed on one UTC day (block time) are flagged when the count
// exceeds max(VolumeFactor × average, average + VolumeMargin) of its past days, once it has at
// least VolumeMinDays days of history. The average is a running mean over the first
// VolumeWindowDays days, then an exponential moving average with weight 1/VolumeWindowDays; days
// without claims count as zeros. It is kept in fixed point, VolumeScale units per claim.
const (
	VolumeScale      = 1000
	VolumeWindowDays = 28
	VolumeMinDays    = 7
	VolumeFactor     = 3
	VolumeMargin     = 10
)

// ScheduleRecord is a payer's schedule for one provider. Revision counts its publications: 1 for
// the first, +1 on each replacement; claims record the revision they were adjudicated under.
type ScheduleRecord struct {
	_        struct{} `cbor:",toarray"`
	Version  uint8
	Payer    chain.Address
	Provider chain.Address
	Schedule chain.PayerSchedule
	Revision uint32
	Height   uint64
	Time     int64
}

// Fee returns the fee entry for code, if the schedule has one.
func (s *ScheduleRecord) Fee(code chain.Fingerprint) (uint64, bool) {
	fs := s.Schedule.Fees
	i, ok := searchHash(len(fs), func(i int) chain.Hash { return fs[i].Code }, code)
	if !ok {
		return 0, false
	}
	return fs[i].AllowedCents, true
}

// Excludes reports whether the schedule excludes code for members of plan.
func (s *ScheduleRecord) Excludes(plan chain.Hash, code chain.Fingerprint) bool {
	xs := s.Schedule.Excluded
	i, ok := searchHash(len(xs), func(i int) chain.Hash { return xs[i].Plan }, plan)
	if !ok {
		return false
	}
	cs := xs[i].Codes
	_, ok = searchHash(len(cs), func(i int) chain.Hash { return cs[i] }, code)
	return ok
}

// searchHash binary-searches n sorted hashes given by at.
func searchHash(n int, at func(int) chain.Hash, h chain.Hash) (int, bool) {
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		a := at(m)
		if compareHash(a, h) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < n && at(lo) == h
}

func compareHash(a, b chain.Hash) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// CoverageRecord is a payer's coverage of a patient: days FromDay..ToDay (UTC days since the
// epoch, inclusive; ToDay 0: open-ended). An end keeps the record and sets EndDay, the block's
// day: from then on no day is covered, even one before ToDay, and days before it stay covered, so
// claims for services before the end can still be filed.
type CoverageRecord struct {
	_         struct{} `cbor:",toarray"`
	Version   uint8
	ID        chain.Hash
	Payer     chain.Address
	Patient   chain.Address
	FromDay   uint32
	ToDay     uint32
	SetHeight uint64
	SetTime   int64
	Ended     bool
	EndDay    uint32 // the first day no longer covered (Ended only)
	EndHeight uint64
}

// CoversDay reports whether the coverage covers UTC day day.
func (c *CoverageRecord) CoversDay(day uint32) bool {
	if day < c.FromDay || (c.ToDay != 0 && day > c.ToDay) {
		return false
	}
	return !c.Ended || day < c.EndDay
}

// lastDay is the last day the coverage covers, or ^0 for an open one (0 and ok false: none).
func (c *CoverageRecord) lastDay() (uint32, bool) {
	last := c.ToDay
	if last == 0 {
		last = ^uint32(0)
	}
	if c.Ended {
		if c.EndDay <= c.FromDay {
			return 0, false
		}
		last = min(last, c.EndDay-1)
	}
	return last, true
}

// coverageIndex lists the coverages of one payer for one patient, in creation order.
type coverageIndex struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	IDs     []chain.Hash
}

// ClaimStatus is where a claim stands.
type ClaimStatus uint8

// Claim statuses.
const (
	ClaimPended      ClaimStatus = 1 // awaiting the payer's decision (no fee entry, or flagged)
	ClaimAdjudicated ClaimStatus = 2 // adjudicated by the payer's schedule at filing
	ClaimDecided     ClaimStatus = 3 // decided by the payer's signed decision
	ClaimDisputed    ClaimStatus = 4 // the patient disputes it; Settled says what stands meanwhile
)

func (s ClaimStatus) String() string {
	switch s {
	case ClaimPended:
		return "pended"
	case ClaimAdjudicated:
		return "adjudicated-by-rule"
	case ClaimDecided:
		return "decided"
	case ClaimDisputed:
		return "disputed"
	}
	return fmt.Sprintf("status-%d", uint8(s))
}

// ClaimLineState is one line of a claim and its adjudication: Allowed = Paid + Patient <= Billed.
type ClaimLineState struct {
	_            struct{} `cbor:",toarray"`
	Code         chain.Fingerprint
	BilledCents  uint64
	AllowedCents uint64
	PaidCents    uint64
	PatientCents uint64 // the patient's share (coinsurance)
	Reason       chain.DenialReason
}

// ClaimDisputeEntry is one dispute of a claim by its patient.
type ClaimDisputeEntry struct {
	_              struct{} `cbor:",toarray"`
	Reason         chain.DisputeReason
	Statement      chain.Hash // hash of a sealed statement kept off the ledger (zero: none)
	Height         uint64
	ResolvedHeight uint64 // the decision that answered it; 0 while open
}

// ClaimRecord is a filed claim. Status is where it stands; Settled is the adjudication in force
// (pended, by rule or decided): the same as Status unless the claim is disputed, when the
// decision stays visible and in force until the payer decides again.
type ClaimRecord struct {
	_           struct{} `cbor:",toarray"`
	Version     uint8
	ID          chain.Hash
	Provider    chain.Address
	Payer       chain.Address
	Patient     chain.Address
	Encounter   chain.Hash
	Record      chain.Hash // the sealed FHIR Claim
	ServiceDay  uint32
	DupPrint    chain.Fingerprint
	Lines       []ClaimLineState
	FiledHeight uint64
	FiledTime   int64
	// ScheduleRevision is the schedule revision the claim was filed (and adjudicated) under.
	ScheduleRevision uint32
	Status           ClaimStatus
	Settled          ClaimStatus
	// Volume figures at filing: the provider's claims on the filing day (this one included),
	// its average per past day (VolumeScale units) and days of history.
	Flagged       bool
	VolumeToday   uint32
	VolumeAverage uint64
	VolumeDays    uint32
	DecidedHeight uint64 // the last decision (0: none)
	Disputes      []ClaimDisputeEntry
}

// Dispute returns the open dispute, or nil.
func (c *ClaimRecord) Dispute() *ClaimDisputeEntry {
	if n := len(c.Disputes); n > 0 && c.Disputes[n-1].ResolvedHeight == 0 {
		return &c.Disputes[n-1]
	}
	return nil
}

// claimDupRecord names the claim that holds a duplicate print.
type claimDupRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Claim   chain.Hash
}

// claimVolumeRecord is a provider's daily claim history: Count claims filed on Day (block time),
// and Average (VolumeScale units per day) over Days past days.
type claimVolumeRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Day     uint32
	Count   uint32
	Average uint64
	Days    uint32
}

func (r *ScheduleRecord) version() uint8    { return r.Version }
func (r *CoverageRecord) version() uint8    { return r.Version }
func (r *coverageIndex) version() uint8     { return r.Version }
func (r *ClaimRecord) version() uint8       { return r.Version }
func (r *claimDupRecord) version() uint8    { return r.Version }
func (r *claimVolumeRecord) version() uint8 { return r.Version }

// advance moves the history to day: the current day's count is folded into the average, then
// every day without claims up to day as a zero. O(1) in the gap: zeros during the warm-up fold
// into the running mean in one division, later ones decay the average by ((W-1)/W)^gap, computed
// by squaring in 32.32 fixed point. Integer arithmetic, truncating, so every node agrees.
func (v *claimVolumeRecord) advance(day uint32) {
	if v.Days == 0 && v.Count == 0 {
		v.Day = day // no history yet: it starts on the first day with a claim
		return
	}
	if day <= v.Day {
		return
	}
	v.fold(uint64(v.Count) * VolumeScale)
	v.Count = 0
	gap := day - v.Day - 1
	v.Day = day
	if gap > 0 && v.Days < VolumeWindowDays {
		k := min(gap, VolumeWindowDays-v.Days)
		v.Average = v.Average * uint64(v.Days) / uint64(v.Days+k)
		v.Days += k
		gap -= k
	}
	if gap > 0 {
		v.Average = decay(v.Average, gap)
		v.Days = satAdd(v.Days, gap)
	}
}

// fold adds one day of x (VolumeScale units) to the average.
func (v *claimVolumeRecord) fold(x uint64) {
	w := uint64(min(v.Days+1, VolumeWindowDays))
	v.Average = (v.Average*(w-1) + x) / w
	v.Days = satAdd(v.Days, 1)
}

// flags reports whether count claims in a day are far above the history.
func (v *claimVolumeRecord) flags(count uint32) bool {
	if v.Days < VolumeMinDays {
		return false
	}
	c := uint64(count) * VolumeScale
	return c > max(VolumeFactor*v.Average, v.Average+VolumeMargin*VolumeScale)
}

// decay returns avg × ((W-1)/W)^n.
func decay(avg uint64, n uint32) uint64 {
	const one = uint64(1) << 32
	f := one * (VolumeWindowDays - 1) / VolumeWindowDays
	p := one
	for ; n > 0 && p > 0; n >>= 1 {
		if n&1 == 1 {
			p = mulQ32(p, f)
		}
		f = mulQ32(f, f)
	}
	return mulQ32(avg, p)
}

// mulQ32 is a × b / 2^32 without overflow (b <= 2^32).
func mulQ32(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi<<32 | lo>>32
}

func satAdd(a, b uint32) uint32 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint32(0)
}

// dayOf is the UTC day of block time timeMs.
func dayOf(timeMs int64) uint32 {
	if timeMs <= 0 {
		return 0
	}
	return uint32(timeMs / chain.DayMs)
}
