package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
)

// Code systems a claim line's code is preferably taken from.
const (
	SystemCPT = "http://www.ama-assn.org/go/cpt"
	// SystemHCPCS is the HCPCS Level II system URL of HL7's terminology (THO); the others are
	// names in use for the same system.
	SystemHCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
)

var hcpcsSystems = []string{
	SystemHCPCS,
	"http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
	"urn:oid:2.16.840.1.113883.6.285",
	"http://terminology.hl7.org/CodeSystem/HCPCS",
}

// Where a line's billed amount came from (ServiceLine.AmountFrom).
const (
	FromNet       = "net"
	FromUnitPrice = "unitPrice"
	FromTotal     = "total"
)

// MaxClaimJSON bounds a FHIR Claim read here: 64 items of real claims take a few tens of KiB,
// and a claim is parsed by a payer for every claim filed with it.
const MaxClaimJSON = 1 << 20

// ServiceLine is one item of a FHIR Claim as the ledger sees it: one code and one amount.
type ServiceLine struct {
	Sequence    int    // item.sequence
	System      string // the chosen coding's system ("" if it has none)
	Code        string // normalised
	BilledCents uint64
	AmountFrom  string // FromNet, FromUnitPrice or FromTotal
	Day         uint32 // UTC days since the epoch
}

// ClaimContent is what a FHIR Claim says that the ledger's claim must match.
type ClaimContent struct {
	ID            string // the Claim's logical id, "" if none
	PatientRef    string // Claim.patient.reference (local to the sender), "" if none
	EncounterRefs []string
	Currency      string // the currency of its amounts, "" if none is named
	TotalCents    uint64
	HasTotal      bool
	Day           uint32 // the service day of every line
	Lines         []ServiceLine
}

// Codes returns the lines' codes in line order.
func (c *ClaimContent) Codes() []string {
	out := make([]string, len(c.Lines))
	for i, l := range c.Lines {
		out[i] = l.Code
	}
	return out
}

type fhirRef struct {
	Reference string `json:"reference"`
}

type fhirPeriod struct {
	Start string `json:"start"`
}

type fhirMoney struct {
	Value    json.Number `json:"value"`
	Currency string      `json:"currency"`
}

type fhirCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type fhirClaimItem struct {
	Sequence         int `json:"sequence"`
	ProductOrService struct {
		Coding []fhirCoding `json:"coding"`
	} `json:"productOrService"`
	ServicedDate   string      `json:"servicedDate"`
	ServicedPeriod *fhirPeriod `json:"servicedPeriod"`
	Quantity       *struct {
		Value json.Number `json:"value"`
	} `json:"quantity"`
	UnitPrice *fhirMoney  `json:"unitPrice"`
	Factor    json.Number `json:"factor"`
	Net       *fhirMoney  `json:"net"`
	Encounter []fhirRef   `json:"encounter"`
}

type fhirClaim struct {
	ResourceType   string          `json:"resourceType"`
	ID             string          `json:"id"`
	Patient        *fhirRef        `json:"patient"`
	BillablePeriod *fhirPeriod     `json:"billablePeriod"`
	Item           []fhirClaimItem `json:"item"`
	Total          *fhirMoney      `json:"total"`
}

