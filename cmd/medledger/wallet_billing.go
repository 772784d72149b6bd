package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/wallet/keystore"
)

// The patient's side of memberships: sign the agreement the practice drafted, see memberships,
// invoices and payments proved from the patient log, and cancel as the subscriber. Invoices are
// derived exactly as the ledger derives them (MembershipRecord.Statement), at the verified
// header's time, so the wallet and the practice's node cannot disagree on what is owed.

func walletBillingCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "billing",
		Short: "Your memberships: sign an agreement, list memberships, invoices and payments (proved), cancel",
	}
	cmd.AddCommand(walletBillingSignCmd(), walletBillingListCmd(), walletBillingCancelCmd())
	return cmd
}

func walletBillingSignCmd() *cobra.Command {
	var f walletFlags
	var in, out string
	var yes bool
	cmd := &cobra.Command{
		Use:   "sign --dir WALLET --agreement FILE --out FILE [--yes]",
		Short: "Read the membership agreement your practice drafted, confirm it and sign it with your wallet key",
		Long: `sign shows what the agreement commits you to (practice, plan, price per period, members,
start, sponsor, covered services), asks you to confirm on the terminal (unless --yes) and writes
the file signed with your wallet's key. Give the signed file back to the practice: it submits it.
Your signature covers the ledger's own bytes, so the practice cannot change what you signed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if in == "" || out == "" {
				return usagef("--agreement and --out are required")
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("--out %s exists: refusing to overwrite it", out)
			}
			data, err := readAgreement(in)
			if err != nil {
				return err
			}
			af, err := billing.ParseAgreementFile(data)
			if err != nil {
				return err
			}
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			if err := checkSubscriber(af, w.PatientID()); err != nil {
				return err
			}
			fmt.Fprint(cmd.ErrOrStderr(), agreementText(af))
			if !yes {
				if !stdinTerminal(cmd) {
					return errors.New("confirm on a terminal, or give --yes once you have read the agreement")
				}
				ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), "Sign this agreement? Type yes to sign: ")
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("not signed")
				}
			}
			if err := af.Sign(w.SigningKey()); err != nil {
				return err
			}
			signed, err := encodeAgreement(af)
			if err != nil {
				return err
			}
			if err := writeNewFile(out, signed); err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"signed": out, "subscriber": af.Subscriber.String(), "plan": af.Plan.ID.String()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed: %s (give it back to the practice, which submits it)\n", out)
			return nil
		},
	}
	f.add(cmd, false) // offline: no ledger flags
	cmd.Flags().StringVar(&in, "agreement", "", "the agreement file the practice drafted")
	cmd.Flags().StringVar(&out, "out", "", "where to write the signed file (mode 0600; must not exist)")
	cmd.Flags().BoolVar(&yes, "yes", false, "sign without asking (you read the agreement already)")
	return cmd
}

// encodeAgreement writes the signed file, compact and unescaped, and reads it back to check that
// the Contract's hash (over its canonical form) and the signature survived.
func encodeAgreement(af *billing.AgreementFile) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(af); err != nil {
		return nil, err
	}
	back, err := billing.ParseAgreementFile(buf.Bytes())
	if err == nil {
		_, err = back.Signature()
	}
	if err != nil {
		return nil, fmt.Errorf("the signed file would not read back (is the Contract in the drafted file compact JSON?): %w", err)
	}
	return buf.Bytes(), nil
}

func readAgreement(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--agreement: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, billing.MaxAgreementFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--agreement: %w", err)
	}
	return data, nil
}

// writeNewFile writes data to a file that must not exist yet, mode 0600.
func writeNewFile(path string, data []byte) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// checkSubscriber refuses to sign an agreement for someone else: the wallet would sign a
// membership it does not subscribe to (and the ledger would refuse it anyway).
func checkSubscriber(af *billing.AgreementFile, patient chain.Address) error {
	if af.Subscriber != patient {
		return fmt.Errorf("this agreement is for subscriber %s, not this wallet's patient %s: not signed", af.Subscriber, patient)
	}
	return nil
}

// confirm asks a yes/no question; only "yes" (or "y") agrees.
func confirm(in io.Reader, out io.Writer, prompt string) (bool, error) {
	fmt.Fprint(out, prompt)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "yes" || a == "y", nil
}

// money writes cents with the currency ("120.00 USD").
func money(cents uint64, currency string) string {
	return billing.FormatCents(cents) + " " + currency
}

// signedMoney writes a balance, negative being a credit.
func signedMoney(cents int64, currency string) string {
	if cents < 0 {
		return "-" + money(uint64(-cents), currency) + " (credit)"
	}
	return money(uint64(cents), currency)
}

func stamp(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// agreementText is what the patient reads before signing: everything the signature commits to
// that a person can judge.
func agreementText(af *billing.AgreementFile) string {
	var b strings.Builder
	p := &af.Plan
	what := "MEMBERSHIP AGREEMENT"
	var ms []chain.MemberTier
	if af.Change != nil {
		what = "CHANGE TO MEMBERSHIP " + af.Change.Membership.String()
		ms = af.Change.Members
	} else {
		ms = af.Agreement.Members
	}
	fmt.Fprintf(&b, "%s\n", what)
	fmt.Fprintf(&b, "  network:     %s\n", af.ChainID)
	fmt.Fprintf(&b, "  practice:    %s\n", af.Practice)
	fmt.Fprintf(&b, "  plan:        %s (%s)\n", p.Label, p.ID.Short())
	fmt.Fprintf(&b, "  price:       %s per %s period, for all members\n", money(af.PriceCents, p.Currency), periodNoun(p.Period))
	fmt.Fprintf(&b, "  subscriber:  %s (you: you sign and pay for every member)\n", af.Subscriber)
	fmt.Fprintf(&b, "  members:     %d\n", len(ms))
	for _, m := range ms {
		tier, price := fmt.Sprintf("tier %d", m.Tier), "?"
		if int(m.Tier) < len(p.Tiers) {
			tier, price = p.Tiers[m.Tier].Label, money(p.Tiers[m.Tier].PriceCents, p.Currency)
		}
		fmt.Fprintf(&b, "    %s  %s (%s)\n", m.Patient, tier, price)
	}
	if p.FamilyCapCents != 0 {
		fmt.Fprintf(&b, "  family cap:  %s per period\n", money(p.FamilyCapCents, p.Currency))
	}
	if af.Agreement != nil {
		fmt.Fprintf(&b, "  starts:      %s\n", stamp(af.Agreement.StartMs))
		sponsor := "no"
		if !af.Agreement.Sponsor.IsZero() {
			sponsor = "yes (an employer or other payer's account " + af.Agreement.Sponsor.Short() + " may pay it)"
		}
		fmt.Fprintf(&b, "  sponsor:     %s\n", sponsor)
	} else {
		fmt.Fprintf(&b, "  takes effect: when the practice submits it; the period in progress is prorated by day\n")
	}
	fmt.Fprintf(&b, "  grace:       %d days after an invoice is due before the membership is past due\n", p.GraceDays)
	covered := "none listed"
	if len(p.Covered) > 0 {
		covered = strings.Join(p.Covered, ", ")
	}
	fmt.Fprintf(&b, "  covered services: %s\n", covered)
	fmt.Fprintf(&b, "  contract:    %s (the FHIR Contract in the file)\n", billing.ContractHash(af.Contract).Short())
	return b.String()
}

func periodNoun(p chain.Period) string {
	switch p {
	case chain.PeriodMonthly:
		return "monthly"
	case chain.PeriodAnnual:
		return "annual"
	}
	return p.String()
}

// The --json shapes of `wallet billing list`.
type (
	memberJSON struct {
		Patient chain.Address `json:"patient"`
		Tier    uint8         `json:"tier"`
	}
	invoiceJSON struct {
		Period      int    `json:"period"`
		Start       string `json:"start"`
		End         string `json:"end"`
		Due         string `json:"due"`
		Days        int64  `json:"days"`
		BilledDays  int64  `json:"billed_days"`
		AmountCents uint64 `json:"amount_cents"`
		PaidCents   uint64 `json:"paid_cents"`
		Status      string `json:"status"`
	}
	membershipJSON struct {
		ID             chain.Hash    `json:"id"`
		Practice       chain.Address `json:"practice"`
		Subscriber     chain.Address `json:"subscriber"`
		YouSubscribe   bool          `json:"you_subscribe"`
		Plan           chain.Hash    `json:"plan"`
		Members        []memberJSON  `json:"members"`
		Sponsored      bool          `json:"sponsored"`
		Currency       string        `json:"currency"`
		Period         string        `json:"period"`
		PriceCents     uint64        `json:"price_cents"` // per period, the segment in force
		Start          string        `json:"start"`
		End            string        `json:"end,omitempty"`
		Status         string        `json:"status"`
		PastDue        bool          `json:"past_due"`
		PastDueSince   string        `json:"past_due_since,omitempty"`
		TotalDueCents  uint64        `json:"total_due_cents"`
		TotalPaidCents uint64        `json:"total_paid_cents"`
		BalanceCents   int64         `json:"balance_cents"` // negative: a credit
		PaidThrough    string        `json:"paid_through,omitempty"`
		NextInvoice    string        `json:"next_invoice,omitempty"`
		Invoices       []invoiceJSON `json:"invoices"`
	}
	splitJSON struct {
		Membership chain.Hash `json:"membership"`
		Cents      uint64     `json:"cents"`
	}
	paymentJSON struct {
		Receipt  chain.Hash    `json:"receipt"` // the payment's id: its transaction's hash
		Practice chain.Address `json:"practice"`
		Refund   bool          `json:"refund"`
		Time     string        `json:"time"`
		Height   uint64        `json:"height"`
		// Splits are the parts settling memberships in this patient's log; a sponsor's payment
		// may settle others too, which are left out.
		Splits   []splitJSON `json:"splits"`
		Cents    uint64      `json:"cents"`
		Currency string      `json:"currency,omitempty"`
	}
	billingJSON struct {
		At          string           `json:"at"` // the verified header's time: invoices are derived at it
		Memberships []membershipJSON `json:"memberships"`
		Payments    []paymentJSON    `json:"payments"`
	}
)

// provedBilling derives the patient's memberships, invoices and payments from proved items at
// block time atMs.
func provedBilling(items []*state.Item, patient chain.Address, atMs int64) billingJSON {
	out := billingJSON{At: stamp(atMs), Memberships: []membershipJSON{}, Payments: []paymentJSON{}}
	currency := map[chain.Hash]string{}
	for _, it := range items {
		m := it.Membership
		if m == nil {
			continue
		}
		currency[m.ID] = m.Currency
		st := m.Statement(atMs)
		mj := membershipJSON{ID: m.ID, Practice: m.Provider, Subscriber: m.Subscriber, YouSubscribe: m.Subscriber == patient,
			Sponsored: !m.Sponsor.IsZero(), Currency: m.Currency, Period: periodNoun(m.Period), Start: stamp(m.StartMs), Status: st.Status.String(),
			PastDue: st.Status == state.StatusPastDue, PastDueSince: stamp(st.PastDueSinceMs), TotalDueCents: st.TotalDueCents,
			TotalPaidCents: st.TotalPaidCents, BalanceCents: st.BalanceCents, PaidThrough: stamp(st.PaidThroughMs),
			NextInvoice: stamp(st.NextInvoiceMs), Invoices: []invoiceJSON{}, Members: []memberJSON{}}
		if m.EndMs != 0 {
			mj.End = stamp(m.EndMs)
		}
		if seg := m.SegmentAt(atMs); seg != nil {
			mj.Plan, mj.PriceCents = seg.Plan, seg.PriceCents
			for _, mt := range seg.Members {
				mj.Members = append(mj.Members, memberJSON{Patient: mt.Patient, Tier: mt.Tier})
			}
		}
		for _, inv := range st.Invoices {
			mj.Invoices = append(mj.Invoices, invoiceJSON{Period: inv.Period, Start: stamp(inv.StartMs), End: stamp(inv.EndMs), Due: stamp(inv.DueMs),
				Days: inv.Days, BilledDays: inv.BilledDays, AmountCents: inv.AmountCents, PaidCents: inv.PaidCents, Status: inv.Status.String()})
		}
		out.Memberships = append(out.Memberships, mj)
	}
	for _, it := range items {
		p := it.Payment
		if p == nil {
			continue
		}
		pj := paymentJSON{Receipt: p.ID, Practice: p.Provider, Refund: p.Refund, Time: stamp(p.Time), Height: p.Height, Splits: []splitJSON{}}
		for _, s := range p.Splits {
			if c, ok := currency[s.Membership]; ok {
				pj.Splits = append(pj.Splits, splitJSON{Membership: s.Membership, Cents: s.Cents})
				pj.Cents += s.Cents
				pj.Currency = c
			}
		}
		out.Payments = append(out.Payments, pj)
	}
	// Past due first: the one thing the patient must act on.
	slices.SortStableFunc(out.Memberships, func(a, b membershipJSON) int {
		switch {
		case a.PastDue && !b.PastDue:
			return -1
		case b.PastDue && !a.PastDue:
			return 1
		}
		return 0
	})
	return out
}

// printBilling writes the table form of provedBilling.
func printBilling(w io.Writer, b billingJSON) error {
	for _, m := range b.Memberships {
		if m.PastDue {
			fmt.Fprintf(w, "!! PAST DUE since %s: membership %s at practice %s owes %s\n", m.PastDueSince, short(m.ID.String()), m.Practice, signedMoney(m.BalanceCents, m.Currency))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBERSHIPS (as of %s)\n", b.At)
	if len(b.Memberships) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintln(tw, "MEMBERSHIP\tPRACTICE\tYOU\tMEMBERS\tPRICE\tSTART\tSTATUS\tBALANCE\tPAID THROUGH")
		for _, m := range b.Memberships {
			you := "member"
			if m.YouSubscribe {
				you = "subscriber"
			}
			status := m.Status
			if m.PastDue {
				status = "PAST DUE"
			}
			if m.Sponsored {
				status += " (sponsored)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s/%s\t%s\t%s\t%s\t%s\n", short(m.ID.String()), m.Practice, you, len(m.Members),
				money(m.PriceCents, m.Currency), m.Period, dayOf(m.Start), status, signedMoney(m.BalanceCents, m.Currency), orDash(dayOf(m.PaidThrough)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INVOICES")
	n := 0
	for _, m := range b.Memberships {
		for _, inv := range m.Invoices {
			if n == 0 {
				fmt.Fprintln(tw, "MEMBERSHIP\tPERIOD\tDUE\tDAYS\tAMOUNT\tPAID\tSTATUS")
			}
			n++
			fmt.Fprintf(tw, "%s\t%s..%s\t%s\t%d/%d\t%s\t%s\t%s\n", short(m.ID.String()), dayOf(inv.Start), dayOf(inv.End), dayOf(inv.Due), inv.BilledDays, inv.Days,
				money(inv.AmountCents, m.Currency), money(inv.PaidCents, m.Currency), inv.Status)
		}
	}
	if n == 0 {
		fmt.Fprintln(tw, "  none")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PAYMENTS AND RECEIPTS")
	if len(b.Payments) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintln(tw, "RECEIPT\tTIME\tPRACTICE\tKIND\tAMOUNT\tMEMBERSHIPS")
		for _, p := range b.Payments {
			kind := "payment"
			if p.Refund {
				kind = "refund"
			}
			var ms []string
			for _, s := range p.Splits {
				ms = append(ms, short(s.Membership.String()))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Receipt, p.Time, p.Practice, kind, money(p.Cents, p.Currency), strings.Join(ms, ","))
		}
	}
	return tw.Flush()
}

// dayOf cuts an RFC 3339 stamp to its date.
func dayOf(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func walletBillingListCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:     "list --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Aliases: []string{"show"},
		Short:   "List your memberships (as subscriber or member), their invoices and your payments, proved against a verified header",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			b := provedBilling(ps.Items, w.PatientID(), ps.Header.Time)
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"billing": b, "verified": s.verification()})
			}
			s.printWarnings(cmd)
			return printBilling(cmd.OutOrStdout(), b)
		},
	}
	f.add(cmd, true)
	return cmd
}

// findMembership is the proved membership id names, or an error a person can act on.
func findMembership(ps *light.PatientState, patient chain.Address, id chain.Hash) (*state.MembershipRecord, error) {
	for _, it := range ps.Items {
		if m := it.Membership; m != nil && m.ID == id {
			if m.Subscriber != patient {
				return nil, fmt.Errorf("membership %s's subscriber is %s: only the subscriber (or the practice) can cancel it", id.Short(), m.Subscriber)
			}
			if !m.OpenAt(ps.Header.Time) {
				return nil, fmt.Errorf("membership %s is already cancelled (ended %s)", id.Short(), stamp(m.EndMs))
			}
			return m, nil
		}
	}
	return nil, fmt.Errorf("membership %s is not one of yours on the ledger (proved at height %d)", id.Short(), ps.Header.Height-1)
}

// cancelMembership checks the membership is the patient's and open, then submits the
// cancellation signed with the wallet key.
func cancelMembership(ctx context.Context, s *ledgerSession, ps *light.PatientState, w *keystore.Wallet, id chain.Hash) (uint64, error) {
	if _, err := findMembership(ps, w.PatientID(), id); err != nil {
		return 0, err
	}
	out, err := s.submit(ctx, w, chain.TxMembershipCancel, &chain.MembershipCancel{Membership: id})
	if err != nil {
		return 0, err
	}
	return out.Height, nil
}

func walletBillingCancelCmd() *cobra.Command {
	var f walletFlags
	var id string
	cmd := &cobra.Command{
		Use:   "cancel --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) --membership ID",
		Short: "Cancel a membership you subscribe to: it ends now, the period in progress prorated by day",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			mid, err := chain.ParseHash(strings.TrimSpace(id))
			if err != nil {
				return usagef("--membership %q: want a membership id of 64 hex digits", id)
			}
			w, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			height, err := cancelMembership(cmd.Context(), s, ps, w, mid)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"cancelled": mid.String(), "height": height})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "membership %s cancelled at height %d; `wallet billing list` shows the final invoice\n", mid.Short(), height)
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&id, "membership", "", "the membership to cancel (its id, from `wallet billing list --json`)")
	return cmd
}
