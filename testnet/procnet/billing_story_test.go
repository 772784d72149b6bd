package procnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

const day = 24 * time.Hour

// storyPatient is a patient's wallet: its directory, passphrase file and ledger id.
type storyPatient struct{ dir, pass, id string }

// cents reads an amount the node prints ("99.00", "-12.34") as cents.
func cents(t *testing.T, s string) int64 {
	t.Helper()
	neg := strings.HasPrefix(s, "-")
	whole, frac, ok := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	require.True(t, ok && len(frac) == 2, "amount %q", s)
	w, err := strconv.ParseInt(whole, 10, 64)
	require.NoError(t, err, "amount %q", s)
	f, err := strconv.ParseInt(frac, 10, 64)
	require.NoError(t, err, "amount %q", s)
	if neg {
		return -(w*100 + f)
	}
	return w*100 + f
}

func amount(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

// periodsStarted is how many monthly periods of a membership started at start have begun by
// at: period k starts at start.AddDate(0, k, 0) (docs/billing.md, Periods and proration).
func periodsStarted(start, at time.Time) int {
	n := 0
	for !start.AddDate(0, n, 0).After(at) {
		n++
	}
	return n
}

// TestBillingYearStory runs a year of a direct primary care practice in block time, on four
// authority processes with a test clock and a payer that joins, with the commands the practice
// (node0), the payer and the patients type: plans, agreements signed in wallets, enrolment,
// a year of monthly payments (a sponsor's split, an adult two months behind, a family's
// prorated change, a prorated cancellation and its refund), then claims against the payer's
// schedule and the filing rules, and the patients' proved views of both.
func TestBillingYearStory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	began := time.Now()
	nw := procnettest.NewWith(t, 4, "--test-clock")
	procnettest.StartAll(t, nw)
	ctx := context.Background()
	_, err := nw.WaitHeight(ctx, 0, 2, startTimeout)
	require.NoError(t, err)
	home0 := nw.Home(0)
	var practice string
	require.NoError(t, procnet.WaitFor(ctx, startTimeout, 200*time.Millisecond, "node0 a registered practice", func(ctx context.Context) (bool, error) {
		var st node.StatusJSON
		_, out, err := nw.Do(ctx, 0, http.MethodGet, "/v1/status", nil, true)
		if err != nil || json.Unmarshal(out, &st) != nil || !st.ProviderRegistered || st.ProviderID == nil {
			return false, nil
		}
		practice = st.ProviderID.String()
		return true, nil
	}))

	// The payer joins on the testnet's clock (its node must accept blocks a year ahead).
	payer := joinPayer(t, nw, testnet.ClockFile(nw.Dir))

	// run runs a command that must succeed and returns what it printed.
	run := func(args ...string) string {
		t.Helper()
		out, errs, code := cli(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s%s", args, code, errs, out)
		}
		return out
	}
	// headTime is the block time of node0's head.
	headTime := func() time.Time {
		t.Helper()
		s, err := nw.Status(ctx, 0)
		require.NoError(t, err)
		return blockTime(t, ctx, nw, s.Height)
	}
	// advanceTo drives block time forward to at and waits for a block past it on node0, so
	// that every later read and transaction is in the new period.
	clock := time.Duration(0)
	advanceTo := func(at time.Time) {
		t.Helper()
		d := at.Sub(headTime()).Round(time.Second)
		require.Positive(t, d, "the clock only moves forward")
		clock += d
		run("testnet", "clock", "--dir", nw.Dir, "--advance", d.String())
		require.NoError(t, procnet.WaitFor(ctx, stepTimeout, 100*time.Millisecond, fmt.Sprintf("a block at %s (clock +%s)", at, clock),
			func(context.Context) (bool, error) { return !headTime().Before(at), nil }))
	}

	newPatient := func(name string) storyPatient {
		t.Helper()
		p := storyPatient{dir: filepath.Join(t.TempDir(), name), pass: filepath.Join(t.TempDir(), name+".pass")}
		require.NoError(t, os.WriteFile(p.pass, []byte(name+"'s long passphrase\n"), 0o600))
		var reg struct {
			PatientID string `json:"patient_id"`
		}
		cliJSON(t, &reg, "wallet", "new", "--dir", p.dir, "--passphrase-file", p.pass)
		cliJSON(t, &reg, "wallet", "register", "--dir", p.dir, "--passphrase-file", p.pass, "--home", home0)
		require.Len(t, reg.PatientID, 40)
		p.id = reg.PatientID
		return p
	}
	ann := newPatient("ann")                                                     // an individual adult
	fam1, fam2, kid := newPatient("fam1"), newPatient("fam2"), newPatient("kid") // a family
	emp1, emp2 := newPatient("emp1"), newPatient("emp2")                         // Acme's employees
	nora := newPatient("nora")                                                   // no membership: insured by the payer

	// Plans: both cover 99213 (an office visit); 93000 (an ECG) and 36415 are not covered.
	var indiv, family node.PlanJSON
	cliJSON(t, &indiv, "billing", "plans", "publish", "--home", home0, "--label", "Adult monthly", "--currency", "USD",
		"--period", "monthly", "--tier", "adult=99.00", "--covered", "99213", "--grace-days", "10")
	cliJSON(t, &family, "billing", "plans", "publish", "--home", home0, "--label", "Family monthly", "--currency", "USD",
		"--period", "monthly", "--family", "--max-members", "6", "--tier", "adult=89.00", "--tier", "child=39.00",
		"--family-cap", "200.00", "--covered", "99213", "--grace-days", "10")
	var plans node.PlansJSON
	cliJSON(t, &plans, "billing", "plans", "list", "--home", home0)
	require.Len(t, plans.Plans, 2)

	// enrol: the practice drafts, the subscriber reads and signs in their wallet, the practice
	// submits the signed file.
	n := 0
	sign := func(sub storyPatient, draft ...string) string {
		t.Helper()
		n++
		file := filepath.Join(t.TempDir(), fmt.Sprintf("agreement-%d.json", n))
		run(append(draft, "--home", home0, "--out", file)...)
		var signed struct {
			Subscriber string `json:"subscriber"`
		}
		cliJSON(t, &signed, "wallet", "billing", "sign", "--dir", sub.dir, "--passphrase-file", sub.pass, "--agreement", file, "--out", file+".signed", "--yes")
		require.Equal(t, sub.id, signed.Subscriber)
		return file + ".signed"
	}
	enrol := func(sub storyPatient, args ...string) node.MembershipJSON {
		t.Helper()
		var m node.MembershipJSON
		cliJSON(t, &m, "billing", "enrol", "--home", home0, "--signed", sign(sub, append([]string{"billing", "agreement", "draft"}, args...)...))
		return m
	}
	mAnn := enrol(ann, "--plan", indiv.ID.String(), "--subscriber", ann.id)
	mFam := enrol(fam1, "--plan", family.ID.String(), "--subscriber", fam1.id,
		"--member", fam1.id+":adult", "--member", fam2.id+":adult", "--member", kid.id+":child")
	mE1 := enrol(emp1, "--plan", indiv.ID.String(), "--subscriber", emp1.id, "--sponsor", "Acme")
	mE2 := enrol(emp2, "--plan", indiv.ID.String(), "--subscriber", emp2.id, "--sponsor", "Acme")
	require.Equal(t, "200.00", mFam.Price, "89 + 89 + 39 capped at 200")
	require.Equal(t, "Acme", mE1.SponsorName)
	// A person is in at most one open membership per practice.
	require.Contains(t, refused(t, "billing", "enrol", "--home", home0, "--signed",
		sign(ann, "billing", "agreement", "draft", "--plan", indiv.ID.String(), "--subscriber", ann.id)), "membership")

	statement := func(m node.MembershipJSON) node.MembershipJSON {
		t.Helper()
		var s node.MembershipJSON
		cliJSON(t, &s, "billing", "statement", "--home", home0, "--membership", m.ID.String())
		return s
	}
	refs := 0
	ref := func() string { refs++; return fmt.Sprintf("ch_%04d", refs) }
	// settle pays a membership's balance in full, if any, and checks it is then active.
	settle := func(m node.MembershipJSON) {
		t.Helper()
		s := statement(m)
		if due := cents(t, s.Statement.Balance); due > 0 {
			var p node.PaymentJSON
			cliJSON(t, &p, "billing", "pay", "--home", home0, "--membership", m.ID.String(), "--amount", amount(due), "--reference", ref())
			require.Equal(t, amount(due), p.Total)
		}
		s = statement(m)
		require.Equal(t, "active", s.Statement.Status, "%s after paying: %+v", s.PlanLabel, s.Statement)
		require.Equal(t, "0.00", s.Statement.Balance)
	}
	// sponsorPays settles the open sponsored memberships with one split payment.
	e2Open := true
	sponsorPays := func() {
		t.Helper()
		args := []string{"billing", "pay", "--home", home0, "--reference", "acme-" + ref()}
		for _, m := range []node.MembershipJSON{mE1, mE2} {
			if m.ID == mE2.ID && !e2Open {
				continue
			}
			if due := cents(t, statement(m).Statement.Balance); due > 0 {
				args = append(args, "--split", m.ID.String()+":"+amount(due))
			}
		}
		if len(args) > 6 {
			var p node.PaymentJSON
			cliJSON(t, &p, args...)
			require.Len(t, p.Splits, (len(args)-6)/2)
		}
		var sp node.SponsorJSON
		cliJSON(t, &sp, "billing", "sponsor", "--home", home0, "Acme")
		require.Equal(t, "0.00", sp.Balance, "Acme's combined invoice after its payment: %+v\nemp1 %+v\nemp2 %+v", sp, statement(mE1).Statement, statement(mE2).Statement)
	}
	// checkInvoices: one invoice per period started, each a full 99.00 unless prorated.
	checkInvoices := func(m node.MembershipJSON) node.MembershipJSON {
		t.Helper()
		s := statement(m)
		if s.End == nil {
			require.Len(t, s.Statement.Invoices, periodsStarted(s.Start, s.Statement.At), "%s at %s", s.PlanLabel, s.Statement.At)
		}
		return s
	}

	// Month 1 is due at enrolment.
	settle(mAnn)
	settle(mFam)
	sponsorPays()

	var changedAt time.Time
	var cancelled node.MembershipJSON
	// Each month's step lands 5 days into the period (the enrolments are seconds apart: a step
	// landing on the boundary would race it), the change and the cancellation mid-period and
	// mid-day (the day they fall in must not depend on which membership started seconds later).
	into := func(month, days int) time.Time { return mAnn.Start.AddDate(0, month, days) }
	for month := 1; month <= 12; month++ {
		switch month {
		case 6:
			// Mid-period, the family's child leaves: 200.00 (capped) → 178.00.
			advanceTo(into(5, 15).Add(12 * time.Hour))
			var ch node.MembershipJSON
			cliJSON(t, &ch, "billing", "change", "--home", home0, "--signed", sign(fam1, "billing", "agreement", "change",
				"--membership", mFam.ID.String(), "--member", fam1.id+":adult", "--member", fam2.id+":adult"))
			require.Equal(t, "178.00", ch.Price)
			changedAt = ch.Statement.At
		case 9:
			// Mid-period, the second employee leaves Acme: the prepaid period is prorated by day,
			// a credit the practice refunds.
			advanceTo(into(8, 15).Add(12 * time.Hour))
			cliJSON(t, &cancelled, "billing", "cancel", "--home", home0, "--membership", mE2.ID.String())
			require.NotNil(t, cancelled.End)
			require.Equal(t, "cancelled", cancelled.Statement.Status)
			e2Open = false
			// The cancellation, in exact cents: the day of the cancellation not billed.
			cs := statement(mE2)
			require.Equal(t, "cancelled", cs.Statement.Status)
			last := cs.Statement.Invoices[len(cs.Statement.Invoices)-1]
			billed := int64(cs.End.Sub(last.Start) / day)
			require.Equal(t, billed, last.BilledDays)
			require.Equal(t, amount(9900*billed/last.Days), last.Amount, "%d of %d days of 99.00", billed, last.Days)
			credit := 9900 - 9900*billed/last.Days
			require.Equal(t, "-"+amount(credit), cs.Statement.Balance, "the prepaid rest of the period is a credit")
			var refund node.PaymentJSON // the credit goes back to Acme
			cliJSON(t, &refund, "billing", "refund", "--home", home0, "--membership", mE2.ID.String(), "--amount", amount(credit), "--reference", ref())
			require.True(t, refund.Refund)
			require.Equal(t, "0.00", statement(mE2).Statement.Balance)
			t.Logf("emp2 cancelled %s: last invoice %s (%d of %d days), credit %s refunded", cs.End.Format(time.DateOnly), last.Amount, billed, last.Days, amount(credit))
		}
		advanceTo(into(month, 5))
		for _, m := range []node.MembershipJSON{mAnn, mFam, mE1} {
			checkInvoices(m)
		}
		switch month {
		case 2, 3:
			// Ann skips two months.
			s := statement(mAnn)
			require.Greater(t, cents(t, s.Statement.Balance), int64(0))
			if month == 3 {
				require.Equal(t, "past-due", s.Statement.Status, "%+v", s.Statement)
				require.NotNil(t, s.Statement.PastDueSince)
				var oldest *node.InvoiceJSON
				for i := range s.Statement.Invoices {
					if in := &s.Statement.Invoices[i]; in.Status != "paid" && oldest == nil {
						oldest = in
					}
				}
				require.NotNil(t, oldest)
				require.Equal(t, oldest.Due.AddDate(0, 0, indiv.GraceDays).Unix(), s.Statement.PastDueSince.Unix(), "past due from the oldest unpaid invoice's due date plus the grace")
				t.Logf("month %d: ann past due since %s, balance %s", month, s.Statement.PastDueSince.Format(time.DateOnly), s.Statement.Balance)
			}
		case 4:
			require.Equal(t, "past-due", statement(mAnn).Statement.Status)
			settle(mAnn) // all she owes at once, and active again
		default:
			settle(mAnn)
		}
		settle(mFam)
		sponsorPays()
	}

	// The family's change, in exact cents: times floored to days, the day of the change at the
	// new price.
	fs := statement(mFam)
	var changedInv *node.InvoiceJSON
	for i, in := range fs.Statement.Invoices {
		if !in.Start.After(changedAt) && in.End.After(changedAt) {
			changedInv = &fs.Statement.Invoices[i]
		}
	}
	require.NotNil(t, changedInv, "no invoice covers the change at %s", changedAt)
	old := int64(changedAt.Sub(changedInv.Start) / day)
	want := (20000*old + 17800*(changedInv.Days-old)) / changedInv.Days
	require.Equal(t, amount(want), changedInv.Amount, "the changed period: %d days at 200.00 and %d at 178.00 of %d", old, changedInv.Days-old, changedInv.Days)
	require.Equal(t, "178.00", fs.Statement.Invoices[len(fs.Statement.Invoices)-1].Amount)
	t.Logf("family: changed period %s..%s billed %s (%d days at 200.00, %d at 178.00)", changedInv.Start.Format(time.DateOnly), changedInv.End.Format(time.DateOnly), changedInv.Amount, old, changedInv.Days-old)

	// ---- Claims ----
	today := headTime().UTC()
	date := func(d int) string { return today.AddDate(0, 0, d).Format(time.DateOnly) }
	fees := filepath.Join(t.TempDir(), "fees.csv")
	require.NoError(t, os.WriteFile(fees, []byte("code,allowed\n99213,75.00\n93000,40.00\n"), 0o600))
	var sched node.ScheduleJSON
	cliJSON(t, &sched, "claims", "schedule", "--home", payer.home, "--provider", practice, "--fees", fees, "--coinsurance", "20")
	require.Equal(t, 2, sched.Fees)
	for _, p := range []storyPatient{nora, ann} {
		var cov node.CoverageJSON
		cliJSON(t, &cov, "claims", "coverage", "set", "--home", payer.home, "--patient", p.id, "--from", date(-60))
	}
	encounter := func(home string, p storyPatient) string {
		t.Helper()
		var imp struct {
			Records []struct {
				ID           string `json:"id"`
				ResourceType string `json:"resourceType"`
			} `json:"records"`
		}
		cliJSON(t, &imp, "records", "import", "--home", home, "--patient", p.id, "../../node/fhir/testdata/encounter.json")
		require.Len(t, imp.Records, 1)
		require.Equal(t, "Encounter", imp.Records[0].ResourceType)
		return imp.Records[0].ID
	}
	claimN := 0
	claimFile := func(service string, items ...[2]string) string {
		claimN++
		var its []string
		for i, it := range items {
			its = append(its, fmt.Sprintf(`{"sequence": %d, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": %q}]},
			  "servicedDate": %q, "net": {"value": %s, "currency": "USD"}}`, i+1, it[0], service, it[1]))
		}
		f := filepath.Join(t.TempDir(), fmt.Sprintf("claim-%d.json", claimN))
		require.NoError(t, os.WriteFile(f, fmt.Appendf(nil, `{"resourceType": "Claim", "id": "visit-%d", "status": "active",
		  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
		  "use": "claim", "patient": {"reference": "Patient/pat-1"}, "created": %q,
		  "provider": {"reference": "Organization/practice"},
		  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
		  "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/c1"}}],
		  "item": [%s]}`, claimN, date(0), strings.Join(its, ",")), 0o600))
		return f
	}
	fileArgs := func(p storyPatient, enc, file string) []string {
		return []string{"claims", "file", "--home", home0, "--payer", payer.id, "--patient", p.id, "--encounter", enc, "--claim", file}
	}
	lines := func(c node.ClaimJSON) [][4]uint64 {
		var out [][4]uint64
		for _, l := range c.Lines {
			out = append(out, [4]uint64{l.Billed, l.Allowed, l.Paid, l.Patient})
		}
		return out
	}

	// Nora's visit today, filed and adjudicated by the schedule: allowed = min(billed, fee),
	// 20% hers rounded down, the rest paid.
	noraEnc := encounter(home0, nora)
	visit := claimFile(date(0), [2]string{"99213", "90.00"}, [2]string{"93000", "45.00"})
	var filed node.FiledClaimJSON
	cliJSON(t, &filed, fileArgs(nora, noraEnc, visit)...)
	require.Equal(t, "adjudicated-by-rule", filed.Claim.Status)
	require.Equal(t, [][4]uint64{{9000, 7500, 6000, 1500}, {4500, 4000, 3200, 800}}, lines(filed.Claim))
	// The same claim again: duplicate.
	require.Contains(t, refused(t, fileArgs(nora, noraEnc, visit)...), "duplicate rule")
	// A service ten days before the encounter was anchored: a phantom visit.
	require.Contains(t, refused(t, fileArgs(nora, noraEnc, claimFile(date(-10), [2]string{"93000", "45.00"}))...), "phantom-visit rule")
	// Another practice's (node1's) encounter: a phantom visit for this practice.
	otherEnc := encounter(nw.Home(1), nora)
	require.Contains(t, refused(t, fileArgs(nora, otherEnc, claimFile(date(0), [2]string{"93000", "45.00"}))...), "phantom-visit rule")
	// Ann, an active member, is seen for 99213: her membership covers it, no claim.
	annEnc := encounter(home0, ann)
	require.Contains(t, refused(t, fileArgs(ann, annEnc, claimFile(date(0), [2]string{"99213", "90.00"}))...), "member-care rule")
	// A code without a fee pends the claim; the payer checks it against the sealed Claim and decides.
	var pended node.FiledClaimJSON
	cliJSON(t, &pended, fileArgs(nora, noraEnc, claimFile(date(0), [2]string{"36415", "25.00"}))...)
	require.Equal(t, "pended", pended.Claim.Status)
	var ver node.VerifyJSON
	require.NoError(t, procnet.WaitFor(ctx, stepTimeout, 300*time.Millisecond, "the payer reads the sealed claim", func(context.Context) (bool, error) {
		out, _, code := cli(t, "claims", "verify", "--home", payer.home, pended.Claim.ID.String(), "--json")
		return code == 0 && json.Unmarshal([]byte(out), &ver) == nil, nil
	}))
	require.True(t, ver.OK, "%+v", ver)
	var decided node.ClaimJSON
	cliJSON(t, &decided, "claims", "decide", "--home", payer.home, pended.Claim.ID.String(), "--line", "20.00:5.00")
	require.Equal(t, "decided", decided.Status)
	require.Equal(t, [][4]uint64{{2500, 2500, 2000, 500}}, lines(decided))

	// The payer's inbox has both claims; the practice's explanation of benefit is built from the
	// ledger's amounts and its sealed claim.
	var inbox node.ClaimsJSON
	cliJSON(t, &inbox, "claims", "list", "--home", payer.home)
	require.Len(t, inbox.Claims, 2)
	eob := run("claims", "eob", "--home", home0, filed.Claim.ID.String())
	require.Contains(t, eob, `"ExplanationOfBenefit"`)
	require.Contains(t, eob, "99213")

	// Nora sees both claims in her wallet, proved, and disputes the first.
	var wc struct {
		Claims []struct {
			ID          string `json:"id"`
			Status      string `json:"status"`
			PaidCents   uint64 `json:"paid_cents"`
			OpenDispute bool   `json:"open_dispute"`
		} `json:"claims"`
	}
	cliJSON(t, &wc, "wallet", "claims", "list", "--dir", nora.dir, "--passphrase-file", nora.pass, "--home", home0)
	require.Len(t, wc.Claims, 2)
	byID := map[string]uint64{}
	for _, c := range wc.Claims {
		byID[c.ID] = c.PaidCents
	}
	require.Equal(t, map[string]uint64{filed.Claim.ID.String(): 9200, pended.Claim.ID.String(): 2000}, byID)
	var disputed struct {
		Disputed string `json:"disputed"`
	}
	cliJSON(t, &disputed, "wallet", "claims", "dispute", "--dir", nora.dir, "--passphrase-file", nora.pass, "--home", home0,
		"--claim", filed.Claim.ID.String(), "--reason", "wrong-amount")
	require.Equal(t, filed.Claim.ID.String(), disputed.Disputed)
	for _, home := range []string{home0, payer.home} {
		require.NoError(t, procnet.WaitFor(ctx, stepTimeout, 200*time.Millisecond, "the dispute at "+home, func(context.Context) (bool, error) {
			var c node.ClaimJSON
			cliJSON(t, &c, "claims", "show", "--home", home, filed.Claim.ID.String())
			return len(c.Disputes) == 1 && c.Disputes[0].Reason == "wrong-amount", nil
		}))
	}

	// ---- The patients' proved views agree with the practice's statements ----
	type walletBilling struct {
		Billing struct {
			Memberships []struct {
				ID             string `json:"id"`
				Status         string `json:"status"`
				TotalDueCents  int64  `json:"total_due_cents"`
				TotalPaidCents int64  `json:"total_paid_cents"`
				BalanceCents   int64  `json:"balance_cents"`
				Invoices       []struct {
					AmountCents int64 `json:"amount_cents"`
					PaidCents   int64 `json:"paid_cents"`
				} `json:"invoices"`
			} `json:"memberships"`
			Payments []struct {
				Refund bool `json:"refund"`
				Splits []struct {
					Membership string `json:"membership"`
					Cents      int64  `json:"cents"`
				} `json:"splits"`
			} `json:"payments"`
		} `json:"billing"`
		Verified struct {
			Height uint64 `json:"height"`
		} `json:"verified"`
	}
	for _, c := range []struct {
		who storyPatient
		m   node.MembershipJSON
	}{{ann, mAnn}, {kid, mFam}, {emp1, mE1}, {emp2, mE2}} {
		var wb walletBilling
		cliJSON(t, &wb, "wallet", "billing", "list", "--dir", c.who.dir, "--passphrase-file", c.who.pass, "--home", home0)
		require.NotZero(t, wb.Verified.Height)
		require.Len(t, wb.Billing.Memberships, 1)
		wm, s := wb.Billing.Memberships[0], statement(c.m)
		require.Equal(t, c.m.ID.String(), wm.ID)
		require.Equal(t, s.Statement.Status, wm.Status)
		require.Equal(t, cents(t, s.Statement.TotalDue), wm.TotalDueCents)
		require.Equal(t, cents(t, s.Statement.TotalPaid), wm.TotalPaidCents)
		require.Equal(t, cents(t, s.Statement.Balance), wm.BalanceCents)
		require.Len(t, wm.Invoices, len(s.Statement.Invoices))
		for i, in := range s.Statement.Invoices {
			require.Equal(t, [2]int64{cents(t, in.Amount), cents(t, in.Paid)}, [2]int64{wm.Invoices[i].AmountCents, wm.Invoices[i].PaidCents}, "invoice %d", i)
		}
		if c.who == kid {
			continue // payments are listed to the subscriber
		}
		var paid int64
		for _, p := range wb.Billing.Payments {
			for _, sp := range p.Splits {
				if sp.Membership == wm.ID {
					if p.Refund {
						paid -= sp.Cents
					} else {
						paid += sp.Cents
					}
				}
			}
		}
		require.Equal(t, wm.TotalPaidCents, paid, "the payments the wallet proves add up to the statement's")
	}
	t.Logf("a year of billing and the claims in %s (block time +%s)", time.Since(began).Round(time.Second), clock)
}
