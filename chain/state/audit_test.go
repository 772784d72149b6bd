package state

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

func (r *recNet) receiptTx(k chain.PrivKey, receipts ...chain.AccessReceipt) *chain.Tx {
	return chain.NewTx(k, testChain, chain.TxAccessReceipt, r.nonce(k), &chain.AccessReceipts{Receipts: receipts})
}

func TestCiphertextBelongsToOneRecord(t *testing.T) {
	r := newRecNet(t)
	victim := newAnchor("victim", r.alice, "Observation")
	r.apply(r.anchorTx(r.doc, victim))

	// The attack: another record (even of another patient, by another author) naming the
	// victim's ciphertext, then erased to make every holder delete the victim's blob.
	thief := newAnchor("thief", r.bob, "Observation")
	thief.CiphertextHash = victim.CiphertextHash
	r.fails(r.anchorTx(r.nurse, thief), "names ciphertext "+victim.CiphertextHash.Short()+", already anchored by record "+victim.ID.Short())
	r.fails(r.anchorTx(r.doc, thief), "already anchored by record")
	// Two anchors sharing a ciphertext in one transaction: the second is refused.
	a, b := newAnchor("a", r.alice, "Condition"), newAnchor("b", r.alice, "Condition")
	b.CiphertextHash = a.CiphertextHash
	r.fails(r.anchorTx(r.doc, a, b), "already anchored by record "+a.ID.Short())
	// An amendment needs its own ciphertext; with one it is fine (the near miss).
	same := amendment("v2", victim, "Observation")
	same.CiphertextHash = victim.CiphertextHash
	r.fails(r.anchorTx(r.doc, same), "already anchored by record "+victim.ID.Short())
	v2 := amendment("v2", victim, "Observation")
	r.apply(r.anchorTx(r.doc, v2))

	owner, err := RecordOfCiphertext(r.view, victim.CiphertextHash)
	require.NoError(t, err)
	require.Equal(t, victim.ID, owner)
	owner, err = RecordOfCiphertext(r.view, v2.CiphertextHash)
	require.NoError(t, err)
	require.Equal(t, v2.ID, owner)
	owner, err = RecordOfCiphertext(r.view, chain.Sum256([]byte("nothing")))
	require.NoError(t, err)
	require.True(t, owner.IsZero())

	// Erasure keeps the index, under a hash of the ciphertext hash only: the hash cannot be
	// anchored again, and a node erasing v2 can still tell that the victim's blob is not v2's.
	r.apply(r.eraseTx(r.alice, v2.ID))
	owner, err = RecordOfCiphertext(r.view, v2.CiphertextHash)
	require.NoError(t, err)
	require.Equal(t, v2.ID, owner)
	owner, err = RecordOfCiphertext(r.view, victim.CiphertextHash)
	require.NoError(t, err)
	require.NotEqual(t, v2.ID, owner, "erasing v2 must not touch the victim's blob")
	for k := range r.view.m {
		require.NotContains(t, k, string(v2.CiphertextHash[:]), "an erased record's ciphertext hash stays in a key")
	}
	again := newAnchor("again", r.alice, "Observation")
	again.CiphertextHash = v2.CiphertextHash
	r.fails(r.anchorTx(r.doc, again), "already anchored by record "+v2.ID.Short())
	_, err = RecordOfCiphertext(failView{}, v2.CiphertextHash)
	require.ErrorContains(t, err, "disk on fire")
}

