package billing

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

func testAgreementFile(t *testing.T, subscriber chain.PrivKey) *AgreementFile {
	t.Helper()
	plan := chain.Plan{ID: chain.Sum256([]byte("plan")), Label: "Adult monthly", Currency: "USD", Period: chain.PeriodMonthly,
		MaxMembers: 1, Tiers: []chain.PlanTier{{Label: "18-64", PriceCents: 9900}}, Covered: []string{"99213"}, GraceDays: 10}
	contract := []byte(`{"resourceType":"Contract","status":"offered"}`)
	ag := &chain.MembershipAgreement{ID: chain.Sum256([]byte("ag")), Plan: plan.ID, Subscriber: subscriber.Public().Address(),
		Members: []chain.MemberTier{{Patient: subscriber.Public().Address()}}, StartMs: 1_700_000_000_000, Contract: ContractHash(contract)}
	return &AgreementFile{Kind: AgreementEnrol, ChainID: "medledger-test", Plan: plan, PriceCents: 9900, Agreement: ag,
		Subscriber: ag.Subscriber, Contract: contract}
}

func TestAgreementFileRoundTrip(t *testing.T) {
	key, err := chain.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := testAgreementFile(t, key)
	if _, err := f.Signature(); err == nil {
		t.Fatal("an unsigned file has a signature")
	}
	if err := f.Sign(key); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseAgreementFile(data)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := g.Signature()
	if err != nil {
		t.Fatal(err)
	}
	// The signature is the ledger's: over AgreementBytes in DomainMembership.
	if err := chain.Verify(key.Public(), chain.DomainMembership, "medledger-test", g.Agreement.AgreementBytes(), sig); err != nil {
		t.Fatal(err)
	}

	// What the practice might alter after the patient signed is caught.
	g.Agreement.StartMs++
	if _, err := g.Signature(); err == nil {
		t.Fatal("a changed start kept the signature")
	}
	// Re-indenting or re-escaping the Contract on the way keeps its hash; changing it does not.
	pretty := []byte("{\n  \"status\": \"offered\",\n  \"resourceType\": \"Contract\"\n}")
	if ContractHash(pretty) != ContractHash(f.Contract) {
		t.Fatal("formatting changed the Contract's hash")
	}
	h, _ := ParseAgreementFile(data)
	h.Contract = []byte(`{"resourceType":"Contract","status":"executed"}`)
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "Contract") {
		t.Fatalf("a swapped Contract: %v", err)
	}
	h, _ = ParseAgreementFile(data)
	h.Plan.Tiers[0].PriceCents = 100 // the file shows a cheaper plan: the ledger checks the published one
	h.Plan.ID = chain.Sum256([]byte("other"))
	if err := h.Check(); err == nil {
		t.Fatal("a file showing another plan passed")
	}
}
