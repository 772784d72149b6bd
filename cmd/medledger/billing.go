package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// The practice's billing commands: they call the node's /v1/billing API (docs/api.md, Billing)
// with HOME's operator token. Agreement files go to the patient, who signs them in the wallet
// (medledger wallet billing sign), and come back for enrol and change.

// billingCommit bounds a billing call that waits for its transaction's commit.
const billingCommit = 90 * time.Second

func billingCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "billing",
		Short: "Membership plans, agreements, statements and payments of this practice (through its node)",
	}
	plans := &cobra.Command{Use: "plans", Short: "Publish, list and retire membership plans"}
	plans.AddCommand(billingPlansPublishCmd(), billingPlansListCmd(), billingPlansRetireCmd())
	agreement := &cobra.Command{Use: "agreement", Short: "Draft a membership agreement (or a change) for the patient to sign in their wallet"}
	agreement.AddCommand(billingAgreementDraftCmd(), billingAgreementChangeCmd())
	cmd.AddCommand(plans, agreement, billingSubmitCmd("enrol"), billingSubmitCmd("change"), billingCancelCmd(),
		billingStatementCmd(), billingMembershipsCmd(), billingPayCmd(false), billingPayCmd(true), billingPaymentCmd(), billingSponsorCmd())
	return cmd
}

func hashFlag(name, s string) (chain.Hash, error) {
	var h chain.Hash
	if s == "" {
		return h, usagef("--%s is required", name)
	}
	if err := h.UnmarshalText([]byte(s)); err != nil {
		return h, usagef("--%s %q: want an id of 64 hex digits", name, s)
	}
	return h, nil
}

// parseMembers reads --member PATIENT:TIER flags.
func parseMembers(flags []string) ([]node.MemberJSON, error) {
	var out []node.MemberJSON
	for _, m := range flags {
		p, tier, ok := strings.Cut(m, ":")
		a, err := chain.ParseAddress(p)
		if !ok || err != nil || tier == "" {
			return nil, usagef("--member %q: want PATIENT_ID:TIER (the tier's label or index)", m)
		}
		out = append(out, node.MemberJSON{Patient: a, Tier: tier})
	}
	return out, nil
}

func billingPlansPublishCmd() *cobra.Command {
	var f apiFlags
	var req node.PlanRequest
	var tiers, covered []string
	cmd := &cobra.Command{
		Use:   "publish --home HOME --label L --currency USD --period monthly|annual --tier LABEL=PRICE …",
		Short: "Publish a membership plan on the ledger (plans are immutable: a new price is a new plan)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Label == "" || req.Currency == "" || len(tiers) == 0 {
				return usagef("--label, --currency and at least one --tier LABEL=PRICE are required")
			}
			for _, t := range tiers {
				l, p, ok := strings.Cut(t, "=")
				if !ok || l == "" || p == "" {
					return usagef("--tier %q: want LABEL=PRICE, say adult=99.00", t)
				}
				req.Tiers = append(req.Tiers, node.TierJSON{Label: l, Price: p})
			}
			for _, c := range covered {
				for _, code := range strings.Split(c, ",") {
					if code = strings.TrimSpace(code); code != "" {
						req.Covered = append(req.Covered, code)
					}
				}
			}
			var p node.PlanJSON
			if err := f.call(cmd, http.MethodPost, "/v1/billing/plans", req, &p); err != nil {
				return err
			}
			return printPlans(cmd, f.asJSON, p, []node.PlanJSON{p})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&req.Label, "label", "", "the plan's name (\"Adult monthly\")")
	cmd.Flags().StringVar(&req.Currency, "currency", "", "ISO 4217 currency (USD)")
	cmd.Flags().StringVar(&req.Period, "period", "monthly", "monthly or annual")
	cmd.Flags().BoolVar(&req.Family, "family", false, "a family plan (several members, one subscriber)")
	cmd.Flags().IntVar(&req.MaxMembers, "max-members", 0, "a family plan's most members (2..16)")
	cmd.Flags().StringArrayVar(&tiers, "tier", nil, "a price tier LABEL=PRICE per member per period (repeatable)")
	cmd.Flags().StringVar(&req.FamilyCap, "family-cap", "", "a family plan's most per period")
	cmd.Flags().StringArrayVar(&covered, "covered", nil, "service codes the membership covers (comma-separated, repeatable)")
	cmd.Flags().IntVar(&req.GraceDays, "grace-days", 0, "days an invoice may stay unpaid before the membership is past due")
	return cmd
}

