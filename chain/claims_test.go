package chain_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

func testClaim() *chain.ClaimSubmit {
	b := &chain.ClaimSubmit{ID: testHash("claim"), Patient: chain.Address{1}, Payer: chain.Address{2}, Encounter: testHash("enc"),
		Record: testHash("rec"), ServiceDay: 19_700, KeyCommit: testHash("K"),
		Lines: []chain.ClaimLine{{Code: testHash("b"), BilledCents: 100}, {Code: testHash("a"), BilledCents: 200}}}
	b.DupPrint = chain.ClaimDupPrint(b.Patient, b.ServiceDay, b.Lines)
	return b
}

// TestClaimDupPrint: the print depends on the patient, the day and the set of codes, not on the
// lines' order, repetition or amounts; a claim must carry its own.
func TestClaimDupPrint(t *testing.T) {
	b := testClaim()
	require.NoError(t, b.Validate())
	p := b.DupPrint
	same := []chain.ClaimLine{{Code: testHash("a"), BilledCents: 5}, {Code: testHash("b"), BilledCents: 7}, {Code: testHash("a"), BilledCents: 9}}
	require.Equal(t, p, chain.ClaimDupPrint(b.Patient, b.ServiceDay, same))
	require.NotEqual(t, p, chain.ClaimDupPrint(chain.Address{3}, b.ServiceDay, b.Lines))
	require.NotEqual(t, p, chain.ClaimDupPrint(b.Patient, b.ServiceDay+1, b.Lines))
	require.NotEqual(t, p, chain.ClaimDupPrint(b.Patient, b.ServiceDay, b.Lines[:1]))

	b.DupPrint = testHash("chosen by the provider")
	require.ErrorContains(t, b.Validate(), "ClaimDupPrint")
	b = testClaim()
	b.ServiceDay++ // the print no longer matches
	require.ErrorContains(t, b.Validate(), "ClaimDupPrint")

	// Round trip through the transaction payload.
	tx := chain.NewTx(testKey(t, 1), chainA, chain.TxClaimSubmit, 1, testClaim())
	body, err := chain.DecodePayload(tx.Kind, tx.Payload)
	require.NoError(t, err)
	require.Equal(t, testClaim(), body)
}

func TestCoverageAndDecisionForm(t *testing.T) {
	end := &chain.CoverageSet{ID: testHash("cov"), Patient: chain.Address{1}, End: true}
	require.NoError(t, end.Validate())
	end.FromDay = 3
	require.ErrorContains(t, end.Validate(), "names no days")
	set := &chain.CoverageSet{ID: testHash("cov"), Patient: chain.Address{1}, FromDay: 10, ToDay: 9}
	require.ErrorContains(t, set.Validate(), "ends before it starts")
	set.ToDay = 10
	require.NoError(t, set.Validate())

	d := &chain.ClaimDecide{Claim: testHash("claim"), Lines: []chain.LineDecision{{PaidCents: 1, PatientCents: chain.MaxClaimCents + 1}}}
	require.ErrorContains(t, d.Validate(), "out of range")
	d.Lines[0].PatientCents = chain.MaxClaimCents
	require.NoError(t, d.Validate())
}
