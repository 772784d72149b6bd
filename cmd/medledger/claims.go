package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// `medledger claims …`: the claim endpoints of a node (docs/api.md, "Claims"). A provider's node
// files and lists its claims; a payer's node publishes schedules and coverage, lists the claims
// filed with it, verifies and decides them. The node's member role decides which side works.

// claimTimeout bounds a claim request that waits for a commit (filing imports the claim too).
const claimTimeout = 2 * time.Minute

func claimsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "claims",
		Short: "File claims with payers (a practice) or publish schedules, coverage and decisions (a payer)",
	}
	cov := &cobra.Command{Use: "coverage", Short: "Set or end a payer's coverage of a patient"}
	cov.AddCommand(claimsCoverageSetCmd(), claimsCoverageEndCmd())
	cmd.AddCommand(claimsScheduleCmd(), cov, claimsFileCmd(), claimsListCmd(), claimsShowCmd(),
		claimsVerifyCmd(), claimsDecideCmd(), claimsEOBCmd())
	return cmd
}

func addressFlag(name, v string) (chain.Address, error) {
	if v == "" {
		return chain.Address{}, usagef("--%s is required", name)
	}
	a, err := chain.ParseAddress(v)
	if err != nil {
		return a, usagef("--%s %q: want a member id of 40 hex digits", name, v)
	}
	return a, nil
}

func claimIDArg(s string) (chain.Hash, error) {
	h, err := chain.ParseHash(s)
	if err != nil {
		return h, usagef("claim id %q: want 64 hex digits", s)
	}
	return h, nil
}

func claimsScheduleCmd() *cobra.Command {
	var f apiFlags
	var provider, fees, currency string
	var coins uint8
	cmd := &cobra.Command{
		Use:   "schedule --provider ADDR --fees FILE.csv --coinsurance PCT [--currency USD]",
		Short: "Publish (payer) a fee schedule for a provider, under the pair's billing key (made the first time)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := addressFlag("provider", provider)
			if err != nil {
				return err
			}
			if fees == "" {
				return usagef("--fees is required (a CSV file: code,allowed)")
			}
			csv, err := os.ReadFile(fees)
			if err != nil {
				return err
			}
			data, err := f.request(cmd, http.MethodPost, "/v1/payer/schedules", node.ScheduleRequest{Provider: p, Currency: currency, CoinsurancePct: coins, FeesCSV: string(csv)}, claimTimeout)
			if err != nil {
				return err
			}
			var s node.ScheduleJSON
			return f.print(cmd, data, &s, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "schedule revision %d for provider %s: %d fees, %d plan exclusions, key %s (new: %t), height %d\n",
					s.Revision, s.Provider, s.Fees, s.Exclusions, short(s.KeyCommit.String()), s.NewKey, s.Height)
				return err
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&provider, "provider", "", "the provider's member id")
	cmd.Flags().StringVar(&fees, "fees", "", "CSV file of code,allowed (e.g. 99213,75.00)")
	cmd.Flags().StringVar(&currency, "currency", "USD", "ISO 4217 currency of the fees")
	cmd.Flags().Uint8Var(&coins, "coinsurance", 0, "the patient's share of an allowed amount, in percent")
	return cmd
}

func printCoverage(f *apiFlags, cmd *cobra.Command, data []byte) error {
	var c node.CoverageJSON
	return f.print(cmd, data, &c, func(w io.Writer) error {
		to := c.To
		if to == "" {
			to = "open"
		}
		state := "active"
		if c.Ended {
			state = "ended " + c.EndDate
		}
		_, err := fmt.Fprintf(w, "coverage %s: patient %s, %s..%s, %s\n", c.ID, c.Patient, c.From, to, state)
		return err
	})
}

func claimsCoverageSetCmd() *cobra.Command {
	var f apiFlags
	var patient, from, to, fhirFile string
	cmd := &cobra.Command{
		Use:   "set --patient ADDR (--from DATE [--to DATE] | --fhir COVERAGE.json)",
		Short: "Record (payer) that it covers a patient from a date, or as a FHIR Coverage says",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := addressFlag("patient", patient)
			if err != nil {
				return err
			}
			req := node.CoverageRequest{Patient: p, From: from, To: to}
			switch {
			case (from != "") == (fhirFile != ""):
				return usagef("give --from (and --to) or --fhir, one of them")
			case fhirFile != "" && to != "":
				return usagef("--to goes with --from; a FHIR Coverage has its own period")
			case fhirFile != "":
				if req.FHIR, err = os.ReadFile(fhirFile); err != nil {
					return err
				}
			}
			data, err := f.request(cmd, http.MethodPost, "/v1/payer/coverage", req, claimTimeout)
			if err != nil {
				return err
			}
			return printCoverage(&f, cmd, data)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	cmd.Flags().StringVar(&from, "from", "", "first covered day (YYYY-MM-DD)")
	cmd.Flags().StringVar(&to, "to", "", "last covered day (YYYY-MM-DD; none: open-ended)")
	cmd.Flags().StringVar(&fhirFile, "fhir", "", "a FHIR R4 Coverage JSON file")
	return cmd
}

func claimsCoverageEndCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "end COVERAGE_ID",
		Short: "End (payer) one of its coverages from today on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := chain.ParseHash(args[0])
			if err != nil {
				return usagef("coverage id %q: want 64 hex digits", args[0])
			}
			data, err := f.request(cmd, http.MethodPost, "/v1/payer/coverage/"+id.String()+"/end", nil, claimTimeout)
			if err != nil {
				return err
			}
			return printCoverage(&f, cmd, data)
		},
	}
	f.add(cmd)
	return cmd
}