func printPlans(cmd *cobra.Command, asJSON bool, one any, ps []node.PlanJSON) error {
	if asJSON {
		return printJSON(cmd, one)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLABEL\tPERIOD\tTIERS\tFAMILY\tSTATUS")
	for _, p := range ps {
		var tiers []string
		for _, t := range p.Tiers {
			tiers = append(tiers, t.Label+"="+t.Price)
		}
		family := "-"
		if p.Family {
			family = fmt.Sprintf("up to %d", p.MaxMembers)
			if p.FamilyCap != "" {
				family += ", cap " + p.FamilyCap
			}
		}
		status := "open"
		if p.Retired {
			status = "retired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\n", p.ID, p.Label, p.Period, strings.Join(tiers, " "), p.Currency, family, status)
	}
	return tw.Flush()
}

func billingPlansListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list --home HOME",
		Short: "List this practice's open plans",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ps node.PlansJSON
			if err := f.call(cmd, http.MethodGet, "/v1/billing/plans", nil, &ps); err != nil {
				return err
			}
			return printPlans(cmd, f.asJSON, ps, ps.Plans)
		},
	}
	f.add(cmd)
	return cmd
}

func billingPlansRetireCmd() *cobra.Command {
	var f apiFlags
	var plan string
	cmd := &cobra.Command{
		Use:   "retire --home HOME --plan ID",
		Short: "Retire a plan: no new enrolments or changes into it; its memberships go on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := hashFlag("plan", plan)
			if err != nil {
				return err
			}
			var p node.PlanJSON
			if err := f.call(cmd, http.MethodPost, "/v1/billing/plans/"+id.String()+"/retire", nil, &p); err != nil {
				return err
			}
			return printPlans(cmd, f.asJSON, p, []node.PlanJSON{p})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&plan, "plan", "", "the plan's id")
	return cmd
}

// writeDraftFile writes a drafted agreement file to out and says what to do with it.
func writeDraftFile(cmd *cobra.Command, asJSON bool, raw json.RawMessage, out string) error {
	var af billing.AgreementFile
	if err := json.Unmarshal(raw, &af); err != nil {
		return fmt.Errorf("node answered with a malformed agreement file: %w", err)
	}
	// The node's bytes as they are: re-indenting would change the Contract, whose hash the
	// agreement names.
	if err := os.WriteFile(out, raw, 0o600); err != nil {
		return err
	}
	if asJSON {
		_, err := cmd.OutOrStdout().Write(raw)
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s, %s %s per %s period, subscriber %s\n", out, af.Plan.Label,
		billing.FormatCents(af.PriceCents), af.Plan.Currency, af.Plan.Period, af.Subscriber)
	fmt.Fprintln(cmd.OutOrStdout(), "the patient signs it with `medledger wallet billing sign`; submit the signed file with `medledger billing enrol` (or `change`)")
	return nil
}

func billingAgreementDraftCmd() *cobra.Command {
	var f apiFlags
	var plan, subscriber, sponsor, start, out string
	var members []string
	cmd := &cobra.Command{
		Use:   "draft --home HOME --plan ID --subscriber PATIENT_ID [--member PATIENT_ID:TIER …] [--sponsor NAME] [--start DATE] --out FILE",
		Short: "Draft a membership agreement file for the subscriber to sign",
		Long: "Draft a membership agreement file for the subscriber to sign.\n" +
			"Without --member the subscriber is the only member, at the plan's only tier. A sponsor's name stays\n" +
			"in HOME/billing/book.json; the ledger gets an opaque id.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := hashFlag("plan", plan)
			if err != nil {
				return err
			}
			sub, err := patientFlag(subscriber)
			if err != nil {
				return usagef("--subscriber: %v", err)
			}
			if out == "" {
				return usagef("--out FILE is required")
			}
			ms, err := parseMembers(members)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			req := node.AgreementRequest{Plan: id, Subscriber: sub, Members: ms, Sponsor: sponsor, Start: start}
			if err := f.call(cmd, http.MethodPost, "/v1/billing/agreements", req, &raw); err != nil {
				return err
			}
			return writeDraftFile(cmd, f.asJSON, raw, out)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&plan, "plan", "", "the plan's id")
	cmd.Flags().StringVar(&subscriber, "subscriber", "", "the subscribing patient's id (signs for every member)")
	cmd.Flags().StringArrayVar(&members, "member", nil, "a member PATIENT_ID:TIER, the subscriber included (repeatable)")
	cmd.Flags().StringVar(&sponsor, "sponsor", "", "the employer or other payer's name (kept on this node only)")
	cmd.Flags().StringVar(&start, "start", "", "the first period's start, a date (2026-01-01) or RFC 3339 time (default now)")
	cmd.Flags().StringVar(&out, "out", "", "the agreement file to write")
	return cmd
}

