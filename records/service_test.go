package records

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// testCtx is a subtest's context for calls into the service. It outlives every bounded wait of
// the subtest: a subtest that builds services (New compiles the FHIR validator, tens of
// seconds under the race detector) runs far longer than recWait, and a call whose context ends
// while its ledger query runs races with that query (see node.Runner.Query).
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomHash(t *testing.T) chain.Hash {
	var h chain.Hash
	_, err := rand.Read(h[:])
	require.NoError(t, err)
	return h
}

// indexedUpTo reports whether the service has indexed (and reacted to) block h.
func indexedUpTo(r *Service, h uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.indexed > h // react(h) is done once block h+1 is indexed
}

// stored is the resources of a document as an import stores them: parsed, and rewritten to stand
// alone (the test documents give every resource an id).
func stored(t *testing.T, r *Service, data []byte) []fhir.Resource {
	t.Helper()
	res, err := r.fhir.Parse(data)
	require.NoError(t, err)
	res, err = fhir.Standalone(res, func(i int) string { t.Fatalf("resource %d has no id", i); return "" })
	require.NoError(t, err)
	return res
}

// openAs decrypts a ciphertext with one envelope for the holder of priv.
func openAs(t *testing.T, priv *envelope.PrivateKey, chainID string, id chain.Hash, version uint64, ct []byte, env envelope.Envelope) []byte {
	t.Helper()
	plain, err := envelope.Open(priv, &envelope.Sealed{Ciphertext: ct, Envelopes: []envelope.Envelope{env}},
		envelope.Context{ChainID: chainID, RecordID: id, Version: version})
	require.NoError(t, err)
	return plain
}

// TestRecordService drives the record service of a lone authority (the real Runner over a
// memory store) with a peerless RecordNet. The subtests share one chain and one service, since
// New compiles the FHIR validator, which is slow (seconds under the race detector); each
// uses its own patients and providers. The journal subtest stops the service and runs last.
func TestRecordService(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	for _, st := range []struct {
		name string
		run  func(*testing.T, *recFixture, *running)
	}{
		{"import refusals", testImportRefusals},
		{"import list read", testImportListRead},
		{"fetch decisions", testFetchDecisions},
		{"fetch skew overflow", testFetchSkewOverflow},
		{"fetch replay", testFetchReplay},
		{"fetch replay after a crash", testFetchReplayAfterCrash},
		{"stale holder", testStaleHolder},
		{"refusal limit", testRefusalLimit},
		{"push refusals", testPushRefusals},
		{"placement follows licences", testPlacementFollowsLicences},
		{"erase", testErase},
		{"journal", testJournal},
	} {
		if !t.Run(st.name, func(t *testing.T) { st.run(t, f.sub(t), r) }) {
			return // later subtests rely on the shared service being sound
		}
	}
}

