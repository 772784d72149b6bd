package node

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records"
)

// Searches of the FHIR face: GET /fhir/{type}?patient=… (or subject=), GET
// /fhir/Patient?identifier=… (or _id=), GET /fhir/Patient/{id}/$everything. Matches are the
// current versions of the patient's records (erased ones left out), in anchor order; each one
// on the page is read through the record service. Records this node may not read are left out
// and counted in an OperationOutcome entry (search mode "outcome"): total counts every match on
// the ledger, read or not.

// searchParams are the parameters a search takes besides its own: the page and the format.
var searchParams = []string{"_count", "_offset", "_format"}

// checkParams refuses parameters the face does not implement: ignoring one (code=, date=)
// would answer more than was asked for, which a clinician might not notice.
func checkParams(w http.ResponseWriter, q url.Values, allowed ...string) bool {
	for k := range q {
		if !slices.Contains(allowed, k) && !slices.Contains(searchParams, k) {
			writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("search parameter %q is not supported here: use %s (GET /fhir/metadata)", k, strings.Join(append(allowed, searchParams...), ", ")))
			return false
		}
	}
	return true
}

// pageOf reads _count and _offset.
func pageOf(w http.ResponseWriter, q url.Values) (count, offset int, ok bool) {
	count = defaultFHIRPage
	if s := q.Get("_count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("_count %q: want a positive number", s))
			return 0, 0, false
		}
		count = min(n, maxFHIRPage)
	}
	if s := q.Get("_offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("_offset %q: want a number from 0", s))
			return 0, 0, false
		}
		offset = n
	}
	return count, offset, true
}

// fhirSearch is GET /fhir/{type}: by patient, or for Patient by identifier or id.
func (a *API) fhirSearch(w http.ResponseWriter, r *http.Request) {
	typ, ok := fhirType(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var patients []chain.Address
	if typ == "Patient" {
		if !checkParams(w, q, "identifier", "_id") {
			return
		}
		var name string
		switch ident, id := q.Get("identifier"), q.Get("_id"); {
		case ident != "" && id == "":
			sys, val, found := strings.Cut(ident, "|")
			if !found || val == "" {
				writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("identifier %q: want system|value", ident))
				return
			}
			if sys == LedgerPatientSystem {
				p, err := chain.ParseAddress(val)
				if err != nil {
					writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("identifier %q: a ledger patient id is 40 hex digits", ident))
					return
				}
				patients = []chain.Address{p}
				break
			}
			name = "?identifier=" + ident
		case id != "" && ident == "":
			name = id
		default:
			writeOutcome(w, http.StatusBadRequest, "a Patient search takes one of identifier=system|value or _id=<Patient id>")
			return
		}
		if name != "" {
			p, found, ok := a.onePatient(w, name)
			if !ok {
				return
			}
			if found {
				patients = []chain.Address{p}
			}
		}
	} else {
		if !checkParams(w, q, "patient", "subject", "_id") {
			return
		}
		ref := q.Get("patient")
		if s := q.Get("subject"); s != "" {
			if ref != "" && ref != s {
				writeOutcome(w, http.StatusBadRequest, "patient and subject name different patients")
				return
			}
			ref = s
		}
		if ref == "" {
			writeOutcome(w, http.StatusBadRequest, fmt.Sprintf("a %s search needs patient=<ledger patient id or Patient id>: records are kept per patient", typ))
			return
		}
		p, found, ok := a.fhirPatient(w, ref)
		if !ok {
			return
		}
		if found {
			patients = []chain.Address{p}
		}
		if id := q.Get("_id"); id != "" && found {
			// The patient's resource imported here under typ/id, or the record of that ledger id.
			ms, err := a.records.FindFHIR(r.Context(), typ, id, patients)
			if err != nil {
				a.fhirRecordError(w, "search", err)
				return
			}
			ids := map[chain.Hash]bool{}
			for _, m := range ms {
				ids[m.Latest] = true
			}
			if h, err := chain.ParseHash(id); err == nil {
				ids[h] = true
			}
			a.searchPage(w, r, patients, func(rec records.RecordJSON) bool { return rec.ResourceType == typ && ids[rec.ID] })
			return
		}
	}
	a.searchPage(w, r, patients, func(rec records.RecordJSON) bool { return rec.ResourceType == typ })
}