func billingAgreementChangeCmd() *cobra.Command {
	var f apiFlags
	var membership, plan, out string
	var members []string
	cmd := &cobra.Command{
		Use:   "change --home HOME --membership ID [--plan ID] [--member PATIENT_ID:TIER …] --out FILE",
		Short: "Draft a change of plan or members for the subscriber to sign (what is left out stays)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := hashFlag("membership", membership)
			if err != nil {
				return err
			}
			if out == "" {
				return usagef("--out FILE is required")
			}
			var req node.ChangeRequest
			if plan != "" {
				if req.Plan, err = hashFlag("plan", plan); err != nil {
					return err
				}
			}
			if req.Members, err = parseMembers(members); err != nil {
				return err
			}
			var raw json.RawMessage
			if err := f.call(cmd, http.MethodPost, "/v1/billing/memberships/"+id.String()+"/changes", req, &raw); err != nil {
				return err
			}
			return writeDraftFile(cmd, f.asJSON, raw, out)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&membership, "membership", "", "the membership's id")
	cmd.Flags().StringVar(&plan, "plan", "", "the plan to move to (default: the current one)")
	cmd.Flags().StringArrayVar(&members, "member", nil, "a member PATIENT_ID:TIER (repeatable; default: the current members)")
	cmd.Flags().StringVar(&out, "out", "", "the change file to write")
	return cmd
}

// billingSubmitCmd is enrol or change: submit an agreement file the subscriber signed.
func billingSubmitCmd(what string) *cobra.Command {
	var f apiFlags
	var signed string
	cmd := &cobra.Command{
		Use:   what + " --home HOME --signed FILE",
		Short: map[string]string{"enrol": "Enrol the members of a signed agreement file", "change": "Apply a signed change file"}[what],
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if signed == "" {
				return usagef("--signed FILE is required (the agreement file the patient signed)")
			}
			data, err := node.ReadLimited(signed, billing.MaxAgreementFileBytes)
			if err != nil {
				return err
			}
			af, err := billing.ParseAgreementFile(data)
			if err != nil {
				return err
			}
			if _, err := af.Signature(); err != nil {
				return err
			}
			path := "/v1/billing/memberships"
			switch {
			case what == "enrol" && af.Kind != billing.AgreementEnrol, what == "change" && af.Kind != billing.AgreementChange:
				return fmt.Errorf("%s is a %s file; use `medledger billing %s`", signed, af.Kind, map[string]string{billing.AgreementEnrol: "enrol", billing.AgreementChange: "change"}[af.Kind])
			case what == "change":
				path += "/" + af.Change.Membership.String() + "/change"
			}
			var m node.MembershipJSON
			if err := f.call(cmd, http.MethodPost, path, data, &m); err != nil {
				return err
			}
			return printMembership(cmd, f.asJSON, m)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&signed, "signed", "", "the signed agreement file")
	return cmd
}

