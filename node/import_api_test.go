package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records"
)

// TestImportAPI drives POST /v1/patients/{patient}/records with real-world documents: per-entry
// answers, idempotence, versions, the patient binding and its links, refused methods, the
// streamed progress, and an export without repeated Type/ids.
func TestImportAPI(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	p := f.newPatient("ips", true)
	q := f.newPatient("medplum", true)
	self := f.keys.ID()
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, 4096, 1<<20, f.log)
	api.attachRecords(r.Service, f.commits)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	do := func(method, path string, body []byte, accept string) apiAnswer {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return apiAnswer{resp.StatusCode, resp.Header, data}
	}
	result := func(a apiAnswer, code int) records.ImportResult {
		t.Helper()
		require.Equal(t, code, a.code, "%s", a.body)
		var res records.ImportResult
		require.NoError(t, json.Unmarshal(a.body, &res))
		return res
	}
	refusal := func(a apiAnswer) ImportErrorJSON {
		t.Helper()
		require.Equal(t, http.StatusUnprocessableEntity, a.code, "%s", a.body)
		a.errorLine(t)
		var e ImportErrorJSON
		require.NoError(t, json.Unmarshal(a.body, &e))
		return e
	}
	pp := "/v1/patients/" + p.id().String() + "/records"

	// An IPS document: every entry a record, Practitioner, Organization and Medication included.
	ips := readTestdata(t, "real/ips-bundle-minimal.json")
	first := result(do("POST", pp, ips, ""), http.StatusCreated)
	require.Len(t, first.Records, 8)
	for _, e := range first.Entries {
		require.Equal(t, records.OutcomeCreated, e.Outcome, "%+v", e)
		require.NotEmpty(t, e.Record)
	}
	// Again: nothing new.
	again := result(do("POST", pp, ips, ""), http.StatusCreated)
	require.Equal(t, first.Records, again.Records)
	for _, e := range again.Entries {
		require.Equal(t, records.OutcomeUnchanged, e.Outcome, "%+v", e)
	}

	// Another person (observation.json is about Patient/pat-1): refused, entry by entry.
	obs := readTestdata(t, "observation.json")
	e := refusal(do("POST", pp, obs, ""))
	require.Len(t, e.Entries, 1)
	require.Equal(t, records.OutcomeRefused, e.Entries[0].Outcome)
	require.Contains(t, e.Entries[0].Message, "refers to Patient/pat-1, another person")
	require.Contains(t, e.Error, "another person")
	// Linked by the operator: imported; a changed copy becomes version 2.
	linked := result(do("POST", pp+"?link="+url.QueryEscape("Patient/pat-1"), obs, ""), http.StatusCreated)
	require.Equal(t, records.OutcomeCreated, linked.Entries[0].Outcome)
	changed := bytes.Replace(obs, []byte(`"value": 132`), []byte(`"value": 150`), 1)
	v2 := result(do("POST", pp, changed, ""), http.StatusCreated)
	require.Equal(t, records.OutcomeUpdated, v2.Entries[0].Outcome)
	require.Equal(t, uint64(2), v2.Records[0].Version)
	a := do("POST", pp+"?link=nonsense", obs, "")
	require.Equal(t, http.StatusBadRequest, a.code, "%s", a.body)

	// A transaction with a DELETE and a GET: both named with their method, nothing imported.
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"DELETE","url":"Condition/old"}},
		{"request":{"method":"GET","url":"Patient/pat-1"}},
		{"resource":{"resourceType":"Condition","id":"new","code":{"text":"x"},"subject":{"reference":"Patient/pat-1"}},"request":{"method":"PUT","url":"Condition/new"}}]}`)
	e = refusal(do("POST", pp, tx, ""))
	require.Len(t, e.Entries, 3)
	require.Equal(t, "DELETE", e.Entries[0].Method)
	require.Contains(t, e.Entries[0].Message, "DELETE Condition/old is not applied")
	require.Contains(t, e.Entries[1].Message, "GET Patient/pat-1 reads")
	require.Equal(t, records.OutcomeNotImported, e.Entries[2].Outcome, "the valid entry is not refused, only not imported")
	require.NotContains(t, e.Error, "invalid FHIR: fhir:")

	// The export holds each Type/id once, at its current version.
	a = do("GET", "/v1/patients/"+p.id().String()+"/export", nil, "")
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	v, err := fhir.Shared()
	require.NoError(t, err)
	doc, err := v.ParseDocument(a.body)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, en := range doc.Entries {
		require.False(t, seen[en.Resource.Name()], "%s twice", en.Resource.Name())
		seen[en.Resource.Name()] = true
	}
	require.True(t, seen["Observation/obs-bp-1"])

	// Streamed: progress lines, then the result.
	a = do("POST", "/v1/patients/"+q.id().String()+"/records", readTestdata(t, "real/medplum-chart-demo-patient.json"), "application/x-ndjson")
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	require.Equal(t, "application/x-ndjson", a.hdr.Get("Content-Type"))
	var lines []ImportProgressJSON
	sc := bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l ImportProgressJSON
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		lines = append(lines, l)
	}
	require.GreaterOrEqual(t, len(lines), 4)
	require.Equal(t, "validated", lines[0].Progress.Phase)
	end := lines[len(lines)-1]
	require.Equal(t, http.StatusCreated, end.Status)
	require.Len(t, end.Result.Records, 26)
	prev := lines[len(lines)-2].Progress
	require.Equal(t, records.ImportProgress{Phase: "anchored", Done: 26, Total: 26}, *prev)

	// Streamed refusal: the last line carries the status and the entries.
	a = do("POST", "/v1/patients/"+q.id().String()+"/records", ips, "application/x-ndjson")
	require.Equal(t, http.StatusOK, a.code)
	sc = bufio.NewScanner(bytes.NewReader(a.body))
	sc.Buffer(nil, 1<<20)
	var l ImportProgressJSON
	for sc.Scan() {
		l = ImportProgressJSON{}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
	}
	require.Equal(t, http.StatusUnprocessableEntity, l.Status)
	require.Contains(t, l.Error, "another person")
	require.NotEmpty(t, l.Entries)
}
