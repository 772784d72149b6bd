package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/medledger/medledger/chain/state"
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
		Short: "The patient wallet: keys from a mnemonic, passphrase-encrypted, recovery shares; register, grant and revoke consent, erase, see who read what",
	}
	cmd.AddCommand(walletNewCmd(), walletRestoreCmd(), walletSharesCmd(), walletRegisterCmd(), walletGrantCmd(), walletRevokeCmd(), walletConsentsCmd(), walletAuditCmd(), walletEraseCmd(), walletRecordsCmd(), walletRotateCmd(), walletUICmd(), walletBillingCmd(), walletClaimsCmd())
	return cmd
}

type walletFlags struct {
	dir, home string
	asJSON    bool
	passFile  string // --passphrase-file
	ledger    ledgerFlags
}

func (f *walletFlags) add(cmd *cobra.Command, withHome bool) {
	cmd.Flags().StringVar(&f.dir, "dir", "", "the wallet directory")
	if withHome {
		cmd.Flags().StringVar(&f.home, "home", "", "a node's home: the wallet reads only its addresses (p2p.addrs) and genesis.json, never its token")
		f.ledger.add(cmd)
	}
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print one JSON document")
	cmd.Flags().StringVar(&f.passFile, "passphrase-file", "", "read the wallet passphrase from the first line of this file (default: ask on the terminal)")
}

// open opens the wallet, asking for its passphrase (--passphrase-file or the terminal) only if
// it is encrypted.
func (f *walletFlags) open(cmd *cobra.Command) (*keystore.Wallet, error) {
	if f.dir == "" {
		return nil, usagef("--dir is required")
	}
	return keystore.Open(f.dir, f.passphrase(cmd))
}

// session opens the wallet's verified connection to the ledger (wallet_light.go).
func (f *walletFlags) session(cmd *cobra.Command, w *keystore.Wallet) (*ledgerSession, error) {
	f.ledger.walletDir = f.dir
	return openLedger(cmd.Context(), w, &f.ledger, f.home)
}

