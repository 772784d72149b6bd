// Package synth makes up synthetic patients and FHIR R4 records for demos and tests.
//
// Everything is derived from a *math/rand/v2.Rand, so one seed always gives the same people and
// the same Bundles byte for byte. The people are invented and look it: syllable names, birth
// dates between 1930 and 2005, street addresses in "Synthville" with postal codes "SYN-…" and
// fictional 555-01xx phone numbers, and every Patient carries a meta tag saying it is synthetic.
// No real person, code list or record is behind any of it.
//
// [Patient] makes a [Person]; [Person.Bundle] turns them into a FHIR R4 collection Bundle with
// the Patient resource and any number of resources in the patient compartment (Observations
// with LOINC codes, Conditions with SNOMED CT, AllergyIntolerances, MedicationRequests with
// RxNorm, Encounters), every one referring to Patient/<id>. [Person.Marker] lists strings that
// identify the person and so must never appear in clear outside encrypted blobs: the PHI scan
// of the process-network tests searches every file of a network for them.
package synth

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Person is one synthetic patient.
type Person struct {
	// Index is the i given to Patient.
	Index int
	// ID is the Patient resource's FHIR logical id ("synth-<index>-<hex>").
	ID string
	// Given and Family are the made-up names.
	Given, Family string
	// BirthDate is YYYY-MM-DD, between 1930 and 2005.
	BirthDate string
	// Gender is a FHIR administrative gender: male, female, other or unknown.
	Gender string
	// Line is the street address; City, PostalCode and Country complete it.
	Line, City, PostalCode, Country string
	// Phone is a fictional number (555-01xx).
	Phone string
	// MRN is a made-up medical record number.
	MRN string
	// Note is a unique free-text note that appears in one of the person's records.
	Note string
}

// SyntheticTagSystem is the coding system of the meta tag that marks every resource as made up.
const SyntheticTagSystem = "https://medledger.example/fhir/CodeSystem/synthetic"

var (
	onsets  = []string{"Zor", "Vel", "Quen", "Thal", "Myr", "Kess", "Oru", "Brix", "Dral", "Fenn", "Yss", "Corv", "Lum", "Navr", "Pell", "Ximm"}
	middles = []string{"a", "e", "i", "o", "u", "ae", "io", "ua", "y", "ei"}
	codas   = []string{"rith", "vane", "mont", "quill", "dorn", "sella", "wyn", "thorpe", "zar", "lisk", "brook", "menth", "ravel", "ossa"}
	// Some given-name endings are not ASCII, so that scans also meet non-ASCII PHI.
	givenEnds = []string{"ina", "ëlle", "ario", "ine", "ovan", "ette", "ázio", "ric", "anne", "oé"}
	links     = []string{"nd", "lv", "rs", "th", "mb", "zz", "ll", "sk"}
	streets   = []string{"Synthetic Way", "Placeholder Row", "Fictive Lane", "Mockingbird Synthetic Court", "Testbed Avenue", "Simulacrum Road"}
	notes     = []string{"reports intermittent headaches after long shifts", "asks about travel vaccinations", "prefers morning appointments",
		"mentions a family history of migraine", "would like a written care plan", "reports improved sleep since last visit"}
)

func pick[T any](rnd *rand.Rand, xs []T) T { return xs[rnd.IntN(len(xs))] }

func name(rnd *rand.Rand, end []string) string {
	return pick(rnd, onsets) + pick(rnd, middles) + pick(rnd, end)
}

// Patient makes up person i. The same rnd state and i always give the same person.
func Patient(rnd *rand.Rand, i int) *Person {
	p := &Person{Index: i}
	p.ID = fmt.Sprintf("synth-%d-%016x", i, rnd.Uint64())
	p.Given = pick(rnd, onsets) + pick(rnd, middles) + pick(rnd, links) + pick(rnd, givenEnds)
	p.Family = name(rnd, codas) + "-" + name(rnd, codas)
	born := time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rnd.IntN(75*365))
	p.BirthDate = born.Format(time.DateOnly)
	p.Gender = pick(rnd, []string{"female", "male", "female", "male", "other", "unknown"})
	p.Line = fmt.Sprintf("%d %s %s", 100+rnd.IntN(9000), name(rnd, codas), pick(rnd, streets))
	p.City = "Synthville"
	p.PostalCode = fmt.Sprintf("SYN-%05d", rnd.IntN(100000))
	p.Country = "ZZ"
	p.Phone = fmt.Sprintf("+1-555-01%02d-%04d", rnd.IntN(100), rnd.IntN(10000))
	p.MRN = fmt.Sprintf("SYNMRN%010d", rnd.Int64N(1e10))
	p.Note = fmt.Sprintf("Synthetic note %016x: patient %s.", rnd.Uint64(), pick(rnd, notes))
	return p
}

