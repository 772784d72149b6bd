package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
)

// FinancialTypes are the FHIR R4 financial resource types a patient's billing history lists.
var FinancialTypes = []string{"Account", "ChargeItem", "Claim", "ClaimResponse", "Contract", "Coverage",
	"ExplanationOfBenefit", "Invoice", "PaymentNotice", "PaymentReconciliation"}

// BillingItem is one financial record of a patient, as the node's API and the wallet show it.
// Every field but Record and Version is read from the decrypted resource; one the resource does
// not carry is empty.
type BillingItem struct {
	Record       chain.Hash `json:"record"`
	Version      uint64     `json:"version"`
	ResourceType string     `json:"resourceType"`
	ID           string     `json:"id,omitempty"` // the FHIR id
	// Date is the resource's own date as written (FHIR date or dateTime): when the claim,
	// explanation, invoice or payment was created, a coverage or account period's start.
	Date   string `json:"date,omitempty"`
	Status string `json:"status,omitempty"`
	// Total is the amount as written in the resource (a JSON number, never rounded through a
	// float), Currency its ISO 4217 code. Which amount: see billingAmount.
	Total    string `json:"total,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Use is Claim/ExplanationOfBenefit/ClaimResponse.use (claim, preauthorization,
	// predetermination) and Kind the claim type's first code (institutional, pharmacy, oral …).
	Use  string `json:"use,omitempty"`
	Kind string `json:"kind,omitempty"`
}

// BillingItemOf reads a financial resource's summary; ok is false for another resource type or
// JSON that is not a resource. The wallet calls it on the records it decrypted itself.
func BillingItemOf(resource []byte) (item BillingItem, ok bool) {
	d := json.NewDecoder(bytes.NewReader(resource))
	d.UseNumber() // amounts stay as written
	var obj map[string]any
	if err := d.Decode(&obj); err != nil {
		return BillingItem{}, false
	}
	typ, _ := obj["resourceType"].(string)
	if !slices.Contains(FinancialTypes, typ) {
		return BillingItem{}, false
	}
	item.ResourceType = typ
	item.ID = str(obj, "id")
	item.Status = str(obj, "status")
	item.Use = str(obj, "use")
	if t, ok := obj["type"].(map[string]any); ok {
		if cs, ok := t["coding"].([]any); ok && len(cs) > 0 {
			item.Kind = str(asMap(cs[0]), "code")
		}
	}
	item.Date = firstString(obj, billingDates[typ]...)
	if m := billingAmount(typ, obj); m != nil {
		if v, ok := m["value"].(json.Number); ok {
			item.Total = v.String()
		}
		item.Currency = str(m, "currency")
	}
	return item, true
}

// billingDates are, per type, the elements a history is dated by, the first present wins.
var billingDates = map[string][]string{
	"Account":               {"servicePeriod.start"},
	"ChargeItem":            {"occurrenceDateTime", "occurrencePeriod.start", "enteredDate"},
	"Claim":                 {"created", "billablePeriod.start"},
	"ClaimResponse":         {"created"},
	"Contract":              {"issued", "applies.start"},
	"Coverage":              {"period.start"},
	"ExplanationOfBenefit":  {"created", "billablePeriod.start"},
	"Invoice":               {"date"},
	"PaymentNotice":         {"paymentDate", "created"},
	"PaymentReconciliation": {"paymentDate", "created"},
}

// billingAmount picks the Money a history shows: what was billed for a claim (Claim.total; the
// "submitted" total of an explanation of benefit or claim response, else its first total), an
// invoice's gross total (else net), a charge item's price override, the amount of a payment.
// Account, Coverage and Contract carry no single amount.
func billingAmount(typ string, obj map[string]any) map[string]any {
	switch typ {
	case "Claim":
		return asMap(obj["total"])
	case "ExplanationOfBenefit", "ClaimResponse":
		totals, _ := obj["total"].([]any)
		for _, t := range totals {
			if cat, ok := asMap(t)["category"].(map[string]any); ok {
				if cs, ok := cat["coding"].([]any); ok && len(cs) > 0 && str(asMap(cs[0]), "code") == "submitted" {
					return asMap(asMap(t)["amount"])
				}
			}
		}
		if len(totals) > 0 {
			return asMap(asMap(totals[0])["amount"])
		}
	case "Invoice":
		if m := asMap(obj["totalGross"]); m != nil {
			return m
		}
		return asMap(obj["totalNet"])
	case "ChargeItem":
		return asMap(obj["priceOverride"])
	case "PaymentNotice":
		return asMap(obj["amount"])
	case "PaymentReconciliation":
		return asMap(obj["paymentAmount"])
	}
	return nil
}

// MaxBillingReads bounds the records one billing history reads: each is a decryption and an
// access entry on the ledger, so a patient with decades of imported claims cannot make one
// request cost thousands of them.
var MaxBillingReads = 200 // a variable for tests

// BillingHistory lists the patient's current financial records this node may read, newest first
// (by their own date; undated last). Each is read like any record: consent is checked and the
// read is audited on the ledger. role is the asking staff member's role, as for Read. Records of
// other types are not read. Of more than MaxBillingReads financial records only the last
// anchored are read; notRead says how many were left.
func (r *Service) BillingHistory(ctx context.Context, patient chain.Address, purpose, role string) (items []BillingItem, notRead int, err error) {
	list, err := r.List(ctx, patient)
	if err != nil {
		return nil, 0, err
	}
	var fin []RecordJSON
	for _, rec := range list {
		if !rec.Erased && rec.SupersededBy == nil && slices.Contains(FinancialTypes, rec.ResourceType) {
			fin = append(fin, rec)
		}
	}
	if len(fin) > MaxBillingReads {
		notRead, fin = len(fin)-MaxBillingReads, fin[len(fin)-MaxBillingReads:]
	}
	out := []BillingItem{}
	for _, rec := range fin {
		res, err := r.Read(ctx, rec.ID, purpose, false, role)
		if errors.Is(err, ErrAccessRefused) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("record %s: %w", rec.ID, err)
		}
		item, ok := BillingItemOf(res.JSON)
		if !ok {
			continue
		}
		item.Record, item.Version = rec.ID, rec.Version
		out = append(out, item)
	}
	SortBilling(out)
	return out, notRead, nil
}

// SortBilling orders a history newest first by date (FHIR dates compare as strings to the day;
// undated items last), then by type and id, so a node and a wallet list the same history alike.
func SortBilling(items []BillingItem) {
	slices.SortStableFunc(items, func(a, b BillingItem) int {
		switch {
		case a.Date == "" && b.Date != "":
			return 1
		case a.Date != "" && b.Date == "":
			return -1
		case a.Date != b.Date:
			if a.Date > b.Date {
				return -1
			}
			return 1
		case a.ResourceType != b.ResourceType:
			if a.ResourceType < b.ResourceType {
				return -1
			}
			return 1
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// firstString returns the first string found at one of the dotted element paths.
func firstString(obj map[string]any, paths ...string) string {
	for _, p := range paths {
		var v any = obj
		for _, step := range strings.Split(p, ".") {
			v = asMap(v)[step]
		}
		if s, ok := v.(string); ok && s != "" {
			return s
		}
	}
	return ""
}
