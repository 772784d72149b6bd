package billing

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dayOf(t *testing.T, date string) uint32 {
	t.Helper()
	tm, err := time.Parse(time.DateOnly, date)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(tm.Unix() / 86400)
}

// professional is an R4 professional claim for an office visit and a blood draw: a CPT coding
// listed after a local one, an HCPCS code, amounts by net and by unit price × quantity.
const professional = `{
  "resourceType": "Claim",
  "id": "visit-1",
  "status": "active",
  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
  "use": "claim",
  "patient": {"reference": "Patient/p1"},
  "created": "2026-03-02",
  "provider": {"reference": "Organization/practice"},
  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
  "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/c1"}}],
  "item": [
    {"sequence": 1,
     "productOrService": {"coding": [
       {"system": "http://example.org/local-services", "code": "OV-EST"},
       {"system": "http://www.ama-assn.org/go/cpt", "code": "99213", "display": "Office visit, established"}]},
     "servicedDate": "2026-03-02",
     "net": {"value": 75.00, "currency": "USD"},
     "encounter": [{"reference": "Encounter/e1"}]},
    {"sequence": 2,
     "productOrService": {"coding": [{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "G0438"}]},
     "servicedPeriod": {"start": "2026-03-02T17:30:00-05:00", "end": "2026-03-02T17:45:00-05:00"},
     "quantity": {"value": 3},
     "unitPrice": {"value": 0.1, "currency": "USD"},
     "encounter": [{"reference": "Encounter/e1"}]}
  ],
  "total": {"value": 75.30, "currency": "USD"}
}`

func TestParseClaimProfessional(t *testing.T) {
	c, err := ParseClaim([]byte(professional))
	if err != nil {
		t.Fatal(err)
	}
	day := dayOf(t, "2026-03-02")
	if c.ID != "visit-1" || c.PatientRef != "Patient/p1" || c.Currency != "USD" || c.Day != day || !c.HasTotal || c.TotalCents != 7530 {
		t.Fatalf("claim %+v", c)
	}
	if len(c.EncounterRefs) != 1 || c.EncounterRefs[0] != "Encounter/e1" {
		t.Fatalf("encounters %v", c.EncounterRefs)
	}
	want := []ServiceLine{
		{Sequence: 1, System: SystemCPT, Code: "99213", BilledCents: 7500, AmountFrom: FromNet, Day: day},
		// 17:30 at -05:00 is the next day in UTC; the date written is the service day.
		{Sequence: 2, System: SystemHCPCS, Code: "G0438", BilledCents: 30, AmountFrom: FromUnitPrice, Day: day},
	}
	if len(c.Lines) != 2 || c.Lines[0] != want[0] || c.Lines[1] != want[1] {
		t.Fatalf("lines %+v", c.Lines)
	}
}

func TestParseClaimSynthea(t *testing.T) {
	c, err := ParseClaim(readTestdata(t, "synthea-claim-institutional.json"))
	if err != nil {
		t.Fatal(err)
	}
	day := dayOf(t, "1979-01-02")
	if c.Day != day || c.PatientRef != "urn:uuid:d5582579-7193-4866-5560-a01e723b6552" || c.TotalCents != 12916 {
		t.Fatalf("claim %+v", c)
	}
	// No item has an amount: the total is shared, 129.16 = 64.58 + 64.58.
	if len(c.Lines) != 2 || c.Lines[0].Code != "162673000" || c.Lines[1].Code != "15777000" ||
		c.Lines[0].BilledCents != 6458 || c.Lines[1].BilledCents != 6458 || c.Lines[0].AmountFrom != FromTotal {
		t.Fatalf("lines %+v", c.Lines)
	}
	if len(c.EncounterRefs) != 1 || c.EncounterRefs[0] != "urn:uuid:3699e7e7-8b1b-4a68-8011-e7a166598566" {
		t.Fatalf("encounters %v", c.EncounterRefs)
	}
}

func TestParseClaimSTU3Refused(t *testing.T) {
	_, err := ParseClaim(readTestdata(t, "fhir-stu3-claim-example-professional.json"))
	if err == nil {
		t.Fatal("a pre-R4 claim was accepted")
	}
	t.Log(err)
}

