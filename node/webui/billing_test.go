package webui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	fakeMembership = "aa00000000000000000000000000000000000000000000000000000000000001"
	fakeLapsed     = "bb00000000000000000000000000000000000000000000000000000000000002"
	fakeClaim      = "cc00000000000000000000000000000000000000000000000000000000000003"
	fakeDisputed   = "dd00000000000000000000000000000000000000000000000000000000000004"
	fakePayer      = "ee00000000000000000000000000000000000000"
)

func isMoneyRoute(path string) bool {
	return strings.HasPrefix(path, "/v1/billing/") || strings.HasPrefix(path, "/v1/claims") ||
		strings.HasPrefix(path, "/v1/payer/") || strings.HasSuffix(path, "/billing-history")
}

// fakeMembershipJSON is a membership as node.MembershipJSON writes it.
func fakeMembershipJSON(id, status, balance string) string {
	return `{"id":"` + id + `","provider":"abcd","subscriber":"` + patient.String() + `","sponsor_name":"Acme <Corp>",
	"plan":"` + strings.Repeat("9", 64) + `","plan_label":"Adult monthly","members":[{"patient":"` + patient.String() + `","tier":0,"tier_label":"adult"}],
	"price":"99.00","currency":"USD","period":"monthly","start":"2026-10-01T00:00:00Z","contract":"` + strings.Repeat("8", 64) + `","enrolled_height":4,
	"statement":{"at":"2026-12-05T00:00:00Z","status":"` + status + `","invoices":[
		{"id":"x-0","period":0,"start":"2026-10-01T00:00:00Z","end":"2026-11-01T00:00:00Z","due":"2026-10-01T00:00:00Z","days":31,"billed_days":31,"amount":"99.00","paid":"99.00","status":"paid"},
		{"id":"x-1","period":1,"start":"2026-11-01T00:00:00Z","end":"2026-12-01T00:00:00Z","due":"2026-11-01T00:00:00Z","days":30,"billed_days":30,"amount":"99.00","paid":"0.00","status":"unpaid"}],
	"total_due":"198.00","total_paid":"99.00","balance":"` + balance + `","paid_through":"2026-11-01T00:00:00Z","next_invoice":"2027-01-01T00:00:00Z"` +
		map[bool]string{true: `,"past_due_since":"2026-11-08T00:00:00Z"`, false: ``}[status == "past-due"] + `}}`
}

// fakeClaimJSON is a claim as node.ClaimJSON writes it.
func fakeClaimJSON(id, status string, disputed bool) string {
	j := `{"id":"` + id + `","provider":"abcd","payer":"` + fakePayer + `","patient":"` + patient.String() + `","encounter":"` + strings.Repeat("7", 64) + `",
	"record":"` + strings.Repeat("6", 64) + `","service_day":20400,"service_date":"2025-11-08","status":"` + status + `","settled":"adjudicated-by-rule","flagged":false,
	"lines":[{"code_fingerprint":"` + strings.Repeat("5", 64) + `","billed_cents":12000,"allowed_cents":7500,"paid_cents":6000,"patient_cents":1500}],
	"filed_height":9,"filed_time_ms":1764547200000,"schedule_revision":1`
	if disputed {
		j += `,"disputes":[{"reason":"not-received","statement":"` + strings.Repeat("4", 64) + `","height":12}]`
	}
	return j + "}"
}

