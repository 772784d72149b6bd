package main

import (
	"context"
	"fmt"
	"io"
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

// Every claim filed in the patient's name, proved from the patient log (a node cannot hide one:
// the log's length is proved), and the patient's dispute of one, signed with the wallet key.

func walletClaimsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "claims",
		Short: "Claims filed in your name: list (proved) and dispute",
	}
	cmd.AddCommand(walletClaimsListCmd(), walletClaimsDisputeCmd())
	return cmd
}

// The --json shapes of `wallet claims list`.
type (
	claimLineJSON struct {
		Code         string `json:"code"` // the code's fingerprint: the code itself is sealed
		BilledCents  uint64 `json:"billed_cents"`
		AllowedCents uint64 `json:"allowed_cents"`
		PaidCents    uint64 `json:"paid_cents"`
		PatientCents uint64 `json:"patient_cents"`
		Denial       string `json:"denial,omitempty"`
	}
	claimDisputeJSON struct {
		Reason    string      `json:"reason"`
		Statement *chain.Hash `json:"statement,omitempty"`
		Height    uint64      `json:"height"`
		Resolved  bool        `json:"resolved"`
		// ResolvedHeight is the payer's decision that answered it.
		ResolvedHeight uint64 `json:"resolved_height,omitempty"`
	}
	claimJSON struct {
		ID           chain.Hash         `json:"id"`
		Status       string             `json:"status"`
		Settled      string             `json:"settled"` // the adjudication in force (differs while disputed)
		ServiceDate  string             `json:"service_date"`
		Filed        string             `json:"filed"`
		FiledHeight  uint64             `json:"filed_height"`
		Payer        chain.Address      `json:"payer"`
		Provider     chain.Address      `json:"provider"`
		Encounter    chain.Hash         `json:"encounter"`
		Record       chain.Hash         `json:"record"` // the sealed FHIR Claim, readable by you
		BilledCents  uint64             `json:"billed_cents"`
		AllowedCents uint64             `json:"allowed_cents"`
		PaidCents    uint64             `json:"paid_cents"`
		PatientCents uint64             `json:"patient_cents"`
		Flags        []string           `json:"flags"`
		Lines        []claimLineJSON    `json:"lines"`
		Disputes     []claimDisputeJSON `json:"disputes"`
		OpenDispute  bool               `json:"open_dispute"`
	}
)

// provedClaims is every claim among the proved items, newest last (log order).
func provedClaims(items []*state.Item) []claimJSON {
	out := []claimJSON{}
	for _, it := range items {
		c := it.Claim
		if c == nil {
			continue
		}
		cj := claimJSON{ID: c.ID, Status: c.Status.String(), Settled: c.Settled.String(),
			ServiceDate: time.UnixMilli(int64(c.ServiceDay) * chain.DayMs).UTC().Format("2006-01-02"), Filed: stamp(c.FiledTime),
			FiledHeight: c.FiledHeight, Payer: c.Payer, Provider: c.Provider, Encounter: c.Encounter, Record: c.Record,
			Flags: []string{}, Lines: []claimLineJSON{}, Disputes: []claimDisputeJSON{}, OpenDispute: c.Dispute() != nil}
		for _, l := range c.Lines {
			cj.BilledCents += l.BilledCents
			cj.AllowedCents += l.AllowedCents
			cj.PaidCents += l.PaidCents
			cj.PatientCents += l.PatientCents
			lj := claimLineJSON{Code: l.Code.String(), BilledCents: l.BilledCents, AllowedCents: l.AllowedCents, PaidCents: l.PaidCents, PatientCents: l.PatientCents}
			if l.Reason != chain.DenyNone {
				lj.Denial = l.Reason.String()
			}
			cj.Lines = append(cj.Lines, lj)
		}
		if c.Flagged {
			cj.Flags = append(cj.Flags, fmt.Sprintf("volume: the practice filed %d claims that day, its average is %.1f", c.VolumeToday, float64(c.VolumeAverage)/state.VolumeScale))
		}
		if c.Status == state.ClaimPended {
			cj.Flags = append(cj.Flags, "awaiting the payer's decision")
		}
		for _, d := range c.Disputes {
			dj := claimDisputeJSON{Reason: d.Reason.String(), Height: d.Height, Resolved: d.ResolvedHeight != 0, ResolvedHeight: d.ResolvedHeight}
			if !d.Statement.IsZero() {
				st := d.Statement
				dj.Statement = &st
			}
			cj.Disputes = append(cj.Disputes, dj)
		}
		out = append(out, cj)
	}
	return out
}

