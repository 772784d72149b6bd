package fhir

import (
	"slices"
	"testing"
)

// TestFinancialCompartment: how the ten R4 financial resource types link to patients. Seven are
// in the Patient compartment (a Coverage through beneficiary, subscriber, policyHolder and
// payor alike), Contract names its patient outside it (subject), and PaymentNotice and
// PaymentReconciliation name none. SubjectRefs keep the covered person or claim patient apart
// from a parent who subscribes or is paid.
func TestFinancialCompartment(t *testing.T) {
	v := validator(t)
	for _, tc := range []struct {
		json                   string
		patients, subj, mentio []string
	}{
		{`{"resourceType":"Account","id":"a","status":"active","subject":[{"reference":"Patient/p"}]}`, []string{"p"}, nil, []string{"p"}},
		{`{"resourceType":"ChargeItem","id":"c","status":"billable","code":{"text":"x"},"subject":{"reference":"Patient/p"}}`, []string{"p"}, nil, []string{"p"}},
		{`{"resourceType":"Claim","id":"c","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/p"},"created":"2020-01-01",
			"provider":{"reference":"Organization/o"},"priority":{"text":"normal"},"payee":{"type":{"text":"subscriber"},"party":{"reference":"Patient/parent"}},
			"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/v"}}]}`, []string{"p", "parent"}, []string{"p"}, []string{"p", "parent"}},
		{`{"resourceType":"ClaimResponse","id":"r","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/p"},"created":"2020-01-01",
			"insurer":{"reference":"Organization/o"},"outcome":"complete","request":{"reference":"Claim/c"}}`, []string{"p"}, nil, []string{"p"}},
		{`{"resourceType":"Coverage","id":"v","status":"active","beneficiary":{"reference":"Patient/p"},"subscriber":{"reference":"Patient/parent"},
			"payor":[{"reference":"Organization/o"}]}`, []string{"p", "parent"}, []string{"p"}, []string{"p", "parent"}},
		{`{"resourceType":"Coverage","id":"self","status":"active","beneficiary":{"reference":"Patient/p"},"payor":[{"reference":"Patient/p"}]}`, []string{"p"}, []string{"p"}, []string{"p"}},
		{`{"resourceType":"ExplanationOfBenefit","id":"e","status":"active","type":{"text":"x"},"use":"claim","patient":{"reference":"Patient/p"},"created":"2020-01-01",
			"insurer":{"reference":"Organization/o"},"provider":{"reference":"Organization/o"},"outcome":"complete","claim":{"reference":"Claim/c"},
			"insurance":[{"focal":true,"coverage":{"reference":"Coverage/v"}}]}`, []string{"p"}, []string{"p"}, []string{"p"}},
		{`{"resourceType":"Invoice","id":"i","status":"issued","subject":{"reference":"Patient/p"},"recipient":{"reference":"Patient/guarantor"}}`,
			[]string{"guarantor", "p"}, []string{"p"}, []string{"guarantor", "p"}},
		{`{"resourceType":"Contract","id":"k","status":"executed","subject":[{"reference":"Patient/p"}]}`, nil, nil, []string{"p"}},
		{`{"resourceType":"PaymentNotice","id":"n","status":"active","created":"2020-01-01","request":{"reference":"Claim/c"},
			"payment":{"reference":"PaymentReconciliation/r"},"recipient":{"reference":"Organization/o"},"amount":{"value":1,"currency":"USD"}}`, nil, nil, nil},
		{`{"resourceType":"PaymentReconciliation","id":"r","status":"active","created":"2020-01-01","paymentDate":"2020-01-01",
			"paymentAmount":{"value":1,"currency":"USD"},"detail":[{"type":{"text":"payment"},"request":{"reference":"Claim/c"}}]}`, nil, nil, nil},
	} {
		res, err := v.Parse([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		r := res[0]
		if !slices.Equal(r.PatientRefs, tc.patients) || !slices.Equal(r.SubjectRefs, tc.subj) || !slices.Equal(r.MentionedPatients, tc.mentio) {
			t.Errorf("%s: PatientRefs %v SubjectRefs %v MentionedPatients %v, want %v %v %v", r.Name(), r.PatientRefs, r.SubjectRefs, r.MentionedPatients, tc.patients, tc.subj, tc.mentio)
		}
	}
}
