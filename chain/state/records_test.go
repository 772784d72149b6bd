package state

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// recNet is a test network with two registered providers (doc, nurse), a holder provider, two
// registered patients (alice, bob) and an unregistered key (stranger).
type recNet struct {
	*net
	doc, nurse, holder, alice, bob, stranger chain.PrivKey
}

func newRecNet(t *testing.T) *recNet {
	t.Helper()
	r := &recNet{
		net: newNet(t, 1),
		doc: testKey(t, "doc"), nurse: testKey(t, "nurse"), holder: testKey(t, "holder"),
		alice: testKey(t, "alice"), bob: testKey(t, "bob"), stranger: testKey(t, "stranger"),
	}
	var txs []*chain.Tx
	for _, k := range []chain.PrivKey{r.doc, r.nurse, r.holder} {
		txs = append(txs, r.providerTx(k, r.licence(k.Public(), r.lic, genesisTime+1_000_000_000_000)))
	}
	txs = append(txs, r.patientTx(r.alice), r.patientTx(r.bob))
	r.apply(txs...)
	return r
}

func addr(k chain.PrivKey) chain.Address { return k.Public().Address() }

func rid(label string) chain.Hash { return chain.Sum256([]byte("record/" + label)) }

func newAnchor(label string, patient chain.PrivKey, typ string) chain.RecordAnchor {
	return chain.RecordAnchor{
		ID: rid(label), Patient: addr(patient), ResourceType: typ, Version: 1,
		CiphertextHash: chain.Sum256([]byte("ciphertext/" + label)), Size: 100 + uint64(len(label)),
	}
}

func amendment(label string, prev chain.RecordAnchor, typ string) chain.RecordAnchor {
	return chain.RecordAnchor{
		ID: rid(label), Patient: prev.Patient, ResourceType: typ, Version: prev.Version + 1, Supersedes: prev.ID,
		CiphertextHash: chain.Sum256([]byte("ciphertext/" + label)), Size: 100 + uint64(len(label)),
	}
}

func (r *recNet) anchorTx(k chain.PrivKey, anchors ...chain.RecordAnchor) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxAnchorRecords, r.nonce(k), &chain.AnchorRecords{Records: anchors})
}

func (r *recNet) grantTx(patient chain.PrivKey, grantee chain.PrivKey, scope chain.ConsentScope, purpose string, expires int64) *chain.Tx {
	return chain.NewTx(patient, testChain, chain.TxConsentGrant, r.nonce(patient),
		&chain.ConsentGrant{Grantee: addr(grantee), Scope: scope, Purpose: purpose, ExpiresMs: expires})
}

func (r *recNet) revokeTx(patient chain.PrivKey, id chain.Hash) *chain.Tx {
	return chain.NewTx(patient, testChain, chain.TxConsentRevoke, r.nonce(patient), &chain.ConsentRevoke{Consent: id})
}

func (r *recNet) emergencyTx(k chain.PrivKey, patient chain.PrivKey, purpose string, code chain.EmergencyReason) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxEmergencyAccess, r.nonce(k), &chain.EmergencyAccess{
		Version: chain.EmergencyAccessVersion, Patient: addr(patient), Purpose: purpose, ReasonCode: code})
}

// testHolderNode is the node every test request is addressed to: the registered node key of the
// provider labelled "holder" (recNet.holder).
var testHolderNode = func() chain.PubKey {
	seed := sha256.Sum256([]byte("state-test/holder"))
	k, _ := chain.PrivKeyFromSeed(seed[:])
	return nodeKeyOf(k.Public())
}()

func accessReq(k chain.PrivKey, record chain.Hash, purpose string, emergency bool, nonce uint64) chain.AccessRequest {
	return accessReqAs(k, "clinician", record, purpose, emergency, nonce)
}

// accessReqAs is accessReq with the requester's role named.
func accessReqAs(k chain.PrivKey, role string, record chain.Hash, purpose string, emergency bool, nonce uint64) chain.AccessRequest {
	q := chain.AccessRequest{Role: role, Record: record, RequesterNode: nodeKeyOf(k.Public()), Holder: testHolderNode, Purpose: purpose, Emergency: emergency,
		IssuedMs: genesisTime, Nonce: nonce}
	q.Sign(k, testChain)
	return q
}

func (r *recNet) accessLogTx(holder chain.PrivKey, entries ...chain.AccessEntry) *chain.Tx {
	return chain.NewTx(holder, testChain, chain.TxAccessLog, r.nonce(holder), &chain.AccessLog{Entries: entries})
}

func sortedIDs(ids []chain.Hash) []chain.Hash {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b chain.Hash) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

func (r *recNet) eraseTx(patient chain.PrivKey, ids ...chain.Hash) *chain.Tx {
	return chain.NewTx(patient, testChain, chain.TxRecordErase, r.nonce(patient), &chain.RecordErase{Records: sortedIDs(ids)})
}

func (r *recNet) ackTx(k chain.PrivKey, ids ...chain.Hash) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxEraseAck, r.nonce(k), &chain.EraseAck{Records: sortedIDs(ids)})
}

// fails checks that tx is refused, by CheckTx and in a block, with an error containing want, and
// that the failed block changed nothing. It hands the signer's nonce back. It returns the block's
// error for further checks.
func (r *recNet) fails(tx *chain.Tx, want string) error {
	t := r.t
	t.Helper()
	errCheck := r.m.CheckTx(r.view, tx, r.header().Time, nil)
	before := r.view.clone()
	_, err := r.try(tx)
	r.nonces[tx.Signer]--
	require.ErrorContains(t, errCheck, want, "CheckTx")
	require.ErrorContains(t, err, want, "ApplyBlock")
	require.True(t, mapsEqual(before.m, r.view.m), "failed block changed state")
	return err
}

