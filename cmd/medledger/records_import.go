package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/records"
)

func recordsImportCmd() *cobra.Command {
	var home, patient string
	var links []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import --home HOME --patient PATIENT_ID [--link SYSTEM|VALUE|Patient/ID]... FILE",
		Short: "Import FHIR R4 JSON (a resource, any Bundle, or NDJSON), seal each resource and anchor it on the ledger",
		Long: "Import FHIR R4 JSON for one patient: a resource, a transaction, batch, collection or document Bundle, or\n" +
			"NDJSON (bulk-data export). Resources about the patient are kept with the Practitioners, Organizations,\n" +
			"Medications, … they refer to; importing the same resources again changes nothing, a changed resource\n" +
			"becomes a new version. The ledger patient is bound to the first document's Patient (by identifier):\n" +
			"a document about another person is refused unless you link it with --link (an identifier system|value\n" +
			"or Patient/id that you assert is this patient). Shows progress on a terminal; prints every entry's outcome.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := patientFlag(patient)
			if err != nil {
				return err
			}
			body, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			q := url.Values{"link": links}
			path := "/v1/patients/" + p.String() + "/records"
			if len(links) > 0 {
				path += "?" + q.Encode()
			}
			ctype := "application/fhir+json"
			if strings.HasSuffix(args[0], ".ndjson") {
				ctype = "application/fhir+ndjson"
			}
			end, err := importStreaming(cmd.Context(), home, path, body, ctype, newImportBar(len(body)))
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			if end.Status != http.StatusCreated {
				if len(end.Entries) > 0 && !asJSON {
					printOutcomes(cmd.ErrOrStderr(), end.Entries, true)
				}
				if asJSON {
					_ = writeJSONOut(cmd, node.ImportErrorJSON{Error: end.Error, Entries: end.Entries})
				}
				return fmt.Errorf("import %s: %s (HTTP %d)", args[0], end.Error, end.Status)
			}
			if asJSON {
				return writeJSONOut(cmd, end.Result)
			}
			printOutcomes(cmd.OutOrStdout(), end.Result.Entries, false)
			return nil
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&patient, "patient", "", "the patient's id")
	cmd.Flags().StringArrayVar(&links, "link", nil, "an identifier (system|value) or Patient/id of another system that is this patient (repeatable; kept in the practice's binding)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document (every entry's outcome and the records)")
	return cmd
}

// importBar shows an import's progress: the upload, then the records anchored.
type importBar struct {
	bar *progressbar.ProgressBar
}

// newImportBar returns a bar on standard error when it is a terminal, nil otherwise.
func newImportBar(size int) *importBar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return &importBar{bar: progressbar.NewOptions64(int64(size),
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription("uploading"),
		progressbar.OptionClearOnFinish())}
}

func (b *importBar) reader(data []byte) io.Reader {
	if b == nil {
		return bytes.NewReader(data)
	}
	r := progressbar.NewReader(bytes.NewReader(data), b.bar)
	return &r
}

func (b *importBar) progress(p records.ImportProgress) {
	if b == nil {
		return
	}
	switch p.Phase {
	case "validated":
		b.bar.Reset()
		b.bar.ChangeMax(p.Total)
		b.bar.Describe(fmt.Sprintf("validated %d entries", p.Total))
		_ = b.bar.Set(p.Done)
	case "sealed":
		b.bar.Reset()
		b.bar.ChangeMax(p.Total)
		b.bar.Describe(fmt.Sprintf("sealed %d records; anchoring", p.Total))
	case "anchored":
		_ = b.bar.Set(p.Done)
	}
}

func (b *importBar) finish() {
	if b != nil {
		_ = b.bar.Finish()
		_ = b.bar.Clear()
	}
}

// importStreaming posts an import asking for the streamed answer (docs/api.md) and returns its
// last line; progress lines go to bar.
func importStreaming(ctx context.Context, home, path string, body []byte, ctype string, bar *importBar) (*node.ImportProgressJSON, error) {
	if home == "" {
		return nil, fmt.Errorf("--home is required")
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	token, err := node.ReadToken(node.Home(home).TokenFile())
	if err != nil {
		return nil, fmt.Errorf("%w (has the node been started once?)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cfg.API.Listen+path, bar.reader(body))
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	defer bar.finish()
	if err != nil {
		return nil, fmt.Errorf("node API at %s: %w (is the node running?)", cfg.API.Listen, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e node.ErrorJSON
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("node answered HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, maxAPIAnswerBytes))
	sc.Buffer(nil, maxAPIAnswerBytes)
	var last *node.ImportProgressJSON
	for sc.Scan() {
		var l node.ImportProgressJSON
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("node answered with malformed JSON: %w", err)
		}
		if l.Progress != nil {
			bar.progress(*l.Progress)
			continue
		}
		last = &l
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("node API at %s: %w", cfg.API.Listen, err)
	}
	if last == nil || (last.Result == nil && last.Error == "") {
		return nil, fmt.Errorf("the node's answer ended before the import's outcome")
	}
	return last, nil
}

// printOutcomes prints one line per entry (only the refused ones when refusedOnly) and a summary.
func printOutcomes(w io.Writer, entries []records.EntryOutcome, refusedOnly bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tRESOURCE\tOUTCOME\tRECORD\tVERSION\tNOTE")
	count := map[string]int{}
	var order []string
	for _, e := range entries {
		if count[e.Outcome] == 0 {
			order = append(order, e.Outcome)
		}
		count[e.Outcome]++
		if refusedOnly && e.Outcome != records.OutcomeRefused {
			continue
		}
		what := e.Resource
		if what == "" {
			what = strings.TrimSpace(e.Method + " " + e.URL)
		}
		version := ""
		if e.Version > 0 {
			version = fmt.Sprint(e.Version)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Index, what, e.Outcome, e.Record, version, e.Message)
	}
	_ = tw.Flush()
	parts := make([]string, len(order))
	for i, o := range order {
		parts[i] = fmt.Sprintf("%d %s", count[o], o)
	}
	fmt.Fprintf(w, "%d entries: %s\n", len(entries), strings.Join(parts, ", "))
}
