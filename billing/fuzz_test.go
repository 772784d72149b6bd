package billing

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/medledger/medledger/node/fhir"
)

// Bad input gets an error, never a panic (DESIGN.md, invariant 6). go test runs the seeds;
// go test -fuzz explores further.

func FuzzParseClaim(f *testing.F) {
	f.Add([]byte(professional))
	for _, name := range []string{"synthea-claim-institutional.json", "fhir-stu3-claim-example-professional.json"} {
		if b, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"resourceType":"Claim","item":[{"net":{"value":1e24}}]}`))
	// Compile the schema once, before the workers start (it takes seconds when instrumented).
	if _, err := fhir.Shared(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseClaim(data)
		if err != nil {
			return
		}
		if len(c.Lines) == 0 {
			t.Fatal("a claim without lines was accepted")
		}
		for _, l := range c.Lines {
			if l.BilledCents == 0 || CheckCode(l.Code) != nil || l.Day != c.Day {
				t.Fatalf("bad line accepted: %+v", l)
			}
		}
		key := bytes.Repeat([]byte{7}, KeyLen)
		cs, err := BuildClaimSubmit(key, c, testIDs())
		if err != nil {
			t.Fatalf("parsed claim does not build: %v", err)
		}
		if err := VerifyClaim(key, data, cs); err != nil {
			t.Fatalf("a claim does not verify against itself: %v", err)
		}
	})
}

func FuzzParseFeeCSV(f *testing.F) {
	f.Add("code,allowed\n99213,75.00\n36415,12.5\n")
	f.Add("99213,\"75.00\n")
	f.Add("a,b,c\n\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		fees, err := ParseFeeCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, fee := range fees {
			if CheckCode(fee.Code) != nil {
				t.Fatalf("bad code accepted: %q", fee.Code)
			}
		}
	})
}

func FuzzDecimalCents(f *testing.F) {
	for _, s := range []string{"75.00", "1e2", "-1", "0.001", "1e-30", "99999999.99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecimalCents(s)
		if err != nil {
			return
		}
		if back, err := DecimalCents(FormatCents(c)); err != nil || back != c {
			t.Fatalf("%q → %d → %q → %d, %v", s, c, FormatCents(c), back, err)
		}
	})
}