func testImportListRead(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("alice", true)
	self := f.keys.ID()
	provided := f.net.provides.Load()

	data := readTestdata(t, "bundle-collection.json")
	want := stored(t, r.Service, data)
	require.Len(t, want, 3)

	out, err := r.Import(ctx, p.id(), data)
	require.NoError(t, err)
	require.Len(t, out, len(want))
	for i, rec := range out {
		require.Equal(t, want[i].ResourceType, rec.ResourceType)
		require.EqualValues(t, 1, rec.Version)
		require.NotZero(t, rec.Height)
		st := f.record(rec.ID)
		require.NotNil(t, st, "record %d not anchored", i)
		require.Equal(t, p.id(), st.Patient)
		require.Equal(t, self, st.Author)
		require.Equal(t, rec.Height, st.AnchoredHeight)
		// The ciphertext is stored under its anchored hash, with envelopes for the patient and
		// this provider; the patient can open theirs.
		ct, err := r.blobs.Get(st.CiphertextHash)
		require.NoError(t, err)
		require.EqualValues(t, len(ct), st.Size)
		envs, err := r.blobs.Envelopes(rec.ID)
		require.NoError(t, err)
		require.Len(t, envs, 2)
		penv, err := r.blobs.Envelope(rec.ID, p.enc.Public().KeyID())
		require.NoError(t, err)
		require.Equal(t, want[i].JSON, openAs(t, p.enc, f.g.ChainID, rec.ID, 1, ct, penv))
	}

	// Read your writes: the list right after the import's answer shows it (the import waits
	// for the patient index, which applies blocks after they commit).
	list, err := r.List(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, list, len(out))
	for i, l := range list {
		require.Equal(t, out[i].ID, l.ID, "list is in anchor order")
		require.Equal(t, out[i].ResourceType, l.ResourceType)
		require.Equal(t, p.id(), l.Patient)
		require.Equal(t, self, l.Author)
		require.NotNil(t, l.CiphertextHash)
		require.False(t, l.Erased)
	}
	other, err := r.List(ctx, f.newPatient("nobody", false).id())
	require.NoError(t, err)
	require.Empty(t, other)

	// The author reads every record from its own copy; the first once more.
	for i, rec := range append(out, out[0]) {
		res, err := r.Read(ctx, rec.ID, testPurpose, false, testRole)
		require.NoError(t, err)
		require.Equal(t, "local", res.Holder)
		require.Equal(t, rec.ID, res.Record.ID)
		require.Equal(t, string(want[i%len(want)].JSON), string(res.JSON))
	}

	// Every read is one served access entry on the ledger, held and requested by this node.
	const reads = 4
	f.waitFor("access entries on the ledger", func() bool {
		a, err := r.Accesses(ctx, p.id())
		return err == nil && len(a) >= reads && len(pending(t, r.Service)) == 0
	})
	f.waitBlocks(2)
	acc, err := r.Accesses(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, acc, reads)
	perRecord := map[chain.Hash]int{}
	seen := map[chain.Hash]bool{}
	for _, a := range acc {
		require.Equal(t, "served", a.Outcome)
		require.Equal(t, self, a.Accessor)
		require.Equal(t, self, a.Holder)
		require.Equal(t, testPurpose, a.Purpose)
		require.False(t, a.Emergency)
		require.False(t, seen[a.RequestID], "request %s listed twice", a.RequestID)
		seen[a.RequestID] = true
		perRecord[a.Record]++
	}
	require.Equal(t, map[chain.Hash]int{out[0].ID: 2, out[1].ID: 1, out[2].ID: 1}, perRecord)

	// Each anchored record was announced in the DHT.
	f.waitFor("records provided", func() bool { return f.net.provides.Load() >= provided+int64(len(out)) })
}

