package records

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// TestImportFinancial imports real-world financial resources end to end: Synthea's claims and
// explanations of benefit become the patient's billing history, the R4 specification's
// examples keep their references across export, a payment notice goes with the claim it names,
// and a payer's reconciliation that names claims of no known patient gets its own answer. The
// subtests share one service.
func TestImportFinancial(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	t.Run("synthea claims", func(t *testing.T) { testFinSynthea(t, f.sub(t), r) })
	t.Run("specification examples", func(t *testing.T) { testFinExamples(t, f.sub(t), r) })
	t.Run("not placeable", func(t *testing.T) { testFinNotPlaceable(t, f.sub(t), r) })
	t.Run("dependent coverage", func(t *testing.T) { testFinDependent(t, f.sub(t), r) })
}

// testFinDependent: a child's Coverage and Claim name the parent (another patient) as
// subscriber, policy holder and payee; they are the child's, and the parent is no reason to
// refuse them.
func testFinDependent(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("fin-child", true)
	doc := []byte(`{"resourceType":"Bundle","type":"collection","entry":[
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000c1","resource":{"resourceType":"Patient","id":"child","birthDate":"2015-03-01"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000c2","resource":{"resourceType":"Coverage","id":"fam","status":"active",
		"beneficiary":{"reference":"Patient/child"},"subscriber":{"reference":"Patient/parent"},"policyHolder":{"reference":"Patient/parent"},
		"relationship":{"coding":[{"code":"child"}]},"payor":[{"reference":"Organization/payer"}]}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000c3","resource":{"resourceType":"Claim","id":"kid-visit","status":"active","type":{"coding":[{"code":"professional"}]},
		"use":"claim","patient":{"reference":"Patient/child"},"created":"2020-05-05","provider":{"reference":"Organization/clinic"},"priority":{"coding":[{"code":"normal"}]},
		"payee":{"type":{"coding":[{"code":"subscriber"}]},"party":{"reference":"Patient/parent"}},
		"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"urn:uuid:00000000-0000-4000-8000-0000000000c2"}}],"total":{"value":80,"currency":"USD"}}}]}`)
	res, err := r.ImportDocument(ctx, p.id(), doc, ImportOptions{})
	require.NoError(t, err)
	require.Len(t, res.Records, 3)
	for _, rec := range res.Records {
		require.Equal(t, p.id(), f.record(rec.ID).Patient)
	}
	// A resource that is the parent's own is still refused under the child.
	_, err = r.ImportDocument(ctx, p.id(), []byte(`{"resourceType":"Coverage","id":"parent-own","status":"active","beneficiary":{"reference":"Patient/parent"},
		"payor":[{"reference":"Organization/payer"}]}`), ImportOptions{})
	require.ErrorIs(t, err, ErrOtherPerson)
}

