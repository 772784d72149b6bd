package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/records"
)

// claimParty is a member node in the claim tests: its own record service over the fixture's
// chain, and its own API.
type claimParty struct {
	svc *running
	srv *httptest.Server
	api *API
}

func (p *claimParty) do(t *testing.T, method, path string, body any) apiAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, p.srv.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := p.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return apiAnswer{resp.StatusCode, resp.Header, data}
}

func decodeAs[T any](t *testing.T, a apiAnswer, code int) T {
	t.Helper()
	require.Equal(t, code, a.code, "%s", a.body)
	var v T
	require.NoError(t, json.Unmarshal(a.body, &v))
	return v
}

// party starts a record service and an API for keys k, whose licence l is written to its own
// licence file (a payer registers through RegisterMember before, as `medledger payer register`).
func (f *recFixture) party(k *records.Keys, l chain.Licence, nodeKey chain.PubKey) *claimParty {
	f.t.Helper()
	dir := f.t.TempDir()
	lf := filepath.Join(dir, "licence")
	require.NoError(f.t, WriteLicenceFile(lf, &l))
	svc, err := records.New(records.Config{
		ChainID: f.g.ChainID, Keys: k, Ledger: newLedger(f.runner, f.commits), Net: &fakeRecordNet{}, BlobDir: filepath.Join(dir, "blobs"),
		LicenceFile: lf, ReadLicence: ReadLicenceFile, Log: f.log, NodeKey: nodeKey,
	})
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = svc.Close() })
	return f.serve(f.run(svc), filepath.Join(dir, "billing-keys"))
}

func (f *recFixture) serve(svc *running, keys string) *claimParty {
	self := svc.ProviderID()
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, 1<<20, 1<<20, f.log)
	api.attachRecords(svc.Service, f.commits)
	api.attachClaims(keys)
	book, err := openBillingBook(filepath.Join(f.t.TempDir(), "billing"))
	require.NoError(f.t, err)
	api.attachBilling(book)
	srv := httptest.NewServer(api)
	f.t.Cleanup(srv.Close)
	return &claimParty{svc: svc, srv: srv, api: api}
}

// claimDoc is a professional FHIR Claim for Patient/pat-1 on date with (code, net) items.
func claimDoc(id, date string, items ...[2]string) json.RawMessage {
	var its []string
	for i, it := range items {
		its = append(its, fmt.Sprintf(`{"sequence": %d, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": %q}]},
		  "servicedDate": %q, "net": {"value": %s, "currency": "USD"}}`, i+1, it[0], date, it[1]))
	}
	return json.RawMessage(fmt.Sprintf(`{"resourceType": "Claim", "id": %q, "status": "active",
	  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
	  "use": "claim", "patient": {"reference": "Patient/pat-1"}, "created": %q,
	  "provider": {"reference": "Organization/practice"},
	  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
	  "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/c1"}}],
	  "item": [%s]}`, id, date, strings.Join(its, ",")))
}