func (r *recNet) record(id chain.Hash) *RecordState {
	r.t.Helper()
	rec, err := Record(r.view, id)
	require.NoError(r.t, err)
	require.NotNil(r.t, rec, "record %s", id.Short())
	return rec
}

func (r *recNet) consent(id chain.Hash) *ConsentRecord {
	r.t.Helper()
	c, err := Consent(r.view, id)
	require.NoError(r.t, err)
	require.NotNil(r.t, c, "consent %s", id.Short())
	return c
}

func eventTypes(res TxResult) []string {
	var out []string
	for _, e := range res.Events {
		out = append(out, e.Type)
	}
	return out
}

var allScope = chain.ConsentScope{Kind: chain.ScopeAll}

func typesScope(types ...string) chain.ConsentScope {
	return chain.ConsentScope{Kind: chain.ScopeTypes, Types: types}
}

func recordsScope(ids ...chain.Hash) chain.ConsentScope {
	return chain.ConsentScope{Kind: chain.ScopeRecords, Records: sortedIDs(ids)}
}

func TestAnchorRecords(t *testing.T) {
	r := newRecNet(t)
	a1, a2 := newAnchor("a1", r.alice, "Observation"), newAnchor("b1", r.bob, "Condition")
	out := r.apply(r.anchorTx(r.doc, a1, a2))
	require.Equal(t, []string{EventRecordAnchored, EventRecordAnchored}, eventTypes(out.Results[0]))

	rec := r.record(a1.ID)
	require.Equal(t, &RecordState{
		Version: RecordVersion, ID: a1.ID, Patient: addr(r.alice), Author: addr(r.doc), ResourceType: "Observation",
		RecVersion: 1, Root: a1.ID, CiphertextHash: a1.CiphertextHash, Size: a1.Size,
		AnchoredHeight: r.height, AnchoredTime: r.time,
	}, rec)
	require.Equal(t, addr(r.bob), r.record(a2.ID).Patient)
	missing, err := Record(r.view, rid("nothing"))
	require.NoError(t, err)
	require.Nil(t, missing)

	r.fails(r.anchorTx(r.stranger, newAnchor("s", r.alice, "Observation")), "author "+addr(r.stranger).String()+" is not a registered provider")
	r.fails(r.anchorTx(r.alice, newAnchor("s", r.alice, "Observation")), "is not a registered provider") // a patient is not an author
	r.fails(r.anchorTx(r.doc, newAnchor("s", r.stranger, "Observation")), "patient "+addr(r.stranger).String()+" is not a registered patient")
	r.fails(r.anchorTx(r.doc, newAnchor("s", r.alice, "Observation"), a1), "record "+a1.ID.Short()+" already anchored")
	r.fails(r.anchorTx(r.nurse, a1), "already anchored")
	r.fails(r.anchorTx(r.doc, newAnchor("s", r.alice, "Observation"), newAnchor("s", r.alice, "Observation")), "anchored twice")
	bad := newAnchor("s", r.alice, "Obs-ervation")
	r.fails(r.anchorTx(r.doc, bad), "not a FHIR type name")
}

func TestAmendRecords(t *testing.T) {
	r := newRecNet(t)
	v1 := newAnchor("v1", r.alice, "Observation")
	other := newAnchor("other", r.bob, "Observation")
	r.apply(r.anchorTx(r.doc, v1, other))

	// Bad supersede chains.
	unknown := amendment("x", newAnchor("ghost", r.alice, "Observation"), "Observation")
	r.fails(r.anchorTx(r.doc, unknown), "supersedes unknown record")
	skip := amendment("x", v1, "Observation")
	skip.Version = 3
	r.fails(r.anchorTx(r.doc, skip), "has version 3 but supersedes version 1")
	wrongPatient := amendment("x", v1, "Observation")
	wrongPatient.Patient = addr(r.bob)
	r.fails(r.anchorTx(r.doc, wrongPatient), "supersedes a record of patient "+addr(r.alice).String())

	// The author amends: the new version shares the root and the old one points to it.
	v2 := amendment("v2", v1, "Observation")
	out := r.apply(r.anchorTx(r.doc, v2))
	require.Equal(t, []string{EventRecordSuperseded, EventRecordAnchored}, eventTypes(out.Results[0]))
	prev, rec2 := r.record(v1.ID), r.record(v2.ID)
	require.Equal(t, v2.ID, prev.SupersededBy)
	require.Equal(t, v1.ID, rec2.Root)
	require.Equal(t, v1.ID, rec2.Supersedes)
	require.Equal(t, uint64(2), rec2.RecVersion)
	require.Equal(t, addr(r.doc), rec2.Author)
	require.True(t, rec2.SupersededBy.IsZero())

	// A version cannot be superseded twice.
	fork := amendment("fork", v1, "Observation")
	r.fails(r.anchorTx(r.doc, fork), "already superseded by "+v2.ID.Short())

	// Another provider without consent may not amend; with one covering the record it may.
	v3 := amendment("v3", v2, "Observation")
	err := r.fails(r.anchorTx(r.nurse, v3), "is not the author of record "+v2.ID.Short())
	require.ErrorIs(t, err, ErrNoConsent)
	require.Contains(t, err.Error(), "has given "+addr(r.nurse).String()+" no consent")
	require.Equal(t, 1, strings.Count(err.Error(), "state: "), err.Error())
	// A consent whose scope does not cover the record is not enough.
	r.apply(r.grantTx(r.alice, r.nurse, typesScope("Condition"), "TREAT", 0))
	err = r.fails(r.anchorTx(r.nurse, v3), "does not cover record "+v2.ID.Short())
	require.ErrorIs(t, err, ErrNoConsent)
	// Any purpose will do: a consent for "RESEARCH" covering the record lets the nurse amend.
	r.apply(r.grantTx(r.alice, r.nurse, recordsScope(v1.ID), "RESEARCH", 0))
	r.apply(r.anchorTx(r.nurse, v3))
	require.Equal(t, addr(r.nurse), r.record(v3.ID).Author)
	require.Equal(t, v1.ID, r.record(v3.ID).Root)
	// Now doc is no longer the author of the latest version and holds no consent.
	v4 := amendment("v4", v3, "Observation")
	r.fails(r.anchorTx(r.doc, v4), "is not the author")
	// An emergency access counts too.
	r.apply(r.emergencyTx(r.doc, r.alice, "ETREAT", chain.ReasonUnableToConsent))
	r.apply(r.anchorTx(r.doc, v4))

	// A new record and its amendment in one transaction.
	n1 := newAnchor("n1", r.bob, "Condition")
	n2 := amendment("n2", n1, "Condition")
	r.apply(r.anchorTx(r.doc, n1, n2))
	require.Equal(t, n2.ID, r.record(n1.ID).SupersededBy)
	require.Equal(t, n1.ID, r.record(n2.ID).Root)

	// An erased version cannot be amended.
	r.apply(r.eraseTx(r.bob, other.ID))
	r.fails(r.anchorTx(r.doc, amendment("o2", other, "Observation")), "erased at height")
}

