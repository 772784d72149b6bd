package billing

import (
	"fmt"
	"slices"
	"time"

	"github.com/medledger/medledger/chain"
)

// FHIR R4 resources for claims: the payer's answer (ClaimResponse), the patient's explanation
// (ExplanationOfBenefit) and a billed service (ChargeItem). Conventions as in fhirout.go.

// OutcomeLine is one line of a claim's outcome. System and Code are the service in clear, which
// only the payer, the provider and the patient know; without them the line is named by its
// sequence alone.
type OutcomeLine struct {
	Sequence     int // item sequence, from 1
	System, Code string
	BilledCents  uint64
	AllowedCents uint64
	PaidCents    uint64
	PatientCents uint64 // the patient's share (coinsurance)
	Denial       chain.DenialReason
}

// ClaimOutcome is a claim's state on the ledger: lines as adjudicated by rule or decided by the
// payer, and any dispute.
type ClaimOutcome struct {
	Claim      chain.Hash
	PatientID  string // local Patient id
	Provider   chain.Address
	Payer      chain.Address
	Coverage   chain.Hash // the CoverageSet that covers the claim
	Currency   string
	Filed      time.Time // the claim's block time
	Decided    time.Time // when it was adjudicated; zero while pending
	ServiceDay uint32
	Lines      []OutcomeLine
	Dispute    chain.DisputeReason // 0: none
}

// Outcome is the FHIR outcome code: queued while pending, complete once decided.
func (o *ClaimOutcome) Outcome() string {
	if o.Decided.IsZero() {
		return "queued"
	}
	return "complete"
}

func (o *ClaimOutcome) check() error {
	switch {
	case o.Claim.IsZero():
		return fmt.Errorf("no claim id")
	case len(o.Lines) == 0 || len(o.Lines) > chain.MaxClaimLines:
		return fmt.Errorf("%d lines, want 1..%d", len(o.Lines), chain.MaxClaimLines)
	case o.Dispute > chain.DisputeOther:
		return fmt.Errorf("unknown dispute reason %d", o.Dispute)
	}
	for i, l := range o.Lines {
		if l.Sequence != i+1 {
			return fmt.Errorf("line %d has sequence %d", i, l.Sequence)
		}
		if l.Denial > chain.DenyOther {
			return fmt.Errorf("line %d: unknown denial reason %d", i, l.Denial)
		}
	}
	return checkCurrency(o.Currency)
}

// adjudication lists a line's amounts: submitted (billed), eligible (allowed), benefit (paid,
// with the denial reason if any) and the patient's share (CARIN Blue Button's memberliability).
func (o *ClaimOutcome) adjudication(l OutcomeLine) []any {
	benefit := map[string]any{"category": concept(systemAdjudicate, "benefit", ""), "amount": money(l.PaidCents, o.Currency)}
	if l.Denial != chain.DenyNone {
		benefit["reason"] = concept(SystemDenialReason, l.Denial.String(), "")
	}
	out := []any{
		map[string]any{"category": concept(systemAdjudicate, "submitted", ""), "amount": money(l.BilledCents, o.Currency)},
	}
	if !o.Decided.IsZero() {
		out = append(out,
			map[string]any{"category": concept(systemAdjudicate, "eligible", ""), "amount": money(l.AllowedCents, o.Currency)},
			benefit,
			map[string]any{"category": concept(systemC4BBAdj, "memberliability", ""), "amount": money(l.PatientCents, o.Currency)})
	}
	return out
}

// totals sums the lines by category.
func (o *ClaimOutcome) totals() ([]any, uint64) {
	var billed, allowed, paid, patient uint64
	for _, l := range o.Lines {
		billed += l.BilledCents
		allowed += l.AllowedCents
		paid += l.PaidCents
		patient += l.PatientCents
	}
	out := []any{map[string]any{"category": concept(systemAdjudicate, "submitted", ""), "amount": money(billed, o.Currency)}}
	if !o.Decided.IsZero() {
		out = append(out,
			map[string]any{"category": concept(systemAdjudicate, "eligible", ""), "amount": money(allowed, o.Currency)},
			map[string]any{"category": concept(systemAdjudicate, "benefit", ""), "amount": money(paid, o.Currency)},
			map[string]any{"category": concept(systemC4BBAdj, "memberliability", ""), "amount": money(patient, o.Currency)})
	}
	return out, paid
}

// common are the elements ClaimResponse and ExplanationOfBenefit share.
func (o *ClaimOutcome) common(typ string) (map[string]any, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	patient, err := patientRef(o.PatientID)
	if err != nil {
		return nil, err
	}
	created, err := dateTime("filed", o.Filed)
	if err != nil {
		return nil, err
	}
	res := map[string]any{
		"resourceType": typ,
		"id":           o.Claim.String(),
		"identifier":   identifier(SystemClaim, o.Claim),
		"status":       "active",
		"type":         concept(systemClaimType, "professional", ""),
		"use":          "claim",
		"patient":      patient,
		"created":      created,
		"insurer":      payerRef(o.Payer),
		"outcome":      o.Outcome(),
	}
	if !o.Decided.IsZero() {
		res["disposition"] = "adjudicated"
	}
	if o.Dispute != 0 {
		res["extension"] = []any{map[string]any{
			"url":         ExtensionClaimDispute,
			"valueCoding": coding(SystemDisputeReason, o.Dispute.String(), ""),
		}}
	}
	totals, paid := o.totals()
	res["total"] = totals
	if !o.Decided.IsZero() {
		res["payment"] = map[string]any{
			"type":   concept(systemExPaymentType, "complete", ""),
			"date":   o.Decided.UTC().Format(time.DateOnly),
			"amount": money(paid, o.Currency),
		}
	}
	return res, nil
}

