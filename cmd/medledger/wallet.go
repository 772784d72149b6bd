package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/wallet/keystore"
)

// walletTxTimeout bounds submitting a patient transaction and waiting for its block.
const walletTxTimeout = 90 * time.Second

func walletCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "A simple patient wallet: keys in a file; register, grant and revoke consent, erase, see who read what",
	}
	cmd.AddCommand(walletNewCmd(), walletRegisterCmd(), walletGrantCmd(), walletRevokeCmd(), walletConsentsCmd(), walletAuditCmd(), walletEraseCmd())
	return cmd
}

type walletFlags struct {
	dir, home string
	asJSON    bool
}

func (f *walletFlags) add(cmd *cobra.Command, withHome bool) {
	cmd.Flags().StringVar(&f.dir, "dir", "", "the wallet directory")
	if withHome {
		cmd.Flags().StringVar(&f.home, "home", "", "home directory of the node the wallet talks to")
	}
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print one JSON document")
}

func (f *walletFlags) open() (*keystore.Wallet, error) {
	if f.dir == "" {
		return nil, fmt.Errorf("--dir is required")
	}
	return keystore.Open(f.dir)
}

// submitPatientTx signs body with the wallet key under the account's next nonce, submits it to
// the node and waits for it to commit.
func submitPatientTx(cmd *cobra.Command, home string, w *keystore.Wallet, kind chain.TxKind, body any) (node.TxAccepted, error) {
	var acct node.AccountJSON
	data, err := apiGet(cmd.Context(), home, "/v1/accounts/"+w.PatientID().String())
	if err != nil {
		return node.TxAccepted{}, err
	}
	if err := json.Unmarshal(data, &acct); err != nil {
		return node.TxAccepted{}, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	var status node.StatusJSON
	if data, err = apiGet(cmd.Context(), home, "/v1/status"); err != nil {
		return node.TxAccepted{}, err
	}
	if err := json.Unmarshal(data, &status); err != nil {
		return node.TxAccepted{}, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	tx := chain.NewTx(w.SigningKey(), status.ChainID, kind, acct.NextNonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	data, err = apiDo(cmd.Context(), home, http.MethodPost, "/v1/txs?wait=commit", req, "application/json", walletTxTimeout)
	if err != nil {
		return node.TxAccepted{}, fmt.Errorf("%s: %w", kind, err)
	}
	var out node.TxAccepted
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return out, nil
}

func walletNewCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "new --dir WALLET",
		Short: "Create a patient wallet: a signing key (the patient id) and an ML-KEM-768+X25519 encryption key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.dir == "" {
				return fmt.Errorf("--dir is required")
			}
			w, err := keystore.Create(f.dir, rand.Reader)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]string{"patient_id": w.PatientID().String(), "file": w.File()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wallet %s\npatient id %s\nback up this file: it is the only copy of the keys\n", w.File(), w.PatientID())
			return nil
		},
	}
	f.add(cmd, false)
	return cmd
}

func walletRegisterCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "register --dir WALLET --home HOME",
		Short: "Register the wallet's patient on the ledger (keys and a pseudonymous id only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open()
			if err != nil {
				return err
			}
			body, err := enrolWallet(cmd, f.home, w)
			if err != nil {
				return err
			}
			out, err := submitPatientTx(cmd, f.home, w, chain.TxRegisterPatient, body)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"patient_id": w.PatientID().String(), "height": out.Height})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "patient %s registered at height %d\n", w.PatientID(), out.Height)
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

// enrolWallet asks the node at home (the practice's node, through its operator API) to co-sign
// the wallet's registration as its enrolling provider.
func enrolWallet(cmd *cobra.Command, home string, w *keystore.Wallet) (*chain.RegisterPatient, error) {
	enc := w.EncryptionKey().Public().Bytes()
	req, _ := json.Marshal(node.EnrolRequest{PatientKey: w.SigningKey().Public(), EncryptionKey: hex.EncodeToString(enc)})
	data, err := apiDo(cmd.Context(), home, http.MethodPost, "/v1/enrolments", req, "application/json", walletTxTimeout)
	if err != nil {
		return nil, fmt.Errorf("enrolment: %w", err)
	}
	var out node.EnrolmentJSON
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	sig, err := hex.DecodeString(out.EnrollerSig)
	body := &chain.RegisterPatient{EncryptionKey: enc, Enroller: out.Enroller}
	if err != nil || len(sig) != len(body.EnrollerSig) {
		return nil, fmt.Errorf("node answered with a malformed enrolment signature")
	}
	copy(body.EnrollerSig[:], sig)
	return body, nil
}

