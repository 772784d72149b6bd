package fhir

import (
	"errors"
	"strings"
	"testing"
)

func TestSinglePatient(t *testing.T) {
	bundle := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	obs := func(id, subject string) string {
		return `{"resource":{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"` + subject + `"}}}`
	}
	for _, tc := range []struct {
		name      string
		resources []Resource
		want      string
	}{
		{"transaction bundle of one patient (urn:uuid references)", mustParse(t, readFixture(t, "bundle-transaction.json")), "pat-2"},
		{"collection bundle of one patient", mustParse(t, readFixture(t, "bundle-collection.json")), "pat-3"},
		{"lone Observation", mustParse(t, readFixture(t, "observation.json")), "pat-1"},
		{"lone Patient", mustParse(t, readFixture(t, "patient.json")), "pat-1"},
		{"bundle without the Patient", mustParse(t, bundle(obs("o1", "Patient/p1"), obs("o2", "Patient/p1/_history/2"))), "p1"},
		{"a second patient singled out by the others", mustParse(t, bundle(
			`{"resource":{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1"},"recorder":{"reference":"Patient/p2"}}}`,
			obs("o1", "Patient/p1"))), "p1"},
		{"a Patient's links do not count", mustParse(t, bundle(
			`{"resource":{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"Patient/p0"},"type":"replaces"}]}}`,
			obs("o1", "Patient/p1"))), "p1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SinglePatient(tc.resources)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if err := AssignPatient(tc.resources, got); err != nil {
				t.Errorf("AssignPatient refuses what SinglePatient found: %v", err)
			}
		})
	}
}

func TestSinglePatientRefuses(t *testing.T) {
	const pu = "urn:uuid:00000000-0000-4000-8000-0000000000b1"
	bundle := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	obs := func(id, subject string) string {
		return `{"resource":{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"` + subject + `"}}}`
	}
	consent, err := ConsentResource(testConsent())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		resources []Resource
		resource  string // as named by Error.Resource
		msg       string
	}{
		{"bundle naming two patients", mustParse(t, bundle(
			`{"resource":{"resourceType":"Patient","id":"p1"}}`, obs("o1", "Patient/p1"), obs("o2", "Patient/p2"))),
			"entry 2 (Observation/o2)", "belongs to Patient/p2, but the resources before it belong to Patient/p1"},
		{"bundle of two Patients", mustParse(t, bundle(
			`{"resource":{"resourceType":"Patient","id":"p1"}}`, `{"resource":{"resourceType":"Patient","id":"p2"}}`)),
			"entry 1 (Patient/p2)", "belongs to Patient/p2"},
		{"another patient's observation after a bundle", append(mustParse(t, readFixture(t, "bundle-collection.json")), mustParse(t, readFixture(t, "observation.json"))...),
			"Observation/obs-bp-1", "belongs to Patient/pat-1, but the resources before it belong to Patient/pat-3"},
		{"every resource names the same two patients", mustParse(t, bundle(
			`{"resource":{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1"},"recorder":{"reference":"Patient/p2"}}}`)),
			"entry 0 (AllergyIntolerance/a1)", "every resource belongs to Patient/p1 and Patient/p2: cannot tell"},
		{"no resources", nil, "input", "no resources"},
		{"a lone Practitioner", mustParse(t, []byte(`{"resourceType":"Practitioner","id":"d1"}`)),
			"Practitioner/d1", "refers to no patient"},
		{"resources with no patient", mustParse(t, bundle(
			`{"resource":{"resourceType":"Practitioner","id":"d1"}}`, `{"resource":{"resourceType":"Medication","id":"m1"}}`)),
			"entry 0 (Practitioner/d1)", "refers to no patient"},
		{"an observation about a group among the patient's", mustParse(t, bundle(obs("o1", "Patient/p1"), obs("o2", "Group/g1"))),
			"entry 1 (Observation/o2)", "refers to no patient"},
		{"a Patient without id", mustParse(t, bundle(
			`{"fullUrl":"`+pu+`","resource":{"resourceType":"Patient"}}`, obs("o1", pu))),
			"entry 0 (Patient (no id))", "/id: a Patient without id"},
		{"observations of a Patient without id", mustParse(t, bundle(
			obs("o1", pu), `{"fullUrl":"`+pu+`","resource":{"resourceType":"Patient"}}`)),
			"entry 1 (Patient (no id))", "/id: a Patient without id"},
		{"only the observations of a Patient without id", mustParse(t, bundle(
			obs("o1", pu), `{"fullUrl":"`+pu+`","resource":{"resourceType":"Patient"}}`))[:1],
			"entry 0 (Observation/o1)", "not by a Patient id"},
		// ConsentResource names the patient by identifier only.
		{"a built Consent", mustParse(t, consent), "Consent/" + testConsent().ID, "refers to no patient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SinglePatient(tc.resources)
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if fe.Resource() != tc.resource {
				t.Errorf("names %q, want %q (%v)", fe.Resource(), tc.resource, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
			t.Log(err)
		})
	}
}