func TestConsentGrant(t *testing.T) {
	r := newRecNet(t)
	expires := r.header().Time + 5000
	tx := r.grantTx(r.alice, r.doc, typesScope("Condition", "Observation"), "TREAT", expires)
	out := r.apply(tx)
	require.Equal(t, []string{EventConsentGranted}, eventTypes(out.Results[0]))
	id := tx.Hash()
	require.Equal(t, &ConsentRecord{
		Version: RecordVersion, ID: id, Patient: addr(r.alice), Grantee: addr(r.doc),
		Scope: typesScope("Condition", "Observation"), Purpose: "TREAT", ExpiresMs: expires,
		GrantedHeight: r.height, GrantedTime: r.time,
	}, r.consent(id))

	gs, err := Grantees(r.view, addr(r.alice))
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.doc)}, gs)
	cs, err := ConsentsBetween(r.view, addr(r.alice), addr(r.doc))
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, id, cs[0].ID)
	none, err := ConsentsBetween(r.view, addr(r.alice), addr(r.nurse))
	require.NoError(t, err)
	require.Empty(t, none)
	gs, err = Grantees(r.view, addr(r.bob))
	require.NoError(t, err)
	require.Nil(t, gs)
	c, err := Consent(r.view, rid("nothing"))
	require.NoError(t, err)
	require.Nil(t, c)

	// A second grant to another provider, and one more to doc: grantees sorted and distinct.
	tx2 := r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0)
	tx3 := r.grantTx(r.alice, r.doc, allScope, "PAY", 0)
	r.apply(tx2, tx3)
	gs, err = Grantees(r.view, addr(r.alice))
	require.NoError(t, err)
	want := []chain.Address{addr(r.doc), addr(r.nurse)}
	slices.SortFunc(want, compareAddr)
	require.Equal(t, want, gs)
	cs, err = ConsentsBetween(r.view, addr(r.alice), addr(r.doc))
	require.NoError(t, err)
	require.Equal(t, []chain.Hash{id, tx3.Hash()}, []chain.Hash{cs[0].ID, cs[1].ID})

	// Expired consents stay listed (callers compare times).
	r.apply()
	r.apply()
	r.apply()
	r.apply()
	require.GreaterOrEqual(t, r.time, expires)
	cs, err = ConsentsBetween(r.view, addr(r.alice), addr(r.doc))
	require.NoError(t, err)
	require.Len(t, cs, 2)
	require.False(t, cs[0].ActiveAt(r.time))

	// Refusals.
	r.fails(r.grantTx(r.stranger, r.doc, allScope, "TREAT", 0), "signer "+addr(r.stranger).String()+" is not a registered patient")
	r.fails(r.grantTx(r.doc, r.nurse, allScope, "TREAT", 0), "is not a registered patient") // a provider is not a patient
	r.fails(r.grantTx(r.alice, r.stranger, allScope, "TREAT", 0), "grantee "+addr(r.stranger).String()+" is not a registered provider")
	r.fails(r.grantTx(r.alice, r.bob, allScope, "TREAT", 0), "is not a registered provider") // nor a patient a grantee
	r.fails(r.grantTx(r.alice, r.doc, allScope, "TREAT", r.header().Time), "not after block time")
	r.fails(r.grantTx(r.alice, r.doc, allScope, "TREAT", 5), "not after block time")
	r.fails(r.grantTx(r.alice, r.doc, chain.ConsentScope{Kind: chain.ScopeTypes}, "TREAT", 0), "scope types")
	r.fails(r.grantTx(r.alice, r.doc, allScope, "", 0), "purpose")
	// One millisecond after the block is fine.
	r.apply(r.grantTx(r.alice, r.doc, allScope, "TREAT", r.header().Time+1))
}