// submitPatientTx signs body with the wallet key under the account's next nonce, submits it to
// the practice's node (as the operator, or as the staff member whose session token is given) and
// waits for it to commit.
func submitPatientTx(cmd *cobra.Command, home, token string, w *keystore.Wallet, kind chain.TxKind, body any) (node.TxAccepted, error) {
	var acct node.AccountJSON
	data, err := apiDoAs(cmd.Context(), home, token, http.MethodGet, "/v1/accounts/"+w.PatientID().String(), nil, "", 10*time.Second)
	if err != nil {
		return node.TxAccepted{}, err
	}
	if err := json.Unmarshal(data, &acct); err != nil {
		return node.TxAccepted{}, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	var status node.StatusJSON
	if data, err = apiDoAs(cmd.Context(), home, token, http.MethodGet, "/v1/status", nil, "", 10*time.Second); err != nil {
		return node.TxAccepted{}, err
	}
	if err := json.Unmarshal(data, &status); err != nil {
		return node.TxAccepted{}, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	tx := chain.NewTx(w.SigningKey(), status.ChainID, kind, acct.NextNonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	data, err = apiDoAs(cmd.Context(), home, token, http.MethodPost, "/v1/txs?wait=commit", req, "application/json", walletTxTimeout)
	if err != nil {
		return node.TxAccepted{}, fmt.Errorf("%s: %w", kind, err)
	}
	var out node.TxAccepted
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return out, nil
}

// readSession reads a staff session token (the first line of the file medledger login wrote).
func readSession(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := readSmallFile(path)
	if err != nil {
		return "", fmt.Errorf("--session-file: %w", err)
	}
	tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if tok == "" {
		return "", fmt.Errorf("--session-file %s is empty", path)
	}
	return tok, nil
}

func walletRegisterCmd() *cobra.Command {
	var f walletFlags
	var sessionFile string
	cmd := &cobra.Command{
		Use:   "register --dir WALLET --home HOME [--session-file FILE]",
		Short: "Register the wallet's patient on the ledger at a practice (keys and a pseudonymous id only)",
		Long: `register enrols the wallet's patient at the practice whose node home is HOME: the practice
co-signs the registration as its enrolling provider and submits it, through its node's API: as a
front-desk staff member with --session-file (the token medledger login printed), or as the node's
operator. Every other wallet command talks to the network itself, over the wallet protocol, with
the patient's own key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			token, err := readSession(sessionFile)
			if err != nil {
				return err
			}
			body, err := enrolWallet(cmd, f.home, token, w)
			if err != nil {
				return err
			}
			out, err := submitPatientTx(cmd, f.home, token, w, chain.TxRegisterPatient, body)
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
	f.add(cmd, false)
	cmd.Flags().StringVar(&f.home, "home", "", "the practice node's home: its API, as the operator unless --session-file")
	cmd.Flags().StringVar(&sessionFile, "session-file", "", "a front-desk staff member's session token (first line; from medledger login) to use instead of the operator token")
	return cmd
}

// enrolWallet asks the node at home (the practice's node, through its API) to co-sign
// the wallet's registration as its enrolling provider.
func enrolWallet(cmd *cobra.Command, home, token string, w *keystore.Wallet) (*chain.RegisterPatient, error) {
	enc := w.EncryptionKey().Public().Bytes()
	req, _ := json.Marshal(node.EnrolRequest{PatientKey: w.SigningKey().Public(), EncryptionKey: hex.EncodeToString(enc)})
	data, err := apiDoAs(cmd.Context(), home, token, http.MethodPost, "/v1/enrolments", req, "application/json", walletTxTimeout)
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
		Use:   "grant --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) --to PROVIDER_ID [--types T,…] [--records ID,…] [--expires DURATION]",
		Short: "Consent to a provider reading your records (all, some resource types or some records) for a purpose",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			g, err := buildGrant(to, types, records, purpose, expires, time.Now())
			if err != nil {
				return err
			}
			grantee := g.Grantee
			s, err := f.session(cmd, w)
			if err != nil {
				return err
			}
			defer s.close()
			out, err := s.submit(cmd.Context(), w, chain.TxConsentGrant, g)
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

// provedConsents is every consent and emergency access of the wallet's patient, proved.
func provedConsents(ctx context.Context, s *ledgerSession, w *keystore.Wallet) ([]records.ConsentJSON, error) {
	ps, err := s.patientState(ctx, w)
	if err != nil {
		return nil, err
	}
	return records.ConsentsJSON(ps.View(), ps.IDs(state.LogConsent))
}

func walletRevokeCmd() *cobra.Command {
	var f walletFlags
	var to, consent string
	cmd := &cobra.Command{
		Use:   "revoke --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) (--to PROVIDER_ID | --consent CONSENT_ID)",
		Short: "Withdraw consent: holders refuse the provider's fetches and new records are not wrapped for it",
		Long: "Withdraw consent: holders refuse the provider's fetches and new records are not wrapped for it.\n" +
			"Data the provider already read cannot be recalled.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			if (to == "") == (consent == "") {
				return fmt.Errorf("give exactly one of --to PROVIDER_ID or --consent CONSENT_ID")
			}
			s, err := f.session(cmd, w)
			if err != nil {
				return err
			}
			defer s.close()
			revoked, height, err := revokeConsents(cmd.Context(), s, w, to, consent)
			if err != nil {
				return err
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
		Use:   "consents --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Short: "List your consents and emergency accesses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			s, err := f.session(cmd, w)
			if err != nil {
				return err
			}
			defer s.close()
			all, err := provedConsents(cmd.Context(), s, w)
			if err != nil {
				return err
			}
			if all == nil {
				all = []records.ConsentJSON{}
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"consents": all, "verified": s.verification()})
			}
			s.printWarnings(cmd)
			for _, c := range all {
				if c.Emergency {
					fmt.Fprintf(cmd.OutOrStdout(), "!! EMERGENCY ACCESS by provider %s at %s (%s)%s\n", c.Grantee, c.GrantedTime, c.Reason, emergencyNote(c.CoSigned, c.AfterRevocation))
				}
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
		Use:   "audit --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Short: "List every logged access to your records: who, which record, when, why, served or refused",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			var out struct {
				Accesses []records.AccessJSON `json:"accesses"`
				Verified verification         `json:"verified"`
			}
			if out.Accesses, err = provedAccesses(ps, w); err != nil {
				return err
			}
			out.Verified = s.verification()
			if f.asJSON {
				return writeJSONOut(cmd, out)
			}
			s.printWarnings(cmd)
			for _, a := range out.Accesses {
				if a.Emergency && a.Outcome == chain.AccessServed.String() {
					fmt.Fprintf(cmd.OutOrStdout(), "!! EMERGENCY READ of record %s by provider %s (%s) at %s (%s)%s\n", short(a.Record.String()), a.Accessor, a.Role, a.Time, a.EmergencyReason, emergencyNote(a.CoSigned, a.AfterRevocation))
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tHEIGHT\tRECORD\tACCESSOR\tROLE\tPURPOSE\tOUTCOME")
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
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", a.Time, a.Height, short(a.Record.String()), a.Accessor, a.Role, a.Purpose, outcome)
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
		Use:   "erase --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) RECORD_ID...",
		Short: "Erase records (crypto-shredding): every holder deletes the ciphertext and key envelopes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := f.open(cmd)
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
			s, err := f.session(cmd, w)
			if err != nil {
				return err
			}
			defer s.close()
			out, err := s.submit(cmd.Context(), w, chain.TxRecordErase, &chain.RecordErase{Records: ids})
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

// emergencyNote is what a patient should notice about a break-glass access.
func emergencyNote(coSigned, afterRevocation bool) string {
	var n []string
	if coSigned {
		n = append(n, "co-signed by an authority")
	}
	if afterRevocation {
		n = append(n, "AFTER YOU REVOKED THIS PROVIDER'S CONSENT")
	}
	if len(n) == 0 {
		return ""
	}
	return "; " + strings.Join(n, "; ")
}
