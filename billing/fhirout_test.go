package billing

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
)

// checkFHIR validates a built resource against the official R4 schema, as node/fhir does for
// the resources it writes, and returns it decoded.
func checkFHIR(t *testing.T, typ string, data []byte, err error) map[string]any {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	v, verr := fhir.Shared()
	if verr != nil {
		t.Fatal(verr)
	}
	if err := v.Check(data); err != nil {
		t.Fatalf("%s does not validate: %v\n%s", typ, err, data)
	}
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(string(data)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m["resourceType"] != typ {
		t.Fatalf("resourceType %v, want %s", m["resourceType"], typ)
	}
	return m
}

func hash(b byte) chain.Hash {
	var h chain.Hash
	for i := range h {
		h[i] = b
	}
	return h
}

var (
	t0 = time.Date(2026, 3, 1, 15, 4, 5, 0, time.UTC)
	t1 = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
)

func testMembership() MembershipInfo {
	return MembershipInfo{
		ID: hash(0xa1), Plan: testPlan(9, "99213"), PriceCents: 15000,
		Members: []string{"p1", "p2"}, Subscriber: "p1", Provider: addr(2),
		Signed: t0, Start: t0,
	}
}

func TestContractResource(t *testing.T) {
	b, err := ContractResource(testMembership())
	m := checkFHIR(t, "Contract", b, err)
	if m["status"] != "executed" || m["id"] != hash(0xa1).String() || m["title"] != "Adult monthly" {
		t.Fatalf("%s", b)
	}
	if !strings.Contains(string(b), `"net":{"currency":"USD","value":150.00}`) || !strings.Contains(string(b), `"Patient/p2"`) {
		t.Fatalf("price or members missing: %s", b)
	}
	ms := testMembership()
	ms.Cancelled, ms.End = true, t1
	b, err = ContractResource(ms)
	if m := checkFHIR(t, "Contract", b, err); m["status"] != "terminated" {
		t.Fatalf("%s", b)
	}
	for name, edit := range map[string]func(*MembershipInfo){
		"subscriber not a member": func(m *MembershipInfo) { m.Subscriber = "p9" },
		"bad patient id":          func(m *MembershipInfo) { m.Members = []string{"p1", "bad id"} },
		"repeated member":         func(m *MembershipInfo) { m.Members = []string{"p1", "p1"} },
		"bad currency":            func(m *MembershipInfo) { m.Plan.Currency = "dollars" },
		"ends before start":       func(m *MembershipInfo) { m.End = t0.Add(-time.Hour) },
		"no signature time":       func(m *MembershipInfo) { m.Signed = time.Time{} },
	} {
		ms := testMembership()
		edit(&ms)
		if _, err := ContractResource(ms); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAccountResource(t *testing.T) {
	b, err := AccountResource(testMembership())
	m := checkFHIR(t, "Account", b, err)
	if m["status"] != "active" || m["name"] != "Adult monthly" {
		t.Fatalf("%s", b)
	}
}

func TestInvoiceResource(t *testing.T) {
	for _, status := range []string{"issued", "balanced", "cancelled"} {
		in := InvoiceInfo{ID: "inv-" + status, Membership: hash(0xa1), Provider: addr(2), Subscriber: "p1",
			Issued: t0, PeriodStart: t0, PeriodEnd: t1, Currency: "USD", AmountCents: 15000, PaidCents: 7505, Status: status}
		b, err := InvoiceResource(in)
		m := checkFHIR(t, "Invoice", b, err)
		if m["status"] != status || !strings.Contains(string(b), `"valueMoney":{"currency":"USD","value":75.05}`) ||
			!strings.Contains(string(b), `"totalNet":{"currency":"USD","value":150.00}`) {
			t.Fatalf("%s", b)
		}
	}
	bad := InvoiceInfo{ID: "x", Membership: hash(1), Subscriber: "p1", Issued: t0, PeriodStart: t0, PeriodEnd: t1, Currency: "USD", Status: "paid"}
	if _, err := InvoiceResource(bad); err == nil {
		t.Fatal("status paid accepted")
	}
}

func testPayment(refund bool) PaymentInfo {
	return PaymentInfo{ID: hash(0xb2), Reference: hash(0xc3), Refund: refund, Currency: "USD", Provider: addr(2), Recorded: t0,
		Splits: []chain.PaymentSplit{{Membership: hash(0xa1), Cents: 15000}, {Membership: hash(0xa2), Cents: 7501}}}
}

func TestPaymentResources(t *testing.T) {
	b, err := PaymentReconciliationResource(testPayment(false))
	checkFHIR(t, "PaymentReconciliation", b, err)
	if !strings.Contains(string(b), `"paymentAmount":{"currency":"USD","value":225.01}`) {
		t.Fatalf("%s", b)
	}
	b, err = PaymentReconciliationResource(testPayment(true))
	checkFHIR(t, "PaymentReconciliation", b, err)
	if !strings.Contains(string(b), `"paymentAmount":{"currency":"USD","value":-225.01}`) || !strings.Contains(string(b), `"adjustment"`) {
		t.Fatalf("%s", b)
	}
	b, err = PaymentNoticeResource(testPayment(false))
	m := checkFHIR(t, "PaymentNotice", b, err)
	if m["payment"].(map[string]any)["reference"] != "PaymentReconciliation/"+hash(0xb2).String() {
		t.Fatalf("%s", b)
	}
	p := testPayment(false)
	p.Splits = nil
	if _, err := PaymentNoticeResource(p); err == nil {
		t.Fatal("payment without splits accepted")
	}
}

func testOutcome(decided bool) ClaimOutcome {
	o := ClaimOutcome{
		Claim: hash(0xd4), PatientID: "p1", Provider: addr(2), Payer: addr(5), Coverage: hash(0xe5), Currency: "USD",
		Filed: t0, ServiceDay: 20514,
		Lines: []OutcomeLine{
			{Sequence: 1, System: SystemCPT, Code: "99213", BilledCents: 7500, AllowedCents: 6000, PaidCents: 4800, PatientCents: 1200},
			{Sequence: 2, BilledCents: 3000, Denial: chain.DenyNotCovered},
		},
	}
	if decided {
		o.Decided = t1
	}
	return o
}

func TestClaimResponseResource(t *testing.T) {
	b, err := ClaimResponseResource(testOutcome(true))
	m := checkFHIR(t, "ClaimResponse", b, err)
	if m["outcome"] != "complete" || !strings.Contains(string(b), `"code":"not-covered"`) ||
		!strings.Contains(string(b), `"amount":{"currency":"USD","value":48.00}`) {
		t.Fatalf("%s", b)
	}
	o := testOutcome(false)
	o.Dispute = chain.DisputeWrongAmount
	b, err = ClaimResponseResource(o)
	m = checkFHIR(t, "ClaimResponse", b, err)
	if m["outcome"] != "queued" || !strings.Contains(string(b), ExtensionClaimDispute) || strings.Contains(string(b), "benefit") {
		t.Fatalf("%s", b)
	}
	o = testOutcome(true)
	o.Lines[1].Sequence = 5
	if _, err := ClaimResponseResource(o); err == nil {
		t.Fatal("out-of-order sequence accepted")
	}
}

func TestExplanationOfBenefitResource(t *testing.T) {
	b, err := ExplanationOfBenefitResource(testOutcome(true))
	m := checkFHIR(t, "ExplanationOfBenefit", b, err)
	if m["outcome"] != "complete" || !strings.Contains(string(b), `"servicedDate":"2026-03-02"`) ||
		!strings.Contains(string(b), `"code":"99213"`) || !strings.Contains(string(b), `"text":"service line 2"`) {
		t.Fatalf("%s", b)
	}
	b, err = ExplanationOfBenefitResource(testOutcome(false))
	checkFHIR(t, "ExplanationOfBenefit", b, err)
	o := testOutcome(true)
	o.Coverage = chain.Hash{}
	if _, err := ExplanationOfBenefitResource(o); err == nil {
		t.Fatal("EOB without coverage accepted")
	}
}

func TestCoverageResource(t *testing.T) {
	c := CoverageInfo{ID: hash(0xe5), PatientID: "p1", Payer: addr(5), FromDay: 20514}
	b, err := CoverageResource(c)
	m := checkFHIR(t, "Coverage", b, err)
	if m["status"] != "active" || !strings.Contains(string(b), `"period":{"start":"2026-03-02"}`) {
		t.Fatalf("%s", b)
	}
	c.ToDay, c.Ended = 20600, true
	b, err = CoverageResource(c)
	if m := checkFHIR(t, "Coverage", b, err); m["status"] != "cancelled" {
		t.Fatalf("%s", b)
	}
	c.ToDay = 1
	if _, err := CoverageResource(c); err == nil {
		t.Fatal("coverage ending before it starts accepted")
	}
}

func TestChargeItemResource(t *testing.T) {
	c := ChargeInfo{ID: "claim-1", PatientID: "p1", Provider: addr(2), System: SystemCPT, Code: "99213", Day: 20514,
		Cents: 7500, Currency: "USD", Status: "billed", Account: hash(0xa1), Claim: hash(0xd4), ClaimedLine: 1}
	b, err := ChargeItemResource(c)
	m := checkFHIR(t, "ChargeItem", b, err)
	if m["occurrenceDateTime"] != "2026-03-02" || !strings.Contains(string(b), `"priceOverride":{"currency":"USD","value":75.00}`) {
		t.Fatalf("%s", b)
	}
	c.System, c.Account, c.Claim = "", chain.Hash{}, chain.Hash{}
	b, err = ChargeItemResource(c)
	checkFHIR(t, "ChargeItem", b, err)
	c.Status = "paid"
	if _, err := ChargeItemResource(c); err == nil {
		t.Fatal("status paid accepted")
	}
}

// A Coverage written here reads back into the same CoverageSet.
func TestCoverageFromFHIR(t *testing.T) {
	in := CoverageInfo{ID: hash(0xe5), PatientID: "p1", Payer: addr(5), FromDay: 20514, ToDay: 20600}
	b, err := CoverageResource(in)
	if err != nil {
		t.Fatal(err)
	}
	cs, ref, err := CoverageFromFHIR(b, in.ID, addr(4))
	if err != nil {
		t.Fatal(err)
	}
	if ref != "Patient/p1" || cs.FromDay != 20514 || cs.ToDay != 20600 || cs.End || cs.Patient != addr(4) {
		t.Fatalf("%+v %s", cs, ref)
	}
	in.ToDay, in.Ended = 0, true
	b, _ = CoverageResource(in)
	if cs, _, err := CoverageFromFHIR(b, in.ID, addr(4)); err != nil || !cs.End || cs.ToDay != 0 {
		t.Fatalf("cancelled: %+v %v", cs, err)
	}
	noPeriod := strings.Replace(string(b), `"period":{"start":"2026-03-02"},`, "", 1)
	if _, _, err := CoverageFromFHIR([]byte(noPeriod), in.ID, addr(4)); err == nil {
		t.Fatal("coverage without a start accepted")
	}
	if _, _, err := CoverageFromFHIR([]byte(professional), in.ID, addr(4)); err == nil {
		t.Fatal("a Claim read as a Coverage")
	}
}