func TestConsentLimits(t *testing.T) {
	r := newRecNet(t)
	var txs []*chain.Tx
	for i := range MaxConsentsPerPair {
		txs = append(txs, r.grantTx(r.bob, r.doc, allScope, "TREAT", int64(genesisTime+1_000_000+i)))
	}
	r.apply(txs...)
	r.fails(r.grantTx(r.bob, r.doc, allScope, "TREAT", 0), "64 unrevoked consents")
	r.fails(r.emergencyTx(r.doc, r.bob, "ETREAT", chain.ReasonUnableToConsent), "revoke one first")
	// Revoking one makes room.
	r.apply(r.revokeTx(r.bob, txs[0].Hash()))
	r.apply(r.grantTx(r.bob, r.doc, allScope, "TREAT", 0))

	// At MaxGranteesPerPatient distinct grantees no new grantee is accepted, but an existing
	// one may get more consents. (The index is filled in directly: 256 registrations would only
	// slow the test.)
	list := []chain.Address{addr(r.doc)}
	for i := 0; len(list) < MaxGranteesPerPatient; i++ {
		a := testKey(t, "filler-"+string(rune('a'+i%26))+string(rune('a'+i/26))).Public().Address()
		if a != addr(r.nurse) {
			list = append(list, a)
		}
	}
	slices.SortFunc(list, compareAddr)
	r.view.m[string(granteesKey(addr(r.alice)))] = chain.Encode(&granteesRecord{Version: RecordVersion, Grantees: list})
	r.fails(r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0), "consents for 256 providers")
	r.apply(r.grantTx(r.alice, r.doc, allScope, "TREAT", 0))
}

func TestConsentRevoke(t *testing.T) {
	r := newRecNet(t)
	g1 := r.grantTx(r.alice, r.doc, allScope, "TREAT", 0)
	g2 := r.grantTx(r.alice, r.doc, typesScope("Observation"), "PAY", 0)
	g3 := r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0)
	r.apply(g1, g2, g3)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.holder, rec))

	r.fails(r.revokeTx(r.bob, g1.Hash()), "is patient "+addr(r.alice).String()+"'s, not the signer's")
	r.fails(r.revokeTx(r.doc, g1.Hash()), "not the signer's") // the grantee cannot revoke either
	r.fails(r.revokeTx(r.alice, rid("nothing")), "no consent "+rid("nothing").Short())

	out := r.apply(r.revokeTx(r.alice, g1.Hash()))
	require.Equal(t, []string{EventConsentRevoked}, eventTypes(out.Results[0]))
	c := r.consent(g1.Hash())
	require.True(t, c.Revoked)
	require.Equal(t, r.height, c.RevokedHeight)
	require.False(t, c.ActiveAt(r.time))
	r.fails(r.revokeTx(r.alice, g1.Hash()), "already revoked at height")

	// doc still holds g2: still a grantee, and only g2 is listed.
	cs, err := ConsentsBetween(r.view, addr(r.alice), addr(r.doc))
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.Equal(t, g2.Hash(), cs[0].ID)
	gs, err := Grantees(r.view, addr(r.alice))
	require.NoError(t, err)
	require.Len(t, gs, 2)
	_, err = CheckAccess(r.view, r.time, addr(r.doc), r.record(rec.ID), "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "purpose \"PAY\", the request for \"TREAT\"")

	// Revoking the last drops doc from the grantees; the refusal says it was revoked.
	r.apply(r.revokeTx(r.alice, g2.Hash()))
	cs, err = ConsentsBetween(r.view, addr(r.alice), addr(r.doc))
	require.NoError(t, err)
	require.Empty(t, cs)
	gs, err = Grantees(r.view, addr(r.alice))
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.nurse)}, gs)
	_, err = CheckAccess(r.view, r.time, addr(r.doc), r.record(rec.ID), "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "revoked consent "+g2.Hash().Short())

	// Revoking the last consent of the last grantee removes the grantee index.
	r.apply(r.revokeTx(r.alice, g3.Hash()))
	gs, err = Grantees(r.view, addr(r.alice))
	require.NoError(t, err)
	require.Nil(t, gs)
	_, found := r.view.m[string(granteesKey(addr(r.alice)))]
	require.False(t, found)

	// A new grant after revocations works as before.
	g4 := r.grantTx(r.alice, r.doc, allScope, "TREAT", 0)
	r.apply(g4)
	got, err := CheckAccess(r.view, r.time, addr(r.doc), r.record(rec.ID), "TREAT", false)
	require.NoError(t, err)
	require.Equal(t, g4.Hash(), got.ID)
}

func TestEmergencyAccess(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.holder, rec))

	r.fails(r.emergencyTx(r.stranger, r.alice, "ETREAT", chain.ReasonUnableToConsent), "signer "+addr(r.stranger).String()+" is not a registered provider")
	r.fails(r.emergencyTx(r.bob, r.alice, "ETREAT", chain.ReasonUnableToConsent), "is not a registered provider")
	r.fails(r.emergencyTx(r.doc, r.stranger, "ETREAT", chain.ReasonUnableToConsent), "patient "+addr(r.stranger).String()+" is not a registered patient")
	r.fails(r.emergencyTx(r.doc, r.alice, "ETREAT", 0), "needs a reason code")

	tx := r.emergencyTx(r.doc, r.alice, "ETREAT", chain.ReasonUnableToConsent)
	out := r.apply(tx)
	require.Equal(t, []string{EventEmergencyAccess}, eventTypes(out.Results[0]))
	for _, e := range out.Results[0].Events {
		require.NotContains(t, e.Detail, "unconscious")
		require.NotContains(t, e.Detail, "ETREAT")
	}
	c := r.consent(tx.Hash())
	require.Equal(t, &ConsentRecord{
		Version: RecordVersion, ID: tx.Hash(), Patient: addr(r.alice), Grantee: addr(r.doc), Scope: allScope,
		Purpose: "ETREAT", ExpiresMs: r.time + chain.EmergencyAccessMs, GrantedHeight: r.height, GrantedTime: r.time,
		Emergency: true, ReasonCode: chain.ReasonUnableToConsent,
	}, c)
	gs, err := Grantees(r.view, addr(r.alice))
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.doc)}, gs)

	recState := r.record(rec.ID)
	got, err := CheckAccess(r.view, r.time, addr(r.doc), recState, "ETREAT", true)
	require.NoError(t, err)
	require.Equal(t, tx.Hash(), got.ID)
	// Only emergency reads: an ordinary request is refused, and says why.
	_, err = CheckAccess(r.view, r.time, addr(r.doc), recState, "ETREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "only emergency access")
	// It expires after EmergencyAccessMs.
	_, err = CheckAccess(r.view, c.ExpiresMs-1, addr(r.doc), recState, "ETREAT", true)
	require.NoError(t, err)
	_, err = CheckAccess(r.view, c.ExpiresMs, addr(r.doc), recState, "ETREAT", true)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "expired at")
	// An emergency read needs an emergency access: an ordinary consent does not do.
	r.apply(r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0))
	_, err = CheckAccess(r.view, r.time, addr(r.nurse), recState, "TREAT", true)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "no emergency access")
	// The patient may close it early.
	r.apply(r.revokeTx(r.alice, tx.Hash()))
	_, err = CheckAccess(r.view, r.time, addr(r.doc), recState, "ETREAT", true)
	require.ErrorIs(t, err, ErrNoConsent)
}

