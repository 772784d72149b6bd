package state

import (
	"fmt"
	"strings"

	"github.com/medledger/medledger/chain"
)

// Rules of payer schedules, coverage and claims (chain/claims.go). Every refusal is an error
// wrapping one of the sentinels in claims.go; the executor reverts whatever the rule wrote.

// needPayer requires a payer registered at a and active at the block's time.
func (e *executor) needPayer(a chain.Address, role string) error {
	m, err := Member(e.o, a)
	if err != nil {
		return err
	}
	switch {
	case m == nil || m.Role != chain.RolePayer:
		return fmt.Errorf("%w: %s %s is not a registered payer", ErrClaimRole, role, a)
	case !m.ActiveAt(e.h.Time):
		return fmt.Errorf("%w: %s %s is not an active payer (left, revoked or lapsed)", ErrClaimRole, role, a)
	}
	return nil
}

// claimRole wraps activeProvider's or activePatient's refusal in ErrClaimRole.
func claimRole(err error, role string) error {
	if _, refused := err.(*notActiveError); refused {
		return fmt.Errorf("%w: %s: %w", ErrClaimRole, role, trimState(err))
	}
	return err
}

// payerSchedule publishes or replaces the signer's schedule for one provider. The pair's key
// holds the signer, so no payer can touch another's schedule.
func (e *executor) payerSchedule(payer chain.Address, b *chain.PayerSchedule, res *TxResult) error {
	if err := e.needPayer(payer, "signer"); err != nil {
		return err
	}
	if _, err := activeProvider(e.o, b.Provider, e.h.Time); err != nil {
		return claimRole(err, "provider")
	}
	prev, err := Schedule(e.o, payer, b.Provider)
	if err != nil {
		return err
	}
	rev := uint32(1)
	if prev != nil {
		rev = prev.Revision + 1
	}
	e.o.Set(scheduleKey(payer, b.Provider), chain.Encode(&ScheduleRecord{
		Version: RecordVersion, Payer: payer, Provider: b.Provider, Schedule: *b, Revision: rev,
		Height: e.h.Height, Time: e.h.Time,
	}))
	res.event(EventScheduleSet, "payer %s for provider %s: revision %d, %d fees, %d plan exclusions",
		payer, b.Provider, rev, len(b.Fees), len(b.Excluded))
	return nil
}

// coverageSet records a new coverage of a patient by the signer, or ends one of its coverages.
func (e *executor) coverageSet(payer chain.Address, b *chain.CoverageSet, res *TxResult) error {
	if err := e.needPayer(payer, "signer"); err != nil {
		return err
	}
	if b.End {
		return e.endCoverage(payer, b, res)
	}
	if _, err := activePatient(e.o, b.Patient); err != nil {
		return claimRole(err, "patient")
	}
	used, err := exists(e.o, coverageKey(b.ID), "coverage")
	if err != nil {
		return err
	}
	if used {
		return fmt.Errorf("%w: coverage %s exists (a change is an end and a new coverage)", ErrClaimExists, b.ID.Short())
	}
	idx, err := readCoverageIndex(e.o, payer, b.Patient)
	if err != nil {
		return err
	}
	if len(idx.IDs) >= chain.MaxCoveragePerPair {
		if idx.IDs, err = e.pruneCoverages(idx.IDs); err != nil {
			return err
		}
	}
	if len(idx.IDs) >= chain.MaxCoveragePerPair {
		return fmt.Errorf("%w: payer %s already has %d coverages of patient %s that claims may still use",
			ErrCoverageLimit, payer, len(idx.IDs), b.Patient)
	}
	idx.Version, idx.IDs = RecordVersion, append(idx.IDs, b.ID)
	e.o.Set(coveragesKey(payer, b.Patient), chain.Encode(idx))
	e.o.Set(coverageKey(b.ID), chain.Encode(&CoverageRecord{
		Version: RecordVersion, ID: b.ID, Payer: payer, Patient: b.Patient, FromDay: b.FromDay, ToDay: b.ToDay,
		SetHeight: e.h.Height, SetTime: e.h.Time,
	}))
	res.event(EventCoverageSet, "coverage %s: payer %s, patient %s, days %d..%d", b.ID.Short(), payer, b.Patient, b.FromDay, b.ToDay)
	return nil
}

