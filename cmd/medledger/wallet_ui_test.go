package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

func TestWalletUIServesLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.168.1.10:8700", "example.org:80", "nonsense"} {
		cmd := walletUICmd()
		cmd.SetArgs([]string{"--dir", t.TempDir(), "--listen", addr})
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		require.Error(t, err, addr)
		require.Contains(t, err.Error(), "--listen", addr)
		require.Equal(t, 2, exitCode(err), "a usage error: %v", err)
	}
}

// The page's guards answer before any ledger session: the Host, the key, the cookie, the CSRF
// token.
func TestWalletUIGuards(t *testing.T) {
	const addr = "127.0.0.1:8700"
	u, key, err := newWalletUI(nil, &ledgerFlags{}, "", addr)
	require.NoError(t, err)
	do := func(method, target, host, cookie, body string) *http.Response {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Host = host
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: walletCookie, Value: cookie})
		}
		rec := httptest.NewRecorder()
		u.ServeHTTP(rec, req)
		return rec.Result()
	}
	require.Equal(t, http.StatusMisdirectedRequest, do("GET", "/", "evil.example:8700", key, "").StatusCode, "DNS rebinding")
	require.Equal(t, http.StatusUnauthorized, do("GET", "/", addr, "", "").StatusCode)
	require.Equal(t, http.StatusUnauthorized, do("GET", "/", addr, "wrong", "").StatusCode)
	require.Equal(t, http.StatusForbidden, do("GET", "/?key=wrong", addr, "", "").StatusCode)
	resp := do("GET", "/?key="+key, addr, "", "")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	c := resp.Cookies()
	require.Len(t, c, 1)
	require.Equal(t, key, c[0].Value)
	require.True(t, c[0].HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c[0].SameSite)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Equal(t, http.StatusForbidden, do("POST", "/grant", addr, key, "to=00").StatusCode, "no CSRF token")
	require.Equal(t, http.StatusForbidden, do("POST", "/revoke", addr, key, "csrf=00&consent=00").StatusCode, "a wrong CSRF token")
	require.Equal(t, http.StatusOK, do("GET", "/static/app.css", addr, "", "").StatusCode)
}

// The Billing section draws memberships (past due flagged), invoices, payments and claims, with
// a dispute form carrying the CSRF token for a claim not already disputed.
func TestWalletUIBillingSection(t *testing.T) {
	const addr = "127.0.0.1:8700"
	u, key, err := newWalletUI(nil, &ledgerFlags{}, "", addr)
	require.NoError(t, err)
	sub := chain.Address{1}
	m := testMembership(sub, chain.Address{2}, 9900)
	pay := &state.PaymentState{Version: state.RecordVersion, ID: chain.Sum256([]byte("pay")), Provider: m.Provider, Time: m.StartMs, Height: 4,
		Splits: []state.PaidSplit{{Membership: m.ID, Subscriber: sub, Cents: 9900}}}
	c := testClaim(sub)
	disputed := testClaim(sub)
	disputed.ID, disputed.Status = chain.Sum256([]byte("claim2")), state.ClaimDisputed
	disputed.Disputes = []state.ClaimDisputeEntry{{Reason: chain.DisputeWrongAmount, Height: 9}}
	items := []*state.Item{{Membership: m}, {Payment: pay}, {Claim: c}, {Claim: disputed}}
	at := time.Date(2026, time.May, 15, 0, 0, 0, 0, time.UTC).UnixMilli()
	p := walletPage{Title: "t", CSRF: u.csrf(), Data: map[string]any{"Billing": provedBilling(items, sub, at), "Claims": provedClaims(items)}}
	var buf strings.Builder
	require.NoError(t, u.tmpl["home"].Execute(&buf, p))
	html := buf.String()
	for _, want := range []string{`id="memberships"`, "PAST DUE since 2026-04-11", "198.00 USD", `id="invoices"`, "2026-04-01 to 2026-05-01",
		`id="payments"`, pay.ID.String(), `id="claims"`, "2026-04-02", "you disputed: wrong-amount (open)", `value="membership-covers"`} {
		require.Contains(t, html, want)
	}
	require.Equal(t, 1, strings.Count(html, `action="/dispute"`), "a disputed claim has no second dispute form")
	require.Contains(t, html, `name="csrf" value="`+u.csrf()+`"><input type="hidden" name="claim" value="`+c.ID.String())

	// The dispute form is guarded like the others.
	req := httptest.NewRequest("POST", "/dispute", strings.NewReader("claim="+c.ID.String()+"&reason=other"))
	req.Host = addr
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: walletCookie, Value: key})
	rec := httptest.NewRecorder()
	u.ServeHTTP(rec, req)
	require.Equal(t, http.StatusForbidden, rec.Code, "no CSRF token")
}