func TestAccessRequestBinding(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.doc, rec))
	// Requests without the node binding are refused by form (a version-1 request has neither).
	q := accessReq(r.nurse, rec.ID, "TREAT", false, 1)
	q.Holder = chain.PubKey{}
	q.Sign(r.nurse, testChain)
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}), "without the holder it is addressed to")
	q = accessReq(r.nurse, rec.ID, "TREAT", false, 2)
	q.RequesterNode = chain.PubKey{}
	q.Sign(r.nurse, testChain)
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}), "without the requester's node key")
	// The holder and requester node are signed: changing either breaks the signature.
	q = accessReq(r.nurse, rec.ID, "TREAT", false, 3)
	q.Holder = nodeKeyOf(r.doc.Public())
	r.fails(r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}), "access request signature")
	// Only the holder a request is addressed to can log it: its registered node key must be the
	// request's Holder. The same request logged by another provider is refused; by its holder,
	// it is logged.
	q = accessReq(r.nurse, rec.ID, "TREAT", false, 4)
	r.fails(r.accessLogTx(r.doc, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}), "is addressed to holder node")
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}))
	a, err := Access(r.view, q.ID())
	require.NoError(t, err)
	require.NotNil(t, a)
	ok, err := holderMatches(r.view, addr(r.doc), testHolderNode)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestAccessReceipts(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	other := newAnchor("o", r.bob, "Observation")
	r.apply(r.anchorTx(r.doc, rec, other))

	q := accessReq(r.nurse, rec.ID, "TREAT", false, 1)
	good := chain.AccessReceipt{Request: q, CiphertextHash: rec.CiphertextHash}
	// Refusals: not the requester, not a provider, the wrong ciphertext, an unknown record, a
	// forged request.
	r.fails(r.receiptTx(r.doc, good), "request "+q.ID().Short()+" is "+addr(r.nurse).String()+"'s, not the signer "+addr(r.doc).String()+"'s")
	r.fails(r.receiptTx(r.alice, good), "signer "+addr(r.alice).String()+" is not a registered provider")
	r.fails(r.receiptTx(r.nurse, chain.AccessReceipt{Request: q, CiphertextHash: other.CiphertextHash}), "ciphertext "+other.CiphertextHash.Short()+" is not record "+rec.ID.Short()+"'s")
	r.fails(r.receiptTx(r.nurse, chain.AccessReceipt{Request: q, CiphertextHash: rid("x")}), "is not record")
	r.fails(r.receiptTx(r.nurse, chain.AccessReceipt{Request: accessReq(r.nurse, rid("none"), "TREAT", false, 2), CiphertextHash: rec.CiphertextHash}), "unknown record")
	forged := q
	forged.Purpose = "RESEARCH"
	r.fails(r.receiptTx(r.nurse, chain.AccessReceipt{Request: forged, CiphertextHash: rec.CiphertextHash}), "access request signature")

	// The requester's receipt, once; a repeat is skipped.
	out := r.apply(r.receiptTx(r.nurse, good, good))
	require.Equal(t, []string{EventReceiptRecorded, EventReceiptDuplicate}, eventTypes(out.Results[0]))
	receiptHeight := r.height
	rc, err := Receipt(r.view, q.ID())
	require.NoError(t, err)
	require.Equal(t, &ReceiptRecord{
		Version: RecordVersion, RequestID: q.ID(), Record: rec.ID, Patient: addr(r.alice), Requester: addr(r.nurse),
		RequesterNode: nodeKeyOf(r.nurse.Public()), HolderNode: testHolderNode, Purpose: "TREAT", Height: r.height, Time: r.time, Role: "clinician",
	}, rc)
	out = r.apply(r.receiptTx(r.nurse, good))
	require.Equal(t, []string{EventReceiptDuplicate}, eventTypes(out.Results[0]))

	// The patient's view: a receipt alone is flagged only once ReceiptGraceBlocks have passed.
	view := func(id chain.Hash) *AccessView {
		t.Helper()
		a, err := AccessOf(r.view, id)
		require.NoError(t, err)
		return a
	}
	a := view(q.ID())
	require.Equal(t, "requester", a.LoggedBy())
	require.Equal(t, addr(r.alice), a.Patient)
	require.False(t, a.UnloggedByHolder)
	for r.height < receiptHeight+ReceiptGraceBlocks-1 {
		r.apply()
	}
	require.False(t, view(q.ID()).UnloggedByHolder, "flagged one block early")
	r.apply()
	require.True(t, view(q.ID()).UnloggedByHolder)
	// The holder logs it late: both sides, no flag.
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: q, Outcome: chain.AccessServed}))
	a = view(q.ID())
	require.Equal(t, "both", a.LoggedBy())
	require.False(t, a.UnloggedByHolder)
	require.False(t, a.RefusedButReceived)

	// A holder that logs a refusal while the requester received the record: the mismatch shows.
	q2 := accessReq(r.nurse, rec.ID, "TREAT", false, 3)
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: q2, Outcome: chain.AccessRefused, Reason: "no consent"}),
		r.receiptTx(r.nurse, chain.AccessReceipt{Request: q2, CiphertextHash: rec.CiphertextHash}))
	a = view(q2.ID())
	require.Equal(t, "both", a.LoggedBy())
	require.True(t, a.RefusedButReceived)
	// A holder entry alone.
	q3 := accessReq(r.doc, rec.ID, "TREAT", false, 4)
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: q3, Outcome: chain.AccessServed}))
	require.Equal(t, "holder", view(q3.ID()).LoggedBy())
	require.Nil(t, view(rid("nothing")))

	// AccessesOf keeps the patient's reads only.
	list, err := AccessesOf(r.view, addr(r.alice), []chain.Hash{q.ID(), rid("nothing"), q2.ID(), q3.ID()})
	require.NoError(t, err)
	require.Len(t, list, 3)
	list, err = AccessesOf(r.view, addr(r.bob), []chain.Hash{q.ID(), q2.ID()})
	require.NoError(t, err)
	require.Empty(t, list)

	// A receipt of a read made before erasure is still checked (through the blob index).
	q4 := accessReq(r.nurse, rec.ID, "TREAT", false, 5)
	r.apply(r.eraseTx(r.alice, rec.ID))
	r.fails(r.receiptTx(r.nurse, chain.AccessReceipt{Request: q4, CiphertextHash: other.CiphertextHash}), "is not record")
	r.apply(r.receiptTx(r.nurse, chain.AccessReceipt{Request: q4, CiphertextHash: rec.CiphertextHash}))
	for name, err := range map[string]error{
		"receipt":   second(Receipt(failView{}, q.ID())),
		"access of": second(AccessOf(failView{}, q.ID())),
	} {
		require.ErrorContains(t, err, "disk on fire", name)
	}
}

