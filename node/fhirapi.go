package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
)

// The FHIR R4 REST face (docs/fhir.md): the same records, consent and audit as the own API,
// spoken as FHIR. Every route is behind the API's authentication (ServeHTTP) and the same
// permission as its own-API twin; every read calls records.Service.Read, so it is
// consent-checked and logged on the ledger like any other; every request goes to the local
// audit log. Errors are OperationOutcome resources.

// fhirPrefix is where the face is mounted on the API listener.
const fhirPrefix = "/fhir"

// fhirContentType is the media type of every answer of the face.
const fhirContentType = "application/fhir+json; charset=utf-8"

// Page sizes of searches and $everything: each entry is a decrypted (and audited) read, so a
// page is kept small; _count asks for fewer or more, never more than maxFHIRPage.
const (
	defaultFHIRPage = 50
	maxFHIRPage     = 200
)

// LedgerPatientSystem is the identifier system under which the face knows a ledger patient's
// pseudonymous id: GET /fhir/Patient?identifier=urn:medledger:patient|<40 hex>.
const LedgerPatientSystem = "urn:medledger:patient"

// attachFHIR mounts the FHIR face (with the record service: attachRecords). Reads need records.read (as GET /v1/records/{id} and the
// export do), the transaction/batch endpoint records.import (as the own import does), the
// CapabilityStatement only an authenticated caller.
func (a *API) attachFHIR() {
	a.handleFHIR("GET /fhir/metadata", anyone, a.fhirMetadata)
	a.handleFHIR("GET /fhir/{type}", staff.PermRead, a.fhirSearch)
	a.handleFHIR("GET /fhir/{type}/{id}", staff.PermRead, a.fhirRead)
	a.handleFHIR("GET /fhir/{type}/{id}/{op}", staff.PermRead, a.fhirOperation)
	a.handleFHIR("GET /fhir/{type}/{id}/_history/{vid}", staff.PermRead, a.fhirVersion)
	a.handleFHIR("POST /fhir", staff.PermImport, a.fhirTransaction)
	a.handleFHIR("POST /fhir/{$}", staff.PermImport, a.fhirTransaction)
}

// isFHIRPath says whether a request is for the FHIR face, whose errors are OperationOutcomes.
func isFHIRPath(p string) bool {
	return p == fhirPrefix || strings.HasPrefix(p, fhirPrefix+"/")
}

// writeErrorFor answers an error in the shape the request's API speaks: an OperationOutcome on
// the FHIR face, the own JSON error elsewhere.
func writeErrorFor(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if isFHIRPath(r.URL.Path) {
		writeOutcome(w, code, msg)
		return
	}
	writeError(w, code, msg)
}

// handleFHIR registers h for pattern behind perm, checks the requested format, and notes the
// request for the local audit log.
func (a *API) handleFHIR(pattern string, perm staff.Permission, h http.HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		info := requestInfoOf(r)
		if perm != anyone && !info.role.Can(perm) {
			info.note = "forbidden: needs " + string(perm)
			writeOutcome(w, http.StatusForbidden, fmt.Sprintf("forbidden: the %s role does not have the %q permission (docs/api.md, Roles)", info.role, perm))
			return
		}
		if msg := fhirFormatProblem(r); msg != "" {
			writeOutcome(w, http.StatusNotAcceptable, msg)
			return
		}
		h(w, r)
	})
}

// fhirFormatProblem explains why the answer's format cannot be what the request asks ("" if
// it can): only JSON is spoken, as application/fhir+json (application/json and _format=json
// are taken to mean the same).
func fhirFormatProblem(r *http.Request) string {
	if f := r.URL.Query().Get("_format"); f != "" {
		switch strings.ReplaceAll(strings.TrimSpace(f), " ", "+") {
		case "json", "application/json", "application/fhir+json":
		default:
			return fmt.Sprintf("_format=%s: this server speaks JSON only (_format=json, application/fhir+json)", f)
		}
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return ""
	}
	for _, part := range strings.Split(accept, ",") {
		mt := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if mt == "*/*" || mt == "application/*" || strings.Contains(mt, "json") {
			return ""
		}
	}
	return fmt.Sprintf("Accept: %s: this server answers application/fhir+json only", accept)
}

// writeFHIR writes a FHIR resource (a Go value or raw JSON).
func writeFHIR(w http.ResponseWriter, code int, v any) {
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			code, data = http.StatusInternalServerError, outcomeJSON(http.StatusInternalServerError, "encoding the answer failed")
		}
	}
	w.Header().Set("Content-Type", fhirContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// OperationOutcome and its issue (FHIR R4).
type (
	outcome struct {
		ResourceType string         `json:"resourceType"`
		Issue        []outcomeIssue `json:"issue"`
	}
	outcomeIssue struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics,omitempty"`
		Expression  []string `json:"expression,omitempty"`
	}
)

// issueCode is the OperationOutcome issue type that fits an HTTP error status.
func issueCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid"
	case http.StatusUnauthorized:
		return "login"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not-found"
	case http.StatusMethodNotAllowed, http.StatusNotAcceptable, http.StatusUnsupportedMediaType:
		return "not-supported"
	case http.StatusConflict:
		return "conflict"
	case http.StatusGone:
		return "deleted"
	case http.StatusRequestEntityTooLarge:
		return "too-costly"
	case http.StatusUnprocessableEntity:
		return "processing"
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return "transient"
	}
	if status >= 500 {
		return "exception"
	}
	return "informational"
}

