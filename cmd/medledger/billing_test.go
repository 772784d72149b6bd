package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// fakeBillingNode is a node API that answers billing calls with canned JSON and keeps the
// requests it got.
type fakeBillingNode struct {
	mu      sync.Mutex
	got     map[string][]byte // "METHOD path" → body
	answers map[string]any
}

func newFakeBillingNode(t *testing.T) (*fakeBillingNode, string) {
	f := &fakeBillingNode{got: map[string][]byte{}, answers: map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.RequestURI()
		f.mu.Lock()
		f.got[key] = body
		ans, ok := f.answers[key]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+strings.Repeat("ab", 32) {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(node.ErrorJSON{Error: "invalid API token"})
			return
		}
		if !ok {
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(node.ErrorJSON{Error: `forbidden: the clinician role does not have the "billing" permission`})
			return
		}
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(srv.Close)
	home := t.TempDir()
	cfg := node.DefaultConfig()
	cfg.API.Listen = strings.TrimPrefix(srv.URL, "http://")
	require.NoError(t, os.WriteFile(node.Home(home).ConfigFile(), node.FormatConfig(cfg), 0o600))
	require.NoError(t, os.WriteFile(node.Home(home).TokenFile(), []byte(strings.Repeat("ab", 32)+"\n"), 0o600))
	return f, home
}

func (f *fakeBillingNode) answer(key string, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[key] = v
}

func (f *fakeBillingNode) request(t *testing.T, key string, v any) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	body, ok := f.got[key]
	require.True(t, ok, "no request %s", key)
	require.NoError(t, json.Unmarshal(body, v), "%s", body)
}

func TestBillingCLIUsage(t *testing.T) {
	_, home := newFakeBillingNode(t)
	id := strings.Repeat("0a", 32)
	for _, args := range [][]string{
		{"billing", "plans", "publish", "--home", home},
		{"billing", "plans", "publish", "--home", home, "--label", "A", "--currency", "USD", "--tier", "adult"},
		{"billing", "plans", "retire", "--home", home, "--plan", "xyz"},
		{"billing", "agreement", "draft", "--home", home, "--plan", id, "--subscriber", strings.Repeat("0b", 20)},
		{"billing", "agreement", "draft", "--home", home, "--plan", id, "--subscriber", strings.Repeat("0b", 20), "--member", "nope", "--out", "f"},
		{"billing", "enrol", "--home", home},
		{"billing", "cancel", "--home", home},
		{"billing", "statement", "--home", home, "--membership", "12"},
		{"billing", "memberships", "--home", home},
		{"billing", "pay", "--home", home, "--reference", "ch_1"},
		{"billing", "pay", "--home", home, "--membership", id, "--reference", "ch_1"},
		{"billing", "pay", "--home", home, "--membership", id, "--amount", "1", "--split", id + ":1", "--reference", "ch_1"},
		{"billing", "refund", "--home", home, "--split", "x:1", "--reference", "ch_1"},
		{"billing", "sponsor", "--home", home, "a", "b"},
		{"billing", "payment", "--home", home},
	} {
		out, code := run(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, out)
	}
}