// pruneCoverages drops from a full index the coverages no claim can use any more: those whose
// last covered day is more than ClaimFilingDays before the block's day (the records stay).
func (e *executor) pruneCoverages(ids []chain.Hash) ([]chain.Hash, error) {
	today := uint64(dayOf(e.h.Time))
	var keep []chain.Hash
	for _, id := range ids {
		c, err := Coverage(e.o, id)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("state: indexed coverage %s missing (state corrupt?)", id.Short())
		}
		if last, ok := c.lastDay(); ok && uint64(last)+ClaimFilingDays >= today {
			keep = append(keep, id)
		}
	}
	return keep, nil
}

// endCoverage ends one of the signer's coverages from the block's day: days before it stay
// covered (claims for them may still be filed), no day from it on is.
func (e *executor) endCoverage(payer chain.Address, b *chain.CoverageSet, res *TxResult) error {
	c, err := Coverage(e.o, b.ID)
	if err != nil {
		return err
	}
	switch {
	case c == nil:
		return fmt.Errorf("%w: no coverage %s to end", ErrNoClaim, b.ID.Short())
	case c.Payer != payer:
		return fmt.Errorf("%w: coverage %s is payer %s's, not the signer's", ErrClaimRole, b.ID.Short(), c.Payer)
	case c.Patient != b.Patient:
		return fmt.Errorf("%w: coverage %s is of patient %s, not %s", ErrNoClaim, b.ID.Short(), c.Patient, b.Patient)
	case c.Ended:
		return fmt.Errorf("%w: coverage %s already ended at height %d", ErrClaimState, b.ID.Short(), c.EndHeight)
	}
	c.Ended, c.EndDay, c.EndHeight = true, dayOf(e.h.Time), e.h.Height
	e.o.Set(coverageKey(c.ID), chain.Encode(c))
	res.event(EventCoverageEnded, "coverage %s: payer %s, patient %s, from day %d", c.ID.Short(), payer, c.Patient, c.EndDay)
	return nil
}

// claimSubmit files a claim: the checks run cheapest first, the fraud rules last; then the
// provider's volume is counted and the claim adjudicated by the schedule if it can be.
func (e *executor) claimSubmit(provider chain.Address, b *chain.ClaimSubmit, res *TxResult) error {
	sched, sealed, err := e.claimRules(provider, b, true)
	if err != nil {
		return err
	}
	vol, flagged, err := e.countClaim(provider)
	if err != nil {
		return err
	}
	c := &ClaimRecord{
		Version: RecordVersion, ID: b.ID, Provider: provider, Payer: b.Payer, Patient: b.Patient,
		Encounter: b.Encounter, Record: b.Record, ServiceDay: b.ServiceDay, DupPrint: b.DupPrint,
		Lines: make([]ClaimLineState, len(b.Lines)), FiledHeight: e.h.Height, FiledTime: e.h.Time,
		ScheduleRevision: sched.Revision, Status: ClaimPended,
		Flagged: flagged, VolumeToday: vol.Count, VolumeAverage: vol.Average, VolumeDays: vol.Days,
	}
	for i, l := range b.Lines {
		c.Lines[i] = ClaimLineState{Code: l.Code, BilledCents: l.BilledCents}
	}
	if !flagged && adjudicate(sched, c.Lines) {
		c.Status = ClaimAdjudicated
	}
	c.Settled = c.Status
	e.o.Set(claimKey(c.ID), chain.Encode(c))
	e.o.Set(claimDupKey(provider, b.DupPrint), chain.Encode(&claimDupRecord{Version: RecordVersion, Claim: c.ID}))
	if err := e.logForPatient(c.Patient, LogClaim, c.ID); err != nil {
		return err
	}
	if err := e.indexClaim(c, sealed.Root); err != nil {
		return err
	}
	res.event(EventClaimFiled, "claim %s: provider %s, payer %s, patient %s, service day %d, %d lines",
		c.ID.Short(), provider, c.Payer, c.Patient, c.ServiceDay, len(c.Lines))
	if flagged {
		res.event(EventClaimFlagged, "claim %s: provider %s filed %d claims today, average %d.%03d a day over %d days; payer %s to decide",
			c.ID.Short(), provider, vol.Count, vol.Average/VolumeScale, vol.Average%VolumeScale, vol.Days, c.Payer)
	}
	if c.Status == ClaimAdjudicated {
		res.event(EventClaimAdjudicated, "claim %s: payer %s, schedule revision %d", c.ID.Short(), c.Payer, c.ScheduleRevision)
	} else {
		res.event(EventClaimPended, "claim %s: awaiting payer %s's decision", c.ID.Short(), c.Payer)
	}
	return nil
}

