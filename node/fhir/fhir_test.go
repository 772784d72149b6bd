package fhir

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	sharedOnce      sync.Once
	sharedValidator *Validator
	sharedErr       error
)

// validator returns one Validator for the whole test binary: compiling the
// schema takes about a second.
func validator(tb testing.TB) *Validator {
	tb.Helper()
	sharedOnce.Do(func() { sharedValidator, sharedErr = NewValidator() })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return sharedValidator
}

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustParse(tb testing.TB, data []byte) []Resource {
	tb.Helper()
	rs, err := validator(tb).Parse(data)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return rs
}

func TestParseSingleResources(t *testing.T) {
	for _, tc := range []struct {
		file, typ, id string
		patients      []string
	}{
		{"patient.json", "Patient", "pat-1", []string{"pat-1"}},
		{"observation.json", "Observation", "obs-bp-1", []string{"pat-1"}},
		{"condition.json", "Condition", "cond-1", []string{"pat-1"}},
		{"medicationrequest.json", "MedicationRequest", "medreq-1", []string{"pat-1"}},
		{"allergyintolerance.json", "AllergyIntolerance", "allergy-1", []string{"pat-1"}},
		{"encounter.json", "Encounter", "enc-1", []string{"pat-1"}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			rs := mustParse(t, readFixture(t, tc.file))
			if len(rs) != 1 {
				t.Fatalf("got %d resources, want 1", len(rs))
			}
			r := rs[0]
			if r.ResourceType != tc.typ || r.ID != tc.id || r.Index != -1 || r.FullURL != "" {
				t.Errorf("got %s/%s index %d fullUrl %q, want %s/%s index -1", r.ResourceType, r.ID, r.Index, r.FullURL, tc.typ, tc.id)
			}
			if !slices.Equal(r.PatientRefs, tc.patients) {
				t.Errorf("PatientRefs = %v, want %v", r.PatientRefs, tc.patients)
			}
			if !json.Valid(r.JSON) {
				t.Errorf("invalid JSON: %s", r.JSON)
			}
		})
	}
}

func TestParseTransactionBundle(t *testing.T) {
	rs := mustParse(t, readFixture(t, "bundle-transaction.json"))
	wantTypes := []string{"Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance"}
	if len(rs) != len(wantTypes) {
		t.Fatalf("got %d resources, want %d", len(rs), len(wantTypes))
	}
	for i, r := range rs {
		if r.ResourceType != wantTypes[i] || r.Index != i {
			t.Errorf("entry %d: got %s index %d, want %s", i, r.ResourceType, r.Index, wantTypes[i])
		}
		if !strings.HasPrefix(r.FullURL, "urn:uuid:") {
			t.Errorf("entry %d: FullURL %q", i, r.FullURL)
		}
		// Every entry reaches Patient pat-2 through a urn:uuid reference.
		if !slices.Equal(r.PatientRefs, []string{"pat-2"}) {
			t.Errorf("entry %d (%s): PatientRefs = %v, want [pat-2]", i, r.ResourceType, r.PatientRefs)
		}
	}
	if err := AssignPatient(rs, "pat-2"); err != nil {
		t.Errorf("AssignPatient: %v", err)
	}
}

func TestParseCollectionBundle(t *testing.T) {
	rs := mustParse(t, readFixture(t, "bundle-collection.json"))
	if len(rs) != 3 {
		t.Fatalf("got %d resources, want 3", len(rs))
	}
	for _, r := range rs {
		if !slices.Equal(r.PatientRefs, []string{"pat-3"}) {
			t.Errorf("%s: PatientRefs = %v, want [pat-3]", r.Name(), r.PatientRefs)
		}
	}
}