// money answers the billing and claim routes the pages call, as the node's API would.
func (f *fakeAPI) money(w http.ResponseWriter, r *http.Request, body []byte) {
	p := r.URL.Path
	empty := f.empty
	switch {
	case p == "/v1/billing/payments" && r.Method == http.MethodPost:
		var req struct {
			Reference string
			Splits    []struct{ Membership, Amount string }
		}
		_ = json.Unmarshal(body, &req)
		if len(req.Splits) != 1 || req.Splits[0].Amount == "0" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"payment: a split of 0"}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"`+strings.Repeat("3", 64)+`","reference":"`+req.Reference+`","total":"`+req.Splits[0].Amount+`"}`)
	case empty && strings.HasSuffix(p, "/billing-history"):
		_, _ = io.WriteString(w, `{"patient":"`+patient.String()+`","purpose":"HPAYMT","items":[]}`)
	case strings.HasSuffix(p, "/billing-history"):
		_, _ = io.WriteString(w, `{"patient":"`+patient.String()+`","purpose":"HPAYMT","items":[
			{"record":"`+strings.Repeat("2", 64)+`","version":1,"resourceType":"ExplanationOfBenefit","id":"eob-1","date":"2020-05-05","status":"active","total":"80.50","currency":"USD","use":"claim","kind":"professional"}]}`)
	case p == "/v1/billing/plans" && empty:
		_, _ = io.WriteString(w, `{"plans":[]}`)
	case p == "/v1/billing/plans":
		_, _ = io.WriteString(w, `{"plans":[{"id":"`+strings.Repeat("9", 64)+`","provider":"abcd","label":"Adult <monthly>","currency":"USD","period":"monthly",
			"family":false,"max_members":1,"tiers":[{"label":"adult","price":"99.00"}],"covered":["99213","99214"],"grace_days":7,"retired":false,"published_height":3,"published":"2026-10-01T00:00:00Z"}]}`)
	case p == "/v1/billing/memberships" && empty:
		_, _ = io.WriteString(w, `{"memberships":[]}`)
	case p == "/v1/billing/memberships":
		_, _ = io.WriteString(w, `{"memberships":[`+fakeMembershipJSON(fakeMembership, "active", "0.00")+`,`+fakeMembershipJSON(fakeLapsed, "past-due", "99.00")+`]}`)
	case p == "/v1/billing/sponsors" && empty:
		_, _ = io.WriteString(w, `{"sponsors":[]}`)
	case p == "/v1/billing/sponsors":
		_, _ = io.WriteString(w, `{"sponsors":[{"name":"Acme <Corp>","id":"`+strings.Repeat("1", 64)+`","memberships":2}]}`)
	case p == "/v1/billing/payments" && empty:
		_, _ = io.WriteString(w, `{"payments":[]}`)
	case p == "/v1/billing/payments":
		_, _ = io.WriteString(w, `{"payments":[{"id":"`+strings.Repeat("3", 64)+`","reference":"ch_<42>","reference_hash":"`+strings.Repeat("0", 64)+`","refund":false,
			"splits":[{"membership":"`+fakeMembership+`","amount":"99.00"}],"total":"99.00","height":6,"recorded":"2026-10-02T10:00:00Z"}]}`)
	case (p == "/v1/claims/filed" || p == "/v1/claims") && !empty:
		_, _ = io.WriteString(w, `{"claims":[`+fakeClaimJSON(fakeClaim, "adjudicated-by-rule", false)+`,`+fakeClaimJSON(fakeDisputed, "disputed", true)+`]}`)
	case p == "/v1/claims/filed" || p == "/v1/claims" || p == "/v1/payer/claims":
		_, _ = io.WriteString(w, `{"claims":[]}`)
	case p == "/v1/claims/"+fakeClaim+"/eob":
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, `{"resourceType":"ExplanationOfBenefit","status":"active","outcome":"complete","item":[{"productOrService":{"coding":[{"code":"99213"}]}}]}`)
	case p == "/v1/claims/"+fakeClaim:
		_, _ = io.WriteString(w, fakeClaimJSON(fakeClaim, "adjudicated-by-rule", false))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such claim"}`)
	}
}