// Marker returns strings that identify the person and must never appear in clear outside
// encrypted blobs: the names (each, and together), the birth date, the street address, the phone
// number, the medical record number, the Patient resource's id and the unique note text. Each is
// long and specific enough not to turn up in unrelated data by chance.
func (p *Person) Marker() []string {
	return []string{
		p.Family,
		p.Given,
		p.Given + " " + p.Family,
		p.BirthDate,
		p.Line,
		p.Phone,
		p.MRN,
		p.ID,
		p.Note,
	}
}

// Bundle returns a FHIR R4 Bundle of type collection holding the person's Patient resource and
// nRecords resources in their compartment, of mixed types, each referring to Patient/<ID>. The
// same rnd state gives the same bytes.
func (p *Person) Bundle(rnd *rand.Rand, nRecords int) []byte {
	b := &bundler{rnd: rnd, p: p, base: time.Date(2023, 1, 2, 8, 0, 0, 0, time.UTC).AddDate(0, 0, rnd.IntN(300))}
	b.add("Patient", p.ID, p.patientResource())
	// The note goes on a resource that has one (not an Encounter, every 6th from the first).
	noteAt := -1
	if nRecords > 1 {
		if noteAt = 1 + rnd.IntN(nRecords-1); noteAt%6 == 0 {
			noteAt--
		}
	}
	var encounter string
	for k := range nRecords {
		var typ string
		var res map[string]any
		id := fmt.Sprintf("%s-r%d", p.ID, k)
		switch {
		case k%6 == 0:
			typ, res = "Encounter", b.encounter()
			encounter = "Encounter/" + id
		case k%6 == 1 || k%6 == 4:
			typ, res = "Observation", b.vital(encounter)
		case k%6 == 2:
			typ, res = "Observation", b.lab(encounter)
		case k%6 == 3:
			typ, res = b.problemOrAllergy()
		default:
			typ, res = "MedicationRequest", b.medication(encounter)
		}
		if k == noteAt {
			res["note"] = []any{map[string]any{"text": p.Note}}
		}
		b.add(typ, id, res)
	}
	bundle := map[string]any{
		"resourceType": "Bundle",
		"id":           fmt.Sprintf("synth-bundle-%016x", rnd.Uint64()),
		"meta":         syntheticMeta(),
		"type":         "collection",
		"timestamp":    b.base.Add(time.Duration(nRecords+1) * time.Hour).Format(time.RFC3339),
		"entry":        b.entries,
	}
	out, err := json.Marshal(bundle)
	if err != nil {
		panic(fmt.Sprintf("synth: encoding a bundle: %v", err)) // maps of strings and numbers always encode
	}
	return out
}

func syntheticMeta() map[string]any {
	return map[string]any{"tag": []any{map[string]any{"system": SyntheticTagSystem, "code": "synthetic", "display": "Synthetic test data"}}}
}

func (p *Person) patientResource() map[string]any {
	return map[string]any{
		"identifier": []any{map[string]any{"system": "https://medledger.example/fhir/synthetic-mrn", "value": p.MRN}},
		"active":     true,
		"name":       []any{map[string]any{"use": "official", "family": p.Family, "given": []any{p.Given}}},
		"telecom":    []any{map[string]any{"system": "phone", "value": p.Phone, "use": "home"}},
		"gender":     p.Gender,
		"birthDate":  p.BirthDate,
		"address": []any{map[string]any{
			"use": "home", "line": []any{p.Line}, "city": p.City, "postalCode": p.PostalCode, "country": p.Country,
		}},
	}
}

type bundler struct {
	rnd     *rand.Rand
	p       *Person
	base    time.Time
	n       int
	entries []any
}

