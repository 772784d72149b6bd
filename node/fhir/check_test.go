package fhir

import (
	"strings"
	"testing"
)

// TestCheck: answers a server writes (response Bundles, OperationOutcomes) validate; broken ones
// are refused with the place of the problem.
func TestCheck(t *testing.T) {
	v, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	good := []string{
		`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"x"}]}`,
		`{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created","location":"Patient/p/_history/1",
		  "outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}}}]}`,
		`{"resourceType":"Bundle","type":"searchset","total":1,"entry":[{"fullUrl":"http://x/fhir/Patient/p","resource":{"resourceType":"Patient","id":"p"},"search":{"mode":"match"}}]}`,
	}
	for _, s := range good {
		if err := v.Check([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := map[string]string{
		`{"resourceType":"Bundle","type":"transaction-answer","entry":[{"response":{"status":"200"}}]}`:                                           "type",
		`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","gender":"sometimes"}}]}`:                     "gender",
		`{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200","outcome":{"resourceType":"OperationOutcome"}}}]}`: "issue",
		`{"resourceType":"OperationOutcome","issue":[{"severity":"bad","code":"not-found"}]}`:                                                     "severity",
		`{"resourceType":"Spaceship"}`: "Spaceship",
		`[1]`:                          "not a JSON object",
	}
	for s, want := range bad {
		err := v.Check([]byte(s))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error naming %q", s, err, want)
		}
	}
}

// FuzzCheck: Check never panics, whatever shape the Bundle's entries, responses and outcomes
// take (the face's test relies on it to judge every answer).
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"resourceType":"Bundle","entry":[null,1,"x",{}]}`,
		`{"resourceType":"Bundle","type":"batch-response","entry":[{"response":null}]}`,
		`{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200","outcome":[]}}]}`,
		`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":"Patient"}]}`,
		`{"resourceType":"Bundle","entry":{"resource":{}}}`,
		`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`,
	} {
		f.Add([]byte(s))
	}
	v, err := Shared()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = v.Check(data)
	})
}
