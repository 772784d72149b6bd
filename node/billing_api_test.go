package node

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
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
	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/node/staff"
)

// billingHarness is the billing API over a running record service and a one-authority chain,
// with a staff gate (a clinician and a front-desk user) and a billing book in a temporary HOME.
type billingHarness struct {
	t    *testing.T
	f    *recFixture
	srv  *httptest.Server
	book *billingBook
	api  *API
}

func newBillingHarness(t *testing.T) *billingHarness {
	f := newRecFixture(t)
	r := f.start()
	self := f.keys.ID()
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.json")
	for name, role := range map[string]staff.Role{"alice": staff.RoleClinician, "bob": staff.RoleFrontDesk} {
		require.NoError(t, staff.Add(usersFile, name, role, staffPassword, cheapHash, rand.Reader, time.Now()))
	}
	users, err := staff.NewDirectory(usersFile)
	require.NoError(t, err)
	audit, err := auditlog.Open(filepath.Join(dir, "audit.log"), 0, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = audit.Close() })
	book, err := openBillingBook(Home(dir).BillingDir())
	require.NoError(t, err)
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, 1<<20, 8<<20, f.log)
	api.attachRecords(r.Service, f.commits)
	api.attachBilling(book)
	api.attachStaff(staff.NewGate(users, staff.GateConfig{Sessions: staff.SessionConfig{Idle: 15 * time.Minute, Lifetime: 12 * time.Hour}, Hash: cheapHash}), audit)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &billingHarness{t: t, f: f, srv: srv, book: book, api: api}
}

// do sends a request with token (the operator's when empty) and a JSON body (raw bytes as they
// are).
func (h *billingHarness) do(token, method, path string, body any) apiAnswer {
	h.t.Helper()
	if token == "" {
		token = testToken
	}
	var data []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		data = b
	default:
		// As a wallet must: HTML escaping would rewrite the Contract an agreement file holds.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		require.NoError(h.t, enc.Encode(b))
		data = buf.Bytes()
	}
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(data))
	require.NoError(h.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := h.srv.Client().Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	return apiAnswer{resp.StatusCode, resp.Header, out}
}

// ok sends the request, requires status code and decodes the answer into v (when not nil).
func (h *billingHarness) ok(code int, method, path string, body, v any) {
	h.t.Helper()
	a := h.do("", method, path, body)
	require.Equal(h.t, code, a.code, "%s %s: %s", method, path, a.body)
	if v != nil {
		require.NoError(h.t, json.Unmarshal(a.body, v), "%s", a.body)
	}
}

func (h *billingHarness) session(name string) string {
	h.t.Helper()
	a := h.do("", "POST", "/v1/login", LoginRequest{Name: name, Password: staffPassword})
	require.Equal(h.t, http.StatusOK, a.code, "%s", a.body)
	var l LoginJSON
	require.NoError(h.t, json.Unmarshal(a.body, &l))
	return l.Token
}

// enrol drafts an agreement, signs it as the subscriber and submits it.
func (h *billingHarness) enrol(req AgreementRequest, subscriber *testPatient) MembershipJSON {
	h.t.Helper()
	var f billing.AgreementFile
	h.ok(http.StatusOK, "POST", "/v1/billing/agreements", req, &f)
	require.NoError(h.t, f.Sign(subscriber.key))
	var m MembershipJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/memberships", &f, &m)
	return m
}

