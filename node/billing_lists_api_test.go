package node

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node/webui"
)

// finDoc is a patient's Coverage and Claim as another system exports them.
const finDoc = `{"resourceType":"Bundle","type":"collection","entry":[
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000c1","resource":{"resourceType":"Patient","id":"pat","birthDate":"1980-03-01"}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000c2","resource":{"resourceType":"Coverage","id":"cov","status":"active",
		"beneficiary":{"reference":"Patient/pat"},"period":{"start":"2019-01-01"},"payor":[{"reference":"Organization/payer"}]}},
	{"fullUrl":"urn:uuid:00000000-0000-4000-8000-0000000000c3","resource":{"resourceType":"Claim","id":"visit","status":"active","type":{"coding":[{"code":"professional"}]},
		"use":"claim","patient":{"reference":"Patient/pat"},"created":"2020-05-05","provider":{"reference":"Organization/clinic"},"priority":{"coding":[{"code":"normal"}]},
		"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"urn:uuid:00000000-0000-4000-8000-0000000000c2"}}],"total":{"value":80.10,"currency":"USD"}}}]}`

func TestBillingHistoryAPI(t *testing.T) {
	h := newBillingHarness(t)
	carol := h.f.newPatient("carol", true)
	path := "/v1/patients/" + carol.id().String() + "/billing-history"

	var empty BillingHistoryJSON
	h.ok(http.StatusOK, "GET", path, nil, &empty)
	require.Empty(t, empty.Items)
	require.NotNil(t, empty.Items, "an empty list, not null")

	a := h.do("", "POST", "/v1/patients/"+carol.id().String()+"/records", []byte(finDoc))
	require.Equal(t, http.StatusCreated, a.code, "%s", a.body)

	var hist BillingHistoryJSON
	h.ok(http.StatusOK, "GET", path, nil, &hist)
	require.Equal(t, "HPAYMT", hist.Purpose)
	require.Equal(t, carol.id(), hist.Patient)
	require.Len(t, hist.Items, 2)
	require.Equal(t, "Claim", hist.Items[0].ResourceType, "newest first")
	require.Equal(t, "80.10", hist.Items[0].Total, "as written")
	require.Equal(t, "USD", hist.Items[0].Currency)
	require.Equal(t, "Coverage", hist.Items[1].ResourceType)

	// The billing permission: the front desk has it, a clinician not.
	a = h.do(h.session("alice"), "GET", path, nil)
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)
	a = h.do(h.session("bob"), "GET", path, nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	a = h.do("", "GET", "/v1/patients/nothex/billing-history", nil)
	require.Equal(t, http.StatusBadRequest, a.code)
}

// TestBillingPagesOverTheAPI drives the practice's billing pages over the real API: the billing
// page lists the membership the node enrolled with its statement, a payment recorded through
// the page's form settles it, and the patient's page shows it to the front desk but not to a
// clinician.
func TestBillingPagesOverTheAPI(t *testing.T) {
	h := newBillingHarness(t)
	carol := h.f.newPatient("carol", true)
	var plan PlanJSON
	h.ok(http.StatusCreated, "POST", "/v1/billing/plans", PlanRequest{Label: "Adult <monthly>", Currency: "USD", Period: "monthly",
		Tiers: []TierJSON{{Label: "adult", Price: "99.00"}}, Covered: []string{"99213"}}, &plan)
	m := h.enrol(AgreementRequest{Plan: plan.ID, Subscriber: carol.id(), Sponsor: "Acme"}, carol)

	// Without ?patient, the memberships this node enrolled.
	var all MembershipsJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/memberships", nil, &all)
	require.Len(t, all.Memberships, 1)
	require.Equal(t, m.ID, all.Memberships[0].ID)

	ui, err := webui.New(webui.Config{API: h.api, Authenticate: h.api.staff.Authenticate, ProviderID: h.f.keys.ID().String()})
	require.NoError(t, err)
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signIn := func(name string) *http.Cookie {
		resp, err := noRedirect.PostForm(srv.URL+"/ui/login", url.Values{"name": {name}, "password": {staffPassword}})
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		return resp.Cookies()[0]
	}
	get := func(c *http.Cookie, path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.AddCookie(c)
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	bob, alice := signIn("bob"), signIn("alice")

	code, html := get(bob, "/ui/billing")
	require.Equal(t, http.StatusOK, code, html)
	require.Contains(t, html, "Adult &lt;monthly&gt;")
	require.Contains(t, html, m.ID.String()[:12])
	require.Contains(t, html, "99.00 USD", "the node's balance")
	require.Contains(t, html, "Acme")

	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(html)[1]
	form := url.Values{"csrf": {csrf}, "membership": {m.ID.String()}, "amount": {"99.00"}, "reference": {"ch_ui_1"}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/billing/payments", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(bob)
	resp, err := noRedirect.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "%s", body)

	h.ok(http.StatusOK, "GET", "/v1/billing/memberships/"+m.ID.String(), nil, &m)
	require.Equal(t, "0.00", m.Statement.Balance, "settled through the page")
	var pays PaymentsJSON
	h.ok(http.StatusOK, "GET", "/v1/billing/payments?membership="+m.ID.String(), nil, &pays)
	require.Len(t, pays.Payments, 1)
	require.Equal(t, "ch_ui_1", pays.Payments[0].Reference)

	code, html = get(bob, "/ui/patients/"+carol.id().String())
	require.Equal(t, http.StatusOK, code, html)
	require.Contains(t, html, `id="money"`)
	require.Contains(t, html, "ch_ui_1")
	require.Contains(t, html, "paid")

	code, _ = get(alice, "/ui/billing")
	require.Equal(t, http.StatusForbidden, code)
	code, html = get(alice, "/ui/patients/"+carol.id().String())
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, html, `id="money"`, "a clinician sees no amounts")
}
