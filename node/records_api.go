package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/records/index"
)

// DefaultPurpose is the purpose of use of a read that names none: treatment (HL7 v3 ActReason).
const DefaultPurpose = "TREAT"

// attachRecords adds the record endpoints (docs/api.md) to the API.
func (a *API) attachRecords(r *records.Service, commits *commitHub) {
	a.records, a.commits = r, commits
	a.handle("POST /v1/patients/{patient}/records", staff.PermImport, a.importRecords)
	a.handle("GET /v1/patients/{patient}/records", staff.PermList, a.listRecords)
	a.handle("GET /v1/patients/{patient}/consents", staff.PermList, a.listConsents)
	a.handle("GET /v1/patients/{patient}/accesses", staff.PermList, a.listAccesses)
	a.handle("GET /v1/patients/{patient}/export", staff.PermRead, a.exportPatient)
	a.handle("GET /v1/records/{id}", staff.PermRead, a.readRecord) // and PermEmergency with emergency=true
	a.handle("POST /v1/records/{id}/amend", staff.PermImport, a.amendRecord)
	a.handle("POST /v1/emergency", staff.PermEmergency, a.emergency)
	a.handle("POST /v1/emergency/cosign", staff.PermCoSign, a.cosignEmergency)
	a.handle("POST /v1/enrolments", staff.PermEnrol, a.enrol)
	a.attachFHIR()
}

// RecordsJSON is the answer listing records (import, amend, list).
type RecordsJSON struct {
	Records any `json:"records"`
	// Next is the after parameter of the next page of a list, empty after the last page.
	Next string `json:"next,omitempty"`
}

// recordError answers a record-service error with its status (recordStatus) and a one-line
// message.
func (a *API) recordError(w http.ResponseWriter, what string, err error) {
	code := recordStatus(err)
	if code == http.StatusInternalServerError {
		a.internal(w, what, err)
		return
	}
	writeError(w, code, strings.ReplaceAll(err.Error(), "\n", "; "))
}

// recordStatus maps a record-service error to an HTTP status, for the own API and the FHIR face
// alike.
func recordStatus(err error) int {
	switch {
	case errors.Is(err, records.ErrInvalidFHIR):
		return http.StatusUnprocessableEntity
	case errors.Is(err, records.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, records.ErrNotRegistered), errors.Is(err, records.ErrCoSignNeeded):
		return http.StatusConflict
	case errors.Is(err, records.ErrRecordNotFound):
		return http.StatusNotFound
	case errors.Is(err, records.ErrRecordErased):
		return http.StatusGone
	case errors.Is(err, records.ErrAccessRefused):
		return http.StatusForbidden
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusGatewayTimeout
	}
	return submitStatus(err)
}

func (a *API) patientParam(w http.ResponseWriter, r *http.Request) (chain.Address, bool) {
	p, err := chain.ParseAddress(r.PathValue("patient"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("patient %q: want a patient id (40 hex digits)", r.PathValue("patient")))
		return p, false
	}
	return p, true
}

// importDeadline bounds an import's answer (sealing, anchoring and waiting for commits), past
// the server's usual write timeout.
const importDeadline = 10 * time.Minute

// importRequest gives an import its own deadline past the server's usual write timeout. An
// import the node started finishes even if the client goes away: its anchors may commit either
// way, and the node must remember what they hold (records.ImportDocument).
func importRequest(w http.ResponseWriter, r *http.Request) (*http.Request, context.CancelFunc) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(importDeadline))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), importDeadline)
	return r.WithContext(ctx), cancel
}

// ImportErrorJSON is the answer to a refused import: the reason on one line and every entry's
// outcome (the refused ones say why).
type ImportErrorJSON struct {
	Error   string                 `json:"error"`
	Entries []records.EntryOutcome `json:"entries"`
}

// ImportProgressJSON is one line of a streamed import (Accept: application/x-ndjson): progress
// lines, then one line with the result (the 201 answer's body, with status 201) or the error
// (ImportErrorJSON's fields, with the status the answer would have had).
type ImportProgressJSON struct {
	Progress *records.ImportProgress `json:"progress,omitempty"`
	Status   int                     `json:"status,omitempty"`
	Result   *records.ImportResult   `json:"result,omitempty"`
	Error    string                  `json:"error,omitempty"`
	Entries  []records.EntryOutcome  `json:"entries,omitempty"`
}

