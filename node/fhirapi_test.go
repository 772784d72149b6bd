package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
)

// fhirClient is an EHR's view of the face: every answer must be valid FHIR in
// application/fhir+json.
type fhirClient struct {
	t     *testing.T
	base  string
	token string
	v     *fhir.Validator
}

// fhirAnswer is an answer parsed as FHIR.
type fhirAnswer struct {
	code int
	hdr  http.Header
	body []byte
	obj  map[string]any
}

func (c *fhirClient) do(method, path string, body []byte) fhirAnswer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	require.NoError(c.t, err)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	require.True(c.t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/fhir+json"), "%s %s: Content-Type %q", method, path, resp.Header.Get("Content-Type"))
	require.NoError(c.t, c.v.Check(data), "%s %s answered invalid FHIR: %.2000s", method, path, data)
	a := fhirAnswer{code: resp.StatusCode, hdr: resp.Header, body: data}
	require.NoError(c.t, json.Unmarshal(data, &a.obj))
	return a
}

// want checks the status and the resource type of an answer.
func (a fhirAnswer) want(t *testing.T, code int, resourceType string) fhirAnswer {
	t.Helper()
	require.Equal(t, code, a.code, "%.2000s", a.body)
	require.Equal(t, resourceType, a.obj["resourceType"], "%.2000s", a.body)
	return a
}

// issue is the first issue of an OperationOutcome answer.
func (a fhirAnswer) issue(t *testing.T) map[string]any {
	t.Helper()
	issues, _ := a.obj["issue"].([]any)
	require.NotEmpty(t, issues, "%s", a.body)
	return issues[0].(map[string]any)
}