func TestReceiptsBoundedPerPatientWindow(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.doc, rec))
	var receipts []chain.AccessReceipt
	for i := range MaxReceiptsPerPatientWindow {
		receipts = append(receipts, chain.AccessReceipt{Request: accessReq(r.nurse, rec.ID, "TREAT", false, uint64(100+i)), CiphertextHash: rec.CiphertextHash})
	}
	for i := 0; i < len(receipts); i += chain.MaxReceiptsPerTx {
		r.apply(r.receiptTx(r.nurse, receipts[i:i+chain.MaxReceiptsPerTx]...))
	}
	extra := chain.AccessReceipt{Request: accessReq(r.nurse, rec.ID, "TREAT", false, 1), CiphertextHash: rec.CiphertextHash}
	out := r.apply(r.receiptTx(r.nurse, extra))
	require.Equal(t, []string{EventReceiptThrottled}, eventTypes(out.Results[0]))
	got, err := Receipt(r.view, extra.Request.ID())
	require.NoError(t, err)
	require.Nil(t, got)
	// Another requester is not affected; the next window admits the requester again.
	r.apply(r.receiptTx(r.doc, chain.AccessReceipt{Request: accessReq(r.doc, rec.ID, "TREAT", false, 1), CiphertextHash: rec.CiphertextHash}))
	r.time = (int64(Window(r.time, ReceiptWindowMs)) + 1) * ReceiptWindowMs
	out = r.apply(r.receiptTx(r.nurse, extra))
	require.Equal(t, []string{EventReceiptRecorded}, eventTypes(out.Results[0]))
}

