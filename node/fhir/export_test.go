package fhir

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestExportRoundTrip(t *testing.T) {
	var single []Resource
	for _, f := range []string{"patient.json", "observation.json", "condition.json", "medicationrequest.json", "allergyintolerance.json", "encounter.json"} {
		single = append(single, mustParse(t, readFixture(t, f))...)
	}
	for _, tc := range []struct {
		name      string
		resources []Resource
	}{
		{"single resources", single},
		{"transaction bundle (urn:uuid fullUrls, entries without id)", mustParse(t, readFixture(t, "bundle-transaction.json"))},
		{"collection bundle (absolute fullUrls)", mustParse(t, readFixture(t, "bundle-collection.json"))},
		{"empty", nil},
	} {
		for _, typ := range []string{"collection", "searchset"} {
			t.Run(tc.name+"/"+typ, func(t *testing.T) {
				out, err := ExportBundle(tc.resources, typ)
				if err != nil {
					t.Fatal(err)
				}
				back := mustParse(t, out)
				if len(back) != len(tc.resources) {
					t.Fatalf("%d resources back, want %d", len(back), len(tc.resources))
				}
				for i, r := range back {
					in := tc.resources[i]
					if !bytes.Equal(r.JSON, in.JSON) || r.ResourceType != in.ResourceType || r.ID != in.ID {
						t.Errorf("entry %d changed:\n%s\n%s", i, in.JSON, r.JSON)
					}
					if !slices.Equal(r.PatientRefs, in.PatientRefs) {
						t.Errorf("entry %d: PatientRefs %v, were %v", i, r.PatientRefs, in.PatientRefs)
					}
					if in.FullURL != "" && r.FullURL != in.FullURL {
						t.Errorf("entry %d: fullUrl %q, was %q", i, r.FullURL, in.FullURL)
					}
					if in.FullURL == "" && r.FullURL != ExportBase+in.Name() {
						t.Errorf("entry %d: fullUrl %q", i, r.FullURL)
					}
				}
				again, err := ExportBundle(back, typ)
				if err != nil || !bytes.Equal(again, out) {
					t.Errorf("second export differs (%v)", err)
				}
				if typ == "searchset" && !bytes.Contains(out, []byte(fmt.Sprintf(`"total":%d`, len(back)))) {
					t.Errorf("searchset without total: %.200s", out)
				}
			})
		}
	}
}

func TestExportRefuses(t *testing.T) {
	p := mustParse(t, readFixture(t, "patient.json"))
	for _, tc := range []struct {
		name      string
		resources []Resource
		typ, msg  string
	}{
		{"transaction type", p, "transaction", "bundle type"},
		{"no id nor fullUrl", mustParse(t, []byte(`{"resourceType":"Patient"}`)), "collection", "neither id nor fullUrl"},
		{"same resource twice", append(slices.Clone(p), p...), "collection", "both"},
		{"invalid JSON", []Resource{{ResourceType: "Patient", ID: "x", JSON: []byte(`{`)}}, "collection", "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ExportBundle(tc.resources, tc.typ)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want an error containing %q", err, tc.msg)
			}
		})
	}
}