func TestParseClaimShares(t *testing.T) {
	// One line with a net, two without: they share what the total leaves, the odd cent first.
	doc := strings.Replace(professional, `"total": {"value": 75.30`, `"total": {"value": 100.01`, 1)
	doc = strings.Replace(doc, `"quantity": {"value": 3},
     "unitPrice": {"value": 0.1, "currency": "USD"},`, ``, 1)
	c, err := ParseClaim([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Lines[0].BilledCents != 7500 || c.Lines[1].BilledCents != 2501 || c.Lines[1].AmountFrom != FromTotal {
		t.Fatalf("lines %+v", c.Lines)
	}
}

func TestParseClaimRefusals(t *testing.T) {
	for name, edit := range map[string][2]string{
		"total disagrees":     {`"total": {"value": 75.30`, `"total": {"value": 75.31`},
		"sub-cent net":        {`"value": 75.00, "currency": "USD"`, `"value": 75.005, "currency": "USD"`},
		"sub-cent unit price": {`"value": 0.1, "currency"`, `"value": 0.101, "currency"`},
		"two currencies":      {`"value": 75.00, "currency": "USD"`, `"value": 75.00, "currency": "EUR"`},
		"two days":            {`"servicedDate": "2026-03-02"`, `"servicedDate": "2026-03-03"`},
		"partial date":        {`"servicedDate": "2026-03-02"`, `"servicedDate": "2026-03"`},
		"long code":           {`"code": "G0438"`, `"code": "G0438G0438G0438G0438"`},
		"zero amount":         {`"value": 75.00, "currency": "USD"`, `"value": 0, "currency": "USD"`},
		"not a claim":         {`"resourceType": "Claim"`, `"resourceType": "ClaimResponse"`},
		"not FHIR":            {`"use": "claim"`, `"use": "claim", "colour": "red"`},
		"no code":             {`{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "G0438"}`, `{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "display": "x"}`},
	} {
		doc := strings.Replace(professional, edit[0], edit[1], 1)
		if doc == professional {
			t.Fatalf("%s: edit does not apply", name)
		}
		if c, err := ParseClaim([]byte(doc)); err == nil {
			t.Errorf("%s: accepted: %+v", name, c.Lines)
		}
	}
	syn := string(readTestdata(t, "synthea-claim-institutional.json"))
	doc := strings.Replace(syn, `"total": {
    "value": 129.16,
    "currency": "USD"
  }`, `"created": "1979-01-02T11:59:52-05:00"`, 1)
	doc = strings.Replace(doc, `  "created": "1979-01-02T11:59:52-05:00",
`, "", 1)
	if _, err := ParseClaim([]byte(doc)); err == nil || !strings.Contains(err.Error(), "no total") {
		t.Errorf("items without amounts and no total: %v", err)
	}
}

func testIDs() ClaimIDs {
	var id, enc, rec chain.Hash
	id[0], enc[0], rec[0] = 1, 2, 3
	return ClaimIDs{ID: id, Patient: addr(4), Payer: addr(5), Encounter: enc, Record: rec}
}

func TestBuildClaimSubmit(t *testing.T) {
	key := testKey(t)
	c, err := ParseClaim([]byte(professional))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := BuildClaimSubmit(key, c, testIDs())
	if err != nil {
		t.Fatal(err)
	}
	if cs.ServiceDay != c.Day || cs.KeyCommit != KeyCommit(key) || len(cs.Lines) != 2 ||
		cs.Lines[0].Code != CodeFingerprint(key, "99213") || cs.Lines[1].BilledCents != 30 ||
		cs.DupPrint != DupPrint(key, addr(4), c.Day, []string{"G0438", "99213"}) {
		t.Fatalf("claim %+v", cs)
	}
	enc := string(chain.Encode(cs))
	for _, s := range []string{"99213", "G0438", "visit-1", "Patient/p1"} {
		if strings.Contains(enc, s) {
			t.Errorf("%q in clear on the ledger", s)
		}
	}
	if err := VerifyClaim(key, []byte(professional), cs); err != nil {
		t.Fatalf("honest claim: %v", err)
	}
	// The same services in another order are the same duplicate.
	c2 := *c
	c2.Lines = []ServiceLine{c.Lines[1], c.Lines[0]}
	cs2, _ := BuildClaimSubmit(key, &c2, testIDs())
	if cs2.DupPrint != cs.DupPrint {
		t.Fatal("reordered lines, another duplicate print")
	}
}

func TestVerifyClaim(t *testing.T) {
	key := testKey(t)
	honest := []byte(professional)
	build := func(doc string) *chain.ClaimSubmit {
		t.Helper()
		c, err := ParseClaim([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		cs, err := BuildClaimSubmit(key, c, testIDs())
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	// The ledger entry was built from another claim than the one sealed for the payer.
	for name, tc := range map[string]struct{ from, to, want string }{
		"changed code":   {`"code": "99213"`, `"code": "99215"`, "line 0: code fingerprint"},
		"changed amount": {`"total": {"value": 75.30`, `"total": {"value": 90.30`, "line 0: bills 90.00 on the ledger, 75.00 in the claim"},
		"changed day":    {`2026-03-02`, `2026-03-01`, "service day 2026-03-01 on the ledger, 2026-03-02 in the claim"},
	} {
		doc := strings.ReplaceAll(professional, tc.from, tc.to)
		if name == "changed amount" {
			doc = strings.Replace(doc, `"value": 75.00, "currency": "USD"`, `"value": 90.00, "currency": "USD"`, 1)
		}
		err := VerifyClaim(key, honest, build(doc))
		var me *MismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name != "changed amount" && !strings.Contains(err.Error(), "duplicate print") {
			t.Errorf("%s: the duplicate print is not reported: %v", name, err)
		}
	}
	// Lies told on the ledger entry itself, all reported at once.
	cs := build(professional)
	cs.Lines[1].Code = CodeFingerprint(key, "99999")
	cs.Lines[0].BilledCents++
	cs.ServiceDay++
	cs.DupPrint[0] ^= 1
	cs.KeyCommit[0] ^= 1
	err := VerifyClaim(key, honest, cs)
	var me *MismatchError
	if !errors.As(err, &me) || len(me.Problems) != 5 {
		t.Fatalf("want 5 problems: %v", err)
	}
	cs = build(professional)
	cs.Lines = cs.Lines[:1]
	if err := VerifyClaim(key, honest, cs); err == nil || !strings.Contains(err.Error(), "1 lines on the ledger, 2 items") {
		t.Fatalf("dropped line: %v", err)
	}
	// Another patient's claim under the same print.
	cs = build(professional)
	cs.Patient = addr(9)
	if err := VerifyClaim(key, honest, cs); !errors.Is(err, ErrMismatch) {
		t.Fatalf("other patient: %v", err)
	}
	// Unreadable FHIR is an error too, not a pass.
	if err := VerifyClaim(key, []byte("{}"), build(professional)); err == nil {
		t.Fatal("unreadable claim verified")
	}
	// The Synthea claim round-trips.
	syn := readTestdata(t, "synthea-claim-institutional.json")
	if err := VerifyClaim(key, syn, build(string(syn))); err != nil {
		t.Fatalf("synthea: %v", err)
	}
}

func TestServiceDay(t *testing.T) {
	for in, want := range map[string]string{
		"2014-08-16":                "2014-08-16",
		"2026-03-02T23:30:00-05:00": "2026-03-02",
		"2026-03-02T00:10:00+14:00": "2026-03-02",
		"2026-03-02T12:00:00.123Z":  "2026-03-02",
		"1970-01-02":                "1970-01-02",
	} {
		d, err := ServiceDay(in)
		if err != nil || DayDate(d) != want {
			t.Errorf("ServiceDay(%q) = %d (%s), %v; want %s", in, d, DayDate(d), err, want)
		}
	}
	for _, in := range []string{"", "2014", "2014-08", "1970-01-01", "1969-12-31", "2014-02-30", "2014-08-16X"} {
		if d, err := ServiceDay(in); err == nil {
			t.Errorf("ServiceDay(%q) = %d, want an error", in, d)
		}
	}
}
