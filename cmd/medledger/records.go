package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// importTimeout bounds an import: sealing, storing and waiting for the anchors to commit.
const importTimeout = 10 * time.Minute

func recordsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "records",
		Short: "Import, list, read, amend and export a patient's FHIR records through a node",
	}
	cmd.AddCommand(recordsImportCmd(), recordsListCmd(), recordsGetCmd(), recordsExportCmd(), recordsAmendCmd(), recordsCoSignCmd())
	return cmd
}

// recordsOut is the --json shape of import, amend and list.
type recordsOut struct {
	Records []recordOut `json:"records"`
}

type recordOut struct {
	ID           string `json:"id"`
	ResourceType string `json:"resourceType"`
	Version      uint64 `json:"version"`
	Height       uint64 `json:"height"`
	Author       string `json:"author,omitempty"`
	Supersedes   string `json:"supersedes,omitempty"`
	SupersededBy string `json:"superseded_by,omitempty"`
	Erased       bool   `json:"erased,omitempty"`
}

func printRecords(cmd *cobra.Command, data []byte, asJSON bool) error {
	var in recordsOut
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	if in.Records == nil {
		in.Records = []recordOut{}
	}
	if asJSON {
		return writeJSONOut(cmd, in)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tVERSION\tHEIGHT\tSTATUS")
	for _, r := range in.Records {
		status := "current"
		switch {
		case r.Erased:
			status = "erased"
		case r.SupersededBy != "":
			status = "superseded by " + short(r.SupersededBy)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.ID, r.ResourceType, r.Version, r.Height, status)
	}
	return tw.Flush()
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func writeJSONOut(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func patientFlag(p string) (chain.Address, error) {
	if p == "" {
		return chain.Address{}, usagef("--patient is required (the patient id printed by `medledger wallet register`)")
	}
	a, err := chain.ParseAddress(p)
	if err != nil {
		return a, fmt.Errorf("--patient %q: want a patient id of 40 hex digits", p)
	}
	return a, nil
}

func recordsListCmd() *cobra.Command {
	var home, patient string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --home HOME --patient PATIENT_ID",
		Short: "List a patient's records (every version) as the ledger knows them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := patientFlag(patient)
			if err != nil {
				return err
			}
			data, err := apiGet(cmd.Context(), home, "/v1/patients/"+p.String()+"/records")
			if err != nil {
				return err
			}
			return printRecords(cmd, data, asJSON)
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

func recordsGetCmd() *cobra.Command {
	var home, purpose, reason, reasonCode, coSigner, coSig string
	var emergency, asJSON bool
	cmd := &cobra.Command{
		Use:   "get --home HOME RECORD_ID",
		Short: "Fetch (from this node or another holder), verify and decrypt a record; prints its FHIR JSON",
		Long: "Fetch (from this node or another holder), verify and decrypt a record; prints its FHIR JSON.\n" +
			"The read is refused without a current consent of the patient for this node's provider and purpose.\n" +
			"--emergency --reason-code C first records a break-glass access on the ledger (the patient sees it).\n" +
			"A second break-glass access within 24 h needs an authority's co-signature: an authority runs\n" +
			"`medledger records cosign` on its node and gives you --co-signer and --co-sig.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := chain.ParseHash(args[0])
			if err != nil {
				return fmt.Errorf("record id %q: want 64 hex digits", args[0])
			}
			if emergency {
				if _, err := chain.ParseEmergencyReason(reasonCode); err != nil {
					return fmt.Errorf("--emergency needs --reason-code, one of %v: break-glass access is always justified on the ledger", chain.EmergencyReasons())
				}
				if (coSigner == "") != (coSig == "") {
					return fmt.Errorf("--co-signer and --co-sig go together")
				}
				body, _ := json.Marshal(node.EmergencyRequest{Record: &id, Purpose: purpose, ReasonCode: reasonCode, Reason: reason,
					CoSigner: coSigner, CoSig: coSig})
				if _, err := apiDo(cmd.Context(), home, http.MethodPost, "/v1/emergency", body, "application/json", 2*time.Minute); err != nil {
					return fmt.Errorf("emergency access: %w", err)
				}
			}
			q := url.Values{}
			if purpose != "" {
				q.Set("purpose", purpose)
			}
			if emergency {
				q.Set("emergency", "true")
			}
			path := "/v1/records/" + id.String()
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			data, err := apiDo(cmd.Context(), home, http.MethodGet, path, nil, "", 2*time.Minute)
			if err != nil {
				return fmt.Errorf("record %s: %w", short(id.String()), err)
			}
			var out bytes.Buffer
			if err := json.Indent(&out, data, "", "  "); err != nil {
				return fmt.Errorf("record is not JSON: %w", err)
			}
			out.WriteByte('\n')
			_ = asJSON // the answer is a FHIR JSON document either way
			_, err = cmd.OutOrStdout().Write(out.Bytes())
			return err
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&purpose, "purpose", "", "purpose of use (HL7 v3 ActReason), default TREAT; ETREAT with --emergency")
	cmd.Flags().BoolVar(&emergency, "emergency", false, "break-glass access without consent (needs --reason-code; recorded on the ledger)")
	cmd.Flags().StringVar(&reasonCode, "reason-code", "", fmt.Sprintf("why emergency access is needed, one of %v (on the ledger)", chain.EmergencyReasons()))
	cmd.Flags().StringVar(&reason, "reason", "", "a free-text note on the emergency (kept in the node's log, never on the ledger)")
	cmd.Flags().StringVar(&coSigner, "co-signer", "", "with --emergency: the co-signing authority's key (printed by medledger records cosign)")
	cmd.Flags().StringVar(&coSig, "co-sig", "", "with --emergency: the authority's co-signature (printed by medledger records cosign)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document (the FHIR resource)")
	return cmd
}

func recordsCoSignCmd() *cobra.Command {
	var home, provider, patient, record, purpose, reasonCode string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cosign --home AUTHORITY_HOME --provider PROVIDER_ID (--patient PATIENT_ID | --record RECORD_ID) --reason-code C",
		Short: "On an authority's node: co-sign a provider's next break-glass access (needed from the second in 24 h on)",
		Long: "On an authority's node: co-sign a provider's next break-glass access. The co-signature names the provider,\n" +
			"patient, purpose and reason code, and the provider's next access in the current 24 h window: it opens exactly\n" +
			"that one. Give the provider the printed --co-signer and --co-sig for `medledger records get --emergency`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			prov, err := chain.ParseAddress(provider)
			if err != nil {
				return fmt.Errorf("--provider %q: want a provider id (40 hex digits)", provider)
			}
			if _, err := chain.ParseEmergencyReason(reasonCode); err != nil {
				return fmt.Errorf("--reason-code: one of %v, as the provider will give it", chain.EmergencyReasons())
			}
			req := node.CoSignRequest{Provider: prov, Purpose: purpose, ReasonCode: reasonCode}
			switch {
			case patient != "" && record != "":
				return fmt.Errorf("give --patient or --record, not both")
			case patient != "":
				p, err := patientFlag(patient)
				if err != nil {
					return err
				}
				req.Patient = &p
			case record != "":
				id, err := chain.ParseHash(record)
				if err != nil {
					return fmt.Errorf("--record %q: want 64 hex digits", record)
				}
				req.Record = &id
			default:
				return fmt.Errorf("name the patient (--patient) or one of their records (--record)")
			}
			body, _ := json.Marshal(req)
			data, err := apiDo(cmd.Context(), home, http.MethodPost, "/v1/emergency/cosign", body, "application/json", time.Minute)
			if err != nil {
				return fmt.Errorf("co-sign: %w", err)
			}
			var out node.CoSignJSON
			if err := json.Unmarshal(data, &out); err != nil {
				return fmt.Errorf("node answered with malformed JSON: %w", err)
			}
			if asJSON {
				return writeJSONOut(cmd, out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "co-signed break-glass access %d of window %d for provider %s\n", out.Ordinal, out.Window, prov)
			fmt.Fprintf(cmd.OutOrStdout(), "the provider passes: --co-signer %s --co-sig %s\n", out.CoSigner, out.CoSig)
			return nil
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the authority node's home directory")
	cmd.Flags().StringVar(&provider, "provider", "", "the provider's id (GET /v1/status provider on its node)")
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	cmd.Flags().StringVar(&record, "record", "", "or one of the patient's records")
	cmd.Flags().StringVar(&purpose, "purpose", "", "purpose of use as the provider gives it, default ETREAT")
	cmd.Flags().StringVar(&reasonCode, "reason-code", "", fmt.Sprintf("the reason code the provider gives, one of %v", chain.EmergencyReasons()))
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

func recordsExportCmd() *cobra.Command {
	var home, patient, purpose string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export --home HOME --patient PATIENT_ID",
		Short: "Export the patient's records this node may read, their consents and access log as a FHIR Bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := patientFlag(patient)
			if err != nil {
				return err
			}
			path := "/v1/patients/" + p.String() + "/export"
			if purpose != "" {
				path += "?purpose=" + url.QueryEscape(purpose)
			}
			data, err := apiDo(cmd.Context(), home, http.MethodGet, path, nil, "", importTimeout)
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := json.Indent(&out, data, "", "  "); err != nil {
				return fmt.Errorf("bundle is not JSON: %w", err)
			}
			out.WriteByte('\n')
			_ = asJSON
			_, err = cmd.OutOrStdout().Write(out.Bytes())
			return err
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	cmd.Flags().StringVar(&purpose, "purpose", "", "purpose of use, default TREAT")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document (the Bundle)")
	return cmd
}

func recordsAmendCmd() *cobra.Command {
	var home string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "amend --home HOME RECORD_ID FILE.json",
		Short: "Store a corrected version of a record; the old version stays readable to those with consent",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := chain.ParseHash(args[0])
			if err != nil {
				return fmt.Errorf("record id %q: want 64 hex digits", args[0])
			}
			body, err := os.ReadFile(args[1])
			if err != nil {
				return err
			}
			data, err := apiDo(cmd.Context(), home, http.MethodPost, "/v1/records/"+id.String()+"/amend", body, "application/fhir+json", 2*time.Minute)
			if err != nil {
				return err
			}
			return printRecords(cmd, data, asJSON)
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}
