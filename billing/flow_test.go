package billing

import (
	"slices"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// The whole path between payer and provider: the payer publishes a schedule for the provider
// (its plan covers 99213), the provider opens the billing key from the schedule and files a
// claim, and what chain/state compares (fingerprints against fees, exclusions and the key
// commitment) lines up; the payer then verifies the claim against the sealed FHIR Claim.
func TestScheduleClaimFlow(t *testing.T) {
	providerKey, err := envelope.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	const chainID = "medledger-test"
	payer, provider := addr(5), addr(2)
	plan := testPlan(9, "99213")

	key := testKey(t)
	fees, err := ParseFeeCSV(strings.NewReader("code,allowed\n99213,60.00\nG0438,0.25\n"))
	if err != nil {
		t.Fatal(err)
	}
	sched, err := BuildSchedule(key, ScheduleInput{ChainID: chainID, Payer: payer, Provider: provider,
		ProviderEncryptionKey: providerKey.Public().Bytes(), Currency: "USD", CoinsurancePct: 20,
		Fees: fees, Plans: []chain.Plan{plan}})
	if err != nil {
		t.Fatal(err)
	}

	// The provider's side.
	pk, err := OpenScheduleKey(sched, chainID, payer, providerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseClaim([]byte(professional))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := BuildClaimSubmit(pk, c, testIDs())
	if err != nil {
		t.Fatal(err)
	}

	// What the ledger can see without the key.
	if cs.KeyCommit != sched.KeyCommit {
		t.Fatal("claim and schedule commit to different keys")
	}
	for i, l := range cs.Lines {
		if _, ok := slices.BinarySearchFunc(sched.Fees, l.Code, func(e chain.FeeEntry, h chain.Hash) int { return slices.Compare(e.Code[:], h[:]) }); !ok {
			t.Errorf("line %d has no fee entry", i)
		}
	}
	if !slices.Contains(sched.Excluded[0].Codes, cs.Lines[0].Code) || slices.Contains(sched.Excluded[0].Codes, cs.Lines[1].Code) {
		t.Fatal("the membership-covered line is not recognisable by the ledger")
	}

	// The payer's side.
	if err := VerifyClaim(key, []byte(professional), cs); err != nil {
		t.Fatal(err)
	}
	if got, _ := FeeFor(key, sched, c.Lines[1].Code); got != 25 {
		t.Fatalf("allowed for G0438: %d", got)
	}
}

func TestParseClaimFactor(t *testing.T) {
	doc := strings.Replace(professional, `"unitPrice": {"value": 0.1, "currency": "USD"},`,
		`"unitPrice": {"value": 0.2, "currency": "USD"}, "factor": 0.5,`, 1)
	c, err := ParseClaim([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Lines[1].BilledCents != 30 || c.Lines[1].AmountFrom != FromUnitPrice {
		t.Fatalf("unitPrice × quantity × factor: %+v", c.Lines[1])
	}
}