func TestRefusalsBounded(t *testing.T) {
	r := newRecNet(t)
	var recs []chain.RecordAnchor
	for i := range MaxRefusalsPerPatientWindow + 2 {
		recs = append(recs, newAnchor("r"+string(rune('a'+i)), r.alice, "Observation"))
	}
	r.apply(r.anchorTx(r.doc, recs...))
	refused := func(k chain.PrivKey, rec chain.RecordAnchor, nonce uint64) chain.AccessEntry {
		return chain.AccessEntry{Request: accessReq(k, rec.ID, "TREAT", false, nonce), Outcome: chain.AccessRefused, Reason: "no consent"}
	}
	// One refusal per (requester, record) per window: the second, whatever its reason, is
	// skipped; a served entry in the same transaction is still logged.
	e1, e2 := refused(r.nurse, recs[0], 1), refused(r.nurse, recs[0], 2)
	e2.Reason = "some other text"
	served := chain.AccessEntry{Request: accessReq(r.nurse, recs[0].ID, "TREAT", false, 3), Outcome: chain.AccessServed}
	out := r.apply(r.accessLogTx(r.holder, e1, e2, served))
	require.Equal(t, []string{EventAccessLogged, EventAccessThrottled, EventAccessLogged}, eventTypes(out.Results[0]))
	got, err := Access(r.view, e2.Request.ID())
	require.NoError(t, err)
	require.Nil(t, got)
	throttled, err := RefusalThrottled(r.view, addr(r.nurse), r.record(recs[0].ID), r.time)
	require.NoError(t, err)
	require.True(t, throttled)
	// Near misses: another requester on the same record, the same requester on another record.
	out = r.apply(r.accessLogTx(r.holder, refused(r.doc, recs[0], 4), refused(r.nurse, recs[1], 5)))
	require.Equal(t, []string{EventAccessLogged, EventAccessLogged}, eventTypes(out.Results[0]))

	// At most MaxRefusalsPerPatientWindow per (requester, patient).
	var entries []chain.AccessEntry
	for i := 2; i < len(recs); i++ {
		entries = append(entries, refused(r.nurse, recs[i], uint64(10+i)))
	}
	out = r.apply(r.accessLogTx(r.holder, entries...))
	types := eventTypes(out.Results[0])
	require.Equal(t, MaxRefusalsPerPatientWindow-2, countOf(types, EventAccessLogged))
	require.Equal(t, 2, countOf(types, EventAccessThrottled))
	throttled, err = RefusalThrottled(r.view, addr(r.nurse), r.record(recs[len(recs)-1].ID), r.time)
	require.NoError(t, err)
	require.True(t, throttled)

	// The next window admits one again; the old window's counters leave state by the expiry
	// index once the window has certainly ended.
	r.time = (int64(Window(r.time, RefusalWindowMs)) + 1) * RefusalWindowMs
	out = r.apply(r.accessLogTx(r.holder, refused(r.nurse, recs[0], 99)))
	require.Equal(t, []string{EventAccessLogged}, eventTypes(out.Results[0]))
	require.NotEmpty(t, keysWithPrefix(r.view, prefixRate))
}

func TestRateCountersExpire(t *testing.T) {
	r := newRecNet(t)
	rec := newAnchor("r", r.alice, "Observation")
	r.apply(r.anchorTx(r.doc, rec))
	r.apply(r.accessLogTx(r.holder, chain.AccessEntry{Request: accessReq(r.nurse, rec.ID, "TREAT", false, 1), Outcome: chain.AccessRefused}))
	keys := keysWithPrefix(r.view, prefixRate)
	require.Len(t, keys, 2)
	// Scheduled at height + (window end - time): each block adds at least 1 ms, so that block
	// is past the window.
	end := (int64(Window(r.time, RefusalWindowMs)) + 1) * RefusalWindowMs
	at := r.height + uint64(end-r.time)
	page := r.expiryPage(at, 0)
	require.NotNil(t, page)
	for _, k := range keys {
		require.Contains(t, page.Keys, []byte(k))
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