func TestBillingPageShowsStatementsAndIsForBillingRoles(t *testing.T) {
	srv, api := newTestUI(t)
	for _, tok := range []string{"mls_desk", "mls_bill", "mls_admin"} {
		resp, html := get(t, srv, "/ui/billing", tok)
		require.Equal(t, http.StatusOK, resp.StatusCode, tok)
		require.Contains(t, html, `href="/ui/billing"`, "in the menu")
		require.Contains(t, html, "Adult &lt;monthly&gt;", "plans, escaped")
		require.Contains(t, html, "99213, 99214")
		require.Contains(t, html, "Acme &lt;Corp&gt;")
		require.Contains(t, html, "ch_&lt;42&gt;")
		require.Contains(t, html, `class="pastdue"`, "a past-due membership stands out")
		require.Less(t, strings.Index(html, fakeLapsed[:12]), strings.Index(html, fakeMembership[:12]), "past due first")
		require.Contains(t, html, "since 2026-11-08")
		require.Contains(t, html, `name="csrf"`)
		if tok == "mls_desk" {
			require.Contains(t, html, "&lt;script&gt;alert(1)&lt;/script&gt; Evil", "the front desk finds patients: names, escaped")
		} else {
			require.NotContains(t, html, "Evil", "no names for a role that does not find patients")
		}
	}
	require.NotEmpty(t, api.asked("GET /v1/billing/memberships mls_desk"))

	resp, html := get(t, srv, "/ui/billing", "mls_doc")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.NotContains(t, html, `href="/ui/billing"`, "not in a clinician's menu")
	require.NotContains(t, html, `href="/ui/claims"`)
	require.Empty(t, api.asked("GET /v1/billing/"+""+"plans mls_doc"))
}

func TestPaymentFormGoesThroughTheAPIWithCSRF(t *testing.T) {
	srv, api := newTestUI(t)
	_, html := get(t, srv, "/ui/billing", "mls_desk")
	tok := csrfOf(t, html)
	post := func(form url.Values, cookie string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/billing/payments", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		resp, err := client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	form := url.Values{"membership": {fakeMembership}, "amount": {"99.00"}, "reference": {"ch_1"}}
	resp, _ := post(form, "mls_desk")
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token")
	require.Empty(t, api.asked("POST /v1/billing/payments"))

	form.Set("csrf", tok)
	resp, _ = post(form, "mls_desk")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Location"), "/ui/billing?paid=")
	require.Equal(t, []string{"POST /v1/billing/payments mls_desk"}, api.asked("POST /v1/billing/payments"))
	var sent struct {
		Reference string
		Refund    bool
		Splits    []map[string]string
	}
	require.NoError(t, json.Unmarshal(api.body["/v1/billing/payments"], &sent))
	require.Equal(t, "ch_1", sent.Reference)
	require.Equal(t, []map[string]string{{"membership": fakeMembership, "amount": "99.00"}}, sent.Splits)

	// The API's refusal is shown on the page, with what was typed kept.
	form.Set("amount", "0")
	resp, html = post(form, "mls_desk")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, html, "a split of 0")
	require.Contains(t, html, `value="ch_1"`)

	// From the patient's page, back to it.
	form.Set("amount", "10.00")
	form.Set("patient", patient.String())
	resp, _ = post(form, "mls_desk")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/ui/patients/"+patient.String()+"?paid="))

	// A clinician's session (its own CSRF token) is refused before the API is asked.
	_, html = get(t, srv, "/ui/patients/"+patient.String(), "mls_doc")
	form.Set("csrf", csrfOf(t, html))
	n := len(api.asked("POST /v1/billing/payments"))
	resp, _ = post(form, "mls_doc")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Len(t, api.asked("POST /v1/billing/payments"), n)
}