// claimRules checks a ClaimSubmit against every filing rule and returns the schedule it is filed
// under and its sealed Claim record; withRecord false skips the record (PrecheckClaim).
func (e *executor) claimRules(provider chain.Address, b *chain.ClaimSubmit, withRecord bool) (*ScheduleRecord, *RecordState, error) {
	if _, err := activeProvider(e.o, provider, e.h.Time); err != nil {
		return nil, nil, claimRole(err, "claimant")
	}
	if err := e.needPayer(b.Payer, "payer"); err != nil {
		return nil, nil, err
	}
	if _, err := activePatient(e.o, b.Patient); err != nil {
		return nil, nil, claimRole(err, "patient")
	}
	used, err := exists(e.o, claimKey(b.ID), "claim")
	if err != nil {
		return nil, nil, err
	}
	if used {
		return nil, nil, fmt.Errorf("%w: claim %s exists", ErrClaimExists, b.ID.Short())
	}
	sched, err := Schedule(e.o, b.Payer, provider)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case sched == nil:
		return nil, nil, fmt.Errorf("%w: payer %s has no schedule for provider %s", ErrNoSchedule, b.Payer, provider)
	case sched.Schedule.KeyCommit != b.KeyCommit:
		return nil, nil, fmt.Errorf("%w: the claim's billing key %s is not that of payer %s's schedule revision %d",
			ErrNoSchedule, b.KeyCommit.Short(), b.Payer, sched.Revision)
	}
	if err := e.needCoverage(b); err != nil {
		return nil, nil, err
	}
	today := dayOf(e.h.Time)
	switch {
	case b.ServiceDay > today:
		return nil, nil, fmt.Errorf("%w: service day %d is after the block's day %d", ErrServiceDay, b.ServiceDay, today)
	case uint64(b.ServiceDay)+ClaimFilingDays < uint64(today):
		return nil, nil, fmt.Errorf("%w: service day %d is more than %d days before the block's day %d", ErrServiceDay, b.ServiceDay, ClaimFilingDays, today)
	}
	var sealed *RecordState
	if withRecord {
		if sealed, err = e.needSealedClaim(provider, b); err != nil {
			return nil, nil, err
		}
	}
	// Duplicate: chain.ClaimSubmit.Validate checked that DupPrint is the claim's own print.
	var dup claimDupRecord
	found, err := get(e.o, claimDupKey(provider, b.DupPrint), "claim duplicate print", &dup)
	if err != nil {
		return nil, nil, err
	}
	if found {
		return nil, nil, fmt.Errorf("%w: provider %s already filed claim %s for patient %s, day %d and the same codes",
			ErrDuplicateClaim, provider, dup.Claim.Short(), b.Patient, b.ServiceDay)
	}
	if err := e.needEncounter(provider, b); err != nil {
		return nil, nil, err
	}
	if err := e.notMemberCare(provider, sched, b); err != nil {
		return nil, nil, err
	}
	return sched, sealed, nil
}

// PrecheckClaim checks the ClaimSubmit b that provider is about to file against the filing rules
// at blockTime on view, all but the one its sealed Claim record must meet: a node anchors that
// record only after this passes, so a claim the ledger refuses leaves no record behind. It
// writes nothing (an overlay over view, dropped).
func PrecheckClaim(view View, provider chain.Address, b *chain.ClaimSubmit, blockTime int64) error {
	e := &executor{o: NewOverlay(view), h: &chain.Header{Time: blockTime}}
	_, _, err := e.claimRules(provider, b, false)
	return err
}

// needCoverage requires a coverage of the claim's payer for its patient that covers the service
// day (at most chain.MaxCoveragePerPair reads).
func (e *executor) needCoverage(b *chain.ClaimSubmit) error {
	idx, err := readCoverageIndex(e.o, b.Payer, b.Patient)
	if err != nil {
		return err
	}
	for _, id := range idx.IDs {
		c, err := Coverage(e.o, id)
		if err != nil {
			return err
		}
		if c != nil && c.CoversDay(b.ServiceDay) {
			return nil
		}
	}
	return fmt.Errorf("%w: no coverage of payer %s for patient %s covers day %d", ErrNotCovered, b.Payer, b.Patient, b.ServiceDay)
}

// needSealedClaim requires the claim's record to be a Claim the signer anchored for the patient,
// not erased.
func (e *executor) needSealedClaim(provider chain.Address, b *chain.ClaimSubmit) (*RecordState, error) {
	return e.claimedRecord(b.Record, "Claim", "record", provider, b.Patient, ErrClaimRecord)
}