func TestBillingMembershipPaidThroughTheAPI(t *testing.T) {
	h := newBillingHarness(t)
	carol := h.f.newPatient("carol", true)

	var plan PlanJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/plans", PlanRequest{Label: "Adult monthly", Currency: "usd", Period: "monthly",
		Tiers: []TierJSON{{Label: "adult", Price: "99.00"}}, Covered: []string{"99214", "99213", "99213"}, GraceDays: 7}, &plan)
	require.Equal(t, "USD", plan.Currency)
	require.Equal(t, []string{"99213", "99214"}, plan.Covered)
	require.Equal(t, 1, plan.MaxMembers)
	var plans PlansJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/plans", nil, &plans)
	require.Len(t, plans.Plans, 1)
	require.Equal(t, plan.ID, plans.Plans[0].ID)

	m := h.enrol(AgreementRequest{Plan: plan.ID, Subscriber: carol.id()}, carol)
	require.Equal(t, "99.00", m.Price)
	require.Equal(t, "active", m.Statement.Status)
	require.Len(t, m.Statement.Invoices, 1)
	require.Equal(t, "unpaid", m.Statement.Invoices[0].Status)
	require.Equal(t, "99.00", m.Statement.Balance)

	var list MembershipsJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/memberships?patient="+carol.id().String(), nil, &list)
	require.Len(t, list.Memberships, 1)
	require.Equal(t, m.ID, list.Memberships[0].ID)

	var pay PaymentJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/payments", PaymentRequest{Reference: "ch_123",
		Splits: []PaymentSplitJSON{{Membership: m.ID, Amount: "99.00"}}}, &pay)
	require.Equal(t, "ch_123", pay.Reference)
	require.Equal(t, chain.Sum256([]byte("ch_123")), pay.ReferenceHash)
	require.Equal(t, "99.00", pay.Total)
	var got PaymentJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/payments/"+pay.ID.String(), nil, &got)
	require.Equal(t, pay, got)
	// The same reference twice is the ledger's duplicate.
	a := h.do("", "POST", "/v1/billing/payments", PaymentRequest{Reference: "ch_123", Splits: []PaymentSplitJSON{{Membership: m.ID, Amount: "1.00"}}})
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)

	h.ok(http.StatusOK, "GET", "/v1/billing/memberships/"+m.ID.String(), nil, &m)
	require.Equal(t, "paid", m.Statement.Invoices[0].Status)
	require.Equal(t, "0.00", m.Statement.Balance)
	require.NotNil(t, m.Statement.PaidThrough)

	// The FHIR face of the statement: Account, the signed Contract, one Invoice, valid R4.
	a = h.do("", "GET", "/v1/billing/memberships/"+m.ID.String()+"?format=fhir", nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	require.Equal(t, "application/fhir+json", a.hdr.Get("Content-Type"))
	v, err := fhir.NewValidator()
	require.NoError(t, err)
	require.NoError(t, v.Check(a.body))
	var bundle struct {
		Type  string
		Entry []struct{ Resource map[string]any }
	}
	require.NoError(t, json.Unmarshal(a.body, &bundle))
	require.Equal(t, "collection", bundle.Type)
	var types []string
	for _, e := range bundle.Entry {
		types = append(types, e.Resource["resourceType"].(string))
	}
	require.Equal(t, []string{"Account", "Contract", "Invoice"}, types)
	require.Equal(t, "balanced", bundle.Entry[2].Resource["status"])

	// A second enrolment while the first is open is the ledger's refusal; cancelling ends it.
	var f billing.AgreementFile
	h.ok(http.StatusOK, "POST", "/v1/billing/agreements", AgreementRequest{Plan: plan.ID, Subscriber: carol.id()}, &f)
	require.NoError(t, f.Sign(carol.key))
	a = h.do("", "POST", "/v1/billing/memberships", &f)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	h.ok(http.StatusOK, "POST", "/v1/billing/memberships/"+m.ID.String()+"/cancel", nil, &m)
	require.NotNil(t, m.End)

	// Retired plans take no new agreements.
	h.ok(http.StatusOK, "POST", "/v1/billing/plans/"+plan.ID.String()+"/retire", nil, &plan)
	require.True(t, plan.Retired)
	a = h.do("", "POST", "/v1/billing/agreements", AgreementRequest{Plan: plan.ID, Subscriber: carol.id()})
	require.Equal(t, http.StatusConflict, a.code, "%s", a.body)
}

