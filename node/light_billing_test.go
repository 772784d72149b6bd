package node

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/wallet/envelope"
)

// TestLightClientFamilyMembership: a practice enrols a family membership whose subscriber is
// alice and whose other member is bob, and records alice's payment. Bob's wallet, limited to
// bob, proves the membership from his own log (it concerns him though he does not subscribe)
// and derives the same statement as the node; the payment is alice's receipt, not in bob's log.
// Alice's wallet cancels the membership over the wallet protocol; bob's cannot.
func TestLightClientFamilyMembership(t *testing.T) {
	f := newRecFixture(t)
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := f.newPatient("alice", true)
	bob := f.newPatient("bob", true)
	practice := f.keys.Signing

	plan := chain.Plan{ID: chain.Sum256([]byte("light/plan")), Label: "Family monthly", Currency: "USD", Period: chain.PeriodMonthly, Family: true,
		MaxMembers: 4, Tiers: []chain.PlanTier{{Label: "18-64", PriceCents: 9900}, {Label: "0-17", PriceCents: 4900}}, GraceDays: 10}
	f.submit(practice, chain.TxPlanPublish, &chain.PlanPublish{Plan: plan})
	ms := []chain.MemberTier{{Patient: alice.id(), Tier: 0}, {Patient: bob.id(), Tier: 1}}
	if bytes.Compare(ms[1].Patient[:], ms[0].Patient[:]) < 0 {
		ms[0], ms[1] = ms[1], ms[0]
	}
	// Started a few hours ago (the rules take up to a day back): the first invoice is out.
	ag := chain.MembershipAgreement{ID: chain.Sum256([]byte("light/mship")), Plan: plan.ID, Subscriber: alice.id(), Members: ms,
		StartMs: time.Now().Add(-6 * time.Hour).UnixMilli(), Contract: chain.Sum256([]byte("light/contract"))}
	sig := alice.key.Sign(chain.DomainMembership, f.g.ChainID, ag.AgreementBytes())
	f.submit(practice, chain.TxMembershipEnrol, &chain.MembershipEnrol{Agreement: ag, SubscriberSig: sig})
	pay, _ := f.submit(practice, chain.TxPaymentRecord, &chain.PaymentRecord{Reference: chain.Sum256([]byte("light/ref")),
		Splits: []chain.PaymentSplit{{Membership: ag.ID, Cents: 5000}}})
	h := f.runner.Chain().Height()
	f.waitFor("two more blocks", func() bool { return f.runner.Chain().Height() >= h+2 })

	server := loopbackHost(t)
	wallets := map[peer.ID]chain.Address{}
	stop := light.Serve(server, f.g.ChainID, f.runner.Chain(), light.Options{Submit: f.runner.Submit,
		Scope: func(p peer.ID) (chain.Address, bool) { a, ok := wallets[p]; return a, ok }})
	t.Cleanup(stop)
	client := func(p *testPatient) (*light.Client, *light.Verifier) {
		h := loopbackHost(t)
		wallets[h.ID()] = p.id()
		h.Peerstore().AddAddrs(server.ID(), server.Addrs(), time.Hour)
		c := light.NewClient(h, f.g.ChainID, server.ID())
		v, err := light.NewVerifier(f.g)
		require.NoError(t, err)
		_, err = c.Sync(ctx, v)
		require.NoError(t, err)
		return c, v
	}

	bc, bv := client(bob)
	ps, err := bc.Patient(ctx, bv, bob.id())
	require.NoError(t, err)
	var got *state.MembershipRecord
	for i, it := range ps.Items {
		require.Nil(t, it.Payment, "a payment is the subscriber's receipt, logged for alice only")
		if it.Membership != nil {
			got = it.Membership
			require.Equal(t, state.LogMembership, ps.Log[i].Kind)
			require.True(t, it.Concerns(bob.id()))
		}
	}
	require.NotNil(t, got, "bob proves the membership he is a member of")
	require.Equal(t, alice.id(), got.Subscriber)
	require.Equal(t, uint64(5000), got.PaidCents)
	// The statement bob's wallet derives is the node's at the same state.
	at, err := bv.ProofHeight()
	require.NoError(t, err)
	view, err := f.runner.Chain().StateAt(at)
	require.NoError(t, err)
	want, err := state.Membership(view, ag.ID)
	require.NoError(t, err)
	require.Equal(t, want, got)
	st := got.Statement(ps.Header.Time)
	require.Equal(t, want.Statement(ps.Header.Time), st)
	require.Len(t, st.Invoices, 1)
	require.Equal(t, uint64(9900+4900), st.Invoices[0].AmountCents)
	require.Equal(t, int64(9900+4900-5000), st.BalanceCents)

	// Alice sees the membership and her receipt.
	ac, av := client(alice)
	aps, err := ac.Patient(ctx, av, alice.id())
	require.NoError(t, err)
	var receipt *state.PaymentState
	for _, it := range aps.Items {
		if it.Payment != nil {
			receipt = it.Payment
		}
	}
	require.NotNil(t, receipt)
	require.Equal(t, pay.Hash(), receipt.ID)

	// Alice cancels over the wallet protocol (a kind a wallet may now send).
	n, err := ac.Nonce(ctx, av, alice.key.Public())
	require.NoError(t, err)
	_, err = ac.Submit(ctx, chain.NewTx(alice.key, f.g.ChainID, chain.TxMembershipCancel, n+1, &chain.MembershipCancel{Membership: ag.ID}))
	require.NoError(t, err)
	require.NoError(t, ac.WaitNonce(ctx, av, alice.key.Public(), n+1))
	aps, err = ac.Patient(ctx, av, alice.id())
	require.NoError(t, err)
	for _, it := range aps.Items {
		if it.Membership != nil {
			require.NotZero(t, it.Membership.EndMs, "cancelled")
			require.Equal(t, state.StatusCancelled, it.Membership.Statement(aps.Header.Time).Status)
		}
	}
	// Another patient's cancellation is refused at the door.
	_, err = bc.Submit(ctx, chain.NewTx(alice.key, f.g.ChainID, chain.TxMembershipCancel, n+2, &chain.MembershipCancel{Membership: ag.ID}))
	require.ErrorIs(t, err, light.ErrRefused)
}