// parseExpiry reads a duration such as 90d, 12h or 30m.
func parseExpiry(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--expires %q: want a positive duration such as 90d, 12h or 30m", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: want a positive duration such as 90d, 12h or 30m", s)
	}
	return d, nil
}

func walletGrantCmd() *cobra.Command {
	var f walletFlags
	var to, types, records, purpose, expires string
	cmd := &cobra.Command{
		Use:   "grant --dir WALLET --home HOME --to PROVIDER_ID [--types T,…] [--records ID,…] [--expires DURATION]",
		Short: "Consent to a provider reading your records (all, some resource types or some records) for a purpose",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open()
			if err != nil {
				return err
			}
			grantee, err := chain.ParseAddress(to)
			if err != nil {
				return fmt.Errorf("--to %q: want a provider id of 40 hex digits (medledger status shows a node's provider_id)", to)
			}
			g := &chain.ConsentGrant{Grantee: grantee, Purpose: purpose, Scope: chain.ConsentScope{Kind: chain.ScopeAll}}
			switch {
			case types != "" && records != "":
				return fmt.Errorf("--types and --records exclude each other")
			case types != "":
				g.Scope.Kind = chain.ScopeTypes
				for _, t := range strings.Split(types, ",") {
					if t = strings.TrimSpace(t); t != "" && !slices.Contains(g.Scope.Types, t) {
						g.Scope.Types = append(g.Scope.Types, t)
					}
				}
				slices.Sort(g.Scope.Types)
			case records != "":
				g.Scope.Kind = chain.ScopeRecords
				for _, s := range strings.Split(records, ",") {
					id, err := chain.ParseHash(strings.TrimSpace(s))
					if err != nil {
						return fmt.Errorf("--records: %q is not a record id", s)
					}
					if !slices.Contains(g.Scope.Records, id) {
						g.Scope.Records = append(g.Scope.Records, id)
					}
				}
				slices.SortFunc(g.Scope.Records, func(a, b chain.Hash) int { return slices.Compare(a[:], b[:]) })
			}
			if expires != "" {
				d, err := parseExpiry(expires)
				if err != nil {
					return err
				}
				g.ExpiresMs = time.Now().Add(d).UnixMilli()
			}
			if err := g.Validate(); err != nil {
				return err
			}
			out, err := submitPatientTx(cmd, f.home, w, chain.TxConsentGrant, g)
			if err != nil {
				return err
			}
			res := map[string]any{"consent_id": out.Hash.String(), "grantee": grantee.String(), "scope": g.Scope.Kind.String(), "purpose": purpose, "height": out.Height}
			if g.ExpiresMs != 0 {
				res["expires"] = time.UnixMilli(g.ExpiresMs).UTC().Format(time.RFC3339)
			}
			if f.asJSON {
				return writeJSONOut(cmd, res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "consent %s: provider %s may read %s records for %s (height %d)\n", out.Hash, grantee, g.Scope.Kind, purpose, out.Height)
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&to, "to", "", "the provider id to grant")
	cmd.Flags().StringVar(&types, "types", "", "only these FHIR resource types, comma-separated")
	cmd.Flags().StringVar(&records, "records", "", "only these records (and their amendments), comma-separated ids")
	cmd.Flags().StringVar(&purpose, "purpose", node.DefaultPurpose, "purpose of use (HL7 v3 ActReason)")
	cmd.Flags().StringVar(&expires, "expires", "", "consent ends after this long (e.g. 90d, 12h); default: until revoked")
	return cmd
}

func fetchConsents(cmd *cobra.Command, home string, patient chain.Address) ([]records.ConsentJSON, error) {
	data, err := apiGet(cmd.Context(), home, "/v1/patients/"+patient.String()+"/consents")
	if err != nil {
		return nil, err
	}
	var out struct {
		Consents []records.ConsentJSON `json:"consents"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return out.Consents, nil
}

func walletRevokeCmd() *cobra.Command {
	var f walletFlags
	var to, consent string
	cmd := &cobra.Command{
		Use:   "revoke --dir WALLET --home HOME (--to PROVIDER_ID | --consent CONSENT_ID)",
		Short: "Withdraw consent: holders refuse the provider's fetches and new records are not wrapped for it",
		Long: "Withdraw consent: holders refuse the provider's fetches and new records are not wrapped for it.\n" +
			"Data the provider already read cannot be recalled.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open()
			if err != nil {
				return err
			}
			var ids []chain.Hash
			switch {
			case (to == "") == (consent == ""):
				return fmt.Errorf("give exactly one of --to PROVIDER_ID or --consent CONSENT_ID")
			case consent != "":
				id, err := chain.ParseHash(consent)
				if err != nil {
					return fmt.Errorf("--consent %q: want a consent id of 64 hex digits", consent)
				}
				ids = append(ids, id)
			default:
				grantee, err := chain.ParseAddress(to)
				if err != nil {
					return fmt.Errorf("--to %q: want a provider id of 40 hex digits", to)
				}
				all, err := fetchConsents(cmd, f.home, w.PatientID())
				if err != nil {
					return err
				}
				for _, c := range all {
					if c.Grantee == grantee && !c.Revoked {
						ids = append(ids, c.ID)
					}
				}
				if len(ids) == 0 {
					return fmt.Errorf("no consent to provider %s to revoke", grantee)
				}
			}
			var revoked []string
			var height uint64
			for _, id := range ids {
				out, err := submitPatientTx(cmd, f.home, w, chain.TxConsentRevoke, &chain.ConsentRevoke{Consent: id})
				if err != nil {
					return err
				}
				revoked = append(revoked, id.String())
				height = out.Height
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"revoked": revoked, "height": height})
			}
			for _, id := range revoked {
				fmt.Fprintf(cmd.OutOrStdout(), "revoked consent %s\n", id)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "note: records the provider already read cannot be recalled")
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&to, "to", "", "revoke every consent to this provider")
	cmd.Flags().StringVar(&consent, "consent", "", "revoke this one consent")
	return cmd
}

func walletConsentsCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "consents --dir WALLET --home HOME",
		Short: "List your consents and emergency accesses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open()
			if err != nil {
				return err
			}
			all, err := fetchConsents(cmd, f.home, w.PatientID())
			if err != nil {
				return err
			}
			if all == nil {
				all = []records.ConsentJSON{}
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"consents": all})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CONSENT\tPROVIDER\tSCOPE\tPURPOSE\tEXPIRES\tSTATUS")
			for _, c := range all {
				status := "active"
				switch {
				case c.Revoked:
					status = "revoked"
				case !c.Active:
					status = "expired"
				}
				if c.Emergency {
					status += " EMERGENCY: " + c.Reason
					if c.CoSigned {
						status += ", co-signed"
					}
					if c.AfterRevocation {
						status += ", AFTER YOU REVOKED CONSENT"
					}
				}
				exp := c.Expires
				if exp == "" {
					exp = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", short(c.ID.String()), c.Grantee, c.Scope, c.Purpose, exp, status)
			}
			return tw.Flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

func walletAuditCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "audit --dir WALLET --home HOME",
		Short: "List every logged access to your records: who, which record, when, why, served or refused",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open()
			if err != nil {
				return err
			}
			data, err := apiGet(cmd.Context(), f.home, "/v1/patients/"+w.PatientID().String()+"/accesses")
			if err != nil {
				return err
			}
			var out struct {
				Accesses []records.AccessJSON `json:"accesses"`
			}
			if err := json.Unmarshal(data, &out); err != nil {
				return fmt.Errorf("node answered with malformed JSON: %w", err)
			}
			if out.Accesses == nil {
				out.Accesses = []records.AccessJSON{}
			}
			if f.asJSON {
				return writeJSONOut(cmd, out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tHEIGHT\tRECORD\tACCESSOR\tPURPOSE\tOUTCOME")
			for _, a := range out.Accesses {
				outcome := a.Outcome
				if a.Reason != "" {
					outcome += " (" + a.Reason + ")"
				}
				if a.Emergency {
					outcome = "EMERGENCY " + outcome
				}
				if a.AfterRevocation {
					outcome += " AFTER REVOCATION"
				}
				if a.UnloggedByHolder {
					outcome += " (received, NOT LOGGED BY HOLDER)"
				}
				if a.RefusedButReceived {
					outcome += " (logged refused, but received)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", a.Time, a.Height, short(a.Record.String()), a.Accessor, a.Purpose, outcome)
			}
			return tw.Flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

func walletEraseCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "erase --dir WALLET --home HOME RECORD_ID...",
		Short: "Erase records (crypto-shredding): every holder deletes the ciphertext and key envelopes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open()
			if err != nil {
				return err
			}
			var ids []chain.Hash
			for _, a := range args {
				id, err := chain.ParseHash(a)
				if err != nil {
					return fmt.Errorf("record id %q: want 64 hex digits", a)
				}
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			slices.SortFunc(ids, func(a, b chain.Hash) int { return slices.Compare(a[:], b[:]) })
			out, err := submitPatientTx(cmd, f.home, w, chain.TxRecordErase, &chain.RecordErase{Records: ids})
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"erased": args, "height": out.Height})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "erased %d records at height %d; holders delete their copies and acknowledge on the ledger\n", len(ids), out.Height)
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}