// add appends a resource as an entry with a urn:uuid fullUrl made from rnd.
func (b *bundler) add(typ, id string, res map[string]any) {
	res["resourceType"] = typ
	res["id"] = id
	res["meta"] = syntheticMeta()
	var u [16]byte
	for i := range u {
		u[i] = byte(b.rnd.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	full := fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	b.entries = append(b.entries, map[string]any{"fullUrl": full, "resource": res})
}

// when is a point in time after the bundle's base, later for each call.
func (b *bundler) when() string {
	b.n++
	return b.base.Add(time.Duration(b.n)*36*time.Hour + time.Duration(b.rnd.IntN(600))*time.Minute).Format(time.RFC3339)
}

func (b *bundler) subject() map[string]any { return map[string]any{"reference": "Patient/" + b.p.ID} }

func coding(system, code, display string) map[string]any {
	return map[string]any{"system": system, "code": code, "display": display}
}

func concept(text string, c ...map[string]any) map[string]any {
	cs := make([]any, len(c))
	for i := range c {
		cs[i] = c[i]
	}
	m := map[string]any{"coding": cs}
	if text != "" {
		m["text"] = text
	}
	return m
}

func quantity(v float64, unit, code string) map[string]any {
	return map[string]any{"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": code}
}

// round keeps d decimals.
func round(v float64, d int) float64 {
	f := math.Pow10(d)
	return math.Round(v*f) / f
}

const (
	loinc  = "http://loinc.org"
	snomed = "http://snomed.info/sct"
	rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
)

func category(code, display string) []any {
	return []any{concept("", coding("http://terminology.hl7.org/CodeSystem/observation-category", code, display))}
}

func (b *bundler) observation(cat, catDisplay string, code map[string]any, encounter string) map[string]any {
	o := map[string]any{
		"status":            "final",
		"category":          category(cat, catDisplay),
		"code":              code,
		"subject":           b.subject(),
		"effectiveDateTime": b.when(),
	}
	if encounter != "" {
		o["encounter"] = map[string]any{"reference": encounter}
	}
	return o
}

func (b *bundler) vital(encounter string) map[string]any {
	r := b.rnd
	switch r.IntN(5) {
	case 0:
		o := b.observation("vital-signs", "Vital Signs", concept("Blood pressure", coding(loinc, "85354-9", "Blood pressure panel with all children optional")), encounter)
		o["component"] = []any{
			map[string]any{"code": concept("", coding(loinc, "8480-6", "Systolic blood pressure")), "valueQuantity": quantity(float64(100+r.IntN(60)), "mmHg", "mm[Hg]")},
			map[string]any{"code": concept("", coding(loinc, "8462-4", "Diastolic blood pressure")), "valueQuantity": quantity(float64(60+r.IntN(35)), "mmHg", "mm[Hg]")},
		}
		return o
	case 1:
		o := b.observation("vital-signs", "Vital Signs", concept("Heart rate", coding(loinc, "8867-4", "Heart rate")), encounter)
		o["valueQuantity"] = quantity(float64(50+r.IntN(60)), "beats/minute", "/min")
		return o
	case 2:
		o := b.observation("vital-signs", "Vital Signs", concept("Body weight", coding(loinc, "29463-7", "Body weight")), encounter)
		o["valueQuantity"] = quantity(round(45+r.Float64()*70, 1), "kg", "kg")
		return o
	case 3:
		o := b.observation("vital-signs", "Vital Signs", concept("Body temperature", coding(loinc, "8310-5", "Body temperature")), encounter)
		o["valueQuantity"] = quantity(round(36+r.Float64()*2.5, 1), "Cel", "Cel")
		return o
	default:
		o := b.observation("vital-signs", "Vital Signs", concept("Respiratory rate", coding(loinc, "9279-1", "Respiratory rate")), encounter)
		o["valueQuantity"] = quantity(float64(12+r.IntN(10)), "breaths/minute", "/min")
		return o
	}
}

func (b *bundler) lab(encounter string) map[string]any {
	type test struct {
		code, display, text, unit, ucum string
		lo, hi                          float64
		dec                             int
	}
	tests := []test{
		{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "HbA1c", "%", "%", 4.5, 9.5, 1},
		{"2345-7", "Glucose [Mass/volume] in Serum or Plasma", "Glucose", "mg/dL", "mg/dL", 70, 180, 0},
		{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "Total cholesterol", "mg/dL", "mg/dL", 140, 280, 0},
		{"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "Creatinine", "mg/dL", "mg/dL", 0.5, 1.6, 2},
		{"718-7", "Hemoglobin [Mass/volume] in Blood", "Hemoglobin", "g/dL", "g/dL", 10.5, 17.5, 1},
	}
	t := pick(b.rnd, tests)
	o := b.observation("laboratory", "Laboratory", concept(t.text, coding(loinc, t.code, t.display)), encounter)
	o["valueQuantity"] = quantity(round(t.lo+b.rnd.Float64()*(t.hi-t.lo), t.dec), t.unit, t.ucum)
	return o
}

func (b *bundler) problemOrAllergy() (string, map[string]any) {
	r := b.rnd
	if r.IntN(2) == 0 {
		conds := [][2]string{
			{"38341003", "Hypertensive disorder, systemic arterial"},
			{"44054006", "Diabetes mellitus type 2"},
			{"195967001", "Asthma"},
			{"55822004", "Hyperlipidemia"},
			{"35489007", "Depressive disorder"},
			{"40055000", "Chronic sinusitis"},
		}
		c := pick(r, conds)
		return "Condition", map[string]any{
			"clinicalStatus":     concept("", coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")),
			"verificationStatus": concept("", coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed")),
			"category":           []any{concept("", coding("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item"))},
			"code":               concept(c[1], coding(snomed, c[0], c[1])),
			"subject":            b.subject(),
			"onsetDateTime":      b.when(),
			"recordedDate":       b.when(),
		}
	}
	allergies := [][3]string{
		{"91936005", "Allergy to penicillin", "medication"},
		{"300913006", "Shellfish allergy", "food"},
		{"91935009", "Allergy to peanuts", "food"},
		{"294505008", "Allergy to amoxicillin", "medication"},
		{"232350006", "House dust mite allergy", "environment"},
	}
	a := pick(r, allergies)
	return "AllergyIntolerance", map[string]any{
		"clinicalStatus":     concept("", coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active")),
		"verificationStatus": concept("", coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed")),
		"type":               "allergy",
		"category":           []any{a[2]},
		"criticality":        pick(r, []string{"low", "high", "unable-to-assess"}),
		"code":               concept(a[1], coding(snomed, a[0], a[1])),
		"patient":            b.subject(),
		"recordedDate":       b.when(),
	}
}

func (b *bundler) medication(encounter string) map[string]any {
	meds := [][2]string{
		{"197361", "amlodipine 5 MG Oral Tablet"},
		{"314076", "lisinopril 10 MG Oral Tablet"},
		{"860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"},
		{"617314", "atorvastatin 10 MG Oral Tablet"},
		{"745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"},
		{"310965", "ibuprofen 200 MG Oral Tablet"},
	}
	m := pick(b.rnd, meds)
	req := map[string]any{
		"status":                    "active",
		"intent":                    "order",
		"medicationCodeableConcept": concept(m[1], coding(rxnorm, m[0], m[1])),
		"subject":                   b.subject(),
		"authoredOn":                b.when(),
		"dosageInstruction": []any{map[string]any{
			"text": fmt.Sprintf("%d tablet(s) by mouth %s", 1+b.rnd.IntN(2), pick(b.rnd, []string{"once daily", "twice daily", "every evening"})),
		}},
	}
	if encounter != "" {
		req["encounter"] = map[string]any{"reference": encounter}
	}
	return req
}

func (b *bundler) encounter() map[string]any {
	start := b.when()
	t, _ := time.Parse(time.RFC3339, start)
	reasons := [][2]string{
		{"185349003", "Encounter for check up"},
		{"390906007", "Follow-up encounter"},
		{"185345009", "Encounter for symptom"},
	}
	r := pick(b.rnd, reasons)
	return map[string]any{
		"status":  "finished",
		"class":   coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"),
		"type":    []any{concept(r[1], coding(snomed, r[0], r[1]))},
		"subject": b.subject(),
		"period": map[string]any{
			"start": start,
			"end":   t.Add(time.Duration(15+b.rnd.IntN(45)) * time.Minute).Format(time.RFC3339),
		},
	}
}
