package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/medledger/medledger/records"
)

func TestPrintOutcomes(t *testing.T) {
	entries := []records.EntryOutcome{
		{Index: 0, Resource: "Patient/p1", Outcome: records.OutcomeUnchanged, Record: "ab12", Version: 1},
		{Index: 1, Method: "DELETE", URL: "Observation/x", Outcome: records.OutcomeRefused, Message: "DELETE Observation/x is not applied"},
		{Index: 2, Resource: "Practitioner/d1", Outcome: records.OutcomeNotImported},
	}
	var all, refused bytes.Buffer
	printOutcomes(&all, entries, false)
	printOutcomes(&refused, entries, true)
	for _, want := range []string{"Patient/p1", "unchanged", "ab12", "DELETE Observation/x", "Practitioner/d1",
		"3 entries: 1 unchanged, 1 refused, 1 not-imported"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, all.String())
		}
	}
	if strings.Contains(refused.String(), "Patient/p1") || !strings.Contains(refused.String(), "is not applied") {
		t.Errorf("refused-only output:\n%s", refused.String())
	}
	var b *importBar // off a terminal: no bar, and every method is a no-op
	b.progress(records.ImportProgress{Phase: "anchored", Done: 1, Total: 2})
	b.finish()
	if r := b.reader([]byte("x")); r == nil {
		t.Fatal("no reader")
	}
}