func printClaim(w io.Writer, c node.ClaimJSON) error {
	fmt.Fprintf(w, "claim %s: %s (settled %s)%s\n", c.ID, c.Status, c.Settled, map[bool]string{true: ", flagged for volume", false: ""}[c.Flagged])
	fmt.Fprintf(w, "provider %s, payer %s, patient %s, service %s\n", c.Provider, c.Payer, c.Patient, c.ServiceDate)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tCODE\tBILLED\tALLOWED\tPAID\tPATIENT\tREASON")
	for i, l := range c.Lines {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, short(l.Code.String()), cents(l.Billed), cents(l.Allowed), cents(l.Paid), cents(l.Patient), l.Reason)
	}
	for _, d := range c.Disputes {
		fmt.Fprintf(tw, "dispute\t%s\theight %d\tresolved %d\n", d.Reason, d.Height, d.Resolved)
	}
	return tw.Flush()
}

func cents(c uint64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

func claimsFileCmd() *cobra.Command {
	var f apiFlags
	var payer, patient, encounter, claimFile string
	cmd := &cobra.Command{
		Use:   "file --payer ADDR --patient ADDR --encounter RECORD_ID --claim CLAIM.json",
		Short: "File (practice) a FHIR Claim with a payer for an encounter this practice anchored",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			py, err := addressFlag("payer", payer)
			if err != nil {
				return err
			}
			pt, err := addressFlag("patient", patient)
			if err != nil {
				return err
			}
			enc, err := chain.ParseHash(encounter)
			if err != nil {
				return usagef("--encounter %q: want the Encounter record's id (64 hex digits)", encounter)
			}
			if claimFile == "" {
				return usagef("--claim is required (a FHIR R4 Claim JSON file)")
			}
			doc, err := os.ReadFile(claimFile)
			if err != nil {
				return err
			}
			data, err := f.request(cmd, http.MethodPost, "/v1/claims", node.FileClaimRequest{Payer: py, Patient: pt, Encounter: enc, Claim: doc}, claimTimeout)
			if err != nil {
				return err
			}
			var out node.FiledClaimJSON
			return f.print(cmd, data, &out, func(w io.Writer) error { return printClaim(w, out.Claim) })
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&payer, "payer", "", "the payer's member id")
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	cmd.Flags().StringVar(&encounter, "encounter", "", "the id of the Encounter record the claim bills")
	cmd.Flags().StringVar(&claimFile, "claim", "", "the FHIR R4 Claim JSON file")
	return cmd
}

func claimsListCmd() *cobra.Command {
	var f apiFlags
	var patient string
	cmd := &cobra.Command{
		Use:   "list [--patient ADDR]",
		Short: "List a patient's claims at this node (practice or payer), or without --patient the payer's inbox",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/v1/payer/claims"
			if patient != "" {
				p, err := addressFlag("patient", patient)
				if err != nil {
					return err
				}
				path = "/v1/claims?patient=" + url.QueryEscape(p.String())
			}
			data, err := f.request(cmd, http.MethodGet, path, nil, claimTimeout)
			if err != nil {
				return err
			}
			var out node.ClaimsJSON
			return f.print(cmd, data, &out, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tSERVICE\tPROVIDER\tPAYER\tPATIENT\tBILLED\tPAID")
				for _, c := range out.Claims {
					var billed, paid uint64
					for _, l := range c.Lines {
						billed, paid = billed+l.Billed, paid+l.Paid
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Status, c.ServiceDate, short(c.Provider.String()),
						short(c.Payer.String()), short(c.Patient.String()), cents(billed), cents(paid))
				}
				if out.Next != "" {
					fmt.Fprintf(tw, "(more: the node's next page starts at %s)\n", out.Next)
				}
				return tw.Flush()
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	return cmd
}

func claimsShowCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "show CLAIM_ID",
		Short: "Show a claim as the ledger holds it: status, lines, flags, disputes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := claimIDArg(args[0])
			if err != nil {
				return err
			}
			data, err := f.request(cmd, http.MethodGet, "/v1/claims/"+id.String(), nil, claimTimeout)
			if err != nil {
				return err
			}
			var c node.ClaimJSON
			return f.print(cmd, data, &c, func(w io.Writer) error { return printClaim(w, c) })
		},
	}
	f.add(cmd)
	return cmd
}

func claimsVerifyCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "verify CLAIM_ID",
		Short: "Check (payer) a claim's ledger lines against its sealed FHIR Claim (an audited read)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := claimIDArg(args[0])
			if err != nil {
				return err
			}
			data, err := f.request(cmd, http.MethodPost, "/v1/claims/"+id.String()+"/verify", nil, claimTimeout)
			if err != nil {
				return err
			}
			var v node.VerifyJSON
			err = f.print(cmd, data, &v, func(w io.Writer) error {
				if v.OK {
					_, err := fmt.Fprintf(w, "claim %s matches its sealed FHIR Claim\n", v.Claim)
					return err
				}
				fmt.Fprintf(w, "claim %s does NOT match its sealed FHIR Claim (deny it: --deny content-mismatch):\n", v.Claim)
				for _, m := range v.Mismatches {
					fmt.Fprintf(w, "  %s\n", m)
				}
				return nil
			})
			if err == nil && !f.asJSON && !v.OK {
				return fmt.Errorf("claim %s: content mismatch", v.Claim)
			}
			return err
		},
	}
	f.add(cmd)
	return cmd
}

// parseLineFlag reads PAID[:PATIENT[:REASON]].
func parseLineFlag(s string) (node.LineDecisionJSON, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 || parts[0] == "" {
		return node.LineDecisionJSON{}, usagef("--line %q: want PAID[:PATIENT[:REASON]], e.g. 60.00:15.00 or 0:0:not-covered", s)
	}
	d := node.LineDecisionJSON{Paid: parts[0]}
	if len(parts) > 1 {
		d.Patient = parts[1]
	}
	if len(parts) > 2 {
		if _, err := node.ParseDenialReason(parts[2]); err != nil {
			return d, usagef("--line %q: %v", s, err)
		}
		d.Reason = parts[2]
	}
	return d, nil
}

func claimsDecideCmd() *cobra.Command {
	var f apiFlags
	var lines []string
	var deny string
	cmd := &cobra.Command{
		Use:   "decide CLAIM_ID (--line PAID[:PATIENT[:REASON]] … | --deny REASON)",
		Short: "Decide (payer) a claim filed with it: per line, in claim order, or deny every line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := claimIDArg(args[0])
			if err != nil {
				return err
			}
			if (len(lines) > 0) == (deny != "") {
				return usagef("give --line (once per claim line) or --deny, one of them")
			}
			var req node.DecideRequest
			if deny != "" {
				if _, err := node.ParseDenialReason(deny); err != nil {
					return usagef("--deny: %v", err)
				}
				req.Deny = deny
			}
			for _, l := range lines {
				d, err := parseLineFlag(l)
				if err != nil {
					return err
				}
				req.Lines = append(req.Lines, d)
			}
			data, err := f.request(cmd, http.MethodPost, "/v1/claims/"+id.String()+"/decide", req, claimTimeout)
			if err != nil {
				return err
			}
			var c node.ClaimJSON
			return f.print(cmd, data, &c, func(w io.Writer) error { return printClaim(w, c) })
		},
	}
	f.add(cmd)
	cmd.Flags().StringArrayVar(&lines, "line", nil, "a line's decision PAID[:PATIENT[:REASON]] (repeat per line)")
	cmd.Flags().StringVar(&deny, "deny", "", "deny every line for this reason (content-mismatch, not-covered, …)")
	return cmd
}

func claimsEOBCmd() *cobra.Command {
	var home string
	cmd := &cobra.Command{
		Use:   "eob CLAIM_ID",
		Short: "Print the claim's FHIR ExplanationOfBenefit, built from the ledger's outcome",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := claimIDArg(args[0])
			if err != nil {
				return err
			}
			data, err := apiDo(cmd.Context(), home, http.MethodGet, "/v1/claims/"+id.String()+"/eob", nil, "", claimTimeout)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, data, "", "  "); err != nil {
				return fmt.Errorf("node answered with malformed JSON: %w", err)
			}
			buf.WriteByte('\n')
			_, err = cmd.OutOrStdout().Write(buf.Bytes())
			return err
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	return cmd
}
