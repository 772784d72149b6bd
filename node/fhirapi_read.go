package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records"
)

// Reads of the FHIR face: read, vread, history, search by patient, Patient/$everything. Each
// resource comes from records.Service.Read (consent-checked, audited on the ledger).

// Bundle (FHIR R4) as the face writes it.
type (
	fhirBundle struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Timestamp    string        `json:"timestamp,omitempty"`
		Total        *int          `json:"total,omitempty"`
		Link         []bundleLink  `json:"link,omitempty"`
		Entry        []bundleEntry `json:"entry,omitempty"`
	}
	bundleLink struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	}
	bundleEntry struct {
		FullURL  string          `json:"fullUrl,omitempty"`
		Resource json.RawMessage `json:"resource,omitempty"`
		Search   *entrySearch    `json:"search,omitempty"`
		Request  *entryRequest   `json:"request,omitempty"`
		Response *entryResponse  `json:"response,omitempty"`
	}
	entrySearch struct {
		Mode string `json:"mode"`
	}
	entryRequest struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	entryResponse struct {
		Status       string          `json:"status"`
		Location     string          `json:"location,omitempty"`
		Etag         string          `json:"etag,omitempty"`
		LastModified string          `json:"lastModified,omitempty"`
		Outcome      json.RawMessage `json:"outcome,omitempty"`
	}
)

// fhirType checks the {type} of a path against the resource types FHIR R4 defines; an unknown
// one is 404 (there is no such endpoint).
func fhirType(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("type")
	if types, err := resourceTypes(); err == nil && types[t] && t != "Bundle" {
		return t, true
	}
	writeOutcome(w, http.StatusNotFound, fmt.Sprintf("unknown resource type %q: not a FHIR R4 resource type served here (GET /fhir/metadata)", t))
	return "", false
}

// resourceTypes is the set of FHIR R4 resource types, read once from the validator's schema.
var resourceTypes = sync.OnceValues(func() (map[string]bool, error) {
	v, err := fhir.Shared()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, t := range v.ResourceTypes() {
		set[t] = true
	}
	return set, nil
})

// fhirID checks a logical id's syntax (FHIR's id type).
func fhirID(w http.ResponseWriter, id string) bool {
	if id == "" || len(id) > 64 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
		writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("id %q: want a FHIR id (1 to 64 of A-Z, a-z, 0-9, '-', '.')", id))
		return false
	}
	return true
}

// withMeta returns the stored resource with meta.versionId and meta.lastUpdated set from the
// ledger's version of it: the face's versions are the ledger's, whatever the sender wrote.
func withMeta(raw []byte, rec records.RecordJSON) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("stored resource: %w", err)
	}
	meta := map[string]json.RawMessage{}
	if m, ok := obj["meta"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, fmt.Errorf("stored resource's meta: %w", err)
		}
	}
	meta["versionId"], _ = json.Marshal(strconv.FormatUint(rec.Version, 10))
	meta["lastUpdated"], _ = json.Marshal(recordInstant(rec))
	var err error
	if obj["meta"], err = json.Marshal(meta); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

// recordInstant is the time a record version was anchored, as a FHIR instant.
func recordInstant(rec records.RecordJSON) string {
	t, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil {
		return rec.Time
	}
	return fhirInstant(t)
}

func etag(rec records.RecordJSON) string {
	return fmt.Sprintf("W/%q", strconv.FormatUint(rec.Version, 10))
}

// resourceID is the id a stored resource carries ("" if none).
func resourceID(raw []byte) string {
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &head)
	return head.ID
}

// readVersion reads one record version through the record service (consent, audit) and
// returns the resource with its ledger meta.
func (a *API) readVersion(r *http.Request, rec records.RecordJSON) ([]byte, error) {
	noteTarget(r, &rec.Patient, &rec.ID)
	res, err := a.records.Read(r.Context(), rec.ID, DefaultPurpose, false, string(requestInfoOf(r).role))
	if err != nil {
		return nil, err
	}
	return withMeta(res.JSON, rec)
}