func TestAccessLog(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.doc, rec))

	q1 := accessReq(r.nurse, rec.ID, "TREAT", false, 1)
	q2 := accessReq(r.doc, rec.ID, "ETREAT", true, 2)
	e1 := chain.AccessEntry{Request: q1, Outcome: chain.AccessRefused, Reason: "no consent"}
	e2 := chain.AccessEntry{Request: q2, Outcome: chain.AccessServed}
	out := r.apply(r.accessLogTx(r.holder, e1, e2))
	require.Equal(t, []string{EventAccessLogged, EventAccessLogged}, eventTypes(out.Results[0]))
	a1, err := Access(r.view, q1.ID())
	require.NoError(t, err)
	require.Equal(t, &AccessRecord{
		Version: RecordVersion, RequestID: q1.ID(), Record: rec.ID, Patient: addr(r.alice), Accessor: addr(r.nurse),
		Holder: addr(r.holder), Purpose: "TREAT", Emergency: false, Outcome: chain.AccessRefused, Reason: "no consent",
		Height: r.height, Time: r.time, Role: "clinician",
	}, a1)
	a2, err := Access(r.view, q2.ID())
	require.NoError(t, err)
	require.True(t, a2.Emergency)
	require.Equal(t, chain.AccessServed, a2.Outcome)
	none, err := Access(r.view, rid("nothing"))
	require.NoError(t, err)
	require.Nil(t, none)

	// Re-submitted after a crash (with a different outcome, even): skipped, the first entry stays.
	// A new request in the same transaction is still logged, once though it appears twice.
	q3 := accessReq(r.nurse, rec.ID, "TREAT", false, 3)
	e3 := chain.AccessEntry{Request: q3, Outcome: chain.AccessServed}
	again := chain.AccessEntry{Request: q1, Outcome: chain.AccessServed}
	out = r.apply(r.accessLogTx(r.holder, again, e3, e3))
	require.Equal(t, []string{EventAccessDuplicate, EventAccessLogged, EventAccessDuplicate}, eventTypes(out.Results[0]))
	require.Contains(t, out.Results[0].Events[0].Detail, "already logged")
	require.Contains(t, out.Results[0].Events[2].Detail, "repeated in this transaction")
	a1b, err := Access(r.view, q1.ID())
	require.NoError(t, err)
	require.Equal(t, a1, a1b)
	// Another holder logging the same request is skipped too: one entry per request.
	out = r.apply(r.accessLogTx(r.doc, e3))
	require.Equal(t, []string{EventAccessDuplicate}, eventTypes(out.Results[0]))
	a3, err := Access(r.view, q3.ID())
	require.NoError(t, err)
	require.Equal(t, addr(r.holder), a3.Holder)
	for _, res := range out.Results {
		for _, e := range res.Events {
			require.NotContains(t, e.Detail, "TREAT")
		}
	}

	// Refusals.
	forged := accessReq(r.nurse, rec.ID, "TREAT", false, 4)
	forged.Purpose = "RESEARCH" // changed after signing
	err = r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: forged, Outcome: chain.AccessServed}), "access request signature")
	require.ErrorIs(t, err, chain.ErrBadSignature)
	// A bad entry after a good one fails the whole transaction (fails checks nothing was written).
	good := chain.AccessEntry{Request: accessReq(r.nurse, rec.ID, "TREAT", false, 5), Outcome: chain.AccessServed}
	r.fails(r.accessLogTx(r.holder, good, chain.AccessEntry{Request: forged, Outcome: chain.AccessServed}), "access entry 1")
	otherChain := chain.AccessRequest{Role: "clinician", Record: rec.ID, RequesterNode: nodeKeyOf(r.nurse.Public()), Holder: testHolderNode, Purpose: "TREAT", Nonce: 6}
	otherChain.Sign(r.nurse, "other-chain")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: otherChain, Outcome: chain.AccessServed}), "access request for chain \"other-chain\"")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReq(r.stranger, rec.ID, "TREAT", false, 7), Outcome: chain.AccessServed}),
		"requester "+addr(r.stranger).String()+" is not a registered provider")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReq(r.nurse, rid("nothing"), "TREAT", false, 8), Outcome: chain.AccessServed}),
		"unknown record "+rid("nothing").Short())
	r.fails(r.accessLogTx(r.stranger, good), "holder "+addr(r.stranger).String()+" is not a registered provider")
	r.fails(r.accessLogTx(r.alice, good), "holder "+addr(r.alice).String()+" is not a registered provider")
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: good.Request, Outcome: 9}), "unknown access outcome")

	// Erased records can still have their (refused) accesses logged.
	r.apply(r.eraseTx(r.alice, rec.ID))
	late := accessReq(r.doc, rec.ID, "TREAT", false, 9)
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: late, Outcome: chain.AccessRefused, Reason: "erased"}))
	a, err := Access(r.view, late.ID())
	require.NoError(t, err)
	require.Equal(t, addr(r.alice), a.Patient)
}

