package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records"
)

// POST /fhir: a transaction or batch Bundle, imported by the node's own import
// (records.Service.ImportDocument, as POST /v1/patients/{patient}/records does) for one ledger
// patient: the one ?patient= names, else the one the Bundle's Patient is bound to at this
// practice. The import judges the document as a whole: a transaction refused answers an
// OperationOutcome and anchors nothing; a batch answers a batch-response whose refused entries
// say why and whose other entries were not imported either (424), so a client can fix and
// resend it.

// txBundle is what the face reads of a posted Bundle before the import judges it.
type txBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		Resource *struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Identifier   []struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		} `json:"resource"`
	} `json:"entry"`
}

func (a *API) fhirTransaction(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/fhir+json" && mt != "application/json") {
			writeOutcome(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send application/fhir+json", ct))
			return
		}
	}
	data, ok := readBodyFHIR(w, r, a.maxBatchBytes)
	if !ok {
		return
	}
	var b txBundle
	if err := json.Unmarshal(data, &b); err != nil {
		writeOutcome(w, http.StatusBadRequest, "the body is not a FHIR JSON resource: "+err.Error())
		return
	}
	if b.ResourceType != "Bundle" || (b.Type != "transaction" && b.Type != "batch") {
		writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("POST /fhir takes a transaction or batch Bundle, not a %s %s (imports of other documents: POST /v1/patients/{patient}/records)", b.Type, b.ResourceType))
		return
	}
	patient, ok := a.txPatient(w, r, &b)
	if !ok {
		return
	}
	noteTarget(r, &patient, nil)
	opts, err := importOptions(r)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, err.Error())
		return
	}
	r, cancel := importRequest(w, r)
	defer cancel()
	res, err := a.records.ImportDocument(r.Context(), patient, data, opts)
	var ie *records.ImportError
	switch {
	case errors.As(err, &ie) && b.Type == "batch":
		writeFHIR(w, http.StatusOK, responseBundle("batch-response", ie.Entries, len(b.Entry)))
	case errors.As(err, &ie):
		writeFHIR(w, recordStatus(err), refusedOutcome(err, ie.Entries))
	case err != nil:
		a.fhirRecordError(w, "import", err)
	default:
		writeFHIR(w, http.StatusOK, responseBundle(b.Type+"-response", res.Entries, len(b.Entry)))
	}
}

// readBodyFHIR is readBody answering in OperationOutcomes.
func readBodyFHIR(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	c := &captured{header: http.Header{}}
	data, ok := readBody(c, r, limit)
	if !ok {
		var e ErrorJSON
		_ = json.Unmarshal(c.body, &e)
		writeOutcome(w, c.code, e.Error)
	}
	return data, ok
}

// txPatient decides which ledger patient a posted Bundle is for: ?patient= (a ledger patient id
// or a Patient id bound at this practice), else the ledger patient bound to the Bundle's Patient
// resources (by id and identifiers). None or several: 422, say how to name one.
func (a *API) txPatient(w http.ResponseWriter, r *http.Request, b *txBundle) (chain.Address, bool) {
	if ref := r.URL.Query().Get("patient"); ref != "" {
		p, found, ok := a.fhirPatient(w, ref)
		if ok && !found {
			writeOutcome(w, http.StatusUnprocessableEntity, fmt.Sprintf("patient %q: no such patient at this practice: name the ledger patient id (40 hex)", ref))
		}
		return p, ok && found
	}
	var names []string
	for _, e := range b.Entry {
		if e.Resource == nil || e.Resource.ResourceType != "Patient" {
			continue
		}
		if e.Resource.ID != "" {
			names = append(names, e.Resource.ID)
		}
		for _, id := range e.Resource.Identifier {
			if id.System != "" && id.Value != "" {
				names = append(names, "?identifier="+id.System+"|"+id.Value)
			}
		}
	}
	if len(names) == 0 {
		writeOutcome(w, http.StatusUnprocessableEntity, "the Bundle has no Patient with an id or identifier: name the ledger patient with ?patient=<ledger patient id>")
		return chain.Address{}, false
	}
	found := map[chain.Address]bool{}
	for _, n := range names {
		ps, err := a.records.PatientsNamed(n)
		if err != nil {
			a.fhirRecordError(w, "import", err)
			return chain.Address{}, false
		}
		for _, p := range ps {
			found[p] = true
		}
	}
	switch len(found) {
	case 1:
		for p := range found {
			return p, true
		}
	case 0:
		writeOutcome(w, http.StatusUnprocessableEntity, "the Bundle's Patient is bound to no ledger patient at this practice yet: name the ledger patient with ?patient=<ledger patient id> (the first import binds it)")
	default:
		writeFHIR(w, http.StatusUnprocessableEntity, outcome{ResourceType: "OperationOutcome", Issue: []outcomeIssue{{Severity: "error", Code: "multiple-matches",
			Diagnostics: fmt.Sprintf("the Bundle's Patient resources are bound to %d different ledger patients at this practice: name one with ?patient=<ledger patient id>", len(found))}}})
	}
	return chain.Address{}, false
}