func testImportRefusals(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("bob", true)
	stranger := f.newPatient("stranger", false)
	// Once the journal is empty this provider signs nothing unless an import anchors.
	f.waitFor("journal flushed", func() bool { return len(pending(t, r.Service)) == 0 })
	nonce := f.nonce(f.keys.ID())
	blobFiles, envFiles := filesUnder(t, filepath.Join(f.blobDir, "blobs")), filesUnder(t, filepath.Join(f.blobDir, "envelopes"))

	invalid := []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},` +
		`"subject":{"reference":"Patient/pat-1"},"valueQuantity":{"value":"high"}}`)
	twoPatients := []byte(`{"resourceType":"Bundle","type":"collection","entry":[
		{"resource":{"resourceType":"Condition","id":"c1","code":{"text":"Asthma"},"subject":{"reference":"Patient/pat-1"}}},
		{"resource":{"resourceType":"Condition","id":"c2","code":{"text":"Flu"},"subject":{"reference":"Patient/pat-2"}}}]}`)
	for _, tc := range []struct {
		name    string
		patient chain.Address
		data    []byte
		want    error
	}{
		{"invalid FHIR", p.id(), invalid, ErrInvalidFHIR},
		{"not JSON", p.id(), []byte(`{"resourceType":`), ErrInvalidFHIR},
		{"two patients", p.id(), twoPatients, ErrOtherPerson},
		{"unregistered patient", stranger.id(), readTestdata(t, "bundle-collection.json"), ErrNotRegistered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := r.Import(ctx, tc.patient, tc.data)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, out)
		})
	}
	// Nothing was anchored (this provider signed nothing) and nothing was written to the blob
	// store.
	require.Equal(t, nonce, f.nonce(f.keys.ID()))
	for _, who := range []chain.Address{p.id(), stranger.id()} {
		l, err := r.List(ctx, who)
		require.NoError(t, err)
		require.Empty(t, l)
	}
	require.Equal(t, blobFiles, filesUnder(t, filepath.Join(f.blobDir, "blobs")))
	require.Equal(t, envFiles, filesUnder(t, filepath.Join(f.blobDir, "envelopes")))
}

// testJournal stops the shared service: it runs last. A read served by a service that stops
// before its flusher submits reaches the ledger once after a restart, and an entry the ledger
// already has is dropped from the journal without a second submission.
func testJournal(t *testing.T, f *recFixture, r1 *running) {
	ctx := testCtx(t)
	p := f.newPatient("erin", true)
	out, err := r1.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	f.waitFor("journal flushed", func() bool { return len(pending(t, r1.Service)) == 0 })
	r1.stop(t)

	// A second service over the same blob dir serves a read and "crashes" before its flusher
	// runs: it is never started.
	r2 := f.newRecords()
	res, err := r2.Read(ctx, id, testPurpose, false, testRole)
	require.NoError(t, err)
	require.Equal(t, "local", res.Holder)
	pend := pending(t, r2)
	require.Len(t, pend, 1)
	e := pend[0]
	require.Equal(t, chain.AccessServed, e.Outcome)
	require.Equal(t, id, e.Request.Record)
	require.Equal(t, f.keys.Signing.Public(), e.Request.Requester)
	reqID := e.Request.ID()
	f.waitBlocks(3)
	require.Nil(t, f.access(reqID), "nothing submitted the entry yet")

	// After the restart the journalled entry reaches the ledger, once, and leaves the journal.
	r3 := f.run(f.newRecords())
	f.waitFor("journal flushed", func() bool { return f.access(reqID) != nil && len(pending(t, r3.Service)) == 0 })
	a := f.access(reqID)
	require.Equal(t, chain.AccessServed, a.Outcome)
	require.Equal(t, f.keys.ID(), a.Holder)
	require.Equal(t, f.keys.ID(), a.Accessor)
	require.Equal(t, id, a.Record)
	f.waitFor("index shows the access", func() bool {
		acc, err := r3.Accesses(ctx, p.id())
		return err == nil && len(acc) > 0
	})
	f.waitBlocks(2)
	acc, err := r3.Accesses(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, acc, 1)
	require.Equal(t, reqID, acc[0].RequestID)
	r3.stop(t) // from here on only the test signs for this provider

	// The same entry submitted twice (and twice within one transaction) is logged once.
	e2 := chain.AccessEntry{Request: *f.request(f.keys, id, time.Now()), Outcome: chain.AccessServed}
	req2 := e2.Request.ID()
	_, h1 := f.submit(f.keys.Signing, chain.TxAccessLog, &chain.AccessLog{Entries: []chain.AccessEntry{e2}})
	_, h2 := f.submit(f.keys.Signing, chain.TxAccessLog, &chain.AccessLog{Entries: []chain.AccessEntry{e2, e2, e}})
	require.Greater(t, h2, h1)
	require.Equal(t, h1, f.access(req2).Height)
	require.Equal(t, a.Height, f.access(reqID).Height)

	// A journal that still holds an entry the ledger has (a crash after the submission, before
	// the removal) forgets it without submitting it again.
	require.NoError(t, r2.journal.Add(e2))
	require.Len(t, pending(t, r2), 1)
	n0 := f.nonce(f.keys.ID())
	f.run(r2)
	f.waitFor("journal emptied", func() bool { return len(pending(t, r2)) == 0 })
	f.waitFor("index shows the accesses", func() bool {
		acc, err := r2.Accesses(ctx, p.id())
		return err == nil && len(acc) >= 2
	})
	f.waitBlocks(2)
	require.Equal(t, n0, f.nonce(f.keys.ID()), "the journal resubmitted an entry already on the ledger")
	acc, err = r2.Accesses(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, acc, 2)
	require.ElementsMatch(t, []chain.Hash{reqID, req2}, []chain.Hash{acc[0].RequestID, acc[1].RequestID})
	require.Equal(t, h1, f.access(req2).Height)
}

func testFetchDecisions(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("gus", true)
	data := readTestdata(t, "observation.json")
	want := stored(t, r.Service, data)
	out, err := r.Import(ctx, p.id(), data)
	require.NoError(t, err)
	id := out[0].ID
	st := f.record(id)
	self := f.keys.ID()
	b := f.registerProvider("requester")
	c := f.registerProvider("late")
	nobody := f.newProviderKeys("nobody")
	bKey := b.Encryption.Public().KeyID()

	// The ledger entry of a journalled decision.
	logged := func(req *chain.AccessRequest, outcome chain.AccessOutcome) {
		t.Helper()
		f.waitFor("access entry on the ledger", func() bool { return f.access(req.ID()) != nil })
		a := f.access(req.ID())
		require.Equal(t, outcome, a.Outcome)
		require.Equal(t, req.Requester.Address(), a.Accessor)
		require.Equal(t, self, a.Holder)
		require.Equal(t, id, a.Record)
	}

	resp := r.Fetch(ctx, f.peer, f.request(b, randomHash(t), time.Now()))
	require.Equal(t, exchange.StatusNotFound, resp.Status, resp.Reason)

	unregistered := f.request(nobody, id, time.Now())
	resp = r.Fetch(ctx, f.peer, unregistered)
	require.Equal(t, exchange.StatusRefused, resp.Status)
	require.Contains(t, resp.Reason, "not a registered provider")
	require.Empty(t, resp.Ciphertext)

	var skewed []*chain.AccessRequest
	// A request is good only from the node it names and at the holder it names.
	stranger, _ := testPeer(t)
	copied := f.request(b, id, time.Now())
	resp = r.Fetch(ctx, stranger, copied)
	require.Equal(t, exchange.StatusRefused, resp.Status)
	require.Contains(t, resp.Reason, "bound to another requester node")
	elsewhere := f.request(b, id, time.Now())
	elsewhere.Holder = f.peerKey
	elsewhere.Sign(b.Signing, f.g.ChainID)
	resp = r.Fetch(ctx, f.peer, elsewhere)
	require.Equal(t, exchange.StatusRefused, resp.Status)
	require.Contains(t, resp.Reason, "addressed to another holder")
	skewed = append(skewed, copied, elsewhere)
	for _, d := range []time.Duration{time.Hour, -time.Hour} {
		req := f.request(b, id, time.Now().Add(d))
		resp = r.Fetch(ctx, f.peer, req)
		require.Equal(t, exchange.StatusRefused, resp.Status)
		require.Contains(t, resp.Reason, "clock")
		skewed = append(skewed, req)
	}

	noConsent := f.request(b, id, time.Now())
	resp = r.Fetch(ctx, f.peer, noConsent)
	require.Equal(t, exchange.StatusRefused, resp.Status)
	require.Contains(t, resp.Reason, "no consent")
	require.Empty(t, resp.Ciphertext)
	require.Empty(t, resp.Envelopes)
	logged(noConsent, chain.AccessRefused)
	require.Equal(t, resp.Reason, f.access(noConsent.ID()).Reason)
	// The requests refused before the consent check were neither journalled nor logged.
	f.waitFor("journal flushed", func() bool { return len(pending(t, r.Service)) == 0 })
	for _, req := range append(skewed, unregistered) {
		require.Nil(t, f.access(req.ID()))
	}

	// With the patient's consent the requester gets the ciphertext and its own envelope.
	_, grantHeight := f.grant(p, b.ID(), 0)
	served := func() {
		t.Helper()
		req := f.request(b, id, time.Now())
		resp := r.Fetch(ctx, f.peer, req)
		require.Equal(t, exchange.StatusOK, resp.Status, resp.Reason)
		require.Equal(t, st.CiphertextHash, chain.Sum256(resp.Ciphertext))
		require.Len(t, resp.Envelopes, 1)
		require.Equal(t, bKey, resp.Envelopes[0].RecipientKeyID)
		require.Equal(t, want[0].JSON, openAs(t, b.Encryption, f.g.ChainID, id, 1, resp.Ciphertext, resp.Envelopes[0]))
		logged(req, chain.AccessServed)
	}
	served()
	// The author wraps on demand: with the grantee's envelope gone, the next fetch wraps again.
	f.waitFor("consent block handled", func() bool { return indexedUpTo(r.Service, grantHeight) })
	hasEnv := func() bool { _, err := r.blobs.Envelope(id, bKey); return err == nil }
	require.True(t, hasEnv())
	require.NoError(t, r.blobs.RemoveEnvelope(id, bKey))
	require.False(t, hasEnv())
	served()
	f.waitFor("the envelope wrapped on demand kept", hasEnv)

	// An expired consent is no consent.
	_, now := f.tip()
	expires := now + 2000
	f.grant(p, c.ID(), expires)
	f.waitFor("consent expiry", func() bool { _, ms := f.tip(); return ms >= expires })
	late := f.request(c, id, time.Now())
	resp = r.Fetch(ctx, f.peer, late)
	require.Equal(t, exchange.StatusRefused, resp.Status)
	require.Contains(t, resp.Reason, "expired")
	logged(late, chain.AccessRefused)

	// The patient's audit view has every journalled decision once.
	f.waitFor("journal flushed", func() bool { return len(pending(t, r.Service)) == 0 })
	f.waitFor("index", func() bool { acc, err := r.Accesses(ctx, p.id()); return err == nil && len(acc) >= 4 })
	acc, err := r.Accesses(ctx, p.id())
	require.NoError(t, err)
	outcomes := map[string]int{}
	for _, a := range acc {
		outcomes[a.Outcome]++
	}
	require.Equal(t, map[string]int{"served": 2, "refused": 2}, outcomes)
}

// testFetchSkewOverflow: a request issued 2^58 ms (about nine million years) before the holder's
// clock must be refused. The first skew check computed the difference as a time.Duration in
// nanoseconds, which wrapped to exactly 0 (2^58 * 10^6 is a multiple of 2^64) and let it pass.
func testFetchSkewOverflow(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("jon", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	k := f.registerProvider("time-traveller")
	req := f.request(k, out[0].ID, time.Now())
	req.IssuedMs -= 1 << 58
	req.Sign(k.Signing, f.g.ChainID)
	resp := r.Fetch(ctx, f.peer, req)
	require.Equal(t, exchange.StatusRefused, resp.Status)
	require.Contains(t, resp.Reason, "clock", "a request issued 2^58 ms ago passed the skew check")
}

// testFetchReplay: a holder serves one signed request once; a replay would be a read without a
// ledger entry of its own.
func testFetchReplay(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("ray", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	k := f.registerProvider("replayer")
	f.grant(p, k.ID(), 0)
	req := f.request(k, out[0].ID, time.Now())
	require.Equal(t, exchange.StatusOK, r.Fetch(ctx, f.peer, req).Status)
	again := r.Fetch(ctx, f.peer, req)
	require.Equal(t, exchange.StatusRefused, again.Status)
	require.Contains(t, again.Reason, "already used")
	fresh := f.request(k, out[0].ID, time.Now())
	require.Equal(t, exchange.StatusOK, r.Fetch(ctx, f.peer, fresh).Status)
}

func testPushRefusals(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("hal", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	id := out[0].ID
	st := f.record(id)
	ct, err := r.blobs.Get(st.CiphertextHash)
	require.NoError(t, err)
	push := func(from peer.ID, k *Keys, rec, hash chain.Hash, ciphertext []byte) error {
		req := &exchange.PushRequest{Record: rec, CiphertextHash: hash, Ciphertext: ciphertext}
		req.Sign(k.Signing, f.g.ChainID)
		return r.Push(ctx, from, req)
	}
	self := f.nodePeer // the author's node: this one

	// A provider the ledger does not assign the record to may not push it, even signed by
	// itself from its own node.
	b := f.unassigned(r.Service, id, "pusher")
	bPeer, _ := nodeOf(t, b)
	err = push(bPeer, b, id, st.CiphertextHash, ct)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "only the author or an assigned holder")
	// The author's key from another node, or another key from the author's node: refused.
	err = push(bPeer, f.keys, id, st.CiphertextHash, ct)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "signed with another key")
	err = push(self, b, id, st.CiphertextHash, ct)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "signed with another key")
	// A node that is no member's, and a peer id without an Ed25519 key.
	err = push(f.peer, f.keys, id, st.CiphertextHash, ct)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "not an active provider's")
	require.ErrorIs(t, push("", f.keys, id, st.CiphertextHash, ct), exchange.ErrRefused)

	forged := []byte("not the anchored ciphertext")
	err = push(self, f.keys, id, chain.Sum256(forged), forged)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "does not match the anchor")
	require.False(t, r.blobs.Has(chain.Sum256(forged)))

	require.ErrorIs(t, push(self, f.keys, randomHash(t), st.CiphertextHash, ct), exchange.ErrNotFound)
	require.NoError(t, push(self, f.keys, id, st.CiphertextHash, ct), "the author's own push is accepted")

	// Over the member's quota the push is refused for now (StatusBusy), not for ever.
	saved := r.pushQuota
	r.pushQuota = newMemberQuota("push", len(ct)*3/2, time.Minute, 100)
	require.NoError(t, push(self, f.keys, id, st.CiphertextHash, ct))
	err = push(self, f.keys, id, st.CiphertextHash, ct)
	require.ErrorIs(t, err, exchange.ErrBusy)
	require.NotErrorIs(t, err, exchange.ErrRefused)
	r.pushQuota = saved

	// After erasure no push, not even the author's replay, brings the record back.
	f.erase(p, id)
	f.waitFor("blob shredded", func() bool { return !r.blobs.Has(st.CiphertextHash) })
	err = push(self, f.keys, id, st.CiphertextHash, ct)
	require.ErrorIs(t, err, exchange.ErrRefused)
	require.Contains(t, err.Error(), "erased")
	require.False(t, r.blobs.Has(st.CiphertextHash))
}

func testErase(t *testing.T, f *recFixture, r *running) {
	ctx := testCtx(t)
	p := f.newPatient("ida", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "bundle-collection.json"))
	require.NoError(t, err)
	require.Len(t, out, 3)
	b := f.registerProvider("reader")
	f.grant(p, b.ID(), 0)
	bKey := b.Encryption.Public().KeyID()
	for _, rec := range out {
		f.waitFor("envelope for the grantee", func() bool { _, err := r.blobs.Envelope(rec.ID, bKey); return err == nil })
	}
	hashes := map[chain.Hash]chain.Hash{}
	for _, rec := range out {
		hashes[rec.ID] = f.record(rec.ID).CiphertextHash
	}

	gone, kept := []chain.Hash{out[0].ID, out[2].ID}, out[1].ID
	f.erase(p, gone...)
	for _, id := range gone {
		f.waitFor("erasure acknowledged on the ledger", func() bool {
			rec := f.record(id)
			return rec.Erased && len(rec.Acks) == 1 && rec.Acks[0] == f.keys.ID()
		})
		require.False(t, r.blobs.Has(hashes[id]))
		envs, err := r.blobs.Envelopes(id)
		require.NoError(t, err)
		require.Empty(t, envs)
		require.NoFileExists(t, filepath.Join(f.blobDir, "envelopes", id.String()))

		_, err = r.Read(ctx, id, testPurpose, false, testRole)
		require.ErrorIs(t, err, ErrRecordErased)
		resp := r.Fetch(ctx, f.peer, f.request(b, id, time.Now()))
		require.Equal(t, exchange.StatusNotFound, resp.Status)
		require.Empty(t, resp.Ciphertext)
	}
	// The other record is untouched.
	require.True(t, r.blobs.Has(hashes[kept]))
	envs, err := r.blobs.Envelopes(kept)
	require.NoError(t, err)
	require.Len(t, envs, 3) // patient, author, grantee
	_, err = r.Read(ctx, kept, testPurpose, false, testRole)
	require.NoError(t, err)

	list, err := r.List(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, list, 3)
	for _, l := range list {
		isGone := l.ID != kept
		require.Equal(t, isGone, l.Erased, "record %s", l.ID)
		if isGone {
			require.Nil(t, l.CiphertextHash)
			require.Equal(t, []chain.Address{f.keys.ID()}, l.ErasureAcks)
		}
	}
}