func TestRecordErase(t *testing.T) {
	r := newRecNet(t)
	v1 := newAnchor("v1", r.alice, "Observation")
	v2 := amendment("v2", v1, "Observation")
	b1 := newAnchor("b1", r.bob, "Condition")
	r.apply(r.anchorTx(r.doc, v1, b1))
	r.apply(r.anchorTx(r.doc, v2))
	r.apply(r.grantTx(r.alice, r.nurse, allScope, "TREAT", 0))
	anchoredHeight := r.record(v2.ID).AnchoredHeight

	r.fails(r.eraseTx(r.bob, v2.ID), "is patient "+addr(r.alice).String()+"'s, not the signer's")
	r.fails(r.eraseTx(r.doc, v2.ID), "not the signer's") // not even its author
	r.fails(r.eraseTx(r.alice, v2.ID, b1.ID), "not the signer's")
	r.fails(r.eraseTx(r.alice, rid("nothing")), "cannot erase unknown record")

	before := r.record(v2.ID)
	out := r.apply(r.eraseTx(r.alice, v2.ID))
	require.Equal(t, []string{EventRecordErased}, eventTypes(out.Results[0]))
	for _, e := range out.Results[0].Events {
		require.NotContains(t, e.Detail, "Observation")
	}
	got := r.record(v2.ID)
	orig := v2
	require.Equal(t, &RecordState{
		Version: RecordVersion, ID: v2.ID, Patient: addr(r.alice), Author: addr(r.doc), RecVersion: 2,
		Supersedes: v1.ID, Root: v1.ID, AnchoredHeight: anchoredHeight, AnchoredTime: before.AnchoredTime,
		Erased: true, ErasedHeight: r.height, AnchorHash: chain.Sum256(chain.Encode(&orig)),
	}, got)
	require.Empty(t, got.ResourceType)
	require.True(t, got.CiphertextHash.IsZero())
	require.Zero(t, got.Size)
	r.fails(r.eraseTx(r.alice, v2.ID), "already erased at height")

	// Nobody reads an erased record, not even its author; it has no readers.
	_, err := CheckAccess(r.view, r.time, addr(r.doc), got, "TREAT", false)
	require.ErrorIs(t, err, ErrErased)
	_, err = CheckAccess(r.view, r.time, addr(r.nurse), got, "TREAT", false)
	require.ErrorIs(t, err, ErrErased)
	_, err = Readers(r.view, r.time, got)
	require.ErrorIs(t, err, ErrErased)
	// The earlier version is untouched and still readable.
	readers, err := Readers(r.view, r.time, r.record(v1.ID))
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.nurse)}, readers)
	require.Equal(t, v2.ID, r.record(v1.ID).SupersededBy)
	// Several at once.
	r.apply(r.eraseTx(r.alice, v1.ID))
	require.True(t, r.record(v1.ID).Erased)
	require.False(t, r.record(b1.ID).Erased)
}

func TestEraseAck(t *testing.T) {
	r := newRecNet(t)
	a, b := newAnchor("a", r.alice, "Observation"), newAnchor("b", r.alice, "Condition")
	r.apply(r.anchorTx(r.doc, a, b))
	r.apply(r.eraseTx(r.alice, a.ID))

	r.fails(r.ackTx(r.alice, a.ID), "signer "+addr(r.alice).String()+" is not a registered provider")
	r.fails(r.ackTx(r.stranger, a.ID), "is not a registered provider")
	r.fails(r.ackTx(r.holder, a.ID, b.ID), "record "+b.ID.Short()+" is not erased")
	r.fails(r.ackTx(r.holder, rid("nothing")), "unknown record")

	out := r.apply(r.ackTx(r.holder, a.ID), r.ackTx(r.doc, a.ID))
	require.Equal(t, []string{EventEraseAcked}, eventTypes(out.Results[0]))
	want := []chain.Address{addr(r.holder), addr(r.doc)}
	slices.SortFunc(want, compareAddr)
	require.Equal(t, want, r.record(a.ID).Acks)

	// Acknowledging twice is skipped, not refused; other records in the same transaction count.
	r.apply(r.eraseTx(r.alice, b.ID))
	out = r.apply(r.ackTx(r.holder, a.ID, b.ID))
	require.ElementsMatch(t, []string{EventEraseAckDuplicate, EventEraseAcked}, eventTypes(out.Results[0]))
	require.Equal(t, want, r.record(a.ID).Acks)
	require.Equal(t, []chain.Address{addr(r.holder)}, r.record(b.ID).Acks)
}

func TestCheckAccessExpiryBoundary(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	T := r.header().Time + 3000
	g := r.grantTx(r.alice, r.nurse, allScope, "TREAT", T)
	r.apply(r.anchorTx(r.doc, rec), g)
	rs := r.record(rec.ID)

	got, err := CheckAccess(r.view, T-1, addr(r.nurse), rs, "TREAT", false)
	require.NoError(t, err)
	require.Equal(t, g.Hash(), got.ID)
	_, err = CheckAccess(r.view, T, addr(r.nurse), rs, "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "expired at "+strconv.FormatInt(T, 10))
	_, err = CheckAccess(r.view, T+1, addr(r.nurse), rs, "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)

	readers, err := Readers(r.view, T-1, rs)
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.nurse)}, readers)
	readers, err = Readers(r.view, T, rs)
	require.NoError(t, err)
	require.Empty(t, readers)

	// The author reads whatever the time: (nil, nil).
	got, err = CheckAccess(r.view, T+1_000_000, addr(r.doc), rs, "ANY", true)
	require.NoError(t, err)
	require.Nil(t, got)
	// A stranger to the patient gets a clear "no consent".
	_, err = CheckAccess(r.view, T-1, addr(r.holder), rs, "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.EqualError(t, err, "state: no consent: patient "+addr(r.alice).String()+" has given "+addr(r.holder).String()+" no consent")
}