func testFinSynthea(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("fin-synthea", true)
	data := readTestdata(t, "real/synthea-claims-transaction.json")
	res, err := r.ImportDocument(ctx, p.id(), data, ImportOptions{})
	require.NoError(t, err)

	// Every Claim and ExplanationOfBenefit is a record of this patient, of its type.
	count := map[string]int{}
	claimID := map[string]chain.Hash{} // FHIR id → record
	for i, o := range res.Entries {
		if !strings.HasPrefix(o.Resource, "Claim/") && !strings.HasPrefix(o.Resource, "ExplanationOfBenefit/") {
			continue
		}
		require.Equal(t, OutcomeCreated, o.Outcome, "entry %d (%s): %s", i, o.Resource, o.Message)
		id, err := chain.ParseHash(o.Record)
		require.NoError(t, err)
		rec := f.record(id)
		require.NotNil(t, rec)
		typ, fid, _ := strings.Cut(o.Resource, "/")
		require.Equal(t, p.id(), rec.Patient, "%s", o.Resource)
		require.Equal(t, typ, rec.ResourceType)
		count[typ]++
		if typ == "Claim" {
			claimID[fid] = id
		}
	}
	require.Equal(t, map[string]int{"Claim": 40, "ExplanationOfBenefit": 27}, count)

	// The export resolves the claim's prescription and the explanation's claim and provider.
	bundle, err := r.Export(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	exported, err := r.fhir.ParseDocument(bundle)
	require.NoError(t, err)
	at := map[string]int{}
	for i, e := range exported.Entries {
		at[e.Resource.Name()] = i
	}
	for from, to := range map[string]string{
		"Claim/82f9395b-14ee-4564-9bfe-22cc3cca8679":                "MedicationRequest/0ee71c8f-f792-4f92-8c44-25cc03971222",
		"ExplanationOfBenefit/7607b5c5-102e-4910-bab9-a8db4dd7025f": "Claim/fb64b717-0dca-4dfc-b7b8-144860165a95",
	} {
		i, ok := at[from]
		require.True(t, ok, "%s not exported", from)
		j, ok := at[to]
		require.True(t, ok, "%s not exported", to)
		require.Contains(t, exported.Entries[i].Resource.Refs, j, "%s does not resolve %s in the export", from, to)
	}

	// The billing history lists them, newest first, with amounts as written.
	hist, _, err := r.BillingHistory(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	require.Len(t, hist, 67)
	for i, h := range hist {
		require.NotEmpty(t, h.Date, "%s/%s", h.ResourceType, h.ID)
		require.Equal(t, "USD", h.Currency, "%s/%s", h.ResourceType, h.ID)
		require.NotEmpty(t, h.Total)
		require.Equal(t, "active", h.Status)
		if i > 0 {
			require.GreaterOrEqual(t, hist[i-1].Date, h.Date, "not newest first")
		}
	}
	byID := map[string]BillingItem{}
	for _, h := range hist {
		byID[h.ResourceType+"/"+h.ID] = h
	}
	rx := byID["Claim/82f9395b-14ee-4564-9bfe-22cc3cca8679"]
	require.Equal(t, BillingItem{Record: claimID["82f9395b-14ee-4564-9bfe-22cc3cca8679"], Version: 1, ResourceType: "Claim",
		ID: "82f9395b-14ee-4564-9bfe-22cc3cca8679", Date: "1981-11-16T02:47:03+00:00", Status: "active", Total: "255",
		Currency: "USD", Use: "claim", Kind: "pharmacy"}, rx)
	eob := byID["ExplanationOfBenefit/7607b5c5-102e-4910-bab9-a8db4dd7025f"]
	require.Equal(t, "125", eob.Total, "the submitted amount")
	require.Equal(t, "institutional", eob.Kind)

	// A payment notice naming one of the claims, imported on its own, goes with it.
	notice := paymentNotice("pn-1", `{"reference":"Claim/82f9395b-14ee-4564-9bfe-22cc3cca8679"}`)
	got, err := r.ImportDocument(ctx, p.id(), notice, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, OutcomeCreated, got.Entries[0].Outcome)
	require.Equal(t, p.id(), f.record(got.Records[0].ID).Patient)
	again, err := r.ImportDocument(ctx, p.id(), notice, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, OutcomeUnchanged, again.Entries[0].Outcome)
	hist, notRead, err := r.BillingHistory(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	require.Len(t, hist, 68)
	require.Zero(t, notRead)
	// The reads are bounded: of 68, only the 10 last anchored, the notice among them.
	defer func(n int) { MaxBillingReads = n }(MaxBillingReads)
	MaxBillingReads = 10
	hist, notRead, err = r.BillingHistory(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	require.Len(t, hist, 10)
	require.Equal(t, 58, notRead)
	require.True(t, slices.ContainsFunc(hist, func(h BillingItem) bool { return h.ID == "pn-1" }), "the newest record was left unread")
	MaxBillingReads = 200

	// One that also names a claim by identifier is not filed under this patient.
	both := paymentNotice("pn-2", `{"reference":"Claim/82f9395b-14ee-4564-9bfe-22cc3cca8679"}`,
		`"response":{"identifier":{"system":"urn:payer:claimresponse","value":"CR-9"}},`)
	_, err = r.ImportDocument(ctx, p.id(), both, ImportOptions{})
	require.ErrorIs(t, err, ErrNotPlaceable)
	require.ErrorContains(t, err, "response by identifier urn:payer:claimresponse|CR-9")
}

// paymentNotice is an R4 PaymentNotice shaped like the specification's example 77654.
func paymentNotice(id, request string, extra ...string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"PaymentNotice","id":%q,"status":"active",%s"request":%s,"created":"2014-08-16",
		"payment":{"reference":"PaymentReconciliation/ER2500"},"recipient":{"identifier":{"system":"http://regulators.gov","value":"AB123"}},
		"amount":{"value":12500.00,"currency":"USD"}}`, id, strings.Join(extra, ""), request)
}

// testFinExamples imports the specification's Account and ChargeItem (which names the
// Account) one by one for one patient, and the types that have no example here inline, in one
// transaction: each is kept, and the export resolves the references between them.
func testFinExamples(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("fin-examples", true)
	for _, name := range []string{"r4-example-account.json", "r4-example-chargeitem.json"} {
		res, err := r.ImportDocument(ctx, p.id(), readTestdata(t, "real/"+name), ImportOptions{})
		require.NoError(t, err, name)
		require.Equal(t, OutcomeCreated, res.Entries[0].Outcome)
	}
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":{"resourceType":"Organization","id":"payer","name":"Payer"},"request":{"method":"PUT","url":"Organization/payer"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000002","resource":{"resourceType":"Coverage","id":"cov1","status":"active","beneficiary":{"reference":"Patient/example"},
		"payor":[{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"}]},"request":{"method":"PUT","url":"Coverage/cov1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000003","resource":{"resourceType":"Claim","id":"cl1","status":"active","type":{"coding":[{"code":"professional"}]},
		"use":"claim","patient":{"reference":"Patient/example"},"created":"2017-01-26","provider":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},
		"priority":{"coding":[{"code":"normal"}]},"insurer":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},
		"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000002"}}],
		"total":{"value":40,"currency":"EUR"}},"request":{"method":"PUT","url":"Claim/cl1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000004","resource":{"resourceType":"ClaimResponse","id":"cr1","status":"active","type":{"coding":[{"code":"professional"}]},
		"use":"claim","patient":{"reference":"Patient/example"},"created":"2017-02-01","insurer":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},
		"request":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000003"},"outcome":"complete"},"request":{"method":"PUT","url":"ClaimResponse/cr1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000005","resource":{"resourceType":"Invoice","id":"inv1","status":"issued","subject":{"reference":"Patient/example"},
		"date":"2017-01-27","account":{"reference":"Account/example"},"totalGross":{"value":40.00,"currency":"EUR"}},"request":{"method":"PUT","url":"Invoice/inv1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000006","resource":{"resourceType":"Contract","id":"ct1","status":"executed","issued":"2016-12-01",
		"subject":[{"reference":"Patient/example"}]},"request":{"method":"PUT","url":"Contract/ct1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000007","resource":{"resourceType":"PaymentReconciliation","id":"pr1","status":"active","created":"2017-02-02",
		"paymentDate":"2017-02-02","paymentAmount":{"value":40,"currency":"EUR"},
		"detail":[{"type":{"coding":[{"code":"payment"}]},"request":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000003"},
		"response":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000004"},"amount":{"value":40,"currency":"EUR"}}]},"request":{"method":"PUT","url":"PaymentReconciliation/pr1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000008","resource":{"resourceType":"PaymentNotice","id":"pn1","status":"active","created":"2017-02-03",
		"request":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000003"},"payment":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000007"},
		"recipient":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},"amount":{"value":40,"currency":"EUR"}},"request":{"method":"PUT","url":"PaymentNotice/pn1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000009","resource":{"resourceType":"ExplanationOfBenefit","id":"eob1","status":"active","type":{"coding":[{"code":"professional"}]},
		"use":"claim","patient":{"reference":"Patient/example"},"created":"2017-02-01","insurer":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},
		"provider":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},"outcome":"complete","claim":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000003"},
		"claimResponse":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000004"},"insurance":[{"focal":true,"coverage":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000002"}}],
		"total":[{"category":{"coding":[{"code":"benefit"}]},"amount":{"value":32,"currency":"EUR"}},{"category":{"coding":[{"code":"submitted"}]},"amount":{"value":40,"currency":"EUR"}}]},
		"request":{"method":"PUT","url":"ExplanationOfBenefit/eob1"}}]}`)
	res, err := r.ImportDocument(ctx, p.id(), tx, ImportOptions{})
	require.NoError(t, err)
	for _, o := range res.Entries {
		require.Equal(t, OutcomeCreated, o.Outcome, "%s: %s", o.Resource, o.Message)
	}
	for _, rec := range res.Records {
		require.Equal(t, p.id(), f.record(rec.ID).Patient)
	}

	// The export resolves what referred across the imports and within the transaction.
	bundle, err := r.Export(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	doc, err := r.fhir.ParseDocument(bundle)
	require.NoError(t, err)
	at := map[string]int{}
	for i, e := range doc.Entries {
		at[e.Resource.Name()] = i
	}
	refers := func(from, to string) {
		t.Helper()
		i, ok := at[from]
		require.True(t, ok, "%s not exported", from)
		j, ok := at[to]
		require.True(t, ok, "%s not exported", to)
		require.Contains(t, doc.Entries[i].Resource.Refs, j, "%s does not resolve %s in the export", from, to)
	}
	refers("ChargeItem/example", "Account/example")
	refers("Invoice/inv1", "Account/example")
	refers("Coverage/cov1", "Organization/payer")
	refers("Claim/cl1", "Coverage/cov1")
	refers("Claim/cl1", "Organization/payer")
	refers("ClaimResponse/cr1", "Claim/cl1")
	refers("PaymentReconciliation/pr1", "ClaimResponse/cr1")
	refers("PaymentNotice/pn1", "PaymentReconciliation/pr1")
	refers("ExplanationOfBenefit/eob1", "Claim/cl1")
	refers("ExplanationOfBenefit/eob1", "ClaimResponse/cr1")
	refers("ExplanationOfBenefit/eob1", "Coverage/cov1")

	// All ten types are in the history; an explanation of benefit shows its submitted total.
	hist, _, err := r.BillingHistory(ctx, p.id(), testPurpose, "clinician")
	require.NoError(t, err)
	types := map[string]string{}
	for _, h := range hist {
		types[h.ResourceType] = h.Total + " " + h.Currency
	}
	require.Equal(t, map[string]string{"Account": " ", "ChargeItem": "40 EUR", "Claim": "40 EUR", "ClaimResponse": " ",
		"Contract": " ", "Coverage": " ", "ExplanationOfBenefit": "40 EUR", "Invoice": "40.00 EUR", "PaymentNotice": "40 EUR",
		"PaymentReconciliation": "40 EUR"}, types)

	// The specification's explanation of benefit is another patient's (Patient/pat1): it is
	// refused here as another person, and kept for a ledger patient of its own.
	eob := readTestdata(t, "real/r4-example-explanationofbenefit.json")
	_, err = r.ImportDocument(ctx, p.id(), eob, ImportOptions{})
	require.ErrorIs(t, err, ErrOtherPerson)
	q := f.newPatient("fin-eob", true)
	res, err = r.ImportDocument(ctx, q.id(), eob, ImportOptions{})
	require.NoError(t, err)
	require.Equal(t, "ExplanationOfBenefit", res.Records[0].ResourceType)
	require.Equal(t, q.id(), f.record(res.Records[0].ID).Patient)
	hist, _, err = r.BillingHistory(ctx, q.id(), testPurpose, "clinician")
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, "135.57", hist[0].Total, "the submitted total, as written")
}

// testFinNotPlaceable: the specification's PaymentReconciliation names one claim by identifier
// and one by an absolute URL, and no patient: it is refused with its own reason, not as invalid
// FHIR, and nothing is anchored.
func testFinNotPlaceable(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("fin-payer", true)
	_, err := r.ImportDocument(ctx, p.id(), readTestdata(t, "real/r4-example-paymentreconciliation.json"), ImportOptions{})
	require.ErrorIs(t, err, ErrNotPlaceable)
	require.ErrorIs(t, err, ErrInvalidFHIR, "answered like a refused import")
	require.False(t, strings.HasPrefix(err.Error(), "invalid FHIR"), err.Error())
	var ie *ImportError
	require.ErrorAs(t, err, &ie)
	refused := ie.Refused()
	require.Len(t, refused, 1)
	require.Contains(t, refused[0].Message, "detail.request by identifier http://happyvalleyclinic.com/claim|AB12345")
	require.Contains(t, refused[0].Message, "http://www.BenefitsInc.com/fhir/oralhealthclaim/225476332699")
	require.Contains(t, refused[0].Message, "not filed under one patient")
	t.Log(err)

	// A notice that names no claim at all says so.
	_, err = r.ImportDocument(ctx, p.id(), []byte(`{"resourceType":"PaymentNotice","id":"lonely","status":"active","created":"2014-08-16",
		"payment":{"reference":"PaymentReconciliation/ER2500"},"recipient":{"reference":"Organization/1"},"amount":{"value":1,"currency":"USD"}}`), ImportOptions{})
	require.ErrorIs(t, err, ErrNotPlaceable)
	require.ErrorContains(t, err, "names none (request, response)")

	// A claim whose patient is named by identifier alone is filed under nobody, and says so.
	_, err = r.ImportDocument(ctx, p.id(), []byte(`{"resourceType":"Claim","id":"anon","status":"active","type":{"text":"x"},"use":"claim",
		"patient":{"identifier":{"system":"urn:mrn","value":"42"}},"created":"2020-01-01","provider":{"reference":"Organization/o"},
		"priority":{"text":"normal"},"insurance":[{"sequence":1,"focal":true,"coverage":{"display":"private"}}]}`), ImportOptions{})
	require.ErrorIs(t, err, ErrNotPlaceable)
	require.ErrorContains(t, err, "a Claim is filed under the patient its patient names, and it names identifier urn:mrn|42")
	l, err := r.List(ctx, p.id())
	require.NoError(t, err)
	require.Empty(t, l)
}

// TestBillingItemOf reads the specification's examples without a service, as a wallet does.
func TestBillingItemOf(t *testing.T) {
	for name, want := range map[string]BillingItem{
		"r4-example-chargeitem.json": {ResourceType: "ChargeItem", ID: "example", Status: "billable", Date: "2017-01-25T08:00:00+01:00", Total: "40", Currency: "EUR"},
		"r4-example-explanationofbenefit.json": {ResourceType: "ExplanationOfBenefit", ID: "EB3500", Status: "active", Date: "2014-08-16", Total: "135.57",
			Currency: "USD", Use: "claim", Kind: "oral"},
		"r4-example-paymentreconciliation.json": {ResourceType: "PaymentReconciliation", ID: "ER2500", Status: "active", Date: "2014-08-01", Total: "7000.00", Currency: "USD"},
		"r4-example-account.json":               {ResourceType: "Account", ID: "example", Status: "active", Date: "2016-01-01", Kind: "PBILLACCT"},
	} {
		got, ok := BillingItemOf(readTestdata(t, "real/"+name))
		require.True(t, ok, name)
		require.Equal(t, want, got, name)
	}
	_, ok := BillingItemOf(readTestdata(t, "observation.json"))
	require.False(t, ok)
	_, ok = BillingItemOf([]byte("not json"))
	require.False(t, ok)
	js, err := json.Marshal(BillingItem{ResourceType: "Claim"})
	require.NoError(t, err)
	require.JSONEq(t, `{"record":"`+chain.Hash{}.String()+`","version":0,"resourceType":"Claim"}`, string(js))
}