func billingCancelCmd() *cobra.Command {
	var f apiFlags
	var membership string
	cmd := &cobra.Command{
		Use:   "cancel --home HOME --membership ID",
		Short: "Cancel a membership now (the period in progress is prorated by day)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := hashFlag("membership", membership)
			if err != nil {
				return err
			}
			var m node.MembershipJSON
			if err := f.call(cmd, http.MethodPost, "/v1/billing/memberships/"+id.String()+"/cancel", nil, &m); err != nil {
				return err
			}
			return printMembership(cmd, f.asJSON, m)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&membership, "membership", "", "the membership's id")
	return cmd
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// printMembership prints a membership and its statement's invoices in a table.
func printMembership(cmd *cobra.Command, asJSON bool, m node.MembershipJSON) error {
	if asJSON {
		return printJSON(cmd, m)
	}
	w := cmd.OutOrStdout()
	st := m.Statement
	fmt.Fprintf(w, "membership %s  %s  %s\n", m.ID, m.PlanLabel, st.Status)
	fmt.Fprintf(w, "subscriber %s, %d member(s), %s %s %s", m.Subscriber, len(m.Members), m.Price, m.Currency, m.Period)
	if m.SponsorName != "" {
		fmt.Fprintf(w, ", sponsor %s", m.SponsorName)
	}
	fmt.Fprintf(w, "\nstarted %s", day(m.Start))
	if m.End != nil {
		fmt.Fprintf(w, ", ends %s", day(*m.End))
	}
	if st.PaidThrough != nil {
		fmt.Fprintf(w, ", paid through %s", day(*st.PaidThrough))
	}
	if st.PastDueSince != nil {
		fmt.Fprintf(w, ", past due since %s", day(*st.PastDueSince))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INVOICE\tPERIOD\tDUE\tAMOUNT\tPAID\tSTATUS")
	for _, in := range st.Invoices {
		fmt.Fprintf(tw, "%d\t%s..%s\t%s\t%s\t%s\t%s\n", in.Period+1, day(in.Start), day(in.End), day(in.Due), in.Amount, in.Paid, in.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "due %s, paid %s, balance %s %s\n", st.TotalDue, st.TotalPaid, st.Balance, m.Currency)
	return err
}

func billingStatementCmd() *cobra.Command {
	var f apiFlags
	var membership string
	var asFHIR bool
	cmd := &cobra.Command{
		Use:   "statement --home HOME --membership ID [--fhir]",
		Short: "Print a membership's statement at the ledger's time: invoices, payments, balance, status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := hashFlag("membership", membership)
			if err != nil {
				return err
			}
			path := "/v1/billing/memberships/" + id.String()
			if asFHIR {
				var raw json.RawMessage
				if err := f.call(cmd, http.MethodGet, path+"?format=fhir", nil, &raw); err != nil {
					return err
				}
				var v any
				if err := json.Unmarshal(raw, &v); err != nil {
					return fmt.Errorf("node answered with malformed JSON: %w", err)
				}
				return printJSON(cmd, v)
			}
			var m node.MembershipJSON
			if err := f.call(cmd, http.MethodGet, path, nil, &m); err != nil {
				return err
			}
			return printMembership(cmd, f.asJSON, m)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&membership, "membership", "", "the membership's id")
	cmd.Flags().BoolVar(&asFHIR, "fhir", false, "print a FHIR Bundle of the Account, Contract and Invoices")
	return cmd
}

func billingMembershipsCmd() *cobra.Command {
	var f apiFlags
	var patient string
	cmd := &cobra.Command{
		Use:   "memberships --home HOME --patient PATIENT_ID",
		Short: "List a patient's memberships at this practice (cancelled ones included)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := patientFlag(patient)
			if err != nil {
				return usagef("%v", err)
			}
			var ms node.MembershipsJSON
			if err := f.call(cmd, http.MethodGet, "/v1/billing/memberships?patient="+p.String(), nil, &ms); err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd, ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPLAN\tMEMBERS\tPRICE\tSTART\tSTATUS\tBALANCE")
			for _, m := range ms.Memberships {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s %s\t%s\t%s\t%s\n", m.ID, m.PlanLabel, len(m.Members), m.Price, m.Currency, day(m.Start), m.Statement.Status, m.Statement.Balance)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	return cmd
}

// billingPayCmd is pay or refund: one membership's amount, or a sponsor's splits.
func billingPayCmd(refund bool) *cobra.Command {
	var f apiFlags
	var membership, amount, reference string
	var splits []string
	name, short := "pay", "Record a payment received outside the ledger (card, bank, cash)"
	if refund {
		name, short = "refund", "Record a refund made outside the ledger"
	}
	cmd := &cobra.Command{
		Use:   name + " --home HOME (--membership ID --amount 99.00 | --split ID:AMOUNT …) --reference REF",
		Short: short,
		Long: short + ".\nThe ledger gets the Sum256 of --reference (the card processor's charge id, say); the clear\n" +
			"reference stays in HOME/billing/payments.jsonl for reconciliation. --split settles several memberships at once (a sponsor).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if reference == "" {
				return usagef("--reference is required (the payment's external reference)")
			}
			req := node.PaymentRequest{Reference: reference, Refund: refund}
			switch {
			case membership != "" && len(splits) == 0:
				id, err := hashFlag("membership", membership)
				if err != nil {
					return err
				}
				if amount == "" {
					return usagef("--amount is required with --membership")
				}
				req.Splits = []node.PaymentSplitJSON{{Membership: id, Amount: amount}}
			case membership == "" && amount == "" && len(splits) > 0:
				for _, s := range splits {
					m, a, ok := strings.Cut(s, ":")
					id, err := hashFlag("split", m)
					if !ok || err != nil || a == "" {
						return usagef("--split %q: want MEMBERSHIP_ID:AMOUNT", s)
					}
					req.Splits = append(req.Splits, node.PaymentSplitJSON{Membership: id, Amount: a})
				}
			default:
				return usagef("give either --membership and --amount, or one --split MEMBERSHIP_ID:AMOUNT per membership")
			}
			var p node.PaymentJSON
			if err := f.call(cmd, http.MethodPost, "/v1/billing/payments", req, &p); err != nil {
				return err
			}
			return printPayment(cmd, f.asJSON, name, p)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&membership, "membership", "", "the membership's id")
	cmd.Flags().StringVar(&amount, "amount", "", "the amount (99.00)")
	cmd.Flags().StringArrayVar(&splits, "split", nil, "MEMBERSHIP_ID:AMOUNT (repeatable; a sponsor's payment)")
	cmd.Flags().StringVar(&reference, "reference", "", "the external reference (kept on this node; the ledger gets its hash)")
	return cmd
}

func printPayment(cmd *cobra.Command, asJSON bool, what string, p node.PaymentJSON) error {
	if asJSON {
		return printJSON(cmd, p)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s %s recorded at height %d: %s over %d membership(s), reference %s\n", what, p.ID, p.Height, p.Total, len(p.Splits), p.Reference)
	for _, s := range p.Splits {
		fmt.Fprintf(cmd.OutOrStdout(), "  %s  %s\n", s.Membership, s.Amount)
	}
	return nil
}

func billingPaymentCmd() *cobra.Command {
	var f apiFlags
	var id string
	cmd := &cobra.Command{
		Use:   "payment --home HOME --id PAYMENT_ID",
		Short: "Print a recorded payment or refund, with its clear reference when this node recorded it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := hashFlag("id", id)
			if err != nil {
				return err
			}
			var p node.PaymentJSON
			if err := f.call(cmd, http.MethodGet, "/v1/billing/payments/"+h.String(), nil, &p); err != nil {
				return err
			}
			what := "payment"
			if p.Refund {
				what = "refund"
			}
			return printPayment(cmd, f.asJSON, what, p)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&id, "id", "", "the payment's id (its transaction's hash, the receipt)")
	return cmd
}

func billingSponsorCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "sponsor --home HOME [NAME]",
		Short: "Print a sponsor's combined invoice (the memberships it sponsors and their balances), or without NAME the sponsors",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				var all node.SponsorsJSON
				if err := f.call(cmd, http.MethodGet, "/v1/billing/sponsors", nil, &all); err != nil {
					return err
				}
				if f.asJSON {
					return printJSON(cmd, all)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SPONSOR\tMEMBERSHIPS\tID")
				for _, s := range all.Sponsors {
					fmt.Fprintf(tw, "%s\t%d\t%s\n", s.Name, s.Memberships, s.ID)
				}
				return tw.Flush()
			}
			var s node.SponsorJSON
			if err := f.call(cmd, http.MethodGet, "/v1/billing/sponsors/"+url.PathEscape(args[0]), nil, &s); err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd, s)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "sponsor %s\n", s.Name)
			fmt.Fprintln(tw, "MEMBERSHIP\tSUBSCRIBER\tSTATUS\tBALANCE")
			for _, m := range s.Memberships {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\n", m.Membership, m.Subscriber, m.Status, m.Balance, m.Currency)
			}
			fmt.Fprintf(tw, "total\t\t\t%s %s\n", s.Balance, strings.Join(s.Currencies, "+"))
			return tw.Flush()
		},
	}
	f.add(cmd)
	return cmd
}
