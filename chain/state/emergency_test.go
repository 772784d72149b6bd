package state

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// coSignedEmergencyTx is k's break-glass access to patient, co-signed by cosigner for the given
// window and ordinal.
func (r *recNet) coSignedEmergencyTx(k, patient, cosigner chain.PrivKey, window uint64, ordinal uint32) *chain.Tx {
	b := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: addr(patient), Purpose: "ETREAT", ReasonCode: chain.ReasonLifeThreatening}
	b.CoSign(cosigner, testChain, k.Public(), window, ordinal)
	return chain.NewTx(k, testChain, chain.TxEmergencyAccess, r.nonce(k), b)
}

func TestEmergencyGovernance(t *testing.T) {
	r := newRecNet(t)
	authority := r.auth[0]
	// Keep the whole test inside one window.
	r.time = int64(Window(r.time, EmergencyWindowMs)+1) * EmergencyWindowMs
	window := Window(r.header().Time, EmergencyWindowMs)

	first := r.emergencyTx(r.doc, r.alice, "ETREAT", chain.ReasonUnableToConsent)
	r.apply(first)
	c := r.consent(first.Hash())
	require.True(t, c.Emergency)
	require.False(t, c.CoSigned)
	require.False(t, c.AfterRevocation)
	require.Equal(t, chain.ReasonUnableToConsent, c.ReasonCode)
	w, n, err := EmergencyAccessesIn(r.view, addr(r.doc), r.time)
	require.NoError(t, err)
	require.Equal(t, window, w)
	require.Equal(t, uint32(1), n)

	// The second in the window needs a co-signature by a current authority other than the
	// provider, for this window and ordinal 2.
	r.fails(r.emergencyTx(r.doc, r.bob, "ETREAT", chain.ReasonLifeThreatening), "another needs an authority's co-signature")
	r.fails(r.coSignedEmergencyTx(r.doc, r.bob, r.doc, window, 2), "co-signed its own emergency access")
	r.fails(r.coSignedEmergencyTx(r.doc, r.bob, r.nurse, window, 2), "co-signer "+r.nurse.Public().Short()+" is not a current authority")
	r.fails(r.coSignedEmergencyTx(r.doc, r.bob, r.lic, window, 2), "is not a current authority")
	r.fails(r.coSignedEmergencyTx(r.doc, r.bob, authority, window, 1), "co-signature") // the first's ordinal: replay
	r.fails(r.coSignedEmergencyTx(r.doc, r.bob, authority, window-1, 2), "co-signature")
	// A co-signature made for another provider (or copied from the ledger) does not transfer.
	stolen := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: addr(r.bob), Purpose: "ETREAT", ReasonCode: chain.ReasonLifeThreatening}
	stolen.CoSign(authority, testChain, r.nurse.Public(), window, 2)
	r.fails(chain.NewTx(r.doc, testChain, chain.TxEmergencyAccess, r.nonce(r.doc), stolen), "co-signature")
	second := r.coSignedEmergencyTx(r.doc, r.bob, authority, window, 2)
	r.apply(second)
	require.True(t, r.consent(second.Hash()).CoSigned)
	// The same co-signed body again is good for nothing: ordinal 2 is used.
	r.fails(chain.NewTx(r.doc, testChain, chain.TxEmergencyAccess, r.nonce(r.doc), decodeEmergency(t, second)), "co-signature")
	// Another provider's first of the window needs no co-signature.
	r.apply(r.emergencyTx(r.nurse, r.alice, "ETREAT", chain.ReasonPublicHealth))

	// The hard cap holds even with co-signatures.
	for ord := uint32(3); ord <= MaxEmergencyPerWindow; ord++ {
		r.apply(r.coSignedEmergencyTx(r.doc, r.alice, authority, window, ord))
	}
	r.fails(r.coSignedEmergencyTx(r.doc, r.alice, authority, window, MaxEmergencyPerWindow+1), "10 emergency accesses in this 24 h window, the cap")

	// A new window starts over: one without co-signature.
	r.time = int64(window+1) * EmergencyWindowMs
	r.apply(r.emergencyTx(r.doc, r.alice, "ETREAT", chain.ReasonUnableToConsent))
	r.fails(r.emergencyTx(r.doc, r.alice, "ETREAT", chain.ReasonUnableToConsent), "co-signature")
}

func decodeEmergency(t *testing.T, tx *chain.Tx) *chain.EmergencyAccess {
	t.Helper()
	body, err := chain.DecodePayload(tx.Kind, tx.Payload)
	require.NoError(t, err)
	return body.(*chain.EmergencyAccess)
}

func TestEmergencyAfterRevocation(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.holder, rec))
	g := r.grantTx(r.alice, r.doc, allScope, "TREAT", 0)
	r.apply(g, r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0))
	// Nurse still holds its consent: not flagged (the near miss).
	em := r.emergencyTx(r.nurse, r.alice, "ETREAT", chain.ReasonUnableToConsent)
	r.apply(em)
	require.False(t, r.consent(em.Hash()).AfterRevocation)
	// Doc was shut out by the patient and broke the glass: flagged.
	r.apply(r.revokeTx(r.alice, g.Hash()))
	em2 := r.emergencyTx(r.doc, r.alice, "ETREAT", chain.ReasonLifeThreatening)
	r.apply(em2)
	c := r.consent(em2.Hash())
	require.True(t, c.AfterRevocation)
	require.Equal(t, chain.ReasonLifeThreatening, c.ReasonCode)
	// Another patient's revocation does not count.
	bobGrant := r.grantTx(r.bob, r.holder, allScope, "TREAT", 0)
	r.apply(bobGrant)
	r.apply(r.revokeTx(r.bob, bobGrant.Hash()))
	em3 := r.emergencyTx(r.holder, r.alice, "ETREAT", chain.ReasonLifeThreatening)
	r.apply(em3)
	require.False(t, r.consent(em3.Hash()).AfterRevocation)

	// The flags show with the read in the patient's access view.
	q := accessReq(r.doc, rec.ID, "ETREAT", true, 1)
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}))
	a, err := AccessOf(r.view, q.ID())
	require.NoError(t, err)
	require.NotNil(t, a.Emergency)
	require.Equal(t, em2.Hash(), a.Emergency.ID)
	require.True(t, a.Emergency.AfterRevocation)
	require.Equal(t, em2.Hash(), a.Entry.Consent)
	// An ordinary read carries none.
	q2 := accessReq(r.nurse, rec.ID, "TREAT", false, 2)
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: q2, Outcome: chain.AccessServed}))
	a, err = AccessOf(r.view, q2.ID())
	require.NoError(t, err)
	require.Nil(t, a.Emergency)
}
