package records

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/exchange"
)

// A payer reads, over the network, the sealed claim that names it, from the practice that
// authored it; the read is on the ledger for the patient to see. Before the claim, and for
// any other record, it is refused.
func TestPayerReadsClaimOverNetwork(t *testing.T) {
	board := testKey(t, "payers-board")
	m := newMeshGenesis(t, 1, 1, fastRepair, func(g *chain.Genesis) {
		g.Issuers = []chain.Issuer{{Role: chain.RolePayer, Key: board.Public(), Name: "payers' board"}}
	})
	f, doc := m.f, m.nodes[0]

	// The payer's node: its own host, registered as a payer, then its record service.
	h := m.addHost(t)
	require.NoError(t, m.mn.LinkAll())
	require.NoError(t, m.mn.ConnectAllButSelf())
	py := &meshNode{name: "payer", host: h, peer: h.ID(), gate: &gate{}, keys: f.newProviderKeys("payer"),
		blobDir: filepath.Join(t.TempDir(), "blobs"), licFile: filepath.Join(t.TempDir(), "licence")}
	var err error
	py.key, err = NodeKeyOf(h.ID())
	require.NoError(t, err)
	lic := chain.Licence{Role: chain.RolePayer, Subject: py.keys.Signing.Public(), NodeKey: py.key, Number: "PAY-1",
		Jurisdiction: "US-VT", NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	lic.Sign(board, f.g.ChainID)
	require.NoError(t, os.WriteFile(py.licFile, chain.Encode(&lic), 0o600))
	f.submit(py.keys.Signing, chain.TxRegisterMember, &chain.RegisterMember{Licence: lic, EncryptionKey: py.keys.Encryption.Public().Bytes()})
	t.Cleanup(exchange.Serve(h, f.g.ChainID, py.gate, exchange.ServerOptions{Rate: 1000, Burst: 1000}))
	m.start(t, py)
	payer := py.keys.ID()

	// The payer's schedule for the practice, its coverage of the patient.
	key, err := billing.NewKey()
	require.NoError(t, err)
	sched, err := billing.BuildSchedule(key, billing.ScheduleInput{ChainID: f.g.ChainID, Payer: payer, Provider: f.keys.ID(),
		ProviderEncryptionKey: f.keys.Encryption.Public().Bytes(), Currency: "USD", CoinsurancePct: 20,
		Fees: []billing.Fee{{Code: "99213", AllowedCents: 7_500}}})
	require.NoError(t, err)
	f.submit(py.keys.Signing, chain.TxPayerSchedule, sched)
	p := f.newPatient("claimed", true)
	today := time.Now().UTC()
	from, err := billing.ServiceDay(today.AddDate(0, 0, -30).Format(time.DateOnly))
	require.NoError(t, err)
	f.submit(py.keys.Signing, chain.TxCoverageSet, &chain.CoverageSet{ID: chain.Sum256([]byte("cov")), Patient: p.id(), FromDay: from})

	// The visit and the sealed claim, anchored by the practice.
	ctx := context.Background()
	enc, err := doc.run.Import(ctx, p.id(), []byte(`{"resourceType": "Encounter", "id": "e1", "status": "finished",
	  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": {"reference": "Patient/pat-1"}}`))
	require.NoError(t, err)
	date := today.Format(time.DateOnly)
	claimJSON := []byte(fmt.Sprintf(`{"resourceType": "Claim", "id": "c1", "status": "active",
	  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
	  "use": "claim", "patient": {"reference": "Patient/pat-1"}, "created": %q,
	  "provider": {"reference": "Organization/practice"},
	  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
	  "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/c1"}}],
	  "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]},
	    "servicedDate": %q, "net": {"value": 90.00, "currency": "USD"}}]}`, date, date))
	cl, err := doc.run.Import(ctx, p.id(), claimJSON)
	require.NoError(t, err)
	record := cl[0].ID

	// Not yet claimed: refused, as is the encounter.
	_, err = py.run.Read(ctx, record, state.PurposePayment, false, "billing")
	require.ErrorIs(t, err, ErrAccessRefused)

	content, err := billing.ParseClaim(claimJSON)
	require.NoError(t, err)
	cs, err := billing.BuildClaimSubmit(key, content, billing.ClaimIDs{ID: chain.Sum256([]byte("claim")), Patient: p.id(), Payer: payer,
		Encounter: enc[0].ID, Record: record})
	require.NoError(t, err)
	f.submit(f.keys.Signing, chain.TxClaimSubmit, cs)
	wrapped, err := doc.run.WrapForClaim(ctx, record)
	require.NoError(t, err)
	require.Equal(t, []chain.Address{payer}, wrapped)

	// Claimed: the payer reads it from the practice and checks it with its key.
	res, err := py.run.Read(ctx, record, state.PurposePayment, false, "billing")
	require.NoError(t, err)
	require.Equal(t, doc.peer.String(), res.Holder)
	require.NoError(t, billing.VerifyClaim(key, res.JSON, cs))
	// For another purpose, or the encounter: refused.
	_, err = py.run.Read(ctx, record, "TREAT", false, "billing")
	require.ErrorIs(t, err, ErrAccessRefused)
	_, err = py.run.Read(ctx, enc[0].ID, state.PurposePayment, false, "billing")
	require.ErrorIs(t, err, ErrAccessRefused)

	// The patient sees the payer's read on the ledger, logged by the holder.
	f.waitFor("the payer's read on the ledger", func() bool {
		acc, err := doc.run.Accesses(ctx, p.id())
		require.NoError(t, err)
		for _, a := range acc {
			if a.Accessor == payer && a.Record == record && a.Outcome == "served" {
				return true
			}
		}
		return false
	})
}