// claimedRecord reads a record a claim names and requires it of type typ, anchored by provider
// for patient and not erased; refusals wrap sentinel and call the record what.
func (e *executor) claimedRecord(id chain.Hash, typ, what string, provider, patient chain.Address, sentinel error) (*RecordState, error) {
	r, err := Record(e.o, id)
	if err != nil {
		return nil, err
	}
	switch {
	case r == nil:
		return nil, fmt.Errorf("%w: no record %s", sentinel, id.Short())
	case r.Erased:
		return nil, fmt.Errorf("%w: %s %s was erased at height %d", sentinel, what, r.ID.Short(), r.ErasedHeight)
	case r.ResourceType != typ:
		return nil, fmt.Errorf("%w: record %s is a %s, not a%s %s", sentinel, r.ID.Short(), r.ResourceType, article(typ), typ)
	case r.Author != provider:
		return nil, fmt.Errorf("%w: %s %s was anchored by %s, not the claimant", sentinel, what, r.ID.Short(), r.Author)
	case r.Patient != patient:
		return nil, fmt.Errorf("%w: %s %s is of patient %s, not %s", sentinel, what, r.ID.Short(), r.Patient, patient)
	}
	return r, nil
}

func article(word string) string {
	if strings.ContainsRune("AEIOU", rune(word[0])) {
		return "n"
	}
	return ""
}

// needEncounter is the phantom-visit rule: the claim's encounter is an Encounter record the same
// provider anchored for the patient no later than the end of the service day (its first version).
func (e *executor) needEncounter(provider chain.Address, b *chain.ClaimSubmit) error {
	r, err := e.claimedRecord(b.Encounter, "Encounter", "encounter", provider, b.Patient, ErrPhantomVisit)
	if err != nil {
		return err
	}
	// An amended encounter dates from its first version, which the same provider must have
	// anchored: an amendment made after the visit does not make it a phantom, and amending
	// another provider's encounter does not make it one's own visit.
	first := r
	if r.Root != r.ID {
		if first, err = Record(e.o, r.Root); err != nil {
			return err
		}
		if first == nil {
			return fmt.Errorf("state: record %s's first version %s missing (state corrupt?)", r.ID.Short(), r.Root.Short())
		}
		if first.Author != provider {
			return fmt.Errorf("%w: encounter %s was first anchored by %s, not the claimant", ErrPhantomVisit, r.ID.Short(), first.Author)
		}
	}
	if first.AnchoredTime >= (int64(b.ServiceDay)+1)*chain.DayMs {
		return fmt.Errorf("%w: encounter %s was anchored on day %d, after the service day %d",
			ErrPhantomVisit, r.ID.Short(), dayOf(first.AnchoredTime), b.ServiceDay)
	}
	return nil
}

// notMemberCare refuses a claim any of whose codes the payer's schedule lists as covered by a
// plan the patient is a member of at this provider on the service day (double billing).
func (e *executor) notMemberCare(provider chain.Address, sched *ScheduleRecord, b *chain.ClaimSubmit) error {
	if len(sched.Schedule.Excluded) == 0 {
		return nil
	}
	ms, err := MembershipsOnDay(e.o, provider, b.Patient, b.ServiceDay)
	if err != nil {
		return err
	}
	for _, m := range ms {
		for _, plan := range m.PlansOnDay(b.Patient, b.ServiceDay) {
			for i, l := range b.Lines {
				if sched.Excludes(plan, l.Code) {
					return fmt.Errorf("%w: line %d's service is covered by plan %s of membership %s at provider %s on day %d",
						ErrMemberCare, i, plan.Short(), m.ID.Short(), provider, b.ServiceDay)
				}
			}
		}
	}
	return nil
}

// countClaim counts one claim in the provider's history for the block's day and says whether
// the day's count is far above it. One read and one write.
func (e *executor) countClaim(provider chain.Address) (*claimVolumeRecord, bool, error) {
	v := &claimVolumeRecord{}
	if _, err := get(e.o, claimVolKey(provider), "claim volume", v); err != nil {
		return nil, false, err
	}
	v.advance(dayOf(e.h.Time))
	v.Version, v.Count = RecordVersion, satAdd(v.Count, 1)
	e.o.Set(claimVolKey(provider), chain.Encode(v))
	return v, v.flags(v.Count), nil
}

