package synth

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/medledger/medledger/node/fhir"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func TestBundleIsValidFHIR(t *testing.T) {
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	rnd := seeded(1)
	types := map[string]int{}
	for i := range 20 {
		p := Patient(rnd, i)
		for _, n := range []int{0, 1, 2, 6, 12, 31} {
			data := p.Bundle(rnd, n)
			res, err := v.Parse(data)
			if err != nil {
				t.Fatalf("patient %d, %d records: %v\n%s", i, n, err, data)
			}
			if len(res) != n+1 {
				t.Fatalf("patient %d: %d resources, want %d", i, len(res), n+1)
			}
			if res[0].ResourceType != "Patient" || res[0].ID != p.ID {
				t.Fatalf("first resource is %s, want Patient/%s", res[0].Name(), p.ID)
			}
			id, err := fhir.SinglePatient(res)
			if err != nil {
				t.Fatalf("patient %d, %d records: SinglePatient: %v", i, n, err)
			}
			if id != p.ID {
				t.Fatalf("SinglePatient = %q, want %q", id, p.ID)
			}
			if err := fhir.AssignPatient(res, p.ID); err != nil {
				t.Fatalf("patient %d, %d records: AssignPatient: %v", i, n, err)
			}
			for _, r := range res[1:] {
				types[r.ResourceType]++
				if !bytes.Contains(r.JSON, []byte(`"Patient/`+p.ID+`"`)) {
					t.Fatalf("%s does not refer to Patient/%s: %s", r.Name(), p.ID, r.JSON)
				}
			}
			if n > 1 && !bytes.Contains(data, []byte(p.Note)) {
				t.Fatalf("patient %d, %d records: the note is in no record", i, n)
			}
		}
	}
	for _, typ := range []string{"Observation", "Condition", "AllergyIntolerance", "MedicationRequest", "Encounter"} {
		if types[typ] == 0 {
			t.Errorf("no %s among the generated records (%v)", typ, types)
		}
	}
}

func TestCodes(t *testing.T) {
	rnd := seeded(2)
	p := Patient(rnd, 0)
	data := string(p.Bundle(rnd, 60))
	for _, system := range []string{"http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm"} {
		if !strings.Contains(data, `"system":"`+system+`"`) {
			t.Errorf("no code from %s", system)
		}
	}
	if !strings.Contains(data, `"type":"collection"`) {
		t.Error("not a collection Bundle")
	}
}

func TestDeterministic(t *testing.T) {
	a, b := seeded(7), seeded(7)
	for i := range 5 {
		pa, pb := Patient(a, i), Patient(b, i)
		if *pa != *pb {
			t.Fatalf("person %d differs: %+v vs %+v", i, pa, pb)
		}
		if !bytes.Equal(pa.Bundle(a, 12), pb.Bundle(b, 12)) {
			t.Fatalf("bundle %d differs", i)
		}
	}
	c := seeded(8)
	if Patient(c, 0).ID == Patient(seeded(7), 0).ID {
		t.Fatal("different seeds gave the same patient id")
	}
}

func TestMarkers(t *testing.T) {
	rnd := seeded(3)
	seen := map[string]int{}
	date := regexp.MustCompile(`^(19[3-9]\d|200[0-5])-\d\d-\d\d$`)
	for i := range 50 {
		p := Patient(rnd, i)
		if !date.MatchString(p.BirthDate) {
			t.Errorf("birth date %q", p.BirthDate)
		}
		m := p.Marker()
		for _, want := range []string{p.Given, p.Family, p.BirthDate, p.Line, p.ID, p.Note} {
			found := false
			for _, s := range m {
				found = found || s == want
			}
			if !found {
				t.Errorf("person %d: %q is not a marker", i, want)
			}
		}
		for _, s := range m {
			if len(s) < 8 {
				t.Errorf("person %d: marker %q is short enough to turn up by chance", i, s)
			}
		}
		for _, s := range []string{p.ID, p.Note, p.Line, p.MRN} {
			if j, dup := seen[s]; dup {
				t.Errorf("persons %d and %d share %q", j, i, s)
			}
			seen[s] = i
		}
		// Every marker but the combined name is in the bundle as written.
		data := p.Bundle(rnd, 12)
		var doc map[string]any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		for _, s := range m {
			if s == p.Given+" "+p.Family {
				continue
			}
			if !bytes.Contains(data, []byte(s)) {
				t.Errorf("person %d: marker %q is not in their bundle", i, s)
			}
		}
	}
}