// ParseClaim validates a FHIR R4 Claim (one resource, JSON) against the official schema with
// node/fhir and reads its service lines.
//
// Validation is Validator.Check, the schema alone: a claim travels on its own, and its
// references (the patient, the encounter, Synthea's urn:uuid ones) point at resources outside
// it, which ParseDocument would refuse as dangling.
//
// The rules, chosen so that provider and payer compute the same lines from the same bytes:
//   - One line per item, in document order; item.detail is not read (the item's code and
//     amount are what is billed).
//   - Code: the first coding whose system is CPT or HCPCS, else the first coding with a code.
//     Its code must be 1..chain.MaxServiceCodeLen printable bytes.
//   - Amount: item.net; else unitPrice × quantity (default 1) × factor (default 1), which must
//     come to whole cents; else an equal share of what Claim.total leaves after the lines with
//     amounts, the odd cents to the first such lines. When every line has its own amount and
//     the claim has a total, the two must agree. Decimals are read exactly from the JSON text,
//     never through a float; an amount that is not whole cents is refused, not rounded.
//   - Day: item.servicedDate, else item.servicedPeriod.start, else Claim.billablePeriod.start,
//     taken as the calendar date written (a dateTime's date part in its own offset) and counted
//     as a UTC day since the epoch. A date of service is a local date: converting
//     "…T20:00:00-05:00" to UTC would move an evening visit to the next day, and the same visit
//     written as a date or as a dateTime would get two days and escape the duplicate rule.
//     Every line must fall on the same day (one claim per service day).
//   - Every amount must name the same currency, or none.
func ParseClaim(data []byte) (*ClaimContent, error) {
	if len(data) > MaxClaimJSON {
		return nil, fmt.Errorf("billing: claim of %d bytes, more than %d", len(data), MaxClaimJSON)
	}
	v, err := fhir.Shared()
	if err != nil {
		return nil, err
	}
	if err := v.Check(data); err != nil {
		return nil, fmt.Errorf("billing: claim: %w", err)
	}
	var fc fhirClaim
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&fc); err != nil {
		return nil, fmt.Errorf("billing: claim: %w", err)
	}
	if fc.ResourceType != "Claim" {
		return nil, fmt.Errorf("billing: a %s, not a Claim", fc.ResourceType)
	}
	if len(fc.Item) == 0 || len(fc.Item) > chain.MaxClaimLines {
		return nil, fmt.Errorf("billing: claim has %d items, want 1..%d", len(fc.Item), chain.MaxClaimLines)
	}
	c := &ClaimContent{ID: fc.ID}
	if fc.Patient != nil {
		c.PatientRef = fc.Patient.Reference
	}
	currency := func(m *fhirMoney, what string) error {
		if m == nil || m.Currency == "" {
			return nil
		}
		if c.Currency != "" && c.Currency != m.Currency {
			return fmt.Errorf("billing: claim: %s is in %s, other amounts in %s", what, m.Currency, c.Currency)
		}
		c.Currency = m.Currency
		return nil
	}
	if fc.Total != nil && fc.Total.Value != "" {
		if c.TotalCents, err = DecimalCents(string(fc.Total.Value)); err != nil {
			return nil, fmt.Errorf("billing: claim total: %w", err)
		}
		c.HasTotal = true
		if err := currency(fc.Total, "the total"); err != nil {
			return nil, err
		}
	}
	billable := ""
	if fc.BillablePeriod != nil {
		billable = fc.BillablePeriod.Start
	}

	var known uint64
	var missing []int
	for i, it := range fc.Item {
		what := fmt.Sprintf("item %d (sequence %d)", i, it.Sequence)
		l := ServiceLine{Sequence: it.Sequence}
		if l.System, l.Code, err = chooseCode(it.ProductOrService.Coding); err != nil {
			return nil, fmt.Errorf("billing: claim %s: %w", what, err)
		}
		when := it.ServicedDate
		if when == "" && it.ServicedPeriod != nil {
			when = it.ServicedPeriod.Start
		}
		if when == "" {
			when = billable
		}
		if l.Day, err = ServiceDay(when); err != nil {
			return nil, fmt.Errorf("billing: claim %s: %w", what, err)
		}
		if i > 0 && l.Day != c.Lines[0].Day {
			return nil, fmt.Errorf("billing: claim %s is on another day than item 0: file one claim per service day", what)
		}
		switch {
		case it.Net != nil && it.Net.Value != "":
			if l.BilledCents, err = DecimalCents(string(it.Net.Value)); err != nil {
				return nil, fmt.Errorf("billing: claim %s net: %w", what, err)
			}
			l.AmountFrom = FromNet
			err = currency(it.Net, what+" net")
		case it.UnitPrice != nil && it.UnitPrice.Value != "":
			if l.BilledCents, err = unitAmount(it); err != nil {
				return nil, fmt.Errorf("billing: claim %s: %w", what, err)
			}
			l.AmountFrom = FromUnitPrice
			err = currency(it.UnitPrice, what+" unit price")
		default:
			l.AmountFrom = FromTotal
			missing = append(missing, i)
		}
		if err != nil {
			return nil, err
		}
		known += l.BilledCents
		for _, e := range it.Encounter {
			if e.Reference != "" && !slices.Contains(c.EncounterRefs, e.Reference) {
				c.EncounterRefs = append(c.EncounterRefs, e.Reference)
			}
		}
		c.Lines = append(c.Lines, l)
	}
	c.Day = c.Lines[0].Day
	if known > chain.MaxClaimCents*chain.MaxClaimLines {
		return nil, errors.New("billing: claim amounts out of range")
	}
	switch {
	case len(missing) == 0 && c.HasTotal && known != c.TotalCents:
		return nil, fmt.Errorf("billing: claim lines come to %s, its total says %s", FormatCents(known), FormatCents(c.TotalCents))
	case len(missing) > 0 && !c.HasTotal:
		return nil, fmt.Errorf("billing: claim item %d has no amount (net or unitPrice) and the claim no total", missing[0])
	case len(missing) > 0:
		if c.TotalCents <= known {
			return nil, fmt.Errorf("billing: claim total %s leaves nothing for the %d items without an amount", FormatCents(c.TotalCents), len(missing))
		}
		rest := c.TotalCents - known
		n := uint64(len(missing))
		for j, i := range missing {
			share := rest / n
			if uint64(j) < rest%n {
				share++
			}
			c.Lines[i].BilledCents = share
		}
	}
	for i, l := range c.Lines {
		if l.BilledCents == 0 || l.BilledCents > chain.MaxClaimCents {
			return nil, fmt.Errorf("billing: claim item %d bills %s: each line bills 0.01..%s", i, FormatCents(l.BilledCents), FormatCents(chain.MaxClaimCents))
		}
	}
	return c, nil
}