// fhirEverything is GET /fhir/Patient/{id}/$everything: every record of the patient this node
// may read, a page at a time.
func (a *API) fhirEverything(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r.URL.Query()) {
		return
	}
	p, found, ok := a.fhirPatient(w, r.PathValue("id"))
	if !ok {
		return
	}
	if !found {
		writeOutcome(w, http.StatusNotFound, fmt.Sprintf("Patient/%s: no patient of that id at this practice", r.PathValue("id")))
		return
	}
	noteTarget(r, &p, nil)
	a.searchPage(w, r, []chain.Address{p}, func(records.RecordJSON) bool { return true })
}

// searchPage answers one page of the current records of patients that keep accepts, as a
// searchset Bundle with total and paging links.
func (a *API) searchPage(w http.ResponseWriter, r *http.Request, patients []chain.Address, keep func(records.RecordJSON) bool) {
	count, offset, ok := pageOf(w, r.URL.Query())
	if !ok {
		return
	}
	var matches []records.RecordJSON
	for _, p := range patients {
		list, err := a.records.List(r.Context(), p)
		if err != nil {
			a.fhirRecordError(w, "search", err)
			return
		}
		for _, rec := range list {
			if rec.SupersededBy == nil && !rec.Erased && keep(rec) {
				matches = append(matches, rec)
			}
		}
	}
	if len(patients) == 1 {
		noteTarget(r, &patients[0], nil)
	}
	base := fhirBase(r)
	b := fhirBundle{ResourceType: "Bundle", Type: "searchset", Timestamp: fhirInstant(time.Now()), Total: ptr(len(matches)), Entry: []bundleEntry{}}
	b.Link = pageLinks(base, r, count, offset, len(matches))
	page := matches[min(offset, len(matches)):min(offset+count, len(matches))]
	var refused, unreachable int
	for _, rec := range page {
		body, err := a.readVersion(r, rec)
		switch {
		case errors.Is(err, records.ErrAccessRefused):
			refused++
			continue
		case errors.Is(err, records.ErrRecordNotFound), errors.Is(err, records.ErrRecordErased):
			unreachable++ // no holder answered, or erased since the list
			continue
		case err != nil:
			a.fhirRecordError(w, "search", err)
			return
		}
		id, err := a.faceID(r, rec, body)
		if err != nil {
			a.fhirRecordError(w, "search", err)
			return
		}
		b.Entry = append(b.Entry, bundleEntry{FullURL: base + "/" + rec.ResourceType + "/" + id, Resource: body, Search: &entrySearch{Mode: "match"}})
	}
	var issues []outcomeIssue
	if refused > 0 {
		issues = append(issues, outcomeIssue{Severity: "warning", Code: "suppressed",
			Diagnostics: fmt.Sprintf("%d of the %d records of this page are left out: this practice has no consent of the patient to read them (each refusal is logged on the ledger)", refused, len(page))})
	}
	if unreachable > 0 {
		issues = append(issues, outcomeIssue{Severity: "warning", Code: "incomplete",
			Diagnostics: fmt.Sprintf("%d of the %d records of this page are left out: no node holding them answered, or they were erased meanwhile", unreachable, len(page))})
	}
	if len(issues) > 0 {
		b.Entry = append(b.Entry, bundleEntry{Resource: recordsOutcome(issues), Search: &entrySearch{Mode: "outcome"}})
	}
	writeFHIR(w, http.StatusOK, b)
}

// pageLinks are a searchset's self, first, previous and next links.
func pageLinks(base string, r *http.Request, count, offset, total int) []bundleLink {
	at := func(off int) string {
		q := r.URL.Query()
		q.Del("_format")
		q.Set("_count", strconv.Itoa(count))
		q.Set("_offset", strconv.Itoa(off))
		return base + strings.TrimPrefix(r.URL.Path, fhirPrefix) + "?" + q.Encode()
	}
	links := []bundleLink{{Relation: "self", URL: at(offset)}, {Relation: "first", URL: at(0)}}
	if offset > 0 {
		links = append(links, bundleLink{Relation: "previous", URL: at(max(0, offset-count))})
	}
	if offset+count < total {
		links = append(links, bundleLink{Relation: "next", URL: at(offset + count)})
	}
	return links
}

// faceID is the id under which the face reads a record back: the resource's own id when this
// node's import index resolves it to this record, else the record id (a record another practice
// imported, or a resource without id), so that every fullUrl of a searchset can be read.
func (a *API) faceID(r *http.Request, rec records.RecordJSON, body []byte) (string, error) {
	id := resourceID(body)
	if id == "" {
		return rec.ID.String(), nil
	}
	ms, err := a.records.FindFHIR(r.Context(), rec.ResourceType, id, []chain.Address{rec.Patient})
	if err != nil {
		return "", err
	}
	if len(ms) == 1 && ms[0].Latest == rec.ID {
		return id, nil
	}
	return rec.ID.String(), nil
}