// entryStatus is an import outcome as an entry's response.status.
func entryStatus(o records.EntryOutcome) (status int, text string) {
	switch o.Outcome {
	case records.OutcomeCreated:
		return http.StatusCreated, "201 Created"
	case records.OutcomeUpdated, records.OutcomeUnchanged, records.OutcomeSkipped:
		return http.StatusOK, "200 OK"
	case records.OutcomeRefused:
		return http.StatusUnprocessableEntity, "422 Unprocessable Entity"
	}
	return http.StatusFailedDependency, "424 Failed Dependency" // not imported: another entry was refused
}

// responseBundle is the transaction-response or batch-response Bundle of an import's
// outcomes, one entry per entry posted, in order.
func responseBundle(typ string, outs []records.EntryOutcome, n int) fhirBundle {
	b := fhirBundle{ResourceType: "Bundle", Type: typ, Entry: make([]bundleEntry, n)}
	for i := range b.Entry {
		b.Entry[i].Response = &entryResponse{Status: "424 Failed Dependency", Outcome: outcomeJSON(http.StatusFailedDependency, "no outcome for this entry")}
	}
	for _, o := range outs {
		if o.Index < 0 || o.Index >= n {
			continue
		}
		code, text := entryStatus(o)
		resp := &entryResponse{Status: text}
		if o.Version > 0 {
			resp.Etag = fmt.Sprintf("W/%q", strconv.FormatUint(o.Version, 10))
			if loc := entryLocation(o); loc != "" {
				resp.Location = loc + "/_history/" + strconv.FormatUint(o.Version, 10)
			}
		}
		switch o.Outcome {
		case records.OutcomeCreated, records.OutcomeUpdated:
		case records.OutcomeUnchanged:
			resp.Outcome = infoOutcome("unchanged: the same content as the current version, nothing anchored")
		case records.OutcomeSkipped:
			resp.Outcome = infoOutcome("not kept: " + nonEmpty(o.Message, "not about the patient and not referred to by what is"))
		case records.OutcomeRefused:
			resp.Outcome = outcomeJSON(code, o.Message)
		default:
			resp.Outcome = outcomeJSON(code, "not imported: the import takes the Bundle as a whole, and another entry was refused")
		}
		b.Entry[o.Index].Response = resp
	}
	return b
}

// entryLocation is the Type/id an imported entry is read back at ("" if not known: a resource
// sent without id and updated keeps the id its first import gave it).
func entryLocation(o records.EntryOutcome) string {
	if strings.Contains(o.Resource, "/") {
		return o.Resource
	}
	if o.Outcome == records.OutcomeCreated && o.Resource != "" {
		return o.Resource + "/" + o.Record // the import names it by its record id
	}
	return ""
}

func infoOutcome(msg string) json.RawMessage {
	data, _ := json.Marshal(outcome{ResourceType: "OperationOutcome", Issue: []outcomeIssue{{Severity: "information", Code: "informational", Diagnostics: msg}}})
	return data
}

func nonEmpty(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// refusedOutcome is a refused transaction's answer: one issue per refused entry, located by
// expression.
func refusedOutcome(err error, outs []records.EntryOutcome) outcome {
	oo := outcome{ResourceType: "OperationOutcome"}
	for _, o := range outs {
		if o.Outcome != records.OutcomeRefused {
			continue
		}
		is := outcomeIssue{Severity: "error", Code: "processing", Diagnostics: o.Message}
		if o.Index >= 0 {
			is.Expression = []string{fmt.Sprintf("Bundle.entry[%d]", o.Index)}
		}
		oo.Issue = append(oo.Issue, is)
	}
	if len(oo.Issue) == 0 {
		oo.Issue = []outcomeIssue{{Severity: "error", Code: "processing", Diagnostics: oneLine(err)}}
	}
	return oo
}