// chooseCode picks a line's code: the first CPT or HCPCS coding, else the first with a code.
func chooseCode(cs []fhirCoding) (system, code string, err error) {
	pick := -1
	for i, c := range cs {
		if NormaliseCode(c.Code) == "" {
			continue
		}
		if c.System == SystemCPT || slices.Contains(hcpcsSystems, c.System) {
			pick = i
			break
		}
		if pick < 0 {
			pick = i
		}
	}
	if pick < 0 {
		return "", "", errors.New("productOrService has no coded service")
	}
	code = NormaliseCode(cs[pick].Code)
	if err := CheckCode(code); err != nil {
		return "", "", err
	}
	return cs[pick].System, code, nil
}

// unitAmount is unitPrice × quantity × factor, exactly, in whole cents.
func unitAmount(it fhirClaimItem) (uint64, error) {
	p, err := decimal(string(it.UnitPrice.Value))
	if err != nil {
		return 0, fmt.Errorf("unit price: %w", err)
	}
	if it.Quantity != nil && it.Quantity.Value != "" {
		q, err := decimal(string(it.Quantity.Value))
		if err != nil {
			return 0, fmt.Errorf("quantity: %w", err)
		}
		p.Mul(p, q)
	}
	if it.Factor != "" {
		f, err := decimal(string(it.Factor))
		if err != nil {
			return 0, fmt.Errorf("factor: %w", err)
		}
		p.Mul(p, f)
	}
	if p.Cmp(new(big.Rat).SetUint64(chain.MaxClaimCents)) > 0 {
		return 0, errors.New("unit price × quantity out of range")
	}
	c, err := ratCents(p)
	if err != nil {
		return 0, fmt.Errorf("unit price × quantity × factor: %w (give the item a net)", err)
	}
	return c, nil
}

// ServiceDay turns a FHIR date or dateTime into the UTC day since the epoch of the calendar date
// it names (its date part, in its own offset; see ParseClaim). A partial date (a year, a month)
// is not a day.
func ServiceDay(s string) (uint32, error) {
	if s == "" {
		return 0, errors.New("no service date (servicedDate, servicedPeriod.start or billablePeriod.start)")
	}
	if len(s) < 10 || (len(s) > 10 && s[10] != 'T') {
		return 0, fmt.Errorf("service date %q is not a full date", s)
	}
	t, err := time.Parse(time.DateOnly, s[:10])
	if err != nil {
		return 0, fmt.Errorf("service date %q: %w", s, err)
	}
	days := t.Unix() / 86400
	if days <= 0 || days > 1<<31 {
		return 0, fmt.Errorf("service date %q is before 1970", s)
	}
	return uint32(days), nil
}

