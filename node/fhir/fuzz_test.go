package fhir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics, refuses with an *Error only, and whatever
// it accepts exports and parses back.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"resourceType":"Bundle","type":"collection","entry":[{}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":[null]}`,
		`{"resourceType":"Bundle","type":"collection","entry":{"resource":{}}}`,
		`{"resourceType":"Patient","contained":[null]}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Patient","contained":[{}]}]}`,
		`{"resourceType":"Condition","subject":{"reference":"#"}}`,
		`{"resourceType":"Condition","subject":[{"reference":"Patient/1"}]}`,
		`{"resourceType":"Patient","id":1}`,
		"{\"resourceType\":\"Patient\",\"id\":\"p\"}\n{\"resourceType\":\"Condition\",\"subject\":{\"reference\":\"Patient?identifier=a|b\"}}",
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`,
		`{"resourceType":"Observation","status":"final","code":{},"subject":{"reference":"http://x.example/fhir/Patient/1/_history/2"}}`,
	} {
		f.Add([]byte(s))
	}
	v := validator(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := v.Parse(data)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T, want *Error: %v", err, err)
			}
			if rs != nil {
				t.Fatal("resources returned with an error")
			}
			return
		}
		urls := map[string]bool{}
		for _, r := range rs {
			if r.ID == "" && r.FullURL == "" {
				return // nothing to name it by in an export
			}
			if r.FullURL != "" && urls[r.FullURL] {
				return // entries sharing a fullUrl (accepted while nothing refers to it) cannot be exported as they are
			}
			urls[r.FullURL] = true
		}
		out, err := ExportBundle(rs, "collection")
		if err != nil {
			if len(rs) > 1 || rs[0].Index >= 0 {
				t.Fatalf("export: %v", err)
			}
			return
		}
		if _, err := v.Parse(out); err != nil {
			// A single resource with contained or Type/id references
			// always parses back; references to bundle siblings too.
			t.Fatalf("export does not parse back: %v\n%s", err, out)
		}
	})
}