func TestCheckAccessScopes(t *testing.T) {
	r := newRecNet(t)
	obs := newAnchor("obs", r.alice, "Observation")
	cond := newAnchor("cond", r.alice, "Condition")
	med := newAnchor("med", r.alice, "MedicationRequest")
	bobs := newAnchor("bobs", r.bob, "Observation")
	r.apply(r.anchorTx(r.holder, obs, cond, med, bobs))
	obs2 := amendment("obs2", obs, "Observation")
	r.apply(r.anchorTx(r.holder, obs2))

	gAll := r.grantTx(r.alice, r.doc, allScope, "TREAT", 0)
	gTypes := r.grantTx(r.alice, r.nurse, typesScope("Condition", "Observation"), "TREAT", 0)
	gRecs := r.grantTx(r.bob, r.nurse, recordsScope(bobs.ID), "TREAT", 0)
	gRecsAlice := r.grantTx(r.alice, r.nurse, recordsScope(obs.ID), "RESEARCH", 0)
	r.apply(gAll, gTypes, gRecs, gRecsAlice)
	now := r.time

	check := func(who chain.PrivKey, id chain.Hash, purpose string) (*ConsentRecord, error) {
		return CheckAccess(r.view, now, addr(who), r.record(id), purpose, false)
	}
	// ScopeAll covers everything of the patient, not another patient's records.
	for _, id := range []chain.Hash{obs.ID, cond.ID, med.ID, obs2.ID} {
		c, err := check(r.doc, id, "TREAT")
		require.NoError(t, err)
		require.Equal(t, gAll.Hash(), c.ID)
	}
	_, err := check(r.doc, bobs.ID, "TREAT")
	require.ErrorIs(t, err, ErrNoConsent)

	// ScopeTypes: listed types only.
	for _, id := range []chain.Hash{obs.ID, cond.ID, obs2.ID} {
		c, err := check(r.nurse, id, "TREAT")
		require.NoError(t, err)
		require.Equal(t, gTypes.Hash(), c.ID)
	}
	_, err = check(r.nurse, med.ID, "TREAT")
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "does not cover record "+med.ID.Short())

	// ScopeRecords: the listed record and its amendments (through Root), nothing else.
	c, err := check(r.nurse, bobs.ID, "TREAT")
	require.NoError(t, err)
	require.Equal(t, gRecs.Hash(), c.ID)
	c, err = check(r.nurse, obs2.ID, "RESEARCH")
	require.NoError(t, err)
	require.Equal(t, gRecsAlice.Hash(), c.ID)
	_, err = check(r.nurse, cond.ID, "RESEARCH")
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "(scope records) does not cover record "+cond.ID.Short())

	// Purpose must match; "" accepts any.
	_, err = check(r.doc, obs.ID, "PAY")
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "consent "+gAll.Hash().Short()+" is for purpose \"TREAT\", the request for \"PAY\"")
	c, err = check(r.nurse, med.ID, "")
	require.ErrorIs(t, err, ErrNoConsent, "no purpose makes a scope cover more")
	require.Nil(t, c)
	c, err = check(r.nurse, obs.ID, "")
	require.NoError(t, err)
	require.Equal(t, gTypes.Hash(), c.ID, "the first consent in grant order")

	// Readers: every grantee whose active consent covers the record, sorted.
	readers, err := Readers(r.view, now, r.record(obs2.ID))
	require.NoError(t, err)
	want := []chain.Address{addr(r.doc), addr(r.nurse)}
	slices.SortFunc(want, compareAddr)
	require.Equal(t, want, readers)
	readers, err = Readers(r.view, now, r.record(med.ID))
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.doc)}, readers)

	// After revoking the all-scope grant doc reads nothing; after revoking the types grant the
	// nurse still reads obs (records scope) but not cond.
	r.apply(r.revokeTx(r.alice, gAll.Hash()), r.revokeTx(r.alice, gTypes.Hash()))
	readers, err = Readers(r.view, r.time, r.record(med.ID))
	require.NoError(t, err)
	require.Empty(t, readers)
	readers, err = Readers(r.view, r.time, r.record(obs2.ID))
	require.NoError(t, err)
	require.Equal(t, []chain.Address{addr(r.nurse)}, readers)
	readers, err = Readers(r.view, r.time, r.record(cond.ID))
	require.NoError(t, err)
	require.Empty(t, readers)
	_, err = check(r.doc, med.ID, "TREAT")
	require.ErrorContains(t, err, "revoked consent "+gAll.Hash().Short())
}