func TestBillingCLICalls(t *testing.T) {
	fake, home := newFakeBillingNode(t)
	var plan, ms chain.Hash
	plan[0], ms[0] = 0x11, 0x22
	pj := node.PlanJSON{ID: plan, Label: "Adult monthly", Currency: "USD", Period: "monthly", MaxMembers: 1,
		Tiers: []node.TierJSON{{Label: "adult", Price: "99.00"}}, Covered: []string{"99213"}}
	fake.answer("POST /v1/billing/plans", pj)
	out, code := run(t, "billing", "plans", "publish", "--home", home, "--label", "Adult monthly", "--currency", "USD",
		"--tier", "adult=99.00", "--covered", "99213, 99214", "--grace-days", "7")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "adult=99.00 USD")
	var preq node.PlanRequest
	fake.request(t, "POST /v1/billing/plans", &preq)
	require.Equal(t, []node.TierJSON{{Label: "adult", Price: "99.00"}}, preq.Tiers)
	require.Equal(t, []string{"99213", "99214"}, preq.Covered)
	require.Equal(t, 7, preq.GraceDays)

	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	m := node.MembershipJSON{ID: ms, PlanLabel: "Adult monthly", Price: "99.00", Currency: "USD", Period: "monthly", Start: t0,
		Members: []node.MemberTierJSON{{Tier: 0}}, Statement: node.StatementJSON{Status: "past-due", TotalDue: "198.00", TotalPaid: "99.00", Balance: "99.00",
			Invoices: []node.InvoiceJSON{
				{Period: 0, Start: t0, End: t0.AddDate(0, 1, 0), Due: t0, Amount: "99.00", Paid: "99.00", Status: "paid"},
				{Period: 1, Start: t0.AddDate(0, 1, 0), End: t0.AddDate(0, 2, 0), Due: t0.AddDate(0, 1, 0), Amount: "99.00", Paid: "0.00", Status: "unpaid"},
			}}}
	fake.answer("GET /v1/billing/memberships/"+ms.String(), m)
	out, code = run(t, "billing", "statement", "--home", home, "--membership", ms.String())
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "past-due")
	require.Regexp(t, `2\s+2027-01-01\.\.2027-02-01\s+2027-01-01\s+99.00\s+0.00\s+unpaid`, out)
	require.Contains(t, out, "balance 99.00 USD")
	out, code = run(t, "billing", "statement", "--home", home, "--membership", ms.String(), "--json")
	require.Equal(t, 0, code, out)
	var back node.MembershipJSON
	require.NoError(t, json.Unmarshal([]byte(out), &back))
	require.Equal(t, m.Statement.Balance, back.Statement.Balance)

	// A sponsor's payment split over two memberships.
	var ms2 chain.Hash
	ms2[0] = 0x33
	fake.answer("POST /v1/billing/payments", node.PaymentJSON{ID: ms, Total: "179.00", Reference: "ach-1",
		Splits: []node.PaymentSplitJSON{{Membership: ms, Amount: "99.00"}, {Membership: ms2, Amount: "80.00"}}})
	out, code = run(t, "billing", "pay", "--home", home, "--split", ms.String()+":99.00", "--split", ms2.String()+":80", "--reference", "ach-1")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "179.00 over 2 membership(s)")
	var payReq node.PaymentRequest
	fake.request(t, "POST /v1/billing/payments", &payReq)
	require.Equal(t, "ach-1", payReq.Reference)
	require.False(t, payReq.Refund)
	require.Len(t, payReq.Splits, 2)
	out, code = run(t, "billing", "refund", "--home", home, "--membership", ms.String(), "--amount", "5", "--reference", "re_1")
	require.Equal(t, 0, code, out)
	fake.request(t, "POST /v1/billing/payments", &payReq)
	require.True(t, payReq.Refund)

	fake.answer("GET /v1/billing/payments/"+ms.String(), node.PaymentJSON{ID: ms, Total: "5.00", Refund: true, Reference: "re_1",
		Splits: []node.PaymentSplitJSON{{Membership: ms, Amount: "5.00"}}})
	out, code = run(t, "billing", "payment", "--home", home, "--id", ms.String())
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "refund "+ms.String())
	require.Contains(t, out, "reference re_1")

	fake.answer("GET /v1/billing/sponsors", node.SponsorsJSON{Sponsors: []node.SponsorSummaryJSON{{Name: "Acme Corp", ID: ms, Memberships: 2}}})
	out, code = run(t, "billing", "sponsor", "--home", home)
	require.Equal(t, 0, code, out)
	require.Regexp(t, `Acme Corp\s+2\s+`+ms.String(), out)
	fake.answer("GET /v1/billing/sponsors/Acme%20Corp", node.SponsorJSON{Name: "Acme Corp", ID: ms, Balance: "179.00", Currencies: []string{"USD"},
		Memberships: []node.SponsorLineJSON{{Membership: ms, Currency: "USD", Status: "active", Balance: "99.00"}, {Membership: ms2, Currency: "USD", Status: "past-due", Balance: "80.00"}}})
	out, code = run(t, "billing", "sponsor", "--home", home, "Acme Corp")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `total\s+179.00 USD`, out)

	// A drafted agreement is written for the wallet; enrol refuses it unsigned, before the node.
	var ag billing.AgreementFile
	require.NoError(t, json.Unmarshal(agreementFixture(t), &ag))
	fake.answer("POST /v1/billing/agreements", &ag)
	file := filepath.Join(t.TempDir(), "agreement.json")
	sub := ag.Subscriber.String()
	out, code = run(t, "billing", "agreement", "draft", "--home", home, "--plan", ag.Plan.ID.String(), "--subscriber", sub,
		"--member", sub+":adult", "--sponsor", "Acme", "--out", file)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "medledger wallet billing sign")
	var areq node.AgreementRequest
	fake.request(t, "POST /v1/billing/agreements", &areq)
	require.Equal(t, "Acme", areq.Sponsor)
	require.Equal(t, []node.MemberJSON{{Patient: ag.Subscriber, Tier: "adult"}}, areq.Members)
	out, code = run(t, "billing", "enrol", "--home", home, "--signed", file)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not signed")

	// The node's refusal reaches the operator with its status.
	out, code = run(t, "billing", "plans", "list", "--home", home)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, `"billing" permission (HTTP 403)`)
}

// agreementFixture is an enrol agreement file as a node drafts it.
func agreementFixture(t *testing.T) []byte {
	t.Helper()
	var sub chain.Address
	sub[0] = 0x44
	plan := chain.Plan{Label: "Adult monthly", Currency: "USD", Period: chain.PeriodMonthly, MaxMembers: 1,
		Tiers: []chain.PlanTier{{Label: "adult", PriceCents: 9900}}}
	plan.ID[0] = 0x11
	var id chain.Hash
	id[0] = 0x55
	contract, err := billing.ContractResource(billing.MembershipInfo{ID: id, Plan: plan, PriceCents: 9900, Members: []string{sub.String()},
		Subscriber: sub.String(), Signed: time.Now(), Start: time.Now()})
	require.NoError(t, err)
	ag := &chain.MembershipAgreement{ID: id, Plan: plan.ID, Subscriber: sub, Members: []chain.MemberTier{{Patient: sub}},
		StartMs: time.Now().UnixMilli(), Contract: billing.ContractHash(contract)}
	f := billing.AgreementFile{Kind: billing.AgreementEnrol, ChainID: "test", Plan: plan, PriceCents: 9900, Agreement: ag, Subscriber: sub, Contract: contract}
	require.NoError(t, f.Check())
	data, err := json.Marshal(&f)
	require.NoError(t, err)
	return data
}
