package fhir

import (
	"path/filepath"
	"testing"
)

// realFiles are the real-world documents in testdata/real (SOURCES.md says where each is from).
var realFiles = []struct {
	file    string
	typ     string
	entries int
}{
	{"synthea-bulk-patient.ndjson", "ndjson", 238},
	{"ips-bundle-no-info-required-sections.json", "document", 8},
	{"ips-bundle-minimal.json", "document", 8},
	{"medplum-chart-demo-patient.json", "batch", 26},
	{"hapi-observation-conditional-update.json", "batch", 1},
	{"synthea-claims-transaction.json", "transaction", 211},
	{"r4-example-account.json", "", 1},
	{"r4-example-chargeitem.json", "", 1},
	{"r4-example-explanationofbenefit.json", "", 1},
	{"r4-example-paymentreconciliation.json", "", 1},
}

func TestParseRealDocuments(t *testing.T) {
	for _, tc := range realFiles {
		t.Run(tc.file, func(t *testing.T) {
			doc, err := validator(t).ParseDocument(readFixture(t, filepath.Join("real", tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if doc.Type != tc.typ || len(doc.Entries) != tc.entries {
				t.Fatalf("type %q with %d entries, want %q with %d", doc.Type, len(doc.Entries), tc.typ, tc.entries)
			}
		})
	}
}