// TestClaimsAPI runs a claim from the payer's schedule to its decision over two member nodes on
// one chain: a payer (its own record service and API) and this provider; a second provider
// anchors an encounter the first may not bill.
func TestClaimsAPI(t *testing.T) {
	board := testKey(t, "payers-board")
	f := newRecFixtureGenesis(t, replica.MempoolConfig{}, func(g *chain.Genesis) {
		g.Issuers = []chain.Issuer{{Role: chain.RolePayer, Key: board.Public(), Name: "payers' board"}}
	})
	prov := f.serve(f.start(), filepath.Join(t.TempDir(), "unused"))

	// The payer registers (medledger payer register), then runs its node.
	pk := f.newProviderKeys("payer")
	pl := chain.Licence{Role: chain.RolePayer, Subject: pk.Signing.Public(), NodeKey: chain.PubKey{0x70}, Number: "PAY-1", Jurisdiction: "US-VT",
		NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	pl.Sign(board, f.g.ChainID)
	f.submit(pk.Signing, chain.TxRegisterMember, &chain.RegisterMember{Licence: pl, EncryptionKey: pk.Encryption.Public().Bytes()})
	payer := f.party(pk, pl, pl.NodeKey)
	payerID := pk.ID()

	// A second practice, which anchors an encounter of the same patient.
	ok := f.newProviderKeys("other")
	ol := f.licence(ok)
	other := f.party(ok, ol, ol.NodeKey)
	f.waitFor("other provider registered", func() bool { return f.provider(ok.ID()) != nil })

	p := f.newPatient("claims", true)
	today := time.Now().UTC().Format(time.DateOnly)
	from := time.Now().UTC().AddDate(0, 0, -30).Format(time.DateOnly)

	// The provider may not file before the payer publishes anything; the payer endpoints refuse
	// a node that is not a payer.
	a := prov.do(t, "POST", "/v1/payer/coverage", CoverageRequest{Patient: p.id(), From: from})
	require.Equal(t, http.StatusConflict, a.code, "%s", a.body)
	require.Contains(t, string(a.body), "not an active payer")

	// The payer publishes its schedule for this provider (a new billing key, kept 0600) and
	// covers the patient.
	sched := decodeAs[ScheduleJSON](t, payer.do(t, "POST", "/v1/payer/schedules", ScheduleRequest{
		Provider: f.keys.ID(), Currency: "usd", CoinsurancePct: 20,
		FeesCSV: "code,allowed\n99213,75.00\n36415,10.00\n"}), http.StatusCreated)
	require.True(t, sched.NewKey)
	require.Equal(t, uint32(1), sched.Revision)
	require.Equal(t, 2, sched.Fees)
	key, err := payer.api.billingKeys.get(f.keys.ID())
	require.NoError(t, err)
	require.Equal(t, billing.KeyCommit(key), sched.KeyCommit)
	// Again: the same key, a new revision.
	sched = decodeAs[ScheduleJSON](t, payer.do(t, "POST", "/v1/payer/schedules", ScheduleRequest{
		Provider: f.keys.ID(), Currency: "USD", CoinsurancePct: 20,
		Fees: []FeeJSON{{Code: "99213", Allowed: "75.00"}, {Code: "36415", Allowed: "10.00"}}}), http.StatusCreated)
	require.False(t, sched.NewKey)
	require.Equal(t, uint32(2), sched.Revision)
	require.Equal(t, billing.KeyCommit(key), sched.KeyCommit)
	cov := decodeAs[CoverageJSON](t, payer.do(t, "POST", "/v1/payer/coverage", CoverageRequest{Patient: p.id(), From: from}), http.StatusCreated)
	require.Equal(t, from, cov.From)

	// The visit: this provider anchors the patient's encounter.
	enc := importOne(t, prov.svc.Service, p.id(), readTestdata(t, "encounter.json"))

	// Filed and adjudicated by the schedule: allowed = min(billed, fee), 20% the patient's,
	// rounded down, the rest paid.
	doc := claimDoc("visit-1", today, [2]string{"99213", "90.00"}, [2]string{"36415", "12.34"})
	filed := decodeAs[FiledClaimJSON](t, prov.do(t, "POST", "/v1/claims", FileClaimRequest{Payer: payerID, Patient: p.id(), Encounter: enc, Claim: doc}), http.StatusCreated)
	c := filed.Claim
	require.Equal(t, "adjudicated-by-rule", c.Status)
	require.Equal(t, []chain.Address{payerID}, filed.WrappedTo)
	// The practice's claims page lists what its node filed.
	ours := decodeAs[ClaimsJSON](t, prov.do(t, "GET", "/v1/claims/filed", nil), http.StatusOK)
	require.Len(t, ours.Claims, 1)
	require.Equal(t, c.ID, ours.Claims[0].ID)
	want := [][4]uint64{{9_000, 7_500, 6_000, 1_500}, {1_234, 1_000, 800, 200}}
	for i, w := range want {
		l := c.Lines[i]
		require.Equal(t, w, [4]uint64{l.Billed, l.Allowed, l.Paid, l.Patient}, "line %d", i)
	}

	// The same claim again: the duplicate rule, before anything is anchored.
	a = prov.do(t, "POST", "/v1/claims", FileClaimRequest{Payer: payerID, Patient: p.id(), Encounter: enc, Claim: doc})
	dup := decodeAs[ClaimErrorJSON](t, a, http.StatusConflict)
	require.Equal(t, "duplicate", dup.Rule)
	require.Contains(t, dup.Error, c.ID.String())

	// An encounter the other practice anchored: the phantom-visit rule, checked before the
	// sealed Claim is anchored, so the refusal leaves nothing in the patient's log.
	otherEnc := importOne(t, other.svc.Service, p.id(), readTestdata(t, "encounter.json"))
	logLen := func() (n uint64) {
		f.view(func(v state.View, _ *replica.Replica) {
			var err error
			n, err = state.PatientLogLength(v, p.id())
			require.NoError(t, err)
		})
		return n
	}
	before := logLen()
	a = prov.do(t, "POST", "/v1/claims", FileClaimRequest{Payer: payerID, Patient: p.id(), Encounter: otherEnc,
		Claim: claimDoc("visit-2", today, [2]string{"36415", "12.34"})})
	ph := decodeAs[ClaimErrorJSON](t, a, http.StatusUnprocessableEntity)
	require.Equal(t, "phantom-visit", ph.Rule)
	require.Contains(t, ph.Error, "anchored by")
	require.Equal(t, before, logLen(), "a refused claim anchored a record")

	// The ledger lets the payer read the sealed claim (and only that).
	f.view(func(v state.View, _ *replica.Replica) {
		rec, err := state.Record(v, c.Record)
		require.NoError(t, err)
		_, now, _ := state.Tip(v)
		_, err = state.CheckAccess(v, now, payerID, rec, state.PurposePayment, false)
		require.NoError(t, err)
		encRec, err := state.Record(v, enc)
		require.NoError(t, err)
		_, err = state.CheckAccess(v, now, payerID, encRec, state.PurposePayment, false)
		require.ErrorIs(t, err, state.ErrNoConsent)
	})

	// The payer's inbox lists it; the provider's list by patient too.
	inbox := decodeAs[ClaimsJSON](t, payer.do(t, "GET", "/v1/payer/claims", nil), http.StatusOK)
	require.Len(t, inbox.Claims, 1)
	require.Equal(t, c.ID, inbox.Claims[0].ID)
	mine := decodeAs[ClaimsJSON](t, prov.do(t, "GET", "/v1/claims?patient="+p.id().String(), nil), http.StatusOK)
	require.Len(t, mine.Claims, 1)
	shown := decodeAs[ClaimJSON](t, prov.do(t, "GET", "/v1/claims/"+c.ID.String(), nil), http.StatusOK)
	require.Equal(t, c.Lines, shown.Lines)

	// Verification with the payer's key against the sealed FHIR Claim (what POST …/verify does
	// after reading it; the test's nodes have no network to fetch it over): the ledger's lines
	// match, and a tampered line is caught.
	var cr *state.ClaimRecord
	var sr *state.ScheduleRecord
	f.view(func(v state.View, _ *replica.Replica) {
		cr, _ = state.Claim(v, c.ID)
		sr, _ = state.Schedule(v, payerID, f.keys.ID())
	})
	require.NoError(t, billing.VerifyClaim(key, doc, ledgerSubmit(cr, sr)))
	tampered := ledgerSubmit(cr, sr)
	tampered.Lines[1].Code = billing.CodeFingerprint(key, "36416")
	err = billing.VerifyClaim(key, doc, tampered)
	require.ErrorIs(t, err, billing.ErrMismatch)
	require.ErrorContains(t, err, "line 1: code fingerprint")
	// The endpoint refuses a payer that is not the claim's.
	a = other.do(t, "POST", "/v1/claims/"+c.ID.String()+"/verify", nil)
	require.Equal(t, http.StatusConflict, a.code, "%s", a.body)

	// A code without a fee pends the claim; the payer decides it, in exact cents.
	doc3 := claimDoc("visit-3", today, [2]string{"97110", "40.00"})
	pended := decodeAs[FiledClaimJSON](t, prov.do(t, "POST", "/v1/claims", FileClaimRequest{Payer: payerID, Patient: p.id(), Encounter: enc, Claim: doc3}), http.StatusCreated)
	require.Equal(t, "pended", pended.Claim.Status)
	a = prov.do(t, "POST", "/v1/claims/"+pended.Claim.ID.String()+"/decide", DecideRequest{Lines: []LineDecisionJSON{{Paid: "30.00"}}})
	require.Equal(t, http.StatusConflict, a.code, "only a payer decides: %s", a.body)
	a = payer.do(t, "POST", "/v1/claims/"+pended.Claim.ID.String()+"/decide", DecideRequest{Lines: []LineDecisionJSON{{Paid: "30.00", Patient: "9.99"}}})
	decided := decodeAs[ClaimJSON](t, a, http.StatusOK)
	require.Equal(t, "decided", decided.Status)
	require.Equal(t, [3]uint64{3_999, 3_000, 999}, [3]uint64{decided.Lines[0].Allowed, decided.Lines[0].Paid, decided.Lines[0].Patient})
	// Decided: a second decision is the claim-status rule's.
	a = payer.do(t, "POST", "/v1/claims/"+pended.Claim.ID.String()+"/decide", DecideRequest{Deny: "content-mismatch"})
	require.Equal(t, "claim-status", decodeAs[ClaimErrorJSON](t, a, http.StatusConflict).Rule)

	// The provider's explanation of benefit, from the ledger's amounts and its own sealed claim.
	a = prov.do(t, "GET", "/v1/claims/"+c.ID.String()+"/eob", nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	var eob map[string]any
	require.NoError(t, json.Unmarshal(a.body, &eob))
	require.Equal(t, "ExplanationOfBenefit", eob["resourceType"])
	require.Contains(t, string(a.body), "99213")
	require.Contains(t, string(a.body), "60")

	// Coverage ends.
	ended := decodeAs[CoverageJSON](t, payer.do(t, "POST", "/v1/payer/coverage/"+cov.ID.String()+"/end", nil), http.StatusOK)
	require.True(t, ended.Ended)
}

// importOne imports one resource for patient and returns its record id.
func importOne(t *testing.T, svc *records.Service, patient chain.Address, data []byte) chain.Hash {
	t.Helper()
	recs, err := svc.Import(t.Context(), patient, data)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	return recs[0].ID
}
