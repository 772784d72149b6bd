package billing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
)

// FHIR R4 resources written from ledger facts, for the FHIR face, the web pages and the wallet.
// Each builder returns compact JSON with sorted keys (like node/fhir's Consent and AuditEvent
// resources) whose logical id is the ledger id in lowercase hex. People are named the way the
// rest of the code base does: patients by the local FHIR ids the caller passes (Patient/<id>),
// providers and payers by identifier references to their ledger addresses, so nothing here adds
// a name to what the ledger knows. Money is {value, currency} with the value written exactly
// from cents ("75.00").

// Identifier and code systems of the billing resources.
const (
	SystemPayer      = "urn:medledger:payer"
	SystemMembership = "urn:medledger:membership"
	SystemPlan       = "urn:medledger:plan"
	SystemInvoice    = "urn:medledger:invoice"
	SystemPayment    = "urn:medledger:payment"
	SystemClaim      = "urn:medledger:claim"
	SystemCoverage   = "urn:medledger:coverage"
	// SystemDenialReason codes chain.DenialReason (its String form: "not-covered", …).
	SystemDenialReason = "urn:medledger:denial-reason"
	// SystemDisputeReason codes chain.DisputeReason (its String form).
	SystemDisputeReason = "urn:medledger:dispute-reason"

	// ExtensionInvoicePeriod carries the period an invoice bills (R4 Invoice has no element
	// for it); ExtensionInvoicePaid what has been paid against it.
	ExtensionInvoicePeriod = "urn:medledger:fhir:extension:invoice-period"
	ExtensionInvoicePaid   = "urn:medledger:fhir:extension:invoice-paid"
	// ExtensionClaimDispute marks a claim the patient disputes, with the reason.
	ExtensionClaimDispute = "urn:medledger:fhir:extension:claim-dispute"

	systemClaimType   = "http://terminology.hl7.org/CodeSystem/claim-type"
	systemAdjudicate  = "http://terminology.hl7.org/CodeSystem/adjudication"
	systemC4BBAdj     = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
	systemPaymentType = "http://terminology.hl7.org/CodeSystem/payment-type"
	// systemExPaymentType codes a ClaimResponse's payment (complete, partial).
	systemExPaymentType = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
	systemPayStatus     = "http://terminology.hl7.org/CodeSystem/paymentstatus"
	systemActCode       = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	systemPriceType     = "http://hl7.org/fhir/invoice-priceComponentType"
	systemCovClass      = "http://terminology.hl7.org/CodeSystem/coverage-class"
)

// fhirID is the syntax of a FHIR id.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

func patientRef(id string) (map[string]any, error) {
	if !fhirID.MatchString(id) {
		return nil, fmt.Errorf("patient id %q is not a FHIR id", id)
	}
	return map[string]any{"reference": "Patient/" + id}, nil
}

func patientRefs(ids []string) ([]any, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("no patients")
	}
	out := make([]any, len(ids))
	for i, id := range ids {
		r, err := patientRef(id)
		if err != nil {
			return nil, err
		}
		if slices.Contains(ids[:i], id) {
			return nil, fmt.Errorf("patient %s given twice", id)
		}
		out[i] = r
	}
	return out, nil
}

func idRef(typ, system, value string) map[string]any {
	return map[string]any{"type": typ, "identifier": map[string]any{"system": system, "value": value}}
}

func providerRef(a chain.Address) map[string]any {
	return idRef("Organization", fhir.SystemProvider, a.String())
}

func payerRef(a chain.Address) map[string]any { return idRef("Organization", SystemPayer, a.String()) }

func identifier(system string, h chain.Hash) []any {
	return []any{map[string]any{"system": system, "value": h.String()}}
}

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, display)}}
}

func money(cents uint64, currency string) map[string]any {
	return map[string]any{"value": json.Number(FormatCents(cents)), "currency": currency}
}

func negMoney(cents uint64, currency string, negative bool) map[string]any {
	m := money(cents, currency)
	if negative && cents > 0 {
		m["value"] = json.Number("-" + FormatCents(cents))
	}
	return m
}

func checkCurrency(c string) error {
	if len(c) != 3 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < 'A' || c[2] > 'Z' {
		return fmt.Errorf("currency %q is not an ISO 4217 code", c)
	}
	return nil
}

