package fhir

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Every entry of the sample Bundles, stored on its own after Standalone, parses on its own and
// keeps its patient.
func TestStandaloneEntriesParseAlone(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bundle-collection.json", "bundle-transaction.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		alone, err := Standalone(res, func(i int) string { return fmt.Sprintf("gen-%d", i) })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, r := range alone {
			if r.ID == "" {
				t.Fatalf("%s entry %d has no id", name, i)
			}
			got, err := v.Parse(r.JSON)
			if err != nil {
				t.Fatalf("%s entry %d (%s) does not parse alone: %v\n%s", name, i, r.Name(), err, r.JSON)
			}
			if got[0].ID != r.ID || got[0].ResourceType != r.ResourceType {
				t.Fatalf("%s entry %d: parsed as %s, want %s", name, i, got[0].Name(), r.Name())
			}
			if strings.Contains(string(r.JSON), "urn:uuid:") {
				t.Fatalf("%s entry %d still refers by urn:uuid: %s", name, i, r.JSON)
			}
		}
	}
}

func TestStandaloneRefusesBadGeneratedID(t *testing.T) {
	res := []Resource{{ResourceType: "Observation", JSON: []byte(`{"resourceType":"Observation"}`)}}
	if _, err := Standalone(res, func(int) string { return "not an id!" }); err == nil {
		t.Fatal("a generated id that is not a FHIR id was accepted")
	}
}
