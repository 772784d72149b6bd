package node

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
)

// The book survives a restart: the same sponsor name keeps its id, references and contracts
// are read back, a torn last payment line is skipped; another node's secret gives another id.
func TestBillingBookReopens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "billing")
	b, err := openBillingBook(dir)
	require.NoError(t, err)
	id, err := b.noteSponsor("  Acme   Corp ")
	require.NoError(t, err)
	var m, p chain.Hash
	m[0], p[0] = 1, 2
	require.NoError(t, b.noteSponsored(id, m))
	require.NoError(t, b.notePayment(p, "ch_1", false, time.Now()))
	require.NoError(t, b.noteContract(m, []byte(`{"resourceType":"Contract"}`)))
	f, err := os.OpenFile(filepath.Join(dir, "payments.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"id":"03`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	b2, err := openBillingBook(dir)
	require.NoError(t, err)
	id2, e, ok := b2.sponsor("acme corp")
	require.True(t, ok)
	require.Equal(t, id, id2)
	require.Equal(t, "Acme Corp", e.Name)
	require.Equal(t, []string{m.String()}, e.Memberships)
	require.Equal(t, "ch_1", b2.payment(p))
	require.JSONEq(t, `{"resourceType":"Contract"}`, string(b2.contract(m)))

	other, err := openBillingBook(filepath.Join(t.TempDir(), "billing"))
	require.NoError(t, err)
	require.NotEqual(t, id, other.sponsorID("Acme Corp"))
}

// A statement read weeks after the start: the second invoice unpaid past its grace makes the
// membership past due; the JSON and the FHIR Bundle say so, and the Bundle is valid R4.
func TestBillingStatementPastDue(t *testing.T) {
	book, err := openBillingBook(filepath.Join(t.TempDir(), "billing"))
	require.NoError(t, err)
	a := &API{billing: &billingAPI{book: book, now: time.Now}}
	var id, planID chain.Hash
	var subscriber, provider chain.Address
	id[0], planID[0], subscriber[0], provider[0] = 1, 2, 3, 4
	t0 := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	m := &state.MembershipRecord{ID: id, Provider: provider, Subscriber: subscriber, Currency: "USD", Period: chain.PeriodMonthly,
		StartMs: t0.UnixMilli(), PaidCents: 9900 + 5000, EnrolledTime: t0.UnixMilli(),
		Segments: []state.MembershipSegment{{FromMs: t0.UnixMilli(), Plan: planID, Members: []chain.MemberTier{{Patient: subscriber}}, PriceCents: 9900, GraceDays: 7, Contract: id}}}
	at := t0.AddDate(0, 1, 10).UnixMilli() // ten days into the second month, grace 7
	j, err := a.membershipJSON(store.NewMemory().State(), m, at)
	require.NoError(t, err)
	st := j.Statement
	require.Equal(t, "past-due", st.Status)
	require.Len(t, st.Invoices, 2)
	require.Equal(t, "paid", st.Invoices[0].Status)
	require.Equal(t, "partly-paid", st.Invoices[1].Status)
	require.Equal(t, "49.00", st.Balance)
	require.NotNil(t, st.PastDueSince)
	require.Equal(t, t0.AddDate(0, 1, 7), *st.PastDueSince)
	require.Equal(t, t0.AddDate(0, 1, 0), *st.PaidThrough)
	require.Equal(t, invoiceID(id, 1), st.Invoices[1].ID)

	plan := chain.Plan{ID: planID, Label: "Adult", Currency: "USD", Period: chain.PeriodMonthly, MaxMembers: 1, Tiers: []chain.PlanTier{{Label: "adult", PriceCents: 9900}}}
	bundle, err := a.membershipBundle(m, &plan, at)
	require.NoError(t, err)
	require.Contains(t, string(bundle), `"status":"balanced"`)
	require.Contains(t, string(bundle), `"status":"issued"`)
}