func newOutcome(status int, msg string) outcome {
	sev := "error"
	if status >= 500 {
		sev = "fatal"
	}
	return outcome{ResourceType: "OperationOutcome", Issue: []outcomeIssue{{Severity: sev, Code: issueCode(status), Diagnostics: msg}}}
}

func outcomeJSON(status int, msg string) []byte {
	data, _ := json.Marshal(newOutcome(status, msg)) // plain strings: never fails
	return data
}

// writeOutcome answers an error as an OperationOutcome.
func writeOutcome(w http.ResponseWriter, status int, msg string) {
	writeFHIR(w, status, outcomeJSON(status, oneLineString(msg)))
}

func oneLineString(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// fhirRecordError answers a record-service error as an OperationOutcome, with the status the
// own API gives it (recordStatus). A refusal for want of consent says why, never what.
func (a *API) fhirRecordError(w http.ResponseWriter, what string, err error) {
	code := recordStatus(err)
	if code == http.StatusInternalServerError {
		a.log.Error("api: fhir "+what, "err", err)
		writeOutcome(w, code, what+": internal error: "+err.Error())
		return
	}
	writeOutcome(w, code, what+": "+err.Error())
}

// fhirBase is the face's base URL as the client reached it, for fullUrls and links.
func fhirBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + fhirPrefix
}

// fhirInstant renders a time as a FHIR instant.
func fhirInstant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// fhirMetadata is GET /fhir/metadata: the CapabilityStatement, saying exactly what the face
// does (and by omission, what it does not).
func (a *API) fhirMetadata(w http.ResponseWriter, r *http.Request) {
	v, err := fhir.Shared()
	if err != nil {
		a.fhirRecordError(w, "metadata", err)
		return
	}
	readOnly := []map[string]string{{"code": "read"}, {"code": "vread"}, {"code": "history-instance"}, {"code": "search-type"}}
	patientParams := []map[string]string{
		{"name": "patient", "type": "reference", "documentation": "the ledger patient id (40 hex) or a FHIR Patient id bound to one at this practice"},
		{"name": "subject", "type": "reference", "documentation": "as patient (Patient references only)"},
		{"name": "_id", "type": "token", "documentation": "with patient: the resource imported under that id, or the record of that ledger id"},
		{"name": "_count", "type": "number", "documentation": fmt.Sprintf("page size, default %d, at most %d", defaultFHIRPage, maxFHIRPage)},
		{"name": "_offset", "type": "number", "documentation": "the position of the page's first match (paging links carry it)"},
	}
	var resources []map[string]any
	for _, t := range v.ResourceTypes() {
		if t == "Bundle" || t == "OperationOutcome" || t == "CapabilityStatement" {
			continue
		}
		res := map[string]any{
			"type": t, "interaction": readOnly, "versioning": "versioned", "readHistory": true,
			"updateCreate": false, "conditionalCreate": false, "conditionalUpdate": false, "conditionalDelete": "not-supported",
		}
		if t == "Patient" {
			res["searchParam"] = []map[string]string{
				{"name": "identifier", "type": "token", "documentation": "system|value of an identifier bound to the ledger patient at this practice, or " + LedgerPatientSystem + "|<ledger patient id>"},
				{"name": "_id", "type": "token", "documentation": "a FHIR Patient id bound to the ledger patient at this practice"},
			}
			res["operation"] = []map[string]string{{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}}
		} else {
			res["searchParam"] = patientParams
		}
		resources = append(resources, res)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         fhirInstant(time.Now()),
		"kind":         "instance",
		"software":     map[string]string{"name": "MedLedger"},
		"implementation": map[string]string{
			"description": "MedLedger node " + a.info.NodeID + ": records readable under the patient's consent, every read audited on the ledger",
			"url":         fhirBase(r),
		},
		// R4. The official R4 JSON schema this node validates with (node/fhir) lists "4.0.0" and
		// not the technical correction 4.0.1 in its enumeration: say what passes its own check.
		"fhirVersion": "4.0.0",
		"format":      []string{"application/fhir+json", "json"},
		"rest": []map[string]any{{
			"mode":          "server",
			"documentation": "Reads need a consent of the patient (or an emergency access) and are logged on the ledger; imports go through the node's import (docs/fhir.md).",
			"security": map[string]any{
				"description": "Authorization: Bearer <the operator token or a staff session token from POST /v1/login>; staff roles as on the own API (docs/api.md, Roles).",
			},
			"resource":    resources,
			"interaction": []map[string]string{{"code": "transaction"}, {"code": "batch"}},
		}},
	}
	writeFHIR(w, http.StatusOK, cs)
}

// recordsOutcome is an OperationOutcome entry of a searchset: what was left out and why.
func recordsOutcome(issues []outcomeIssue) json.RawMessage {
	data, _ := json.Marshal(outcome{ResourceType: "OperationOutcome", Issue: issues})
	return data
}

// importOptions are the own import's options from the query (link, repeatable).
func importOptions(r *http.Request) (records.ImportOptions, error) {
	opts := records.ImportOptions{Links: r.URL.Query()["link"]}
	if len(opts.Links) > 16 {
		return opts, errors.New("at most 16 link parameters")
	}
	return opts, nil
}
