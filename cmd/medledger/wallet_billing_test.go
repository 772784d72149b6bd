package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/wallet/keystore"
)

func addr(b byte) chain.Address { return chain.Address{b} }

func utcMs(y int, mo time.Month, d int) int64 {
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).UnixMilli()
}

// familyAgreement is an agreement file for a family of subscriber and another member.
func familyAgreement(subscriber, other chain.Address, sponsor bool) *billing.AgreementFile {
	plan := chain.Plan{ID: chain.Sum256([]byte("plan")), Label: "Family monthly", Currency: "USD", Period: chain.PeriodMonthly, Family: true,
		MaxMembers: 4, Tiers: []chain.PlanTier{{Label: "18-64", PriceCents: 9900}, {Label: "0-17", PriceCents: 2500}},
		Covered: []string{"99213", "99214"}, GraceDays: 10}
	contract := []byte(`{"resourceType":"Contract","status":"offered","text":"Care & <tests>"}`) // & and < survive: the hash is over these bytes
	ms := []chain.MemberTier{{Patient: subscriber, Tier: 0}, {Patient: other, Tier: 1}}
	if bytes.Compare(other[:], subscriber[:]) < 0 {
		ms[0], ms[1] = ms[1], ms[0]
	}
	ag := &chain.MembershipAgreement{ID: chain.Sum256([]byte("ag")), Plan: plan.ID, Subscriber: subscriber, Members: ms,
		StartMs: utcMs(2026, time.March, 1), Contract: billing.ContractHash(contract)}
	if sponsor {
		ag.Sponsor = chain.Sum256([]byte("employer"))
	}
	return &billing.AgreementFile{Kind: billing.AgreementEnrol, ChainID: "medledger-test", Practice: addr(0xaa), Plan: plan,
		PriceCents: 12400, Agreement: ag, Subscriber: subscriber, Contract: contract}
}

func writeAgreement(t *testing.T, dir string, af *billing.AgreementFile) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // as the practice's draft writes it: Contract bytes unescaped
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(af))
	return writeFile(t, filepath.Join(dir, "agreement.json"), buf.String())
}

func TestWalletBillingSign(t *testing.T) {
	tmp := t.TempDir()
	wdir := filepath.Join(tmp, "w")
	w, err := keystore.Create(wdir, nil)
	require.NoError(t, err)
	in := writeAgreement(t, tmp, familyAgreement(w.PatientID(), addr(7), false))
	out := filepath.Join(tmp, "signed.json")

	// No terminal and no --yes: nothing is signed.
	_, err = runCLI(t, "wallet", "billing", "sign", "--dir", wdir, "--agreement", in, "--out", out)
	require.ErrorContains(t, err, "--yes")
	require.NoFileExists(t, out)

	_, err = runCLI(t, "wallet", "billing", "sign", "--dir", wdir, "--agreement", in, "--out", out, "--yes")
	require.NoError(t, err)
	fi, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	signed, err := billing.ParseAgreementFile(data)
	require.NoError(t, err)
	_, err = signed.Signature()
	require.NoError(t, err, "the practice can verify the subscriber's signature")
	require.Equal(t, w.SigningKey().Public(), signed.SubscriberKey)

	// A signed file is never overwritten.
	_, err = runCLI(t, "wallet", "billing", "sign", "--dir", wdir, "--agreement", in, "--out", out, "--yes")
	require.ErrorContains(t, err, "refusing to overwrite")
}

func TestWalletBillingSignRefusesAnotherSubscriber(t *testing.T) {
	tmp := t.TempDir()
	wdir := filepath.Join(tmp, "w")
	w, err := keystore.Create(wdir, nil)
	require.NoError(t, err)
	// The wallet's patient is a member, but another patient subscribes.
	in := writeAgreement(t, tmp, familyAgreement(addr(7), w.PatientID(), false))
	out := filepath.Join(tmp, "signed.json")
	_, err = runCLI(t, "wallet", "billing", "sign", "--dir", wdir, "--agreement", in, "--out", out, "--yes")
	require.ErrorContains(t, err, "not this wallet's patient")
	require.NoFileExists(t, out)
}