// ClaimResponseResource writes the payer's answer to a claim: per line the submitted, eligible,
// benefit and patient-share amounts (only submitted while pending), denial reasons as
// SystemDenialReason codes, totals, the payment once decided, and a dispute extension.
func ClaimResponseResource(o ClaimOutcome) ([]byte, error) {
	res, err := o.common("ClaimResponse")
	if err != nil {
		return nil, fmt.Errorf("billing: claim response %s: %w", o.Claim.Short(), err)
	}
	res["requestor"] = providerRef(o.Provider)
	res["request"] = idRef("Claim", SystemClaim, o.Claim.String())
	items := make([]any, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = map[string]any{"itemSequence": l.Sequence, "adjudication": o.adjudication(l)}
	}
	res["item"] = items
	return encode("claim response", res)
}

// ExplanationOfBenefitResource writes the patient's explanation of a claim: the ClaimResponse's
// content with the provider, the coverage and, per line, the service (when its code is given),
// its day and the billed amount.
func ExplanationOfBenefitResource(o ClaimOutcome) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("billing: explanation of benefit %s: %w", o.Claim.Short(), err)
	}
	res, err := o.common("ExplanationOfBenefit")
	if err != nil {
		return fail(err)
	}
	if o.Coverage.IsZero() {
		return fail(fmt.Errorf("no coverage"))
	}
	if o.ServiceDay == 0 {
		return fail(fmt.Errorf("no service day"))
	}
	res["provider"] = providerRef(o.Provider)
	res["claim"] = idRef("Claim", SystemClaim, o.Claim.String())
	res["insurance"] = []any{map[string]any{"focal": true, "coverage": idRef("Coverage", SystemCoverage, o.Coverage.String())}}
	day := DayDate(o.ServiceDay)
	res["billablePeriod"] = map[string]any{"start": day, "end": day}
	items := make([]any, len(o.Lines))
	for i, l := range o.Lines {
		service := map[string]any{"text": fmt.Sprintf("service line %d", l.Sequence)}
		if l.Code != "" {
			if err := CheckCode(l.Code); err != nil {
				return fail(err)
			}
			service = map[string]any{"coding": []any{coding(l.System, l.Code, "")}}
			if l.System == "" {
				service = map[string]any{"coding": []any{map[string]any{"code": l.Code}}}
			}
		}
		items[i] = map[string]any{
			"sequence":         l.Sequence,
			"productOrService": service,
			"servicedDate":     day,
			"net":              money(l.BilledCents, o.Currency),
			"adjudication":     o.adjudication(l),
		}
	}
	res["item"] = items
	return encode("explanation of benefit", res)
}

// ChargeInfo is one billed service of a claim: what a practice charged for, on which day, to
// which account (a membership's, or none).
type ChargeInfo struct {
	ID          string // a FHIR id; the claim id and line ("<claim hex>-1") serves
	PatientID   string // local Patient id
	Provider    chain.Address
	System      string // "" if the code has none
	Code        string
	Day         uint32
	Cents       uint64
	Currency    string
	Status      string     // a ChargeItem status: billable, billed, not-billable, …
	Account     chain.Hash // zero: none
	Claim       chain.Hash // zero: not claimed
	ClaimedLine int        // the claim's item sequence, if Claim is set
}

var chargeStatuses = []string{"planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown"}

// ChargeItemResource writes a billed service as a FHIR ChargeItem: the service code, the
// patient, the day, the provider as performing organisation, the price as priceOverride and the
// membership's Account if any.
func ChargeItemResource(c ChargeInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: charge item %s: %w", c.ID, err) }
	if !fhirID.MatchString(c.ID) {
		return fail(fmt.Errorf("id is not a FHIR id"))
	}
	if !slices.Contains(chargeStatuses, c.Status) {
		return fail(fmt.Errorf("status %q is not a ChargeItem status", c.Status))
	}
	if err := CheckCode(c.Code); err != nil {
		return fail(err)
	}
	if err := checkCurrency(c.Currency); err != nil {
		return fail(err)
	}
	if c.Day == 0 {
		return fail(fmt.Errorf("no service day"))
	}
	patient, err := patientRef(c.PatientID)
	if err != nil {
		return fail(err)
	}
	code := map[string]any{"code": c.Code}
	if c.System != "" {
		code["system"] = c.System
	}
	res := map[string]any{
		"resourceType":           "ChargeItem",
		"id":                     c.ID,
		"status":                 c.Status,
		"code":                   map[string]any{"coding": []any{code}},
		"subject":                patient,
		"occurrenceDateTime":     DayDate(c.Day),
		"performingOrganization": providerRef(c.Provider),
		"priceOverride":          money(c.Cents, c.Currency),
	}
	if !c.Account.IsZero() {
		res["account"] = []any{map[string]any{"reference": "Account/" + c.Account.String()}}
	}
	if !c.Claim.IsZero() {
		res["identifier"] = []any{map[string]any{"system": SystemClaim, "value": fmt.Sprintf("%s-%d", c.Claim, c.ClaimedLine)}}
	}
	return encode("charge item", res)
}