// printClaims writes the table form of provedClaims. Amounts are in the payer schedule's
// currency, which the claim record does not carry.
func printClaims(w io.Writer, claims []claimJSON) error {
	for _, c := range claims {
		if c.Status == state.ClaimDisputed.String() {
			fmt.Fprintf(w, "!! you dispute claim %s (%s): what stands meanwhile is %s\n", short(c.ID.String()), c.Disputes[len(c.Disputes)-1].Reason, c.Settled)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(claims) == 0 {
		fmt.Fprintln(tw, "no claim was filed in your name")
		return tw.Flush()
	}
	fmt.Fprintln(tw, "CLAIM\tSERVICE\tSTATUS\tPAYER\tPROVIDER\tBILLED\tALLOWED\tPAID\tYOU OWE\tFLAGS\tDISPUTES")
	for _, c := range claims {
		var ds []string
		for _, d := range c.Disputes {
			s := d.Reason
			if d.Resolved {
				s += fmt.Sprintf(" (answered at %d)", d.ResolvedHeight)
			} else {
				s += " (open)"
			}
			ds = append(ds, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.ServiceDate, c.Status, c.Payer, c.Provider,
			fmtCents(c.BilledCents), fmtCents(c.AllowedCents), fmtCents(c.PaidCents), fmtCents(c.PatientCents),
			orDash(strings.Join(c.Flags, "; ")), orDash(strings.Join(ds, "; ")))
	}
	return tw.Flush()
}

func fmtCents(c uint64) string { return billing.FormatCents(c) }

// parseDisputeReason reads a reason as chain.DisputeReason prints it.
func parseDisputeReason(s string) (chain.DisputeReason, error) {
	var names []string
	for r := chain.DisputeNotReceived; r <= chain.DisputeOther; r++ {
		if r.String() == strings.TrimSpace(s) {
			return r, nil
		}
		names = append(names, r.String())
	}
	return 0, usagef("--reason %q: want one of %s", s, strings.Join(names, ", "))
}

// disputeClaim checks the claim is the patient's and can be disputed, then submits the dispute
// signed with the wallet key.
func disputeClaim(ctx context.Context, s *ledgerSession, ps *light.PatientState, w *keystore.Wallet, id chain.Hash, reason chain.DisputeReason) (uint64, error) {
	var c *state.ClaimRecord
	for _, it := range ps.Items {
		if it.Claim != nil && it.Claim.ID == id {
			c = it.Claim
		}
	}
	switch {
	case c == nil:
		return 0, fmt.Errorf("claim %s is not one filed in your name (proved at height %d)", id.Short(), ps.Header.Height-1)
	case c.Dispute() != nil:
		return 0, fmt.Errorf("claim %s is already disputed; the payer's next decision answers it", id.Short())
	case len(c.Disputes) >= state.MaxDisputesPerClaim:
		return 0, fmt.Errorf("claim %s was disputed %d times, the most the ledger takes", id.Short(), len(c.Disputes))
	}
	out, err := s.submit(ctx, w, chain.TxClaimDispute, &chain.ClaimDispute{Claim: id, Reason: reason})
	if err != nil {
		return 0, err
	}
	return out.Height, nil
}

func walletClaimsListCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "list --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Short: "List every claim filed in your name, with its status, amounts, flags and disputes, proved against a verified header",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			claims := provedClaims(ps.Items)
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"claims": claims, "verified": s.verification()})
			}
			s.printWarnings(cmd)
			return printClaims(cmd.OutOrStdout(), claims)
		},
	}
	f.add(cmd, true)
	return cmd
}

func walletClaimsDisputeCmd() *cobra.Command {
	var f walletFlags
	var id, reason string
	cmd := &cobra.Command{
		Use:   "dispute --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) --claim ID --reason REASON",
		Short: "Dispute a claim filed in your name (service-not-received, wrong-service, wrong-amount, membership-covers, other)",
		Long: `dispute records on the ledger, signed with your key, that you dispute the claim: the payer and
the practice see it, and the payer's next decision on the claim answers it. Until then the
claim's adjudication stays in force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cid, err := chain.ParseHash(strings.TrimSpace(id))
			if err != nil {
				return usagef("--claim %q: want a claim id of 64 hex digits", id)
			}
			r, err := parseDisputeReason(reason)
			if err != nil {
				return err
			}
			w, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			height, err := disputeClaim(cmd.Context(), s, ps, w, cid, r)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"disputed": cid.String(), "reason": r.String(), "height": height})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "claim %s disputed (%s) at height %d\n", cid.Short(), r, height)
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&id, "claim", "", "the claim to dispute (its id, from `wallet claims list`)")
	cmd.Flags().StringVar(&reason, "reason", "", "service-not-received, wrong-service, wrong-amount, membership-covers or other")
	return cmd
}
