package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/records/index"
)

// DefaultPurpose is the purpose of use of a read that names none: treatment (HL7 v3 ActReason).
const DefaultPurpose = "TREAT"

// attachRecords adds the record endpoints (docs/api.md) to the API.
func (a *API) attachRecords(r *records.Service, commits *commitHub) {
	a.records, a.commits = r, commits
	a.mux.HandleFunc("POST /v1/patients/{patient}/records", a.importRecords)
	a.mux.HandleFunc("GET /v1/patients/{patient}/records", a.listRecords)
	a.mux.HandleFunc("GET /v1/patients/{patient}/consents", a.listConsents)
	a.mux.HandleFunc("GET /v1/patients/{patient}/accesses", a.listAccesses)
	a.mux.HandleFunc("GET /v1/patients/{patient}/export", a.exportPatient)
	a.mux.HandleFunc("GET /v1/records/{id}", a.readRecord)
	a.mux.HandleFunc("POST /v1/records/{id}/amend", a.amendRecord)
	a.mux.HandleFunc("POST /v1/emergency", a.emergency)
	a.mux.HandleFunc("POST /v1/emergency/cosign", a.cosignEmergency)
	a.mux.HandleFunc("POST /v1/enrolments", a.enrol)
}

// RecordsJSON is the answer listing records (import, amend, list).
type RecordsJSON struct {
	Records any `json:"records"`
	// Next is the after parameter of the next page of a list, empty after the last page.
	Next string `json:"next,omitempty"`
}

// recordStatus maps a record-service error to an HTTP status and a one-line message.
func (a *API) recordError(w http.ResponseWriter, what string, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, records.ErrInvalidFHIR):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, records.ErrBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, records.ErrNotRegistered), errors.Is(err, records.ErrCoSignNeeded):
		code = http.StatusConflict
	case errors.Is(err, records.ErrRecordNotFound):
		code = http.StatusNotFound
	case errors.Is(err, records.ErrRecordErased):
		code = http.StatusGone
	case errors.Is(err, records.ErrAccessRefused):
		code = http.StatusForbidden
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = http.StatusGatewayTimeout
	default:
		if s := submitStatus(err); s != http.StatusInternalServerError {
			code = s
		}
	}
	if code == http.StatusInternalServerError {
		a.internal(w, what, err)
		return
	}
	writeError(w, code, strings.ReplaceAll(err.Error(), "\n", "; "))
}

func (a *API) patientParam(w http.ResponseWriter, r *http.Request) (chain.Address, bool) {
	p, err := chain.ParseAddress(r.PathValue("patient"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("patient %q: want a patient id (40 hex digits)", r.PathValue("patient")))
		return p, false
	}
	return p, true
}

func (a *API) importRecords(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	data, ok := readBody(w, r, a.maxBatchBytes)
	if !ok {
		return
	}
	out, err := a.records.Import(r.Context(), patient, data)
	if err != nil {
		a.recordError(w, "import", err)
		return
	}
	writeJSON(w, http.StatusCreated, RecordsJSON{Records: out})
}

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
	data, err := a.records.Export(r.Context(), patient, purpose)
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
	if emergency && r.URL.Query().Get("purpose") == "" {
		// A break-glass read's purpose is ETREAT unless named, as POST /v1/emergency's is: the
		// access it opened is for that purpose.
		purpose = "ETREAT"
	}
	res, err := a.records.Read(r.Context(), id, purpose, emergency)
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
	patient, code, ok := a.emergencyTarget(w, r, req.Patient, req.Record, req.ReasonCode)
	if !ok {
		return
	}
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
	patient, code, ok := a.emergencyTarget(w, r, req.Patient, req.Record, req.ReasonCode)
	if !ok {
		return
	}
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