func TestAgreementTextShowsWhatIsSigned(t *testing.T) {
	sub, kid := addr(1), addr(2)
	txt := agreementText(familyAgreement(sub, kid, true))
	for _, want := range []string{"124.00 USD per monthly period", "Family monthly", sub.String(), kid.String(), "18-64 (99.00 USD)",
		"0-17 (25.00 USD)", "members:     2", "2026-03-01", "sponsor:     yes", "99213, 99214", addr(0xaa).String(), "10 days"} {
		require.Contains(t, txt, want)
	}
	require.Contains(t, agreementText(familyAgreement(sub, kid, false)), "sponsor:     no")
}

// testMembership is a family membership of subscriber and member from Mar 1, 99.00 a month,
// 10 days' grace, with paid cents paid.
func testMembership(subscriber, member chain.Address, paid uint64) *state.MembershipRecord {
	start := utcMs(2026, time.March, 1)
	return &state.MembershipRecord{Version: state.RecordVersion, ID: chain.Sum256([]byte("m1")), Provider: addr(0xaa), Subscriber: subscriber,
		Currency: "USD", Period: chain.PeriodMonthly, StartMs: start, PaidCents: paid, Payments: 1,
		Segments: []state.MembershipSegment{{FromMs: start, Plan: chain.Sum256([]byte("plan")), PriceCents: 9900, GraceDays: 10,
			Members: []chain.MemberTier{{Patient: subscriber}, {Patient: member, Tier: 1}}}}}
}

func TestProvedBillingDerivesInvoicesAtHeaderTime(t *testing.T) {
	sub, kid := addr(1), addr(2)
	m := testMembership(sub, kid, 9900)
	pay := &state.PaymentState{Version: state.RecordVersion, ID: chain.Sum256([]byte("pay")), Provider: addr(0xaa), Time: utcMs(2026, time.March, 2), Height: 40,
		Splits: []state.PaidSplit{{Membership: m.ID, Subscriber: sub, Cents: 9900}, {Membership: chain.Sum256([]byte("other")), Subscriber: addr(9), Cents: 5000}}}
	items := []*state.Item{{Membership: m}, {Payment: pay}}
	at := utcMs(2026, time.May, 15) // March paid; April past its grace; May within it

	b := provedBilling(items, sub, at)
	require.Len(t, b.Memberships, 1)
	mj := b.Memberships[0]
	require.True(t, mj.YouSubscribe)
	require.True(t, mj.PastDue)
	require.Equal(t, "past-due", mj.Status)
	require.Equal(t, "2026-04-11T00:00:00Z", mj.PastDueSince)
	require.Equal(t, int64(2*9900), mj.BalanceCents)
	require.Equal(t, "2026-04-01T00:00:00Z", mj.PaidThrough)
	require.Len(t, mj.Invoices, 3)
	require.Equal(t, []string{"paid", "unpaid", "unpaid"}, []string{mj.Invoices[0].Status, mj.Invoices[1].Status, mj.Invoices[2].Status})
	require.Len(t, mj.Members, 2)
	// The sponsor's split for another membership is not the patient's.
	require.Len(t, b.Payments, 1)
	require.Equal(t, uint64(9900), b.Payments[0].Cents)
	require.Len(t, b.Payments[0].Splits, 1)
	require.Equal(t, "USD", b.Payments[0].Currency)

	// The same as the ledger's own derivation.
	require.Equal(t, m.Statement(at).BalanceCents, mj.BalanceCents)

	var buf bytes.Buffer
	require.NoError(t, printBilling(&buf, b))
	txt := buf.String()
	require.True(t, strings.HasPrefix(txt, "!! PAST DUE since 2026-04-11T00:00:00Z"), txt)
	for _, want := range []string{"subscriber", "198.00 USD", "99.00 USD/monthly", pay.ID.String(), "2026-04-01..2026-05-01", "payment"} {
		require.Contains(t, txt, want)
	}

	// JSON keys are the documented ones.
	data, err := json.Marshal(b)
	require.NoError(t, err)
	for _, k := range []string{`"memberships"`, `"payments"`, `"invoices"`, `"past_due":true`, `"balance_cents":19800`, `"receipt"`} {
		require.Contains(t, string(data), k)
	}

	// A family member who does not subscribe sees the membership (not as subscriber); paid up, it
	// is active.
	b = provedBilling([]*state.Item{{Membership: testMembership(sub, kid, 3*9900)}}, kid, at)
	require.False(t, b.Memberships[0].YouSubscribe)
	require.Equal(t, "active", b.Memberships[0].Status)
	buf.Reset()
	require.NoError(t, printBilling(&buf, b))
	require.Contains(t, buf.String(), "member")
	require.NotContains(t, buf.String(), "PAST DUE")
	require.Contains(t, buf.String(), "PAYMENTS AND RECEIPTS\n  none")

	// Nothing at all: empty lists in JSON, "none" in the table.
	b = provedBilling(nil, sub, at)
	data, _ = json.Marshal(b)
	require.Contains(t, string(data), `"memberships":[]`)
}