func dateTime(what string, t time.Time) (string, error) {
	if t.IsZero() {
		return "", fmt.Errorf("%s time is missing", what)
	}
	t = t.UTC()
	if t.Year() < 1 || t.Year() > 9999 {
		return "", fmt.Errorf("%s time %v out of range", what, t)
	}
	return t.Format(time.RFC3339), nil
}

// period is a FHIR Period from start to end (end zero: open).
func period(start, end time.Time) (map[string]any, error) {
	s, err := dateTime("start", start)
	if err != nil {
		return nil, err
	}
	p := map[string]any{"start": s}
	if !end.IsZero() {
		if end.Before(start) {
			return nil, fmt.Errorf("period ends (%v) before it starts (%v)", end, start)
		}
		p["end"], _ = dateTime("end", end)
	}
	return p, nil
}

func encode(what string, res map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		return nil, fmt.Errorf("billing: %s: encode: %w", what, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MembershipInfo is a membership agreement as the ledger knows it, with the local Patient ids
// of its members.
type MembershipInfo struct {
	ID         chain.Hash // the agreement's id
	Plan       chain.Plan
	PriceCents uint64   // per period, for all members (after any family cap)
	Members    []string // local Patient ids
	Subscriber string   // local Patient id, one of Members
	Provider   chain.Address
	Signed     time.Time // when the agreement was signed (the enrolment's block time)
	Start      time.Time
	End        time.Time // zero while it runs
	Cancelled  bool
}

func (m *MembershipInfo) check() error {
	switch {
	case m.ID.IsZero():
		return fmt.Errorf("no membership id")
	case m.Plan.Label == "":
		return fmt.Errorf("no plan label")
	case !slices.Contains(m.Members, m.Subscriber):
		return fmt.Errorf("subscriber %q is not among the members", m.Subscriber)
	}
	return checkCurrency(m.Plan.Currency)
}

// ContractResource writes a membership agreement as a FHIR Contract: status executed (or
// terminated once cancelled), applies over the membership's period, the members as subjects,
// the provider as author, the plan as title, and one term whose offer states the plan and whose
// asset's valued item is the price per period.
func ContractResource(m MembershipInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: contract %s: %w", m.ID.Short(), err) }
	if err := m.check(); err != nil {
		return fail(err)
	}
	subjects, err := patientRefs(m.Members)
	if err != nil {
		return fail(err)
	}
	applies, err := period(m.Start, m.End)
	if err != nil {
		return fail(err)
	}
	issued, err := dateTime("signed", m.Signed)
	if err != nil {
		return fail(err)
	}
	status := "executed"
	if m.Cancelled {
		status = "terminated"
	}
	sub, _ := patientRef(m.Subscriber)
	offer := fmt.Sprintf("%s: %s %s %s for %d member(s), subscriber Patient/%s", m.Plan.Label,
		FormatCents(m.PriceCents), m.Plan.Currency, m.Plan.Period, len(m.Members), m.Subscriber)
	res := map[string]any{
		"resourceType": "Contract",
		"id":           m.ID.String(),
		"identifier":   identifier(SystemMembership, m.ID),
		"status":       status,
		"issued":       issued,
		"applies":      applies,
		"subject":      subjects,
		"author":       providerRef(m.Provider),
		"title":        m.Plan.Label,
		"term": []any{map[string]any{
			"identifier": map[string]any{"system": SystemPlan, "value": m.Plan.ID.String()},
			"offer":      map[string]any{"text": offer},
			"asset": []any{map[string]any{
				"text": m.Plan.Period.String() + " membership",
				"valuedItem": []any{map[string]any{
					"entityCodeableConcept": map[string]any{"text": m.Plan.Label},
					"net":                   money(m.PriceCents, m.Plan.Currency),
					"recipient":             providerRef(m.Provider),
					"responsible":           sub,
				}},
			}},
		}},
	}
	return encode("contract", res)
}

// AccountResource writes a membership as a FHIR Account: the ledger keeps its balance by rule,
// and invoices and payments name it.
func AccountResource(m MembershipInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: account %s: %w", m.ID.Short(), err) }
	if err := m.check(); err != nil {
		return fail(err)
	}
	subjects, err := patientRefs(m.Members)
	if err != nil {
		return fail(err)
	}
	sp, err := period(m.Start, m.End)
	if err != nil {
		return fail(err)
	}
	status := "active"
	if m.Cancelled {
		status = "inactive"
	}
	sub, _ := patientRef(m.Subscriber)
	res := map[string]any{
		"resourceType":  "Account",
		"id":            m.ID.String(),
		"identifier":    identifier(SystemMembership, m.ID),
		"status":        status,
		"type":          concept(systemActCode, "PBILLACCT", "patient billing account"),
		"name":          m.Plan.Label,
		"subject":       subjects,
		"servicePeriod": sp,
		"owner":         providerRef(m.Provider),
		"guarantor":     []any{map[string]any{"party": sub}},
	}
	return encode("account", res)
}

// InvoiceInfo is one invoice the ledger derives for a membership period.
type InvoiceInfo struct {
	ID          string // the invoice's id (a FHIR id; the ledger names it by membership and period)
	Membership  chain.Hash
	Provider    chain.Address
	Subscriber  string // local Patient id of the subscriber, who receives it
	Issued      time.Time
	PeriodStart time.Time
	PeriodEnd   time.Time
	Currency    string
	AmountCents uint64
	PaidCents   uint64
	Status      string // issued, balanced (paid in full) or cancelled
}

// InvoiceResource writes a derived invoice: one line for the membership period, the amount as
// its base price and as the totals, the membership's Account, and what was paid and the period
// in extensions (R4 Invoice has elements for neither).
func InvoiceResource(in InvoiceInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: invoice %s: %w", in.ID, err) }
	if !fhirID.MatchString(in.ID) {
		return fail(fmt.Errorf("id is not a FHIR id"))
	}
	if !slices.Contains([]string{"issued", "balanced", "cancelled"}, in.Status) {
		return fail(fmt.Errorf("status %q, want issued, balanced or cancelled", in.Status))
	}
	if err := checkCurrency(in.Currency); err != nil {
		return fail(err)
	}
	if in.Membership.IsZero() {
		return fail(fmt.Errorf("no membership"))
	}
	recipient, err := patientRef(in.Subscriber)
	if err != nil {
		return fail(err)
	}
	date, err := dateTime("issued", in.Issued)
	if err != nil {
		return fail(err)
	}
	p, err := period(in.PeriodStart, in.PeriodEnd)
	if err != nil {
		return fail(err)
	}
	line := fmt.Sprintf("Membership %s to %s", in.PeriodStart.UTC().Format(time.DateOnly), in.PeriodEnd.UTC().Format(time.DateOnly))
	res := map[string]any{
		"resourceType": "Invoice",
		"id":           in.ID,
		"identifier":   []any{map[string]any{"system": SystemInvoice, "value": in.ID}},
		"status":       in.Status,
		"subject":      recipient,
		"recipient":    recipient,
		"date":         date,
		"issuer":       providerRef(in.Provider),
		"account":      map[string]any{"reference": "Account/" + in.Membership.String()},
		"lineItem": []any{map[string]any{
			"sequence":                  1,
			"chargeItemCodeableConcept": map[string]any{"text": line},
			"priceComponent":            []any{map[string]any{"type": "base", "amount": money(in.AmountCents, in.Currency)}},
		}},
		"totalNet":   money(in.AmountCents, in.Currency),
		"totalGross": money(in.AmountCents, in.Currency),
		"extension": []any{
			map[string]any{"url": ExtensionInvoicePeriod, "valuePeriod": p},
			map[string]any{"url": ExtensionInvoicePaid, "valueMoney": money(in.PaidCents, in.Currency)},
		},
	}
	if in.Status == "cancelled" {
		res["cancelledReason"] = "membership cancelled"
	}
	return encode("invoice", res)
}

// PaymentInfo is a recorded payment (chain.PaymentRecord) and its transaction.
type PaymentInfo struct {
	ID        chain.Hash // the transaction's hash: the payment's id
	Reference chain.Hash // Sum256 of the external reference
	Refund    bool
	Splits    []chain.PaymentSplit
	Currency  string
	Provider  chain.Address
	Recorded  time.Time // the block time
}

func (p *PaymentInfo) check() (uint64, error) {
	if p.ID.IsZero() || len(p.Splits) == 0 {
		return 0, fmt.Errorf("a payment needs an id and splits")
	}
	if err := checkCurrency(p.Currency); err != nil {
		return 0, err
	}
	var total uint64
	for _, s := range p.Splits {
		if s.Cents > chain.MaxPaymentCents {
			return 0, fmt.Errorf("split out of range")
		}
		total += s.Cents
	}
	return total, nil
}

// PaymentReconciliationResource writes a recorded payment: the total as paymentAmount, one
// detail per membership it settles (type payment; adjustment for a refund). A refund's amounts
// are negative: money going back to the payer of the memberships.
func PaymentReconciliationResource(p PaymentInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: payment %s: %w", p.ID.Short(), err) }
	total, err := p.check()
	if err != nil {
		return fail(err)
	}
	created, err := dateTime("recorded", p.Recorded)
	if err != nil {
		return fail(err)
	}
	typ := "payment"
	if p.Refund {
		typ = "adjustment"
	}
	details := make([]any, len(p.Splits))
	for i, s := range p.Splits {
		details[i] = map[string]any{
			"identifier": map[string]any{"system": SystemMembership, "value": s.Membership.String()},
			"type":       concept(systemPaymentType, typ, ""),
			"request":    map[string]any{"reference": "Account/" + s.Membership.String()},
			"payee":      providerRef(p.Provider),
			"date":       p.Recorded.UTC().Format(time.DateOnly),
			"amount":     negMoney(s.Cents, p.Currency, p.Refund),
		}
	}
	disposition := "payment recorded"
	if p.Refund {
		disposition = "refund recorded"
	}
	res := map[string]any{
		"resourceType":      "PaymentReconciliation",
		"id":                p.ID.String(),
		"identifier":        identifier(SystemPayment, p.ID),
		"status":            "active",
		"created":           created,
		"requestor":         providerRef(p.Provider),
		"outcome":           "complete",
		"disposition":       disposition,
		"paymentDate":       p.Recorded.UTC().Format(time.DateOnly),
		"paymentAmount":     negMoney(total, p.Currency, p.Refund),
		"paymentIdentifier": map[string]any{"system": SystemPayment + ":reference", "value": p.Reference.String()},
		"detail":            details,
	}
	return encode("payment reconciliation", res)
}

// PaymentNoticeResource writes the notice of a recorded payment to the practice: it points at
// the PaymentReconciliation of the same id.
func PaymentNoticeResource(p PaymentInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: payment %s: %w", p.ID.Short(), err) }
	total, err := p.check()
	if err != nil {
		return fail(err)
	}
	created, err := dateTime("recorded", p.Recorded)
	if err != nil {
		return fail(err)
	}
	res := map[string]any{
		"resourceType":  "PaymentNotice",
		"id":            p.ID.String(),
		"identifier":    identifier(SystemPayment, p.ID),
		"status":        "active",
		"created":       created,
		"payment":       map[string]any{"reference": "PaymentReconciliation/" + p.ID.String()},
		"paymentDate":   p.Recorded.UTC().Format(time.DateOnly),
		"recipient":     providerRef(p.Provider),
		"amount":        negMoney(total, p.Currency, p.Refund),
		"paymentStatus": concept(systemPayStatus, "paid", ""),
	}
	return encode("payment notice", res)
}

// CoverageInfo is a payer's coverage of a patient (chain.CoverageSet).
type CoverageInfo struct {
	ID        chain.Hash
	PatientID string // local Patient id
	Payer     chain.Address
	FromDay   uint32
	ToDay     uint32 // 0: open-ended
	Ended     bool
}

// CoverageResource writes a coverage period: status active (cancelled once ended), the patient
// as beneficiary and subscriber's self, the payer as payor, the period in days.
func CoverageResource(c CoverageInfo) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("billing: coverage %s: %w", c.ID.Short(), err) }
	if c.ID.IsZero() || c.FromDay == 0 {
		return fail(fmt.Errorf("a coverage needs an id and a first day"))
	}
	if c.ToDay != 0 && c.ToDay < c.FromDay {
		return fail(fmt.Errorf("ends before it starts"))
	}
	patient, err := patientRef(c.PatientID)
	if err != nil {
		return fail(err)
	}
	p := map[string]any{"start": DayDate(c.FromDay)}
	if c.ToDay != 0 {
		p["end"] = DayDate(c.ToDay)
	}
	status := "active"
	if c.Ended {
		status = "cancelled"
	}
	res := map[string]any{
		"resourceType": "Coverage",
		"id":           c.ID.String(),
		"identifier":   identifier(SystemCoverage, c.ID),
		"status":       status,
		"beneficiary":  patient,
		"relationship": concept("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", ""),
		"period":       p,
		"payor":        []any{payerRef(c.Payer)},
		"class": []any{map[string]any{
			"type":  concept(systemCovClass, "plan", ""),
			"value": c.ID.String(),
		}},
	}
	return encode("coverage", res)
}