func TestClaimsPagesShowStatusDisputesAndTheEOB(t *testing.T) {
	srv, api := newTestUI(t)
	resp, html := get(t, srv, "/ui/claims", "mls_bill")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, html, `href="/ui/claims"`)
	require.Contains(t, html, "/ui/claims/"+fakeClaim)
	require.Contains(t, html, "disputed by the patient")
	require.Contains(t, html, "paid by the payer&#39;s schedule")
	require.Contains(t, html, "120.00", "billed, from the ledger's cents")
	require.NotContains(t, html, "payer&#39;s queue", "no payer's queue on a provider's node")

	resp, html = get(t, srv, "/ui/claims/"+fakeClaim, "mls_bill")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, html, "ExplanationOfBenefit")
	require.Contains(t, html, "99213", "the EOB's service code")
	require.Contains(t, html, "does not read record contents", "the billing role reads no record")
	require.Empty(t, api.asked("GET /v1/records/"))

	resp, _ = get(t, srv, "/ui/claims/"+strings.Repeat("0", 64), "mls_bill")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	for _, tok := range []string{"mls_doc", "mls_desk"} {
		resp, _ = get(t, srv, "/ui/claims", tok)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, tok)
		resp, _ = get(t, srv, "/ui/claims/"+fakeClaim, tok)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, tok)
	}
	require.Empty(t, api.asked("GET /v1/claims/filed mls_desk"))
}

func TestPatientMoneySectionByRole(t *testing.T) {
	srv, api := newTestUI(t)
	path := "/ui/patients/" + patient.String()

	_, html := get(t, srv, path, "mls_admin")
	require.Contains(t, html, `id="money"`)
	require.Contains(t, html, "Adult monthly")
	require.Contains(t, html, "past-due")
	require.Contains(t, html, "2026-11-01 – 2026-12-01", "the statement's periods")
	require.Contains(t, html, "ch_&lt;42&gt;", "payments")
	require.Contains(t, html, "/ui/claims/"+fakeClaim, "claims in the patient's name")
	require.Contains(t, html, "disputed by the patient")
	require.NotContains(t, html, "eob-1", "the history is read only when asked for")
	require.Empty(t, api.asked("GET /v1/patients/"+patient.String()+"/billing-history"))

	_, html = get(t, srv, path+"?history=1", "mls_admin")
	require.Contains(t, html, "ExplanationOfBenefit (claim), professional")
	require.Contains(t, html, "80.50 USD")
	require.Len(t, api.asked("GET /v1/patients/"+patient.String()+"/billing-history mls_admin"), 1)

	// The front desk bills but does not see claims.
	_, html = get(t, srv, path, "mls_desk")
	require.Contains(t, html, "Adult monthly")
	require.NotContains(t, html, "Claims filed in this patient")
	require.Empty(t, api.asked("GET /v1/claims?patient="+patient.String()+" mls_desk"))

	// A clinician sees no amounts, and the node is asked nothing about money.
	_, html = get(t, srv, path+"?history=1", "mls_doc")
	require.NotContains(t, html, `id="money"`)
	require.NotContains(t, html, "99.00")
	for _, prefix := range []string{"GET /v1/billing/", "GET /v1/claims", "GET /v1/patients/" + patient.String() + "/billing-history"} {
		for _, c := range api.asked(prefix) {
			require.False(t, strings.HasSuffix(c, " mls_doc"), c)
		}
	}
}

func TestMoneyPagesOnEmptyState(t *testing.T) {
	srv, api := newTestUI(t)
	api.empty = true
	for _, path := range []string{"/ui/billing", "/ui/claims", "/ui/patients/" + patient.String() + "?history=1"} {
		resp, html := get(t, srv, path, "mls_admin")
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.NotContains(t, html, `class="error"`, path)
	}
	_, html := get(t, srv, "/ui/billing", "mls_admin")
	require.Contains(t, html, "No memberships")
	_, html = get(t, srv, "/ui/claims", "mls_admin")
	require.Contains(t, html, "filed no claims")
	_, html = get(t, srv, "/ui/patients/"+patient.String()+"?history=1", "mls_admin")
	require.Contains(t, html, "No membership at this practice")
	require.Contains(t, html, "No financial records")
}
