package fhir

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestReferencesAsSent: conditional and absolute references are accepted and kept; a
// conditional reference on identifier that matches one entry refers to it; Standalone rewrites
// only urn: references; an export gives a resource the absolute URL others name it by.
func TestReferencesAsSent(t *testing.T) {
	const doc = `{"resourceType":"Bundle","type":"transaction","entry":[
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"7"}]},"request":{"method":"PUT","url":"Patient/p1"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000002","resource":{"resourceType":"Practitioner","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"9999962229"}]},"request":{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=http://hl7.org/fhir/sid/us-npi|9999962229"}},
	{"resource":{"resourceType":"Organization","id":"org1"}},
	{"resource":{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},
		"subject":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"},
		"participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999962229"}}],
		"serviceProvider":{"reference":"http://example.org/fhir/Organization/org1"},
		"location":[{"location":{"reference":"Location?identifier=https://github.com/synthetichealth/synthea|nowhere"}}],
		"basedOn":[{"reference":"urn:oid:1.2.3.4"}]}},
	{"resource":{"resourceType":"Device","id":"d1","patient":{"reference":"Patient?identifier=urn:mrn|7"}}}]}`
	v := validator(t)
	d, err := v.ParseDocument([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	enc := d.Entries[3].Resource
	if !slices.Equal(enc.Refs, []int{0, 1}) {
		t.Errorf("Encounter refers to entries %v, want [0 1] (the Patient by urn:uuid, the Practitioner by identifier)", enc.Refs)
	}
	if !slices.Equal(enc.PatientRefs, []string{"p1"}) {
		t.Errorf("Encounter PatientRefs %v", enc.PatientRefs)
	}
	dev := d.Entries[4].Resource
	if len(dev.PatientRefs) != 0 || !slices.Equal(dev.MentionedPatients, []string{"p1"}) || !slices.Equal(dev.Refs, []int{0}) {
		t.Errorf("Device: PatientRefs %v MentionedPatients %v Refs %v", dev.PatientRefs, dev.MentionedPatients, dev.Refs)
	}
	if !slices.Equal(d.Entries[0].Resource.Identifiers, []string{"urn:mrn|7"}) {
		t.Errorf("identifiers %v", d.Entries[0].Resource.Identifiers)
	}
	var rs []Resource
	for _, e := range d.Entries {
		rs = append(rs, *e.Resource)
	}
	st, err := Standalone(rs, func(i int) string { return "gen" + string(rune('a'+i)) })
	if err != nil {
		t.Fatal(err)
	}
	js := string(st[3].JSON)
	for _, want := range []string{`"reference":"Patient/p1"`, `"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999962229"`,
		`"reference":"http://example.org/fhir/Organization/org1"`, `"reference":"urn:oid:1.2.3.4"`} {
		if !strings.Contains(js, want) {
			t.Errorf("stored Encounter lacks %s: %s", want, js)
		}
	}
	out, err := ExportBundle(st, "collection")
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			FullURL string `json:"fullUrl"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatal(err)
	}
	if got := b.Entry[2].FullURL; got != "http://example.org/fhir/Organization/org1" {
		t.Errorf("Organization's fullUrl %q, want the absolute URL the Encounter names it by", got)
	}
	back, err := v.ParseDocument(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Entries[3].Resource.Refs; !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("in the export the Encounter resolves %v, want [0 1 2]", got)
	}
}

// TestNDJSON: newline-delimited resources are a document; a bad line is named.
func TestNDJSON(t *testing.T) {
	v := validator(t)
	d, err := v.ParseDocument([]byte("{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n\n{\"resourceType\":\"Condition\",\"id\":\"c1\",\"subject\":{\"reference\":\"Patient/p1\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != "ndjson" || len(d.Entries) != 2 || !slices.Equal(d.Entries[1].Resource.Refs, []int{0}) {
		t.Fatalf("%+v", d)
	}
	_, err = v.ParseDocument([]byte("{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n{\"resourceType\":\"Condition\",\"id\":\"c1\",\"subject\":{\"reference\":\"Patient/p1\"},\"onsetDateTime\":\"yesterday\"}\n"))
	var ee *EntryErrors
	if !errors.As(err, &ee) || len(ee.Errors) != 1 || ee.Errors[0].Index != 1 || !strings.Contains(err.Error(), "/onsetDateTime") {
		t.Fatalf("error %v", err)
	}
}

// TestEntryErrorsBounded: a document of many bad entries reports a bounded list.
func TestEntryErrorsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"batch","entry":[`)
	for i := range 500 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"request":{"method":"DELETE","url":"Patient/x"}}`)
	}
	b.WriteString(`]}`)
	doc, err := validator(t).ParseDocument([]byte(b.String()))
	var ee *EntryErrors
	if !errors.As(err, &ee) || len(ee.Errors) != maxEntryErrors || ee.More != 500-maxEntryErrors {
		t.Fatalf("error %v", err)
	}
	if len(doc.Entries) != 500 || doc.Entries[499].Err == nil {
		t.Fatal("every entry keeps its own error")
	}
	if len(err.Error()) > 2000 {
		t.Errorf("error message of %d bytes", len(err.Error()))
	}
}