// resolveResource finds the record holding typ/id: the resource this node imported under that
// Type/id (the import's index), or else a record of that type whose ledger id is id (how a
// record another practice imported is named, docs/fhir.md). It answers the request on failure.
func (a *API) resolveResource(w http.ResponseWriter, r *http.Request, typ, id string) (chain.Hash, bool) {
	matches, err := a.records.FindFHIR(r.Context(), typ, id, nil)
	if err != nil {
		a.fhirRecordError(w, "read", err)
		return chain.Hash{}, false
	}
	switch len(matches) {
	case 1:
		noteTarget(r, &matches[0].Patient, &matches[0].Latest)
		return matches[0].Latest, true
	case 0:
	default:
		writeFHIR(w, http.StatusConflict, outcome{ResourceType: "OperationOutcome", Issue: []outcomeIssue{{Severity: "error", Code: "multiple-matches",
			Diagnostics: fmt.Sprintf("%s/%s names resources of %d patients at this node: search with GET /fhir/%s?patient=<ledger patient id>&_id=%s", typ, id, len(matches), typ, id)}}})
		return chain.Hash{}, false
	}
	if h, err := chain.ParseHash(id); err == nil {
		if p, err := a.records.PatientOf(r.Context(), h); err == nil {
			// An erased record's type is wiped from the ledger with its contents: the id alone
			// says it is gone (410), whatever type was asked for.
			if vs, err := a.records.Versions(r.Context(), h); err == nil && (vs[len(vs)-1].ResourceType == typ || vs[len(vs)-1].Erased) {
				noteTarget(r, &p, &h)
				return vs[len(vs)-1].ID, true
			}
		}
	}
	writeOutcome(w, http.StatusNotFound, fmt.Sprintf("%s/%s not found: no resource imported here under that id, and no %s record with that ledger id", typ, id, typ))
	return chain.Hash{}, false
}

// fhirRead is GET /fhir/{type}/{id}: the resource's current version.
func (a *API) fhirRead(w http.ResponseWriter, r *http.Request) {
	typ, ok := fhirType(w, r)
	if !ok || !fhirID(w, r.PathValue("id")) {
		return
	}
	latest, ok := a.resolveResource(w, r, typ, r.PathValue("id"))
	if !ok {
		return
	}
	vs, err := a.records.Versions(r.Context(), latest)
	if err != nil {
		a.fhirRecordError(w, "read", err)
		return
	}
	a.serveVersion(w, r, vs[len(vs)-1])
}

// serveVersion answers one version: 410 if erased, else the resource with ETag and
// Last-Modified.
func (a *API) serveVersion(w http.ResponseWriter, r *http.Request, rec records.RecordJSON) {
	if rec.Erased {
		noteTarget(r, &rec.Patient, &rec.ID)
		writeOutcome(w, http.StatusGone, fmt.Sprintf("version %d of this resource was erased at the patient's request", rec.Version))
		return
	}
	body, err := a.readVersion(r, rec)
	if err != nil {
		a.fhirRecordError(w, "read", err)
		return
	}
	w.Header().Set("ETag", etag(rec))
	if t, err := time.Parse(time.RFC3339Nano, rec.Time); err == nil {
		w.Header().Set("Last-Modified", t.UTC().Format(http.TimeFormat))
	}
	w.Header().Set("X-MedLedger-Record", rec.ID.String())
	writeFHIR(w, http.StatusOK, body)
}

// fhirVersion is GET /fhir/{type}/{id}/_history/{vid} (vread): vid is the ledger's version.
func (a *API) fhirVersion(w http.ResponseWriter, r *http.Request) {
	typ, ok := fhirType(w, r)
	if !ok || !fhirID(w, r.PathValue("id")) {
		return
	}
	vid, err := strconv.ParseUint(r.PathValue("vid"), 10, 64)
	if err != nil || vid == 0 {
		writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("version %q: want a version number (1, 2, …)", r.PathValue("vid")))
		return
	}
	latest, ok := a.resolveResource(w, r, typ, r.PathValue("id"))
	if !ok {
		return
	}
	vs, err := a.records.Versions(r.Context(), latest)
	if err != nil {
		a.fhirRecordError(w, "vread", err)
		return
	}
	for _, v := range vs {
		if v.Version == vid {
			a.serveVersion(w, r, v)
			return
		}
	}
	writeOutcome(w, http.StatusNotFound, fmt.Sprintf("%s/%s has no version %d (it has %d)", typ, r.PathValue("id"), vid, len(vs)))
}

