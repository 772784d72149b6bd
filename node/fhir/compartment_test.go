package fhir

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestCompartmentMapping: every parameter of the Patient compartment
// definition maps to an element path that ends at a Reference (checked by
// NewValidator), and the paths of the commonly imported types are the ones
// of the R4 search parameters.
func TestCompartmentMapping(t *testing.T) {
	v := validator(t)
	n := 0
	for _, paths := range v.compartment {
		n += len(paths)
	}
	if len(v.compartment) < 60 || n < 100 {
		t.Errorf("compartment covers %d types with %d paths; the R4 definition has 66 types and over 100 params", len(v.compartment), n)
	}
	join := func(typ string) []string {
		var out []string
		for _, p := range v.compartment[typ] {
			out = append(out, strings.Join(p, "."))
		}
		slices.Sort(out)
		return out
	}
	for typ, want := range map[string][]string{
		"Patient":            {"link.other"},
		"Observation":        {"performer", "subject"},
		"Condition":          {"asserter", "subject"},
		"MedicationRequest":  {"subject"},
		"AllergyIntolerance": {"asserter", "patient", "recorder"},
		"Encounter":          {"subject"},
		"Procedure":          {"performer.actor", "subject"},
		"Coverage":           {"beneficiary", "payor", "policyHolder", "subscriber"},
		"Practitioner":       nil,
		"Medication":         nil,
	} {
		if got := join(typ); !slices.Equal(got, want) {
			t.Errorf("%s: paths %v, want %v", typ, got, want)
		}
	}
}

// TestCompartmentPerType: for each commonly imported type, a reference to
// the patient through each compartment element puts the resource in that
// patient's compartment, and references to others do not.
func TestCompartmentPerType(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       []string
	}{
		{"Patient itself", `{"resourceType":"Patient","id":"p1"}`, []string{"p1"}},
		{"Patient without id", `{"resourceType":"Patient"}`, nil},
		{"Observation.subject", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`, []string{"p1"}},
		{"Observation.performer", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"performer":[{"reference":"Practitioner/d1"},{"reference":"Patient/p1"}]}`, []string{"p1"}},
		{"Observation about a group", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Group/g1"}}`, nil},
		{"Observation focus is not a compartment link", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"focus":[{"reference":"Patient/p1"}]}`, nil},
		{"Condition.subject (param patient)", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`, []string{"p1"}},
		{"Condition.asserter", `{"resourceType":"Condition","subject":{"reference":"Group/g1"},"asserter":{"reference":"Patient/p2"}}`, []string{"p2"}},
		{"MedicationRequest.subject", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/p1/_history/3"}}`, []string{"p1"}},
		{"MedicationRequest.requester is not a link", `{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Group/g1"},"requester":{"reference":"Patient/p1"}}`, nil},
		{"AllergyIntolerance.patient", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/p1"}}`, []string{"p1"}},
		{"AllergyIntolerance.recorder and asserter", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/p1"},"recorder":{"reference":"Patient/p2"},"asserter":{"reference":"RelatedPerson/r1"}}`, []string{"p1", "p2"}},
		{"Encounter.subject", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}`, []string{"p1"}},
		{"Procedure.performer.actor", `{"resourceType":"Procedure","status":"completed","subject":{"reference":"Group/g1"},"performer":[{"actor":{"reference":"Patient/p1"}}]}`, []string{"p1"}},
		{"Appointment.participant.actor", `{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted","actor":{"reference":"Practitioner/d1"}},{"status":"accepted","actor":{"reference":"Patient/p1"}}]}`, []string{"p1"}},
		{"Practitioner is in no compartment", `{"resourceType":"Practitioner","id":"d1"}`, nil},
		{"contained Patient does not count", `{"resourceType":"Condition","contained":[{"resourceType":"Patient","id":"x"}],"subject":{"reference":"#x"}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := mustParse(t, []byte(tc.json))
			if got := rs[0].PatientRefs; !slices.Equal(got, tc.want) {
				t.Errorf("PatientRefs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompartmentThroughBundle(t *testing.T) {
	const pu = "urn:uuid:00000000-0000-4000-8000-0000000000a1"
	const qu = "urn:uuid:00000000-0000-4000-8000-0000000000a2"
	in := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"` + pu + `","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}},
		{"fullUrl":"` + qu + `","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
		{"resource":{"resourceType":"Condition","subject":{"reference":"` + pu + `"}},"request":{"method":"POST","url":"Condition"}},
		{"resource":{"resourceType":"Condition","subject":{"reference":"` + qu + `"}},"request":{"method":"POST","url":"Condition"}},
		{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000a3","resource":{"resourceType":"Group","type":"person","actual":true},"request":{"method":"POST","url":"Group"}},
		{"resource":{"resourceType":"Condition","subject":{"reference":"urn:uuid:00000000-0000-4000-8000-0000000000a3"}},"request":{"method":"POST","url":"Condition"}}
	]}`
	rs := mustParse(t, []byte(in))
	want := [][]string{{"p1"}, {qu}, {"p1"}, {qu}, nil, nil}
	for i, r := range rs {
		if !slices.Equal(r.PatientRefs, want[i]) {
			t.Errorf("entry %d (%s): PatientRefs = %v, want %v", i, r.ResourceType, r.PatientRefs, want[i])
		}
	}
}

func TestAssignPatient(t *testing.T) {
	var own []Resource
	for _, f := range []string{"patient.json", "observation.json", "condition.json", "medicationrequest.json", "allergyintolerance.json", "encounter.json"} {
		own = append(own, mustParse(t, readFixture(t, f))...)
	}
	if err := AssignPatient(own, "pat-1"); err != nil {
		t.Fatalf("own records refused: %v", err)
	}
	if err := AssignPatient(own[1:], "pat-1"); err != nil {
		t.Fatalf("records without the Patient resource refused: %v", err)
	}
	other := mustParse(t, []byte(`{"resourceType":"Observation","id":"o9","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-9"}}`))
	for _, tc := range []struct {
		name      string
		resources []Resource
		patient   string
		msg       string
	}{
		{"another patient's observation", append(slices.Clone(own), other...), "pat-1", "Observation/o9: not in the compartment of Patient/pat-1 (belongs to Patient/pat-9)"},
		{"all of them for another patient", own, "pat-9", "Patient/pat-1: /id: is another patient (want Patient/pat-9)"},
		{"a practitioner", mustParse(t, []byte(`{"resourceType":"Practitioner","id":"d1"}`)), "pat-1", "Practitioner/d1: not in the compartment of Patient/pat-1 (refers to no patient)"},
		{"a bundle mixing patients", mustParse(t, readFixture(t, "bundle-transaction.json")), "pat-1", "entry 0 (Patient/pat-2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := AssignPatient(tc.resources, tc.patient)
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want *Error", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
		})
	}
	if err := AssignPatient(own, ""); err == nil {
		t.Error("empty patient id accepted")
	}
}

func ExampleAssignPatient() {
	v, err := NewValidator()
	if err != nil {
		panic(err)
	}
	rs, err := v.Parse([]byte(`{"resourceType":"Observation","id":"o1","status":"final",
		"code":{"text":"weight"},"subject":{"reference":"Patient/p2"}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(rs[0].PatientRefs)
	fmt.Println(AssignPatient(rs, "p1"))
	// Output:
	// [p2]
	// fhir: Observation/o1: not in the compartment of Patient/p1 (belongs to Patient/p2)
}