// importRecords imports a FHIR document for the patient (records.ImportDocument). Query: link
// (repeatable: an identifier system|value or Patient/id the operator asserts is this patient).
// With Accept: application/x-ndjson the answer is a stream of ImportProgressJSON lines.
func (a *API) importRecords(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	data, ok := readBody(w, r, a.maxBatchBytes)
	if !ok {
		return
	}
	r, cancel := importRequest(w, r)
	defer cancel()
	opts, err := importOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		a.importStream(w, r, patient, data, opts)
		return
	}
	res, err := a.records.ImportDocument(r.Context(), patient, data, opts)
	if err != nil {
		var ie *records.ImportError
		if errors.As(err, &ie) {
			writeJSON(w, http.StatusUnprocessableEntity, ImportErrorJSON{Error: oneLine(err), Entries: ie.Entries})
			return
		}
		a.recordError(w, "import", err)
		return
	}
	a.notePatient(patient, data)
	writeJSON(w, http.StatusCreated, res)
}

func (a *API) importStream(w http.ResponseWriter, r *http.Request, patient chain.Address, data []byte, opts records.ImportOptions) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	line := func(v ImportProgressJSON) {
		_ = enc.Encode(v)
		_ = rc.Flush()
	}
	opts.Progress = func(p records.ImportProgress) { line(ImportProgressJSON{Progress: &p}) }
	res, err := a.records.ImportDocument(r.Context(), patient, data, opts)
	if err == nil {
		a.notePatient(patient, data)
		line(ImportProgressJSON{Status: http.StatusCreated, Result: res})
		return
	}
	var ie *records.ImportError
	if errors.As(err, &ie) {
		line(ImportProgressJSON{Status: http.StatusUnprocessableEntity, Error: oneLine(err), Entries: ie.Entries})
		return
	}
	// The answer a plain request would have had, as the stream's last line.
	c := &captured{header: http.Header{}}
	a.recordError(c, "import", err)
	var e ErrorJSON
	_ = json.Unmarshal(c.body, &e)
	line(ImportProgressJSON{Status: c.code, Error: e.Error})
}

// notePatient adds the names of an imported document's FHIR Patient to the local directory. The
// import has succeeded by then: a directory that cannot be written costs the practice a name to
// search by, not the records, so it is logged and not refused.
func (a *API) notePatient(patient chain.Address, data []byte) {
	if a.patients == nil {
		return
	}
	if err := a.patients.Note(patient, data); err != nil {
		a.log.Error("api: patient directory", "err", err)
	}
}

// captured is a ResponseWriter that keeps one small answer.
type captured struct {
	header http.Header
	code   int
	body   []byte
}

func (c *captured) Header() http.Header  { return c.header }
func (c *captured) WriteHeader(code int) { c.code = code }
func (c *captured) Write(b []byte) (int, error) {
	c.body = append(c.body, b...)
	return len(b), nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func (a *API) amendRecord(w http.ResponseWriter, r *http.Request) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("record %q: want a record id (64 hex digits)", r.PathValue("id")))
		return
	}
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return
	}
	out, err := a.records.Amend(r.Context(), id, data)
	if err != nil {
		a.recordError(w, "amend", err)
		return
	}
	writeJSON(w, http.StatusCreated, RecordsJSON{Records: []records.ImportedRecord{*out}})
}

// pageParams reads a patient list's page from the query: after (the next cursor of the previous
// page) and limit (default and at most index.MaxPage).
func pageParams(w http.ResponseWriter, r *http.Request) (records.Page, bool) {
	p := records.Page{After: r.URL.Query().Get("after")}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a positive number", l))
			return p, false
		}
		p.Limit = min(n, index.MaxPage)
	}
	return p, true
}

// Patient lists answer one page (at most index.MaxPage entries); "next", when present, is the
// after parameter of the next page.