// fhirOperation is GET /fhir/{type}/{id}/{op}: _history or Patient/$everything.
func (a *API) fhirOperation(w http.ResponseWriter, r *http.Request) {
	typ, ok := fhirType(w, r)
	if !ok || !fhirID(w, r.PathValue("id")) {
		return
	}
	switch op := r.PathValue("op"); {
	case op == "_history":
		a.fhirHistory(w, r, typ)
	case op == "$everything" && typ == "Patient":
		a.fhirEverything(w, r)
	default:
		writeOutcome(w, http.StatusNotFound, fmt.Sprintf("no operation %s on %s (GET /fhir/metadata)", op, typ))
	}
}

// fhirHistory is GET /fhir/{type}/{id}/_history: every version, newest first, as a history
// Bundle. An erased version is a DELETE entry (410), one this node may not read an entry whose
// response is 403 with the reason (no content).
func (a *API) fhirHistory(w http.ResponseWriter, r *http.Request, typ string) {
	id := r.PathValue("id")
	latest, ok := a.resolveResource(w, r, typ, id)
	if !ok {
		return
	}
	vs, err := a.records.Versions(r.Context(), latest)
	if err != nil {
		a.fhirRecordError(w, "history", err)
		return
	}
	base := fhirBase(r)
	b := fhirBundle{ResourceType: "Bundle", Type: "history", Timestamp: fhirInstant(time.Now()), Total: ptr(len(vs)),
		Link: []bundleLink{{Relation: "self", URL: base + "/" + typ + "/" + id + "/_history"}}}
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		e := bundleEntry{FullURL: base + "/" + typ + "/" + id, Request: &entryRequest{Method: "PUT", URL: typ + "/" + id},
			Response: &entryResponse{Status: "200 OK", Etag: etag(v), LastModified: recordInstant(v)}}
		if v.Version == 1 {
			e.Request.Method, e.Request.URL, e.Response.Status = "POST", typ, "201 Created"
		}
		switch body, err := a.readVersionUnlessErased(r, v); {
		case errors.Is(err, records.ErrRecordErased):
			e.Request = &entryRequest{Method: "DELETE", URL: typ + "/" + id}
			e.Response = &entryResponse{Status: "410 Gone", LastModified: recordInstant(v)}
		case err != nil && recordStatus(err) < 500:
			code := recordStatus(err)
			e.Response = &entryResponse{Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Etag: etag(v), Outcome: outcomeJSON(code, oneLine(err))}
		case err != nil:
			a.fhirRecordError(w, "history", err)
			return
		default:
			e.Resource = body
		}
		b.Entry = append(b.Entry, e)
	}
	writeFHIR(w, http.StatusOK, b)
}

func (a *API) readVersionUnlessErased(r *http.Request, v records.RecordJSON) ([]byte, error) {
	if v.Erased {
		return nil, records.ErrRecordErased
	}
	return a.readVersion(r, v)
}

func ptr[T any](v T) *T { return &v }

// fhirPatient resolves a patient reference of a search or operation: a ledger patient id (40
// hex), or a FHIR Patient id ("pat-1", "Patient/pat-1", a URL ending in /Patient/pat-1) bound to
// exactly one ledger patient at this practice. ok false: answered (400 for an ambiguous name);
// found false: no such patient here.
func (a *API) fhirPatient(w http.ResponseWriter, ref string) (p chain.Address, found, ok bool) {
	ref = strings.TrimSpace(ref)
	if i := strings.LastIndex(ref, "Patient/"); i >= 0 {
		ref = ref[i+len("Patient/"):]
	}
	if p, err := chain.ParseAddress(ref); err == nil {
		return p, true, true
	}
	if ref == "" || strings.ContainsAny(ref, "/?|") {
		writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("patient %q: want a ledger patient id (40 hex) or a Patient id", ref))
		return p, false, false
	}
	return a.onePatient(w, ref)
}

// onePatient finds the one ledger patient whose binding holds name.
func (a *API) onePatient(w http.ResponseWriter, name string) (p chain.Address, found, ok bool) {
	ps, err := a.records.PatientsNamed(name)
	if err != nil {
		a.fhirRecordError(w, "patient", err)
		return p, false, false
	}
	switch len(ps) {
	case 0:
		return p, false, true
	case 1:
		return ps[0], true, true
	}
	writeFHIR(w, http.StatusBadRequest, outcome{ResourceType: "OperationOutcome", Issue: []outcomeIssue{{Severity: "error", Code: "multiple-matches",
		Diagnostics: fmt.Sprintf("%d ledger patients at this practice go by that name: name one by its ledger patient id (40 hex)", len(ps))}}})
	return p, false, false
}
