package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records"
)

// The patient's own records, as the wallet proves and decrypts them itself.

func walletRecordsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "records",
		Short: "Your records: list (proved), get and export (fetched as you, checked against the ledger, decrypted here)",
	}
	cmd.AddCommand(walletRecordsListCmd(), walletRecordsGetCmd(), walletRecordsExportCmd())
	return cmd
}

func walletRecordsListCmd() *cobra.Command {
	var f walletFlags
	cmd := &cobra.Command{
		Use:   "list --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Short: "List every version of your records the ledger anchored, proved against a verified header",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			recs, err := records.RecordsJSON(ps.View(), ps.IDs(state.LogRecord))
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"records": recs, "verified": s.verification()})
			}
			s.printWarnings(cmd)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RECORD\tTYPE\tVERSION\tAUTHOR\tHEIGHT\tSTATUS")
			for _, r := range recs {
				status := "current"
				switch {
				case r.Erased:
					status = "erased"
				case r.SupersededBy != nil:
					status = "superseded by " + short(r.SupersededBy.String())
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", r.ID, r.ResourceType, r.Version, r.Author, r.Height, status)
			}
			return tw.Flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

func walletRecordsGetCmd() *cobra.Command {
	var f walletFlags
	var out string
	cmd := &cobra.Command{
		Use:   "get --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) RECORD_ID",
		Short: "Fetch one of your records as yourself (the read is audited), check it against the ledger, decrypt it here and print its FHIR JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := chain.ParseHash(args[0])
			if err != nil {
				return fmt.Errorf("record id %q: want 64 hex digits", args[0])
			}
			w, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			plain, err := readOwnRecord(cmd.Context(), s, w, ps, id)
			if err != nil {
				return err
			}
			for _, warn := range s.warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", warn)
			}
			if out != "" {
				return os.WriteFile(out, plain, 0o600)
			}
			_, err = cmd.OutOrStdout().Write(append(plain, '\n'))
			return err
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&out, "out", "", "write the FHIR JSON to this file (mode 0600) instead of standard output")
	return cmd
}

func walletRecordsExportCmd() *cobra.Command {
	var f walletFlags
	var out string
	cmd := &cobra.Command{
		Use:   "export --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Short: "Export your whole record as a FHIR Bundle: every current record (each read audited), your consents and who read what",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, s, ps, err := f.proved(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			var recs []records.ExportedRecord
			for _, it := range ps.Items {
				r := it.Record
				if r == nil || r.Erased || !r.SupersededBy.IsZero() {
					continue
				}
				plain, err := s.primary.ReadOwn(cmd.Context(), w.SigningKey(), w.EncryptionKey(), r)
				if err != nil {
					return fmt.Errorf("record %s: %w", r.ID, err)
				}
				recs = append(recs, records.ExportedRecord{ID: r.ID, JSON: plain})
			}
			view := ps.View()
			consents, err := records.ConsentsJSON(view, ps.IDs(state.LogConsent))
			if err != nil {
				return err
			}
			accesses, err := records.AccessesJSON(view, w.PatientID(), ps.IDs(state.LogAccess, state.LogReceipt))
			if err != nil {
				return err
			}
			v, err := fhir.Shared()
			if err != nil {
				return err
			}
			bundle, err := records.BuildExport(v, w.PatientID(), recs, consents, accesses)
			if err != nil {
				return err
			}
			for _, warn := range s.warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", warn)
			}
			if out != "" {
				return os.WriteFile(out, bundle, 0o600)
			}
			_, err = cmd.OutOrStdout().Write(append(bundle, '\n'))
			return err
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&out, "out", "", "write the Bundle to this file (mode 0600) instead of standard output")
	return cmd
}