// TestParseInvalid: each bad input is refused with an *Error naming the
// resource and the field.
func TestParseInvalid(t *testing.T) {
	const uuidP = "urn:uuid:00000000-0000-4000-8000-000000000001"
	const uuidO = "urn:uuid:00000000-0000-4000-8000-000000000002"
	bundle := func(entries ...string) string {
		return `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`
	}
	patientEntry := `{"fullUrl":"` + uuidP + `","resource":{"resourceType":"Patient","id":"p1"}}`
	for _, tc := range []struct {
		name, in string
		resource string // as named by Error.Resource
		path     string // "" = no field
		msg      string
	}{
		{"bad date", `{"resourceType":"Patient","id":"p1","birthDate":"1980-02-30T10:00"}`,
			"Patient/p1", "/birthDate", "not a valid FHIR date"},
		{"bad month", `{"resourceType":"Patient","id":"p1","birthDate":"1980-13-01"}`,
			"Patient/p1", "/birthDate", "not a valid FHIR date"},
		{"wrong code type", `{"resourceType":"Observation","id":"o1","status":7,"code":{"text":"x"}}`,
			"Observation/o1", "/status", ""},
		{"code not in value set", `{"resourceType":"Patient","id":"p1","gender":"F"}`,
			"Patient/p1", "/gender", "must be one of"},
		{"coding code not a string", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":44054006}]}}`,
			"Condition/c1", "/code/coding/0/code", "wrong type: got number, want string"},
		{"missing required", `{"resourceType":"Observation","id":"o1","status":"final"}`,
			"Observation/o1", "/code", "required field is missing"},
		{"missing required in bundle", bundle(patientEntry, `{"resource":{"resourceType":"MedicationRequest","id":"m1","intent":"order","status":"active","medicationCodeableConcept":{"text":"x"}}}`),
			"entry 1 (MedicationRequest/m1)", "/subject", "required field is missing"},
		{"unknown resourceType", `{"resourceType":"Patientt","id":"p1"}`,
			"Patientt/p1", "/resourceType", `unknown resource type "Patientt"`},
		{"unknown resourceType in bundle", bundle(patientEntry, `{"resource":{"resourceType":"Diagnosis","id":"d1"}}`),
			"entry 1 (Diagnosis/d1)", "/resourceType", `unknown resource type "Diagnosis"`},
		{"missing resourceType", `{"id":"p1","gender":"male"}`,
			"resource p1", "/resourceType", "required field is missing"},
		{"dangling urn:uuid", bundle(patientEntry, `{"fullUrl":"`+uuidO+`","resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:00000000-0000-4000-8000-00000000dead"}}}`),
			"entry 1 (Observation/o1)", "/subject/reference", "does not match the fullUrl of any entry"},
		{"urn:uuid outside a bundle", `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"` + uuidP + `"}}`,
			"Observation/o1", "/subject/reference", "only resolve inside a Bundle"},
		{"malformed reference", `{"resourceType":"Condition","id":"c1","subject":{"reference":"patient 12"}}`,
			"Condition/c1", "/subject/reference", "not of the form Type/id"},
		{"reference to unknown type", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patients/12"}}`,
			"Condition/c1", "/subject/reference", "unknown resource type"},
		{"reference type mismatch", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Group/12","type":"Patient"}}`,
			"Condition/c1", "/subject/reference", "type says Patient"},
		{"missing contained", `{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"medicationReference":{"reference":"#med"}}`,
			"MedicationRequest/m1", "/medicationReference/reference", "no contained resource"},
		{"reference in extension", `{"resourceType":"Patient","id":"p1","extension":[{"url":"http://example.org/x","valueReference":{"reference":"bad ref"}}]}`,
			"Patient/p1", "/extension/0/valueReference/reference", "not of the form"},
		{"unknown property", `{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"diagnosisText":"flu"}`,
			"Encounter/e1", "/diagnosisText", "unknown field"},
		{"unknown nested property", `{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"Patient/p1","name":"x"}}`,
			"AllergyIntolerance/a1", "/patient/name", "unknown field"},
		{"bad contained resource", `{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"medicationReference":{"reference":"#med"},"contained":[{"resourceType":"Medication","id":"med","code":{"coding":"x"}}]}`,
			"MedicationRequest/m1", "/contained/0/code/coding", "wrong type"},
		{"duplicate id in bundle", bundle(patientEntry, `{"resource":{"resourceType":"Patient","id":"p1"}}`),
			"entry 1 (Patient/p1)", "/id", "also entry 0"},
		{"reference to a shared fullUrl", bundle(patientEntry, `{"fullUrl":"`+uuidP+`","resource":{"resourceType":"Patient","id":"p2"}}`,
			`{"resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"`+uuidP+`"}}}`),
			"entry 2 (Observation/o1)", "/subject/reference", "entries 0 and 1 share this fullUrl"},
		{"fullUrl disagrees with id", bundle(`{"fullUrl":"https://x.example/fhir/Patient/p9","resource":{"resourceType":"Patient","id":"p1"}}`),
			"entry 0 (Patient/p1)", "", "does not end in /Patient/p1"},
		{"entry without resource", bundle(patientEntry, `{"request":{"method":"POST","url":"Patient"}}`),
			"entry 1 (resource)", "", "entry has no resource"},
		{"DELETE entry", bundle(patientEntry, `{"request":{"method":"DELETE","url":"Patient/p7"}}`),
			"entry 1 (resource)", "/request", "DELETE Patient/p7 is not applied"},
		{"GET entry", bundle(patientEntry, `{"request":{"method":"GET","url":"Observation?patient=p1"}}`),
			"entry 1 (resource)", "/request", "GET Observation?patient=p1 reads from a server"},
		{"PUT to another id", bundle(`{"request":{"method":"PUT","url":"Patient/p2"},"resource":{"resourceType":"Patient","id":"p1"}}`),
			"entry 0 (Patient/p1)", "/id", "request is PUT Patient/p2"},
		{"response bundle", `{"resourceType":"Bundle","type":"transaction-response","entry":[]}`,
			"Bundle (no id)", "/type", "answers a request"},
		{"nested bundle", bundle(`{"resource":{"resourceType":"Bundle","type":"collection"}}`),
			"entry 0 (Bundle (no id))", "/resourceType", "not supported"},
		{"bundle field", `{"resourceType":"Bundle","type":"stack","entry":[]}`,
			"Bundle (no id)", "/type", "must be one of"},
		{"bad id", `{"resourceType":"Patient","id":"p 1"}`,
			"Patient/p 1", "/id", "not a valid FHIR id"},
		{"trailing garbage", `{"resourceType":"Patient","id":"p1"} {"resourceType":"Patient","id":"p2"}`,
			"input", "", "data after the JSON value"},
		{"trailing comma", `{"resourceType":"Patient","id":"p1"},`,
			"input", "", "invalid JSON"},
		{"duplicate key", `{"resourceType":"Patient","id":"p1","gender":"male","gender":"female"}`,
			"input", "", `duplicate key "gender"`},
		{"null member", `{"resourceType":"Condition","id":"c1","subject":null}`,
			"input", "", "null is not allowed"},
		{"null entry", `{"resourceType":"Bundle","type":"collection","entry":[null]}`,
			"entry 0 (resource)", "", "not a JSON object"},
		{"not an object", `[{"resourceType":"Patient"}]`,
			"input", "", "not a JSON object"},
		{"invalid utf-8", "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"\xff\"}",
			"input", "", "UTF-8"},
		{"empty", ``, "input", "", "invalid JSON"},
		{"too deep", strings.Repeat(`{"a":`, MaxDepth+1) + `1` + strings.Repeat(`}`, MaxDepth+1),
			"input", "", "nested deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := validator(t).Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", rs)
			}
			if rs != nil {
				t.Errorf("returned %d resources with the error", len(rs))
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if got := fe.Resource(); got != tc.resource {
				t.Errorf("names %q, want %q (%v)", got, tc.resource, err)
			}
			found := false
			for _, p := range fe.Problems {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem at %q containing %q in %v", tc.path, tc.msg, err)
			}
			if !strings.HasPrefix(err.Error(), "fhir: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			t.Log(err)
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := make([]byte, MaxInputSize+1)
	_, err := validator(t).Parse(big)
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("got %v, want a size error", err)
	}
}

func TestCanonicalJSON(t *testing.T) {
	a := mustParse(t, []byte(`{ "resourceType" : "Observation", "status":"final", "id":"o1",
		"code":{"text":"<b>&"}, "valueQuantity":{"value":84.50,"unit":"mmHg"} }`))
	b := mustParse(t, []byte(`{"valueQuantity":{"unit":"mmHg","value":84.50},"id":"o1","code":{"text":"<b>&"},"status":"final","resourceType":"Observation"}`))
	if string(a[0].JSON) != string(b[0].JSON) {
		t.Fatalf("same content, different bytes:\n%s\n%s", a[0].JSON, b[0].JSON)
	}
	want := `{"code":{"text":"<b>&"},"id":"o1","resourceType":"Observation","status":"final","valueQuantity":{"unit":"mmHg","value":84.50}}`
	if string(a[0].JSON) != want {
		t.Fatalf("got  %s\nwant %s", a[0].JSON, want)
	}
}

func TestParseConcurrent(t *testing.T) {
	v := validator(t)
	data := readFixture(t, "bundle-transaction.json")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Parse(data); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
