package fhir

import (
	"fmt"
	"strings"
	"testing"
)

// bundle100 builds a synthetic transaction Bundle of one Patient and 99
// clinical resources referring to it and to each other by urn:uuid.
func bundle100() []byte {
	urn := func(i int) string { return fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i) }
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"transaction","entry":[`)
	fmt.Fprintf(&b, `{"fullUrl":%q,"resource":{"resourceType":"Patient","id":"bench-pat","name":[{"family":"Benchmark","given":["Syn"]}],"gender":"unknown","birthDate":"1970-01-01"},"request":{"method":"PUT","url":"Patient/bench-pat"}}`, urn(0))
	for i := 1; i < 100; i++ {
		b.WriteString(",")
		subj := fmt.Sprintf(`{"reference":%q}`, urn(0))
		var res string
		switch i % 4 {
		case 0:
			res = fmt.Sprintf(`{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":%s,"period":{"start":"2024-01-%02dT09:00:00Z"}}`, subj, i%28+1)
		case 1:
			res = fmt.Sprintf(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":%s,"encounter":{"reference":%q},"effectiveDateTime":"2024-01-%02dT09:10:00Z","valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}`, subj, urn(i-1+4*((i-1)%4/4)), i%28+1, 60+i%40)
		case 2:
			res = fmt.Sprintf(`{"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003","display":"Hypertensive disorder"}]},"subject":%s,"evidence":[{"detail":[{"reference":%q}]}],"recordedDate":"2024-01-%02d"}`, subj, urn(i-1), i%28+1)
		case 3:
			res = fmt.Sprintf(`{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"314076","display":"lisinopril 10 MG Oral Tablet"}]},"subject":%s,"reasonReference":[{"reference":%q}],"authoredOn":"2024-01-%02d","dosageInstruction":[{"text":"once daily"}]}`, subj, urn(i-1), i%28+1)
		}
		fmt.Fprintf(&b, `{"fullUrl":%q,"resource":%s,"request":{"method":"POST","url":"%s"}}`, urn(i), res, strings.SplitN(res, `"`, 5)[3])
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func TestBundle100(t *testing.T) {
	rs := mustParse(t, bundle100())
	if len(rs) != 100 {
		t.Fatalf("%d resources", len(rs))
	}
	if err := AssignPatient(rs, "bench-pat"); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkParseBundle100(b *testing.B) {
	v := validator(b)
	data := bundle100()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1e3, "µs/resource")
}

func BenchmarkNewValidator(b *testing.B) {
	for b.Loop() {
		if _, err := NewValidator(); err != nil {
			b.Fatal(err)
		}
	}
}