func (a fhirAnswer) entries() []map[string]any {
	var out []map[string]any
	for _, e := range a.obj["entry"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// matches are the resources of a searchset's match entries.
func (a fhirAnswer) matches() []map[string]any {
	var out []map[string]any
	for _, e := range a.entries() {
		if s, _ := e["search"].(map[string]any); s["mode"] == "match" {
			out = append(out, e["resource"].(map[string]any))
		}
	}
	return out
}

func (a fhirAnswer) link(rel string) string {
	links, _ := a.obj["link"].([]any)
	for _, l := range links {
		if m := l.(map[string]any); m["relation"] == rel {
			return m["url"].(string)
		}
	}
	return ""
}

func versionID(res map[string]any) string { return res["meta"].(map[string]any)["versionId"].(string) }

// TestFHIRFace drives the FHIR face as an EHR client would, with a clinician's session: the
// CapabilityStatement, a transaction, searches with paging, reads with ETags, a changed resource
// re-imported and its history, $everything, erasure, the errors, and another practice's read
// refused for want of consent (and that refusal on the ledger's access log).
func TestFHIRFace(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	p := f.newPatient("fhir", true)
	self := f.keys.ID()
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.json")
	now := time.Now()
	require.NoError(t, staff.Add(usersFile, "carol", staff.RoleClinician, staffPassword, cheapHash, rand.Reader, now))
	require.NoError(t, staff.Add(usersFile, "bob", staff.RoleFrontDesk, staffPassword, cheapHash, rand.Reader, now))
	users, err := staff.NewDirectory(usersFile)
	require.NoError(t, err)
	audit, err := auditlog.Open(filepath.Join(dir, "audit.log"), 0, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = audit.Close() })
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, 4096, 1<<20, f.log)
	api.attachRecords(r.Service, f.commits)
	api.attachStaff(staff.NewGate(users, staff.GateConfig{Sessions: staff.SessionConfig{Idle: 15 * time.Minute, Lifetime: time.Hour}, Hash: cheapHash}), audit)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	v, err := fhir.Shared()
	require.NoError(t, err)
	login := func(name string) string {
		t.Helper()
		body, _ := json.Marshal(LoginRequest{Name: name, Password: staffPassword})
		resp, err := http.Post(srv.URL+"/v1/login", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var l LoginJSON
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
		return l.Token
	}
	ehr := &fhirClient{t: t, base: srv.URL + "/fhir", token: login("carol"), v: v}
	pid := p.id().String()

	// Unauthenticated: 401, as an OperationOutcome.
	anon := &fhirClient{t: t, base: ehr.base, v: v}
	a := anon.do("GET", "/metadata", nil).want(t, http.StatusUnauthorized, "OperationOutcome")
	require.Equal(t, "login", a.issue(t)["code"])
	require.Equal(t, "Bearer", a.hdr.Get("WWW-Authenticate"))

	forged := &fhirClient{t: t, base: ehr.base, token: "mls_" + strings.Repeat("0", 64), v: v}
	forged.do("GET", "/Patient/pat-2", nil).want(t, http.StatusUnauthorized, "OperationOutcome")

	// The CapabilityStatement, in JSON however it is asked for.
	ehr.do("GET", "/metadata?_format=json", nil).want(t, http.StatusOK, "CapabilityStatement")
	ehr.do("GET", "/metadata?_format="+url.QueryEscape("application/fhir+json"), nil).want(t, http.StatusOK, "CapabilityStatement")
	a = ehr.do("GET", "/metadata", nil).want(t, http.StatusOK, "CapabilityStatement")
	require.Equal(t, "4.0.0", a.obj["fhirVersion"])
	rest := a.obj["rest"].([]any)[0].(map[string]any)
	require.Equal(t, "server", rest["mode"])
	require.Contains(t, string(a.body), `"code":"transaction"`)
	require.Contains(t, string(a.body), `"name":"everything"`)

	// A transaction for a patient not bound yet: which ledger patient is not known.
	tx := readTestdata(t, "bundle-transaction.json")
	a = ehr.do("POST", "", tx).want(t, http.StatusUnprocessableEntity, "OperationOutcome")
	require.Contains(t, a.issue(t)["diagnostics"], "?patient=")
	// The front desk may not import, on the face as on the own API.
	desk := &fhirClient{t: t, base: ehr.base, token: login("bob"), v: v}
	a = desk.do("POST", "?patient="+pid, tx).want(t, http.StatusForbidden, "OperationOutcome")
	require.Contains(t, a.issue(t)["diagnostics"], "records.import")

	a = ehr.do("POST", "?patient="+pid, tx).want(t, http.StatusOK, "Bundle")
	require.Equal(t, "transaction-response", a.obj["type"])
	resp := a.entries()
	require.Len(t, resp, 6)
	var obsLocation string
	for i, e := range resp {
		r := e["response"].(map[string]any)
		require.Equal(t, "201 Created", r["status"], "entry %d", i)
		require.Equal(t, `W/"1"`, r["etag"])
		if strings.HasPrefix(r["location"].(string), "Observation/") {
			obsLocation = r["location"].(string)
		}
	}
	require.Equal(t, "Patient/pat-2/_history/1", resp[0]["response"].(map[string]any)["location"])
	require.NotEmpty(t, obsLocation)
	obsPath := "/" + strings.TrimSuffix(obsLocation, "/_history/1") // Observation/<the id the import gave it>

	// Search by patient: the FHIR Patient id or the ledger id, patient= or subject=.
	for _, q := range []string{"patient=Patient/pat-2", "patient=" + pid, "subject=pat-2"} {
		a = ehr.do("GET", "/Observation?"+q, nil).want(t, http.StatusOK, "Bundle")
		require.Equal(t, "searchset", a.obj["type"])
		require.EqualValues(t, 1, a.obj["total"], q)
		m := a.matches()
		require.Len(t, m, 1)
		require.Equal(t, "8310-5", m[0]["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"])
		require.Equal(t, "1", versionID(m[0]))
	}
	a = ehr.do("GET", "/Observation?patient=nobody-here", nil).want(t, http.StatusOK, "Bundle")
	require.EqualValues(t, 0, a.obj["total"])

	// Read, with ETag, Last-Modified and meta.versionId.
	a = ehr.do("GET", "/Patient/pat-2", nil).want(t, http.StatusOK, "Patient")
	require.Equal(t, "pat-2", a.obj["id"])
	require.Equal(t, `W/"1"`, a.hdr.Get("ETag"))
	_, err = http.ParseTime(a.hdr.Get("Last-Modified"))
	require.NoError(t, err)
	require.Equal(t, "1990-02-28", a.obj["birthDate"])
	a = ehr.do("GET", obsPath, nil).want(t, http.StatusOK, "Observation")
	require.Equal(t, strings.TrimPrefix(obsPath, "/Observation/"), a.obj["id"])

	// The changed Patient, re-imported without ?patient=: the Bundle's Patient is bound now.
	changed := bytes.Replace(tx, []byte(`"birthDate": "1990-02-28"`), []byte(`"birthDate": "1990-03-01"`), 1)
	require.NotEqual(t, tx, changed)
	a = ehr.do("POST", "", changed).want(t, http.StatusOK, "Bundle")
	resp = a.entries()
	require.Equal(t, "200 OK", resp[0]["response"].(map[string]any)["status"])
	require.Equal(t, "Patient/pat-2/_history/2", resp[0]["response"].(map[string]any)["location"])
	require.Contains(t, resp[1]["response"].(map[string]any)["outcome"].(map[string]any)["issue"].([]any)[0].(map[string]any)["diagnostics"], "unchanged")

	a = ehr.do("GET", "/Patient/pat-2", nil).want(t, http.StatusOK, "Patient")
	require.Equal(t, `W/"2"`, a.hdr.Get("ETag"))
	require.Equal(t, "1990-03-01", a.obj["birthDate"])
	a = ehr.do("GET", "/Patient/pat-2/_history", nil).want(t, http.StatusOK, "Bundle")
	require.Equal(t, "history", a.obj["type"])
	require.EqualValues(t, 2, a.obj["total"])
	hist := a.entries()
	require.Equal(t, "2", versionID(hist[0]["resource"].(map[string]any)))
	require.Equal(t, "1990-03-01", hist[0]["resource"].(map[string]any)["birthDate"])
	require.Equal(t, "1990-02-28", hist[1]["resource"].(map[string]any)["birthDate"])
	require.Equal(t, "POST", hist[1]["request"].(map[string]any)["method"])
	a = ehr.do("GET", "/Patient/pat-2/_history/1", nil).want(t, http.StatusOK, "Patient")
	require.Equal(t, `W/"1"`, a.hdr.Get("ETag"))
	require.Equal(t, "1990-02-28", a.obj["birthDate"])
	ehr.do("GET", "/Patient/pat-2/_history/3", nil).want(t, http.StatusNotFound, "OperationOutcome")

	// Finding the patient: by Patient id, by the ledger id as an identifier.
	a = ehr.do("GET", "/Patient?_id=pat-2", nil).want(t, http.StatusOK, "Bundle")
	require.Len(t, a.matches(), 1)
	a = ehr.do("GET", "/Patient?identifier="+url.QueryEscape(LedgerPatientSystem+"|"+pid), nil).want(t, http.StatusOK, "Bundle")
	require.Len(t, a.matches(), 1)
	require.Equal(t, "pat-2", a.matches()[0]["id"])

	// $everything, two at a time, following the next links.
	var all []map[string]any
	next := "/Patient/pat-2/$everything?_count=2"
	for pages := 0; next != ""; pages++ {
		require.Less(t, pages, 4)
		a = ehr.do("GET", next, nil).want(t, http.StatusOK, "Bundle")
		require.EqualValues(t, 6, a.obj["total"])
		require.LessOrEqual(t, len(a.matches()), 2)
		all = append(all, a.matches()...)
		for _, e := range a.entries() {
			if e["search"].(map[string]any)["mode"] != "match" {
				continue
			}
			// Every fullUrl reads back the same resource.
			res := e["resource"].(map[string]any)
			back := ehr.do("GET", strings.TrimPrefix(e["fullUrl"].(string), ehr.base), nil).want(t, http.StatusOK, res["resourceType"].(string))
			require.Equal(t, res["id"], back.obj["id"])
		}
		next = strings.TrimPrefix(a.link("next"), ehr.base)
	}
	require.Len(t, all, 6)
	types := map[string]bool{}
	for _, res := range all {
		types[res["resourceType"].(string)] = true
	}
	require.Len(t, types, 6, "one of each resource of the transaction, at its current version")

	// Errors: wrong method, unknown type, unknown id, unsupported parameter and format.
	a = ehr.do("PUT", "/Patient/pat-2", []byte(`{}`)).want(t, http.StatusMethodNotAllowed, "OperationOutcome")
	require.Contains(t, a.hdr.Get("Allow"), "GET")
	ehr.do("DELETE", obsPath, nil).want(t, http.StatusMethodNotAllowed, "OperationOutcome")
	a = ehr.do("GET", "/Spaceship/1", nil).want(t, http.StatusNotFound, "OperationOutcome")
	require.Equal(t, "not-found", a.issue(t)["code"])
	ehr.do("GET", "/Observation/no-such-id", nil).want(t, http.StatusNotFound, "OperationOutcome")
	ehr.do("GET", "/Observation?patient=pat-2&code=8310-5", nil).want(t, http.StatusBadRequest, "OperationOutcome")
	ehr.do("GET", "/Observation", nil).want(t, http.StatusBadRequest, "OperationOutcome")
	ehr.do("GET", "/metadata?_format=xml", nil).want(t, http.StatusNotAcceptable, "OperationOutcome")
	req, err := http.NewRequest("POST", ehr.base+"?patient="+pid, bytes.NewReader(tx))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+ehr.token)
	req.Header.Set("Content-Type", "application/xml")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	unsupported, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusUnsupportedMediaType, res.StatusCode)
	require.NoError(t, v.Check(unsupported))
	require.Contains(t, string(unsupported), `"resourceType":"OperationOutcome"`)
	a = ehr.do("POST", "?patient="+pid, readTestdata(t, "observation.json")).want(t, http.StatusBadRequest, "OperationOutcome")
	require.Contains(t, a.issue(t)["diagnostics"], "transaction or batch")

	// A batch (Medplum's chart demo: POSTs without ids, a Patient without identifiers) for
	// another patient, named by ?patient=: a batch-response, entry by entry.
	q := f.newPatient("medplum", true)
	medplum := readTestdata(t, "real/medplum-chart-demo-patient.json")
	a = ehr.do("POST", "", medplum).want(t, http.StatusUnprocessableEntity, "OperationOutcome")
	require.Contains(t, a.issue(t)["diagnostics"], "no Patient with an id or identifier")
	a = ehr.do("POST", "?patient="+q.id().String(), medplum).want(t, http.StatusOK, "Bundle")
	require.Equal(t, "batch-response", a.obj["type"])
	require.Len(t, a.entries(), 26)
	for i, e := range a.entries() {
		status := e["response"].(map[string]any)["status"]
		require.Contains(t, []any{"201 Created", "200 OK"}, status, "entry %d", i)
	}
	// A batch the import refuses: the refused entry says why, the others were not imported.
	badBatch := []byte(`{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"DELETE","url":"Condition/old"}},
		{"resource":{"resourceType":"Condition","id":"c-9","code":{"text":"x"},"subject":{"reference":"Patient/pat-2"}},"request":{"method":"PUT","url":"Condition/c-9"}}]}`)
	a = ehr.do("POST", "?patient=pat-2", badBatch).want(t, http.StatusOK, "Bundle")
	require.Equal(t, "batch-response", a.obj["type"])
	bad := a.entries()
	require.Equal(t, "422 Unprocessable Entity", bad[0]["response"].(map[string]any)["status"])
	require.Contains(t, string(a.body), "DELETE Condition/old is not applied")
	require.Equal(t, "424 Failed Dependency", bad[1]["response"].(map[string]any)["status"])
	ehr.do("GET", "/Condition/c-9", nil).want(t, http.StatusNotFound, "OperationOutcome")
	// The same as a transaction: one OperationOutcome locating the refused entry.
	badTx := bytes.Replace(badBatch, []byte(`"type":"batch"`), []byte(`"type":"transaction"`), 1)
	a = ehr.do("POST", "?patient=pat-2", badTx).want(t, http.StatusUnprocessableEntity, "OperationOutcome")
	require.Equal(t, []any{"Bundle.entry[0]"}, a.issue(t)["expression"])

	// Another practice, without the patient's consent: refused (403, no content), and the
	// refusal is on the ledger's access log.
	other := f.otherPractice(t, "other")
	ap := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWother", Provider: ptr(other.ProviderID())}, testToken, 4096, 1<<20, f.log)
	ap.attachRecords(other, f.commits)
	srv2 := httptest.NewServer(ap)
	t.Cleanup(srv2.Close)
	ehr2 := &fhirClient{t: t, base: srv2.URL + "/fhir", token: testToken, v: v}
	obsRecord, err := chain.ParseHash(strings.TrimPrefix(obsPath, "/Observation/"))
	require.NoError(t, err)
	a = ehr2.do("GET", obsPath, nil).want(t, http.StatusForbidden, "OperationOutcome")
	require.Equal(t, "forbidden", a.issue(t)["code"])
	require.NotContains(t, string(a.body), "38.7")
	require.NotContains(t, string(a.body), "8310-5")
	f.waitFor("the refusal on the ledger", func() bool {
		acc, err := r.Accesses(context.Background(), p.id())
		require.NoError(t, err)
		for _, e := range acc {
			if e.Record == obsRecord && e.Accessor == other.ProviderID() && e.Outcome == chain.AccessRefused.String() {
				return true
			}
		}
		return false
	})
	a = ehr2.do("GET", "/Observation?patient="+pid, nil).want(t, http.StatusOK, "Bundle")
	require.EqualValues(t, 1, a.obj["total"])
	require.Empty(t, a.matches())
	last := a.entries()[len(a.entries())-1]
	require.Equal(t, "outcome", last["search"].(map[string]any)["mode"])
	require.Contains(t, string(a.body), "suppressed")
	require.NotContains(t, string(a.body), "38.7")

	// Erased at the patient's request: 410.
	f.erase(p, obsRecord)
	f.waitFor("the erasure", func() bool { return f.record(obsRecord).Erased })
	ehr.do("GET", obsPath, nil).want(t, http.StatusGone, "OperationOutcome")
	a = ehr.do("GET", "/Patient/pat-2/$everything", nil).want(t, http.StatusOK, "Bundle")
	require.EqualValues(t, 5, a.obj["total"])

	// The same transaction for another ledger patient: pat-2 now names two patients here. A
	// read by Type/id says so (409), and a Bundle that does not name its patient is refused.
	twin := f.newPatient("twin", true)
	ehr.do("POST", "?patient="+twin.id().String(), tx).want(t, http.StatusOK, "Bundle")
	a = ehr.do("GET", "/Patient/pat-2", nil).want(t, http.StatusConflict, "OperationOutcome")
	require.Equal(t, "multiple-matches", a.issue(t)["code"])
	a = ehr.do("POST", "", tx).want(t, http.StatusUnprocessableEntity, "OperationOutcome")
	require.Equal(t, "multiple-matches", a.issue(t)["code"])
	ehr.do("GET", "/Observation?patient=pat-2", nil).want(t, http.StatusBadRequest, "OperationOutcome")
	a = ehr.do("GET", "/Observation?patient="+twin.id().String(), nil).want(t, http.StatusOK, "Bundle")
	require.Len(t, a.matches(), 1)
	a = ehr.do("GET", "/Patient?_id=pat-2", nil).want(t, http.StatusBadRequest, "OperationOutcome")
	require.Equal(t, "multiple-matches", a.issue(t)["code"])
	// The 409's advice: the patient's resource by _id.
	a = ehr.do("GET", "/Patient?patient="+twin.id().String()+"&_id=pat-2", nil)
	require.Equal(t, http.StatusBadRequest, a.code, "Patient searches take identifier or _id, not patient")
	a = ehr.do("GET", "/Condition?patient="+twin.id().String()+"&_id=nope", nil).want(t, http.StatusOK, "Bundle")
	require.EqualValues(t, 0, a.obj["total"])
	a = ehr.do("GET", "/Encounter?patient="+twin.id().String(), nil).want(t, http.StatusOK, "Bundle")
	encID := a.matches()[0]["id"].(string)
	a = ehr.do("GET", "/Encounter?patient="+twin.id().String()+"&_id="+encID, nil).want(t, http.StatusOK, "Bundle")
	require.EqualValues(t, 1, a.obj["total"])
	require.Equal(t, encID, a.matches()[0]["id"])

	// Every request went to the local audit log, as the clinician.
	tail, err := audit.Tail(200)
	require.NoError(t, err)
	var fhirReads int
	for _, e := range tail {
		if strings.HasPrefix(e.Path, "/fhir/Patient/pat-2") && e.User == "carol" && e.Status == http.StatusOK {
			fhirReads++
			require.Equal(t, pid, e.Patient, "%+v", e)
		}
	}
	require.GreaterOrEqual(t, fhirReads, 5)
}

// otherPractice runs a second record service on the fixture's ledger: another registered
// practice, with its own keys, blobs and node key.
func (f *recFixture) otherPractice(t *testing.T, name string) *records.Service {
	t.Helper()
	keys := f.newProviderKeys(name)
	dir := t.TempDir()
	nodeKey := chain.PubKey{0x6f, byte(len(name))}
	lic := f.licence(keys)
	lic.NodeKey = nodeKey
	lic.Sign(f.licKey, f.g.ChainID)
	licFile := filepath.Join(dir, "licence")
	require.NoError(t, WriteLicenceFile(licFile, &lic))
	s, err := records.New(records.Config{
		ChainID: f.g.ChainID, Keys: keys, Ledger: newLedger(f.runner, f.commits), Net: f.net, BlobDir: filepath.Join(dir, "blobs"),
		LicenceFile: licFile, ReadLicence: ReadLicenceFile, Log: f.log, NodeKey: nodeKey,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	f.run(s)
	f.waitFor(name+" registered", func() bool { return f.provider(keys.ID()) != nil })
	return s
}