func (a *API) listRecords(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	page, ok := pageParams(w, r)
	if !ok {
		return
	}
	out, next, err := a.records.ListPage(r.Context(), patient, page)
	if err != nil {
		a.recordError(w, "list records", err)
		return
	}
	writeJSON(w, http.StatusOK, RecordsJSON{Records: out, Next: next})
}

func (a *API) listConsents(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	page, ok := pageParams(w, r)
	if !ok {
		return
	}
	out, next, err := a.records.ConsentsPage(r.Context(), patient, page)
	if err != nil {
		a.recordError(w, "list consents", err)
		return
	}
	if out == nil {
		out = []records.ConsentJSON{}
	}
	writeJSON(w, http.StatusOK, pageJSON("consents", out, next))
}

func (a *API) listAccesses(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	page, ok := pageParams(w, r)
	if !ok {
		return
	}
	out, next, err := a.records.AccessesPage(r.Context(), patient, page)
	if err != nil {
		a.recordError(w, "list accesses", err)
		return
	}
	writeJSON(w, http.StatusOK, pageJSON("accesses", out, next))
}

// pageJSON is a page of a list under name, with the next page's cursor if there is one.
func pageJSON(name string, items any, next string) map[string]any {
	m := map[string]any{name: items}
	if next != "" {
		m["next"] = next
	}
	return m
}

func purposeParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := r.URL.Query().Get("purpose")
	if p == "" {
		p = DefaultPurpose
	}
	if len(p) > chain.MaxPurposeLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("purpose longer than %d bytes", chain.MaxPurposeLen))
		return "", false
	}
	return p, true
}

func (a *API) exportPatient(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	purpose, ok := purposeParam(w, r)
	if !ok {
		return
	}
	data, err := a.records.Export(r.Context(), patient, purpose, string(requestInfoOf(r).role))
	if err != nil {
		a.recordError(w, "export", err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (a *API) readRecord(w http.ResponseWriter, r *http.Request) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("record %q: want a record id (64 hex digits)", r.PathValue("id")))
		return
	}
	purpose, ok := purposeParam(w, r)
	if !ok {
		return
	}
	emergency := false
	switch r.URL.Query().Get("emergency") {
	case "", "false":
	case "true":
		emergency = true
	default:
		writeError(w, http.StatusBadRequest, "emergency: want true or false")
		return
	}
	if emergency {
		requestInfoOf(r).emergency = true
		if !a.permit(w, r, staff.PermEmergency) {
			return
		}
	}
	if emergency && r.URL.Query().Get("purpose") == "" {
		// A break-glass read's purpose is ETREAT unless named, as POST /v1/emergency's is: the
		// access it opened is for that purpose.
		purpose = "ETREAT"
	}
	res, err := a.records.Read(r.Context(), id, purpose, emergency, string(requestInfoOf(r).role))
	if err != nil {
		a.recordError(w, "read record", err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.Header().Set("X-MedLedger-Holder", res.Holder)
	w.Header().Set("X-MedLedger-Record-Version", fmt.Sprint(res.Record.RecVersion))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.JSON)
}

// EmergencyRequest is the body of POST /v1/emergency.
type EmergencyRequest struct {
	// Patient names the patient; or Record names one of their records.
	Patient *chain.Address `json:"patient,omitempty"`
	Record  *chain.Hash    `json:"record,omitempty"`
	Purpose string         `json:"purpose"`
	// ReasonCode is a chain.EmergencyReason by name or number; it goes on the ledger.
	ReasonCode string `json:"reason_code"`
	// Reason is an optional free-text note; it stays in this node's log.
	Reason string `json:"reason,omitempty"`
	// CoSigner and CoSig (hex) are an authority's co-signature from POST /v1/emergency/cosign
	// on its node: needed for a provider's second and later break-glass access in 24 h.
	CoSigner string `json:"co_signer,omitempty"`
	CoSig    string `json:"co_sig,omitempty"`
}

// emergencyTarget parses the reason code and resolves the patient of a break-glass request.
func (a *API) emergencyTarget(w http.ResponseWriter, r *http.Request, patientID *chain.Address, record *chain.Hash, reasonCode string) (chain.Address, chain.EmergencyReason, bool) {
	code, err := chain.ParseEmergencyReason(strings.TrimSpace(reasonCode))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("emergency access needs a reason_code, one of %v", chain.EmergencyReasons()))
		return chain.Address{}, 0, false
	}
	switch {
	case patientID != nil:
		return *patientID, code, true
	case record != nil:
		p, err := a.records.PatientOf(r.Context(), *record)
		if err != nil {
			a.recordError(w, "emergency access", err)
			return chain.Address{}, 0, false
		}
		return p, code, true
	}
	writeError(w, http.StatusBadRequest, `emergency access names a "patient" or a "record"`)
	return chain.Address{}, 0, false
}