// TestLightClientClaim: a payer covers alice, the practice anchors her visit and files a claim in
// her name; alice's wallet proves the claim from her log (adjudicated by the payer's schedule),
// disputes it over the wallet protocol and proves the dispute; bob's wallet may not dispute it.
func TestLightClientClaim(t *testing.T) {
	board, payer := testKey(t, "light/payers-board"), testKey(t, "light/payer")
	f := newRecFixtureGenesis(t, replica.MempoolConfig{}, func(g *chain.Genesis) {
		g.Issuers = []chain.Issuer{{Role: chain.RolePayer, Key: board.Public(), Name: "payers' board"}}
	})
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := f.newPatient("alice", true)
	bob := f.newPatient("bob", true)
	practice := f.keys.Signing

	ek, err := envelope.GenerateKey(rand.Reader)
	require.NoError(t, err)
	var nodeKey chain.PubKey
	copy(nodeKey[:], "light-payer-node-key-0123456789ab")
	lic := chain.Licence{Role: chain.RolePayer, Subject: payer.Public(), NodeKey: nodeKey, Number: "P-1", Jurisdiction: "VT", NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	lic.Sign(board, f.g.ChainID)
	f.submit(payer, chain.TxRegisterMember, &chain.RegisterMember{Licence: lic, EncryptionKey: ek.Public().Bytes()})
	k := chain.Sum256([]byte("light/billing-key"))
	code := func(c string) chain.Fingerprint {
		m := hmac.New(sha256.New, k[:])
		m.Write([]byte(c))
		return chain.Hash(m.Sum(nil))
	}
	f.submit(payer, chain.TxPayerSchedule, &chain.PayerSchedule{Provider: f.keys.ID(), Currency: "USD", KeyCommit: chain.Sum256(k[:]),
		KeyEnvelope: []byte("sealed K"), Fees: []chain.FeeEntry{{Code: code("99213"), AllowedCents: 10000}}, CoinsurancePct: 20})
	today := uint32(time.Now().UnixMilli() / chain.DayMs)
	f.submit(payer, chain.TxCoverageSet, &chain.CoverageSet{ID: chain.Sum256([]byte("light/coverage")), Patient: alice.id(), FromDay: today - 30})
	anchor := func(label, typ string) chain.RecordAnchor {
		return chain.RecordAnchor{ID: chain.Sum256([]byte("light/" + label)), Patient: alice.id(), ResourceType: typ, Version: 1,
			CiphertextHash: chain.Sum256([]byte("light/ct/" + label)), Size: 100}
	}
	enc, rec := anchor("enc", "Encounter"), anchor("claim", "Claim")
	f.submit(practice, chain.TxAnchorRecords, &chain.AnchorRecords{Records: []chain.RecordAnchor{enc, rec}})
	cl := &chain.ClaimSubmit{ID: chain.Sum256([]byte("light/claim-id")), Patient: alice.id(), Payer: payer.Public().Address(), Encounter: enc.ID, Record: rec.ID,
		ServiceDay: today, KeyCommit: chain.Sum256(k[:]), Lines: []chain.ClaimLine{{Code: code("99213"), BilledCents: 15000}}}
	cl.DupPrint = chain.ClaimDupPrint(cl.Patient, cl.ServiceDay, cl.Lines)
	f.submit(practice, chain.TxClaimSubmit, cl)
	h := f.runner.Chain().Height()
	f.waitFor("two more blocks", func() bool { return f.runner.Chain().Height() >= h+2 })

	server := loopbackHost(t)
	wallets := map[peer.ID]chain.Address{}
	stop := light.Serve(server, f.g.ChainID, f.runner.Chain(), light.Options{Submit: f.runner.Submit,
		Scope: func(p peer.ID) (chain.Address, bool) { a, ok := wallets[p]; return a, ok }})
	t.Cleanup(stop)
	client := func(p *testPatient) (*light.Client, *light.Verifier) {
		h := loopbackHost(t)
		wallets[h.ID()] = p.id()
		h.Peerstore().AddAddrs(server.ID(), server.Addrs(), time.Hour)
		c := light.NewClient(h, f.g.ChainID, server.ID())
		v, err := light.NewVerifier(f.g)
		require.NoError(t, err)
		_, err = c.Sync(ctx, v)
		require.NoError(t, err)
		return c, v
	}
	claimOf := func(ps *light.PatientState) *state.ClaimRecord {
		for _, it := range ps.Items {
			if it.Claim != nil && it.Claim.ID == cl.ID {
				return it.Claim
			}
		}
		return nil
	}

	ac, av := client(alice)
	ps, err := ac.Patient(ctx, av, alice.id())
	require.NoError(t, err)
	got := claimOf(ps)
	require.NotNil(t, got, "the claim in alice's name is in her proved log")
	require.Equal(t, state.ClaimAdjudicated, got.Status)
	require.Equal(t, uint64(10000), got.Lines[0].AllowedCents)
	require.Equal(t, uint64(2000), got.Lines[0].PatientCents)
	require.Equal(t, uint64(8000), got.Lines[0].PaidCents)

	n, err := ac.Nonce(ctx, av, alice.key.Public())
	require.NoError(t, err)
	_, err = ac.Submit(ctx, chain.NewTx(alice.key, f.g.ChainID, chain.TxClaimDispute, n+1, &chain.ClaimDispute{Claim: cl.ID, Reason: chain.DisputeWrongAmount}))
	require.NoError(t, err)
	require.NoError(t, ac.WaitNonce(ctx, av, alice.key.Public(), n+1))
	ps, err = ac.Patient(ctx, av, alice.id())
	require.NoError(t, err)
	got = claimOf(ps)
	require.Equal(t, state.ClaimDisputed, got.Status)
	require.NotNil(t, got.Dispute())
	require.Equal(t, chain.DisputeWrongAmount, got.Dispute().Reason)

	// Bob's wallet does not see it and may not send alice's dispute.
	bc, bv := client(bob)
	bps, err := bc.Patient(ctx, bv, bob.id())
	require.NoError(t, err)
	require.Nil(t, claimOf(bps))
	_, err = bc.Submit(ctx, chain.NewTx(alice.key, f.g.ChainID, chain.TxClaimDispute, n+2, &chain.ClaimDispute{Claim: cl.ID, Reason: chain.DisputeOther}))
	require.ErrorIs(t, err, light.ErrRefused)
}