// adjudicate prices every line by the schedule: allowed = min(billed, fee), the patient's share
// = allowed × coinsurance / 100 rounded down (the patient never owes a fraction of a cent more
// than the percentage), paid = allowed − share. It reports false, leaving lines unpriced, when a
// code has no fee entry.
func adjudicate(sched *ScheduleRecord, lines []ClaimLineState) bool {
	fees := make([]uint64, len(lines))
	for i, l := range lines {
		fee, ok := sched.Fee(l.Code)
		if !ok {
			return false
		}
		fees[i] = fee
	}
	pct := uint64(sched.Schedule.CoinsurancePct)
	for i := range lines {
		l := &lines[i]
		l.AllowedCents = min(l.BilledCents, fees[i])
		l.PatientCents = l.AllowedCents * pct / 100
		l.PaidCents = l.AllowedCents - l.PatientCents
		if l.AllowedCents == 0 {
			l.Reason = chain.DenyNotCovered
		}
	}
	return true
}

// claimDecide records the claim's payer's decision, line by line. A decided claim is decided
// again only after a dispute, which the decision answers (the dispute stays on the claim).
func (e *executor) claimDecide(payer chain.Address, b *chain.ClaimDecide, res *TxResult) error {
	c, err := Claim(e.o, b.Claim)
	if err != nil {
		return err
	}
	switch {
	case c == nil:
		return fmt.Errorf("%w: no claim %s", ErrNoClaim, b.Claim.Short())
	case c.Payer != payer:
		return fmt.Errorf("%w: claim %s is payer %s's to decide, not the signer's", ErrClaimRole, c.ID.Short(), c.Payer)
	}
	if err := e.needPayer(payer, "signer"); err != nil {
		return err
	}
	if c.Status == ClaimDecided {
		return fmt.Errorf("%w: claim %s was decided at height %d and is not disputed", ErrClaimState, c.ID.Short(), c.DecidedHeight)
	}
	if len(b.Lines) != len(c.Lines) {
		return fmt.Errorf("%w: %d line decisions for claim %s's %d lines", ErrDecision, len(b.Lines), c.ID.Short(), len(c.Lines))
	}
	for i, d := range b.Lines {
		if d.PaidCents+d.PatientCents > c.Lines[i].BilledCents {
			return fmt.Errorf("%w: line %d: paid %d + patient %d cents exceed the %d billed",
				ErrDecision, i, d.PaidCents, d.PatientCents, c.Lines[i].BilledCents)
		}
	}
	for i, d := range b.Lines {
		l := &c.Lines[i]
		l.AllowedCents, l.PaidCents, l.PatientCents, l.Reason = d.PaidCents+d.PatientCents, d.PaidCents, d.PatientCents, d.Reason
	}
	resolved := ""
	if d := c.Dispute(); d != nil {
		d.ResolvedHeight = e.h.Height
		resolved = ", answering the patient's dispute"
	}
	c.Status, c.Settled, c.DecidedHeight = ClaimDecided, ClaimDecided, e.h.Height
	e.o.Set(claimKey(c.ID), chain.Encode(c))
	res.event(EventClaimDecided, "claim %s: payer %s decided, provider %s, patient %s%s", c.ID.Short(), payer, c.Provider, c.Patient, resolved)
	return nil
}

// claimDispute records the claim's patient's dispute; the payer and the provider see it.
func (e *executor) claimDispute(patient chain.Address, b *chain.ClaimDispute, res *TxResult) error {
	c, err := Claim(e.o, b.Claim)
	if err != nil {
		return err
	}
	switch {
	case c == nil:
		return fmt.Errorf("%w: no claim %s", ErrNoClaim, b.Claim.Short())
	case c.Patient != patient:
		return fmt.Errorf("%w: claim %s names another patient than the signer", ErrClaimRole, c.ID.Short())
	}
	if _, err := activePatient(e.o, patient); err != nil {
		return claimRole(err, "signer")
	}
	if d := c.Dispute(); d != nil {
		return fmt.Errorf("%w: claim %s is already disputed (height %d) and awaits the payer's decision", ErrClaimState, c.ID.Short(), d.Height)
	}
	if len(c.Disputes) >= MaxDisputesPerClaim {
		return fmt.Errorf("%w: claim %s was already disputed %d times, the limit", ErrClaimState, c.ID.Short(), len(c.Disputes))
	}
	c.Disputes = append(c.Disputes, ClaimDisputeEntry{Reason: b.Reason, Statement: b.Statement, Height: e.h.Height})
	c.Status = ClaimDisputed
	e.o.Set(claimKey(c.ID), chain.Encode(c))
	res.event(EventClaimDisputed, "claim %s: disputed by patient %s (%s); payer %s, provider %s",
		c.ID.Short(), patient, b.Reason, c.Payer, c.Provider)
	return nil
}
