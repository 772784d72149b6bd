package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/sync/light/lighttest"
)

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// TestLightClient serves a chain on which a patient was registered, had records imported,
// granted a consent and had a record read, and checks a light client: it verifies every header
// from genesis, proves the patient's whole log and its items against one header, is refused
// another patient's keys when limited to its own, and catches nodes that serve stale or
// altered proofs or a header no certificate covers.
func TestLightClient(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := f.newPatient("alice", true)
	bob := f.newPatient("bob", true)
	out, err := r.Import(ctx, alice.id(), readTestdata(t, "bundle-collection.json"))
	require.NoError(t, err)
	grant, _ := f.submit(alice.key, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: f.keys.ID(), Scope: chain.ConsentScope{Kind: chain.ScopeAll}, Purpose: "TREAT"})
	_, err = r.Read(ctx, out[0].ID, "TREAT", false, "clinician")
	require.NoError(t, err)
	want := uint64(len(out) + 2) // the records, the consent, the access entry
	f.waitFor("the read logged on the ledger", func() bool {
		n, err := state.PatientLogLength(f.runner.Chain().State(), alice.id())
		return err == nil && n == want
	})
	// Let a few more blocks certify the state that holds the log.
	h := f.runner.Chain().Height()
	f.waitFor("two more blocks", func() bool { return f.runner.Chain().Height() >= h+2 })

	server, client := loopbackHost(t), loopbackHost(t)
	client.Peerstore().AddAddrs(server.ID(), server.Addrs(), time.Hour)
	scope := func(p peer.ID) (chain.Address, bool) { return alice.id(), p == client.ID() }
	serve := func(src light.Source) {
		t.Helper()
		stop := light.Serve(server, f.g.ChainID, src, light.Options{Scope: scope, Submit: f.runner.Submit})
		t.Cleanup(stop)
	}
	serve(f.runner.Chain())
	c := light.NewClient(client, f.g.ChainID, server.ID())

	v, err := light.NewVerifier(f.g)
	require.NoError(t, err)
	top, err := c.Sync(ctx, v)
	require.NoError(t, err)
	require.GreaterOrEqual(t, top, uint64(5))
	ps, err := c.Patient(ctx, v, alice.id())
	require.NoError(t, err)
	require.NotNil(t, ps.Member)
	require.Equal(t, chain.RolePatient, ps.Member.Role)
	require.Len(t, ps.Log, int(want))
	for i, rec := range out {
		require.Equal(t, state.LogRecord, ps.Log[i].Kind)
		require.Equal(t, rec.ID, ps.Items[i].Record.ID)
	}
	require.Equal(t, grant.Hash(), ps.Items[len(out)].Consent.ID)
	acc := ps.Items[len(out)+1].Access
	require.NotNil(t, acc)
	require.Equal(t, out[0].ID, acc.Record)
	require.Equal(t, f.keys.ID(), acc.Accessor)
	require.Equal(t, chain.AccessServed, acc.Outcome)
	// The same as the node's own state at the proved height.
	at, err := v.ProofHeight()
	require.NoError(t, err)
	view, err := f.runner.Chain().StateAt(at)
	require.NoError(t, err)
	log, err := state.PatientLog(view, alice.id(), 0, 100)
	require.NoError(t, err)
	require.Equal(t, log, ps.Log)

	// The proved state gives the same answers as the node's API, through the same code.
	pv := ps.View()
	gotRecs, err := records.RecordsJSON(pv, ps.IDs(state.LogRecord))
	require.NoError(t, err)
	wantRecs, err := r.List(ctx, alice.id())
	require.NoError(t, err)
	require.Equal(t, wantRecs, gotRecs)
	gotCons, err := records.ConsentsJSON(pv, ps.IDs(state.LogConsent))
	require.NoError(t, err)
	wantCons, err := r.Consents(ctx, alice.id())
	require.NoError(t, err)
	require.Equal(t, wantCons, gotCons)
	gotAcc, err := records.AccessesJSON(pv, alice.id(), ps.IDs(state.LogAccess, state.LogReceipt))
	require.NoError(t, err)
	wantAcc, err := r.Accesses(ctx, alice.id())
	require.NoError(t, err)
	require.Equal(t, wantAcc, gotAcc)
	// Keys it did not prove are errors, not absences.
	_, err = state.Consent(pv, chain.Hash{1})
	require.ErrorIs(t, err, light.ErrNotProved)

	// A wallet limited to alice is refused bob's keys.
	_, err = c.Patient(ctx, v, bob.id())
	require.ErrorIs(t, err, light.ErrRefused)

	// The wallet submits its own consent over the wallet protocol and proves it took effect.
	n, err := c.Nonce(ctx, v, alice.key.Public())
	require.NoError(t, err)
	tx := chain.NewTx(alice.key, f.g.ChainID, chain.TxConsentGrant, n+1, &chain.ConsentGrant{Grantee: f.keys.ID(), Scope: chain.ConsentScope{Kind: chain.ScopeTypes, Types: []string{"Observation"}}, Purpose: "TREAT"})
	hash, err := c.Submit(ctx, tx)
	require.NoError(t, err)
	require.NoError(t, c.WaitNonce(ctx, v, alice.key.Public(), n+1))
	ps, err = c.Patient(ctx, v, alice.id())
	require.NoError(t, err)
	require.Equal(t, hash, ps.Log[len(ps.Log)-1].ID)
	require.Equal(t, "Observation", ps.Items[len(ps.Items)-1].Consent.Scope.Types[0])
	// Not another patient's transaction, nor a kind a wallet does not send.
	bobTx := chain.NewTx(bob.key, f.g.ChainID, chain.TxConsentGrant, 1, &chain.ConsentGrant{Grantee: f.keys.ID(), Scope: chain.ConsentScope{Kind: chain.ScopeAll}, Purpose: "TREAT"})
	_, err = c.Submit(ctx, bobTx)
	require.ErrorIs(t, err, light.ErrRefused)
	anchor := chain.NewTx(alice.key, f.g.ChainID, chain.TxAnchorRecords, n+2, &chain.AnchorRecords{Records: []chain.RecordAnchor{{ID: chain.Hash{9}, Patient: alice.id(), ResourceType: "Observation", Version: 1, CiphertextHash: chain.Hash{8}, Size: 1}}})
	_, err = c.Submit(ctx, anchor)
	require.ErrorIs(t, err, light.ErrRefused)

	// A wallet may start from a header the user confirmed, or resume from the one it verified
	// last time (its header and next set).
	mid := v.Height() - 2
	b, err := f.runner.Chain().Block(mid)
	require.NoError(t, err)
	tv, err := c.TrustHeader(ctx, f.g, mid, b.Header.Hash())
	require.NoError(t, err)
	require.Equal(t, mid, tv.Height())
	_, err = c.Sync(ctx, tv)
	require.NoError(t, err)
	require.GreaterOrEqual(t, tv.Height(), v.Height())
	_, err = c.Patient(ctx, tv, alice.id())
	require.NoError(t, err)
	_, err = c.TrustHeader(ctx, f.g, mid, chain.Hash{1})
	require.ErrorIs(t, err, light.ErrUnverified)
	_, err = light.NewVerifierAt(f.g, tv.Header(), &chain.AuthoritySet{})
	require.ErrorContains(t, err, "names next set")
	rv, err := light.NewVerifierAt(f.g, tv.Header(), tv.NextSet())
	require.NoError(t, err)
	_, err = c.Sync(ctx, rv)
	require.NoError(t, err)
	// A node that stays behind the header a wallet trusts is named: stale, or rolled back.
	serve(&lighttest.Liar{Source: f.runner.Chain(), Lie: lighttest.None, HideAbove: rv.Height() - 1})
	_, err = c.Sync(ctx, rv)
	require.ErrorIs(t, err, light.ErrBehind)

	// Lying nodes are caught.
	for _, lie := range []lighttest.Lie{lighttest.StaleProofs, lighttest.AlteredValues, lighttest.ForkedHeader} {
		t.Run(string(lie), func(t *testing.T) {
			serve(&lighttest.Liar{Source: f.runner.Chain(), Lie: lie, ForkAt: 3})
			v, err := light.NewVerifier(f.g)
			require.NoError(t, err)
			_, err = c.Sync(ctx, v)
			if err == nil {
				_, err = c.Patient(ctx, v, alice.id())
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, light.ErrUnverified), "want an unverified answer, got %v", err)
		})
	}
}
