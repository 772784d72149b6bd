package state

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// A payer named by a claim reads the claim's sealed record; nobody else gains access through it.
func TestPayerReadsClaimRecord(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	c.apply(c.visitTx(c.doc, c.alice, "unclaimed"))
	cl, _ := c.file(c.spec("a", day0, "99213"))
	now := c.time + 1000
	rec, err := Record(c.view, cl.Record)
	require.NoError(t, err)

	// The named payer, for payment or no stated purpose.
	_, err = CheckAccess(c.view, now, addr(c.payer), rec, PurposePayment, false)
	require.NoError(t, err)
	_, err = CheckAccess(c.view, now, addr(c.payer), rec, "", false)
	require.NoError(t, err)
	// Not for another purpose, not as an emergency.
	_, err = CheckAccess(c.view, now, addr(c.payer), rec, "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, PurposePayment)
	_, err = CheckAccess(c.view, now, addr(c.payer), rec, PurposePayment, true)
	require.ErrorIs(t, err, ErrNoConsent)
	// Another payer, on the same record.
	_, err = CheckAccess(c.view, now, addr(c.payer2), rec, PurposePayment, false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "no claim names payer")
	// The named payer, on a record no claim names: the encounter, a sealed claim never filed.
	for _, id := range []string{"enc/a", "claim/unclaimed"} {
		other, err := Record(c.view, rid(id))
		require.NoError(t, err)
		_, err = CheckAccess(c.view, now, addr(c.payer), other, PurposePayment, false)
		require.ErrorIs(t, err, ErrNoConsent, id)
	}

	// The key goes to the payer (ClaimPayers), not to anyone else.
	payers, err := ClaimPayers(c.view, now, rec)
	require.NoError(t, err)
	require.Equal(t, []any{addr(c.payer)}, []any{payers[0]})
	require.Len(t, payers, 1)
	enc, err := Record(c.view, rid("enc/a"))
	require.NoError(t, err)
	payers, err = ClaimPayers(c.view, now, enc)
	require.NoError(t, err)
	require.Empty(t, payers)

	// The payer's claim log lists the claim; the index names it under the record.
	n, err := PayerLogLength(c.view, addr(c.payer))
	require.NoError(t, err)
	require.Equal(t, uint64(1), n)
	log, err := PayerLog(c.view, addr(c.payer), 0, 10)
	require.NoError(t, err)
	require.Equal(t, cl.ID, log[0].Claim)
	require.Equal(t, c.height, log[0].Height)
	n, err = PayerLogLength(c.view, addr(c.payer2))
	require.NoError(t, err)
	require.Zero(t, n)
	ids, err := ClaimsOfRecord(c.view, rec.Root)
	require.NoError(t, err)
	require.Len(t, ids, 1)
}

// A sealed claim record is named by at most MaxClaimsPerRecord claims (a resubmission names the
// same record); a lapsed or revoked payer reads nothing and gets no key.
func TestClaimRecordIndexBounds(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	c.apply(c.visitTx(c.doc, c.alice, "shared"))
	for i := range MaxClaimsPerRecord {
		s := c.spec(fmt.Sprintf("r%d", i), day0, codeSet(i)...)
		s.encounter, s.record = "shared", "shared"
		c.apply(c.claimTx(s))
	}
	s := c.spec("one-too-many", day0, codeSet(MaxClaimsPerRecord)...)
	s.encounter, s.record = "shared", "shared"
	c.refused(c.claimTx(s), ErrClaimRecord, "already named by 8 claims")

	rec, err := Record(c.view, rid("claim/shared"))
	require.NoError(t, err)
	_, err = CheckAccess(c.view, c.time+1000, addr(c.payer), rec, PurposePayment, false)
	require.NoError(t, err)
	c.apply(c.net.revokeTx(c.board, addr(c.payer), chain.RolePayer))
	_, err = CheckAccess(c.view, c.time+1000, addr(c.payer), rec, PurposePayment, false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "not active")
	payers, err := ClaimPayers(c.view, c.time+1000, rec)
	require.NoError(t, err)
	require.Empty(t, payers)
}