// DayDate writes a UTC day since the epoch as a FHIR date.
func DayDate(day uint32) string {
	return time.Unix(int64(day)*86400, 0).UTC().Format(time.DateOnly)
}

// ClaimIDs are the ledger's names of a claim and what it concerns.
type ClaimIDs struct {
	ID        chain.Hash // random, names the claim
	Patient   chain.Address
	Payer     chain.Address
	Encounter chain.Hash // the Encounter record the provider anchored for the patient
	Record    chain.Hash // the sealed FHIR Claim's record
}

// BuildClaimSubmit makes the ClaimSubmit body for a parsed claim under the schedule's key: one
// line per service line, in order, with its code's fingerprint, and the duplicate print. The
// result passes chain's Validate.
func BuildClaimSubmit(key []byte, c *ClaimContent, ids ClaimIDs) (*chain.ClaimSubmit, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("billing: a billing key is %d bytes, got %d", KeyLen, len(key))
	}
	lines := make([]chain.ClaimLine, len(c.Lines))
	for i, l := range c.Lines {
		lines[i] = chain.ClaimLine{Code: CodeFingerprint(key, l.Code), BilledCents: l.BilledCents}
	}
	cs := &chain.ClaimSubmit{
		ID: ids.ID, Patient: ids.Patient, Payer: ids.Payer, Encounter: ids.Encounter, Record: ids.Record,
		ServiceDay: c.Day,
		KeyCommit:  KeyCommit(key),
		Lines:      lines,
		DupPrint:   DupPrint(key, ids.Patient, c.Day, c.Codes()),
	}
	if err := cs.Validate(); err != nil {
		return nil, fmt.Errorf("billing: claim: %w", err)
	}
	return cs, nil
}

// ErrMismatch: the sealed FHIR Claim does not say what the ledger's claim says (deny it with
// chain.DenyContentMismatch).
var ErrMismatch = errors.New("billing: the claim's ledger entry does not match its FHIR Claim")

// MismatchError lists every difference VerifyClaim found.
type MismatchError struct {
	Problems []string
}

func (e *MismatchError) Error() string {
	return ErrMismatch.Error() + ": " + strings.Join(e.Problems, "; ")
}

func (e *MismatchError) Unwrap() error { return ErrMismatch }

// VerifyClaim is the payer's check of a filed claim against the FHIR Claim it sealed: the key
// commitment, each line's code fingerprint and billed amount, the service day and the duplicate
// print are recomputed from the FHIR Claim and every difference is reported in a
// *MismatchError (errors.Is ErrMismatch). A claim whose FHIR cannot be read fails with that
// error instead. Both are grounds for chain.DenyContentMismatch.
func VerifyClaim(key []byte, fhirClaimJSON []byte, cs *chain.ClaimSubmit) error {
	if cs == nil {
		return errors.New("billing: verify: no claim")
	}
	c, err := ParseClaim(fhirClaimJSON)
	if err != nil {
		return err
	}
	var p []string
	if cs.KeyCommit != KeyCommit(key) {
		p = append(p, "key commitment is not the schedule key's")
	}
	if cs.ServiceDay != c.Day {
		p = append(p, fmt.Sprintf("service day %s on the ledger, %s in the claim", DayDate(cs.ServiceDay), DayDate(c.Day)))
	}
	if len(cs.Lines) != len(c.Lines) {
		p = append(p, fmt.Sprintf("%d lines on the ledger, %d items in the claim", len(cs.Lines), len(c.Lines)))
	}
	for i := 0; i < len(cs.Lines) && i < len(c.Lines); i++ {
		l, want := cs.Lines[i], c.Lines[i]
		if l.Code != CodeFingerprint(key, want.Code) {
			p = append(p, fmt.Sprintf("line %d: code fingerprint is not that of %s", i, want.Code))
		}
		if l.BilledCents != want.BilledCents {
			p = append(p, fmt.Sprintf("line %d: bills %s on the ledger, %s in the claim", i, FormatCents(l.BilledCents), FormatCents(want.BilledCents)))
		}
	}
	if cs.DupPrint != DupPrint(key, cs.Patient, c.Day, c.Codes()) {
		p = append(p, "duplicate print is not that of the claim's patient, day and codes")
	}
	if len(p) > 0 {
		return &MismatchError{Problems: p}
	}
	return nil
}