func TestFindMembershipForCancel(t *testing.T) {
	sub, kid := addr(1), addr(2)
	m := testMembership(sub, kid, 0)
	ps := provedStateOf(utcMs(2026, time.April, 1), &state.Item{Membership: m})
	got, err := findMembership(ps, sub, m.ID)
	require.NoError(t, err)
	require.Equal(t, m, got)
	_, err = findMembership(ps, kid, m.ID)
	require.ErrorContains(t, err, "only the subscriber")
	_, err = findMembership(ps, sub, chain.Hash{3})
	require.ErrorContains(t, err, "not one of yours")
	m.EndMs = utcMs(2026, time.March, 20)
	_, err = findMembership(ps, sub, m.ID)
	require.ErrorContains(t, err, "already cancelled")
}

// The billing and claims commands open an encrypted wallet as the others do: --passphrase-file,
// a wrong one refused, the right one opening it (then failing for want of a node).
func TestWalletBillingCommandsOpenEncrypted(t *testing.T) {
	tmp := t.TempDir()
	pass := writeFile(t, filepath.Join(tmp, "pass"), "a long passphrase\n")
	wrong := writeFile(t, filepath.Join(tmp, "wrong"), "not the passphrase\n")
	dir := filepath.Join(tmp, "w")
	_, err := runCLI(t, append([]string{"wallet", "new", "--dir", dir, "--passphrase-file", pass}, cheap...)...)
	require.NoError(t, err)
	home := filepath.Join(tmp, "no-node")
	id := strings.Repeat("cd", 32)
	for _, args := range [][]string{
		{"billing", "list"},
		{"billing", "show"},
		{"billing", "cancel", "--membership", id},
		{"claims", "list"},
		{"claims", "dispute", "--claim", id, "--reason", "other"},
	} {
		base := append([]string{"wallet"}, args[:2]...)
		base = append(append(base, "--dir", dir, "--home", home), args[2:]...)
		_, err := runCLI(t, base...)
		require.ErrorContains(t, err, "--passphrase-file", args)
		_, err = runCLI(t, append(base, "--passphrase-file", wrong)...)
		require.ErrorIs(t, err, keystore.ErrWrongPassphrase, args)
		_, err = runCLI(t, append(base, "--passphrase-file", pass)...)
		require.Error(t, err, "no node")
		require.NotContains(t, err.Error(), "passphrase", args)
	}

	// sign with the encrypted wallet: the right passphrase signs.
	w, err := keystore.Open(dir, keystore.StaticPassphrase([]byte("a long passphrase")))
	require.NoError(t, err)
	in := writeAgreement(t, tmp, familyAgreement(w.PatientID(), addr(7), false))
	out := filepath.Join(tmp, "signed.json")
	_, err = runCLI(t, "wallet", "billing", "sign", "--dir", dir, "--agreement", in, "--out", out, "--yes", "--passphrase-file", wrong)
	require.ErrorIs(t, err, keystore.ErrWrongPassphrase)
	_, err = runCLI(t, "wallet", "billing", "sign", "--dir", dir, "--agreement", in, "--out", out, "--yes", "--passphrase-file", pass)
	require.NoError(t, err)
	require.FileExists(t, out)
}

func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"yes\n": true, "Y\n": true, " yes ": true, "no\n": false, "\n": false, "sure\n": false} {
		var prompt bytes.Buffer
		got, err := confirm(strings.NewReader(in), &prompt, "Sign? ")
		require.NoError(t, err)
		require.Equal(t, want, got, in)
		require.Equal(t, "Sign? ", prompt.String())
	}
	_, err := confirm(strings.NewReader(""), io.Discard, "Sign? ")
	require.Error(t, err, "no answer is not a yes")
}
