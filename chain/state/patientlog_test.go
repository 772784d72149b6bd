package state

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// TestPatientLog follows one patient through every kind of item the log keeps, beside another
// patient, and checks that the log names each item once, in order, with the block that added it,
// that items changed in place add nothing, and that refused transactions leave it alone.
func TestPatientLog(t *testing.T) {
	r := newRecNet(t)
	type want struct {
		kind LogKind
		id   chain.Hash
	}
	var alice, bob []want
	check := func() {
		t.Helper()
		for _, c := range []struct {
			who  chain.Address
			want []want
		}{{addr(r.alice), alice}, {addr(r.bob), bob}} {
			n, err := PatientLogLength(r.view, c.who)
			require.NoError(t, err)
			require.EqualValues(t, len(c.want), n)
			log, err := PatientLog(r.view, c.who, 0, 1000)
			require.NoError(t, err)
			require.Len(t, log, len(c.want))
			for i, e := range log {
				require.Equal(t, c.want[i].kind, e.Kind, "entry %d", i)
				require.Equal(t, c.want[i].id, e.ID, "entry %d", i)
				require.NotZero(t, e.Height)
				key, err := ItemKey(e.Kind, e.ID)
				require.NoError(t, err)
				item, err := r.view.Get(key)
				require.NoError(t, err)
				require.NotNil(t, item, "entry %d names %s %s, absent from the state", i, e.Kind, e.ID.Short())
				raw, err := r.view.Get(PatientLogEntryKey(c.who, uint64(i)))
				require.NoError(t, err)
				dec, err := DecodePatientLogEntry(raw)
				require.NoError(t, err)
				require.Equal(t, e, *dec)
			}
			raw, err := r.view.Get(PatientLogHeadKey(c.who))
			require.NoError(t, err)
			got, err := DecodePatientLogLength(raw)
			require.NoError(t, err)
			require.EqualValues(t, len(c.want), got)
		}
	}
	// Registration adds nothing: the member record is its own proof.
	check()

	rec := newAnchor("r", r.alice, "Observation")
	other := newAnchor("o", r.bob, "Condition")
	r.apply(r.anchorTx(r.doc, rec, other))
	alice, bob = append(alice, want{LogRecord, rec.ID}), append(bob, want{LogRecord, other.ID})
	check()
	// A record from another block has the later height.
	log, err := PatientLog(r.view, addr(r.alice), 0, 10)
	require.NoError(t, err)
	require.Equal(t, r.height, log[0].Height)

	amended := amendment("r2", rec, "Observation")
	grant := r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0)
	r.apply(r.anchorTx(r.doc, amended), grant)
	alice = append(alice, want{LogRecord, amended.ID}, want{LogConsent, grant.Hash()})
	check()

	// A revocation changes the consent in place: no entry.
	r.apply(r.revokeTx(r.alice, grant.Hash()))
	require.True(t, r.consent(grant.Hash()).Revoked)
	check()

	em := r.emergencyTx(r.doc, r.bob, "ETREAT", chain.EmergencyReason(1))
	r.apply(em)
	bob = append(bob, want{LogConsent, em.Hash()})
	check()

	// Access entries and receipts go to the record's patient, whoever reads.
	q := accessReq(r.nurse, amended.ID, "TREAT", false, 1)
	qb := accessReq(r.doc, other.ID, "ETREAT", true, 2)
	r.apply(
		r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessRefused, Reason: "no consent"},
			chain.AccessEntry{Request: qb, Outcome: chain.AccessServed}),
		r.receiptTx(r.doc, chain.AccessReceipt{Request: qb, CiphertextHash: other.CiphertextHash}))
	alice = append(alice, want{LogAccess, q.ID()})
	bob = append(bob, want{LogAccess, qb.ID()}, want{LogReceipt, qb.ID()})
	check()
	// A duplicate entry is skipped, and so not logged twice.
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: qb, Outcome: chain.AccessServed}))
	check()

	// Refused transactions leave the log as it was (fails checks the whole state is unchanged).
	r.fails(r.anchorTx(r.doc, amendment("r3", rec, "Observation")), "already superseded")
	check()

	// Erasure changes records in place.
	r.apply(r.eraseTx(r.alice, amended.ID))
	require.True(t, r.record(amended.ID).Erased)
	check()

	// Paging.
	page, err := PatientLog(r.view, addr(r.bob), 2, 2)
	require.NoError(t, err)
	require.Len(t, page, 2)
	require.Equal(t, qb.ID(), page[0].ID)
	require.Equal(t, LogReceipt, page[1].Kind)
	page, err = PatientLog(r.view, addr(r.bob), 9, 2)
	require.NoError(t, err)
	require.Empty(t, page)

	// Decoding what a node sent: garbage and unknown kinds are errors.
	_, err = DecodePatientLogEntry(nil)
	require.Error(t, err)
	_, err = DecodePatientLogEntry([]byte{0x01, 0x02})
	require.Error(t, err)
	_, err = DecodePatientLogEntry(chain.Encode(&PatientLogEntry{Version: RecordVersion, Kind: 9}))
	require.ErrorContains(t, err, "unknown patient-log kind")
	_, err = DecodePatientLogLength(chain.Encode(&patientLogHead{Version: RecordVersion + 1, Count: 3}))
	require.ErrorContains(t, err, "version")
	_, err = PatientLog(failView{}, addr(r.alice), 0, 1)
	require.ErrorContains(t, err, "disk on fire")
}

// TestPatientReadsOwnRecord: a holder may log a patient's read of their own record (the
// accessor is then the patient), never of another patient's, nor as an emergency.
func TestPatientReadsOwnRecord(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("own", r.alice, "Observation")
	other := newAnchor("bobs", r.bob, "Observation")
	r.apply(r.anchorTx(r.doc, rec, other))

	// The patient role is the patient's own and no one else's.
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReqAs(r.alice, "clinician", rec.ID, "PATRQT", false, 7), Outcome: chain.AccessServed}), "a patient's own read has role")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReqAs(r.doc, chain.AccessRolePatient, rec.ID, "TREAT", false, 8), Outcome: chain.AccessRefused, Reason: "no consent"}), "claims the \"patient\" role")
	own := accessReqAs(r.alice, chain.AccessRolePatient, rec.ID, "PATRQT", false, 1)
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: own, Outcome: chain.AccessServed}))
	a, err := Access(r.view, own.ID())
	require.NoError(t, err)
	require.Equal(t, addr(r.alice), a.Accessor)
	require.Equal(t, addr(r.alice), a.Patient)
	require.Equal(t, chain.AccessRolePatient, a.Role)
	log, err := PatientLog(r.view, addr(r.alice), 0, 10)
	require.NoError(t, err)
	require.Equal(t, own.ID(), log[len(log)-1].ID)

	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReq(r.alice, other.ID, "PATRQT", false, 2), Outcome: chain.AccessServed}), "is not a registered provider")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReq(r.alice, rec.ID, "ETREAT", true, 3), Outcome: chain.AccessServed}), "is not a registered provider")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReq(r.stranger, rec.ID, "PATRQT", false, 4), Outcome: chain.AccessServed}), "requester")
}