func TestRecordQueriesStorageErrors(t *testing.T) {
	rec := &RecordState{Version: RecordVersion, ID: rid("x"), Patient: chain.Address{1}, Author: chain.Address{2}}
	for name, err := range map[string]error{
		"record":   second(Record(failView{}, rid("x"))),
		"consent":  second(Consent(failView{}, rid("x"))),
		"between":  second(ConsentsBetween(failView{}, chain.Address{1}, chain.Address{2})),
		"grantees": second(Grantees(failView{}, chain.Address{1})),
		"access":   second(Access(failView{}, rid("x"))),
		"check":    second(CheckAccess(failView{}, 0, chain.Address{3}, rec, "TREAT", false)),
		"readers":  second(Readers(failView{}, 0, rec)),
	} {
		require.ErrorContains(t, err, "disk on fire", name)
	}
	_, err := CheckAccess(newMemView(), 0, chain.Address{3}, nil, "TREAT", false)
	require.Error(t, err)
	// Reading is a provider right: an unregistered requester is refused before any consent.
	_, err = CheckAccess(newMemView(), 0, chain.Address{3}, rec, "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "not a registered provider")
	// A dangling index entry is reported, not skipped.
	v := newMemView()
	v.m[string(memberKey(chain.Address{3}))] = chain.Encode(&MemberRecord{Version: RecordVersion, ID: chain.Address{3}, Role: chain.RoleProvider,
		Licence: chain.Licence{NotAfter: 1 << 50}})
	v.m[string(grantsKey(chain.Address{1}, chain.Address{3}))] = chain.Encode(&pairRecord{Version: RecordVersion, IDs: []chain.Hash{rid("gone")}})
	_, err = CheckAccess(v, 0, chain.Address{3}, rec, "TREAT", false)
	require.ErrorContains(t, err, "missing")
	// A record of an unknown version is refused.
	v.m[string(recordKey(rid("x")))] = chain.Encode(&RecordState{Version: 9})
	_, err = Record(v, rid("x"))
	require.ErrorContains(t, err, "version 9")
}

func second[T any](_ T, err error) error { return err }

// recordScenario runs a fixed mix of every record, consent and audit transaction and returns
// each block's change set.
func recordScenario(t *testing.T) [][]byte {
	r := newRecNet(t)
	var out [][]byte
	step := func(txs ...*chain.Tx) {
		t.Helper()
		// The builder and ApplyBlock agree, and the builder accepts every transaction.
		b := r.m.NewBuilder(r.view, r.header(), nil)
		for _, tx := range txs {
			require.NoError(t, b.Add(tx))
		}
		built, err := b.Finish()
		require.NoError(t, err)
		o := r.apply(txs...)
		require.Equal(t, encodeChanges(built.Changes), encodeChanges(o.Changes))
		require.Equal(t, built.Results, o.Results)
		out = append(out, encodeChanges(o.Changes))
	}
	v1 := newAnchor("v1", r.alice, "Observation")
	c1 := newAnchor("c1", r.bob, "Condition")
	g1 := r.grantTx(r.alice, r.nurse, typesScope("Observation"), "TREAT", r.header().Time+10_000)
	g2 := r.grantTx(r.bob, r.nurse, allScope, "TREAT", 0)
	step(r.anchorTx(r.doc, v1, c1), g1, g2)
	v2 := amendment("v2", v1, "Observation")
	q := accessReq(r.nurse, v1.ID, "TREAT", false, 1)
	step(r.anchorTx(r.nurse, v2), r.emergencyTx(r.holder, r.alice, "ETREAT", chain.ReasonUnableToConsent),
		r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}))
	step(r.revokeTx(r.bob, g2.Hash()), r.eraseTx(r.alice, v1.ID), r.accessLogTx(r.doc, chain.AccessEntry{Request: q, Outcome: chain.AccessRefused}))
	step(r.ackTx(r.holder, v1.ID), r.ackTx(r.doc, v1.ID), r.ackTx(r.holder, v1.ID))
	return out
}

func TestRecordsDeterministic(t *testing.T) {
	a, b := recordScenario(t), recordScenario(t)
	require.Len(t, a, 4)
	for i := range a {
		require.True(t, bytes.Equal(a[i], b[i]), "block %d differs", i)
	}
}

func TestRecordTxsSkipSets(t *testing.T) {
	// Record, consent and audit transactions do not need the authority sets: CheckTx on a view
	// whose sets are unreadable still judges them.
	r := newRecNet(t)
	v := r.view.clone()
	delete(v.m, string(keyNext))
	tx := r.grantTx(r.alice, r.doc, allScope, "TREAT", 0)
	require.NoError(t, r.m.CheckTx(v, tx, r.time, nil))
	err := r.m.CheckTx(v, r.proposeTx(r.auth[0], chain.AuthorityAdd, r.doc.Public()), r.time, nil)
	require.True(t, err != nil && !errors.Is(err, ErrNonce), "%v", err)
}

// Reading and being given keys are provider rights: a provider whose licence lapsed reads
// nothing from the first block time at its expiry on, not even its own records, and is no
// longer among a record's readers.
func TestLapsedProviderReadsNothing(t *testing.T) {
	r := newRecNet(t)
	short := testKey(t, "short-lived")
	expiry := r.time + 1_000_000
	r.apply(r.providerTx(short, r.licence(short.Public(), r.lic, expiry)))
	rec := newAnchor("lapse", r.alice, "Observation")
	r.apply(r.anchorTx(short, rec))
	r.apply(r.grantTx(r.alice, short, chain.ConsentScope{Kind: chain.ScopeAll}, "TREAT", 0))
	st, err := Record(r.view, rec.ID)
	require.NoError(t, err)
	_, err = CheckAccess(r.view, expiry-1, addr(short), st, "TREAT", false)
	require.NoError(t, err, "one millisecond before expiry the author reads")
	readers, err := Readers(r.view, expiry-1, st)
	require.NoError(t, err)
	require.Contains(t, readers, addr(short))
	_, err = CheckAccess(r.view, expiry, addr(short), st, "TREAT", false)
	require.ErrorIs(t, err, ErrNoConsent)
	require.ErrorContains(t, err, "licence expired")
	readers, err = Readers(r.view, expiry, st)
	require.NoError(t, err)
	require.NotContains(t, readers, addr(short))
}
