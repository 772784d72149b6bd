package main

import (
	"testing"

	"github.com/medledger/medledger/node/fhir"
)

// TestBenchBundlesValid checks that the records phase's synthetic Bundles pass the node's FHIR
// validator and single out one patient, as an import requires.
func TestBenchBundlesValid(t *testing.T) {
	v, err := fhir.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"observations", observationsBundle("bench-00007", 100), 100},
		{"short", observationsBundle("bench-00008", 3), 3},
		{"document", documentBundle("bench-00009", 64<<10), 2},
	} {
		rs, err := v.Parse(tc.data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(rs) != tc.want {
			t.Fatalf("%s: %d resources, want %d", tc.name, len(rs), tc.want)
		}
		id, err := fhir.SinglePatient(rs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := fhir.AssignPatient(rs, id); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "document" {
			if n := len(rs[1].JSON); n < 60<<10 || n > 64<<10 {
				t.Fatalf("document resource is %d bytes, want about 64 KiB", n)
			}
		}
	}
}