func TestBillingFamilySponsorSplitPayment(t *testing.T) {
	h := newBillingHarness(t)
	parent, kid1, kid2, solo := h.f.newPatient("pat", true), h.f.newPatient("kid1", true), h.f.newPatient("kid2", true), h.f.newPatient("sol", true)
	var family, single PlanJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/plans", PlanRequest{Label: "Mom & Kids <family>", Currency: "USD", Period: "monthly", Family: true, MaxMembers: 4,
		Tiers: []TierJSON{{Label: "adult", Price: "99.00"}, {Label: "child", Price: "49.00"}}, FamilyCap: "150.00"}, &family)
	h.ok(http.StatusCreated, "POST", "/v1/billing/plans", PlanRequest{Label: "Adult", Currency: "USD", Period: "monthly",
		Tiers: []TierJSON{{Label: "adult", Price: "80.00"}}}, &single)

	fm := h.enrol(AgreementRequest{Plan: family.ID, Subscriber: parent.id(), Sponsor: "Acme  Corp", Members: []MemberJSON{
		{Patient: parent.id(), Tier: "adult"}, {Patient: kid1.id(), Tier: "child"}, {Patient: kid2.id(), Tier: "1"}}}, parent)
	require.Equal(t, "150.00", fm.Price) // 99 + 49 + 49 capped
	require.Len(t, fm.Members, 3)
	require.Equal(t, "Acme Corp", fm.SponsorName)
	sm := h.enrol(AgreementRequest{Plan: single.ID, Subscriber: solo.id(), Sponsor: "acme corp"}, solo)
	require.Equal(t, *fm.Sponsor, *sm.Sponsor, "one sponsor id for one name")

	var sp SponsorJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/sponsors/Acme%20Corp", nil, &sp)
	require.Len(t, sp.Memberships, 2)
	require.Equal(t, "230.00", sp.Balance)

	var pay PaymentJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/payments", PaymentRequest{Reference: "ach-2026-12", Splits: []PaymentSplitJSON{
		{Membership: fm.ID, Amount: "150.00"}, {Membership: sm.ID, Amount: "80"}}}, &pay)
	require.Len(t, pay.Splits, 2)
	require.Equal(t, "230.00", pay.Total)
	h.ok(http.StatusOK, "GET", "/v1/billing/sponsors/Acme%20Corp", nil, &sp)
	require.Equal(t, "0.00", sp.Balance)
	var all SponsorsJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/sponsors", nil, &all)
	require.Len(t, all.Sponsors, 1)
	require.Equal(t, "Acme Corp", all.Sponsors[0].Name)
	require.Equal(t, 2, all.Sponsors[0].Memberships)
	a := h.do("", "GET", "/v1/billing/sponsors/Nobody", nil)
	require.Equal(t, http.StatusNotFound, a.code)

	// The sponsor's name and the clear reference never reach the ledger; the book has them.
	require.Equal(t, "ach-2026-12", h.book.payment(pay.ID))

	// A refund of part of it.
	h.ok(http.StatusCreated, "POST", "/v1/billing/payments", PaymentRequest{Reference: "ach-2026-12", Refund: true,
		Splits: []PaymentSplitJSON{{Membership: sm.ID, Amount: "80.00"}}}, &pay)
	require.True(t, pay.Refund)
	h.ok(http.StatusOK, "GET", "/v1/billing/memberships/"+sm.ID.String(), nil, &sm)
	require.Equal(t, "80.00", sm.Statement.Balance)

	// A change drops a child: the subscriber signs the change file.
	var cf billing.AgreementFile
	h.ok(http.StatusOK, "POST", "/v1/billing/memberships/"+fm.ID.String()+"/changes", ChangeRequest{Members: []MemberJSON{
		{Patient: parent.id(), Tier: "adult"}, {Patient: kid1.id(), Tier: "child"}}}, &cf)
	require.Equal(t, uint64(14800), cf.PriceCents)
	require.NoError(t, cf.Sign(parent.key))
	h.ok(http.StatusOK, "POST", "/v1/billing/memberships/"+fm.ID.String()+"/change", &cf, &fm)
	require.Len(t, fm.Members, 2)
	require.Equal(t, "148.00", fm.Price)
}