func (a *API) emergency(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return
	}
	var req EmergencyRequest
	if err := decodeJSON(data, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Purpose == "" {
		req.Purpose = "ETREAT"
	}
	var e records.Emergency
	if (req.CoSigner == "") != (req.CoSig == "") {
		writeError(w, http.StatusBadRequest, "co_signer and co_sig go together")
		return
	}
	if req.CoSigner != "" {
		var err error
		if e.CoSigner, err = chain.ParsePubKey(req.CoSigner); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("co_signer: want an authority's public key (64 hex digits): %v", err))
			return
		}
		if e.CoSig, err = parseSignature(req.CoSig); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("co_sig: %v", err))
			return
		}
	}
	noteTarget(r, req.Patient, req.Record)
	patient, code, ok := a.emergencyTarget(w, r, req.Patient, req.Record, req.ReasonCode)
	if !ok {
		return
	}
	noteTarget(r, &patient, nil)
	e.Patient, e.Purpose, e.ReasonCode, e.Note = patient, req.Purpose, code, req.Reason
	h, height, err := a.records.EmergencyAccess(r.Context(), e)
	if err != nil {
		a.recordError(w, "emergency access", err)
		return
	}
	writeJSON(w, http.StatusOK, TxAccepted{Hash: h, Height: height})
}

// CoSignRequest is the body of POST /v1/emergency/cosign, on an authority's node: the
// provider's break-glass access to co-sign, as the provider will submit it.
type CoSignRequest struct {
	// Provider is the provider's id (its address).
	Provider chain.Address `json:"provider"`
	// Patient names the patient; or Record names one of their records.
	Patient    *chain.Address `json:"patient,omitempty"`
	Record     *chain.Hash    `json:"record,omitempty"`
	Purpose    string         `json:"purpose"`
	ReasonCode string         `json:"reason_code"`
}

// CoSignJSON is the answer of POST /v1/emergency/cosign: what the provider passes to POST
// /v1/emergency (co_signer, co_sig), and the window and ordinal the co-signature is for.
type CoSignJSON struct {
	CoSigner chain.PubKey `json:"co_signer"`
	CoSig    string       `json:"co_sig"`
	Window   uint64       `json:"window"`
	Ordinal  uint32       `json:"ordinal"`
}

func (a *API) cosignEmergency(w http.ResponseWriter, r *http.Request) {
	if a.coSigner == nil {
		writeError(w, http.StatusForbidden, "this node has no authority key: only an authority's node co-signs break-glass accesses")
		return
	}
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return
	}
	var req CoSignRequest
	if err := decodeJSON(data, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Purpose == "" {
		req.Purpose = "ETREAT"
	}
	noteTarget(r, req.Patient, req.Record)
	patient, code, ok := a.emergencyTarget(w, r, req.Patient, req.Record, req.ReasonCode)
	if !ok {
		return
	}
	noteTarget(r, &patient, nil)
	cs, err := a.records.CoSignEmergency(r.Context(), *a.coSigner, req.Provider, patient, req.Purpose, code)
	if err != nil {
		a.recordError(w, "co-sign emergency access", err)
		return
	}
	writeJSON(w, http.StatusOK, CoSignJSON{CoSigner: cs.CoSigner, CoSig: hex.EncodeToString(cs.CoSig[:]), Window: cs.Window, Ordinal: cs.Ordinal})
}

// parseSignature parses a hex Ed25519 signature.
func parseSignature(s string) (chain.Signature, error) {
	var sig chain.Signature
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(sig) {
		return sig, fmt.Errorf("want a signature (%d hex digits)", 2*len(sig))
	}
	copy(sig[:], b)
	return sig, nil
}