func TestBillingRefusals(t *testing.T) {
	h := newBillingHarness(t)
	carol, mallory := h.f.newPatient("carol", true), h.f.newPatient("mallory", true)
	var plan PlanJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/plans", PlanRequest{Label: "Adult", Currency: "EUR", Period: "annual",
		Tiers: []TierJSON{{Label: "adult", Price: "900.00"}}}, &plan)

	// A clinician does not bill; the front desk does.
	plans := PlanRequest{Label: "X", Currency: "EUR", Period: "monthly", Tiers: []TierJSON{{Label: "a", Price: "1.00"}}}
	a := h.do(h.session("alice"), "POST", "/v1/billing/plans", plans)
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), `"billing"`)
	a = h.do(h.session("bob"), "GET", "/v1/billing/plans", nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)

	// Bad plans are 400 with the reason.
	for _, bad := range []PlanRequest{
		{Label: "X", Currency: "EUR", Period: "weekly", Tiers: plans.Tiers},
		{Label: "X", Currency: "EUR", Period: "monthly", Tiers: []TierJSON{{Label: "a", Price: "1.005"}}},
		{Label: "X", Currency: "EURO", Period: "monthly", Tiers: plans.Tiers},
	} {
		a = h.do("", "POST", "/v1/billing/plans", bad)
		require.Equal(t, http.StatusBadRequest, a.code, "%+v: %s", bad, a.body)
	}

	var f billing.AgreementFile
	h.ok(http.StatusOK, "POST", "/v1/billing/agreements", AgreementRequest{Plan: plan.ID, Subscriber: carol.id(), Start: time.Now().UTC().Format(time.DateOnly)}, &f)
	// Unsigned.
	a = h.do("", "POST", "/v1/billing/memberships", &f)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "not signed")
	// Tampered after signing: a later start.
	require.NoError(t, f.Sign(carol.key))
	tampered := f
	ag := *f.Agreement
	ag.StartMs += chain.DayMs
	tampered.Agreement = &ag
	a = h.do("", "POST", "/v1/billing/memberships", &tampered)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "signature")
	// Signed by someone else than the subscriber: the file verifies, the ledger refuses.
	require.NoError(t, f.Sign(mallory.key))
	a = h.do("", "POST", "/v1/billing/memberships", &f)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	// For another chain.
	other := f
	other.ChainID = "elsewhere"
	require.NoError(t, other.Sign(carol.key))
	a = h.do("", "POST", "/v1/billing/memberships", &other)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	require.True(t, strings.Contains(a.errorLine(t), "chain"), "%s", a.body)

	// A file whose plan or price is not what the ledger applies, signed all the same.
	rosy := f
	rosy.PriceCents = 100
	require.NoError(t, rosy.Sign(carol.key))
	a = h.do("", "POST", "/v1/billing/memberships", &rosy)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "price of 1.00")
	rosy = f
	rosy.Plan.GraceDays = 30
	require.NoError(t, rosy.Sign(carol.key))
	a = h.do("", "POST", "/v1/billing/memberships", &rosy)
	require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "other than the ledger")
	// Starts the ledger would refuse are refused at drafting.
	for _, start := range []string{"2020-01-01", time.Now().AddDate(2, 0, 0).Format(time.DateOnly), "soon"} {
		a = h.do("", "POST", "/v1/billing/agreements", AgreementRequest{Plan: plan.ID, Subscriber: carol.id(), Start: start})
		require.Equal(t, http.StatusBadRequest, a.code, "%s: %s", start, a.body)
	}

	a = h.do("", "GET", "/v1/billing/memberships/"+strings.Repeat("ab", 32), nil)
	require.Equal(t, http.StatusNotFound, a.code)
	a = h.do("", "GET", "/v1/billing/memberships?patient=nope", nil)
	require.Equal(t, http.StatusBadRequest, a.code)
	a = h.do("", "POST", "/v1/billing/payments", PaymentRequest{Splits: []PaymentSplitJSON{{Membership: plan.ID, Amount: "1"}}})
	require.Equal(t, http.StatusBadRequest, a.code, "%s", a.body)
}
