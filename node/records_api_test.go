package node

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records"
	"github.com/stretchr/testify/require"
)

// randomHash is a fresh random hash.
func randomHash(t *testing.T) chain.Hash {
	var h chain.Hash
	_, err := rand.Read(h[:])
	require.NoError(t, err)
	return h
}

// stored is the resources of a document as an import stores them: parsed, and rewritten to stand
// alone (the test documents give every resource an id).
func stored(t *testing.T, data []byte) []fhir.Resource {
	t.Helper()
	v, err := fhir.NewValidator()
	require.NoError(t, err)
	res, err := v.Parse(data)
	require.NoError(t, err)
	res, err = fhir.Standalone(res, func(i int) string { t.Fatalf("resource %d has no id", i); return "" })
	require.NoError(t, err)
	return res
}

// apiAnswer is one HTTP answer.
type apiAnswer struct {
	code int
	hdr  http.Header
	body []byte
}

// errorLine checks the answer is a one-line JSON error and returns its message.
func (a apiAnswer) errorLine(t *testing.T) string {
	t.Helper()
	require.Equal(t, "application/json", a.hdr.Get("Content-Type"))
	require.True(t, bytes.HasSuffix(a.body, []byte("\n")))
	require.Equal(t, 1, bytes.Count(a.body, []byte("\n")), "error answer %q is not one line", a.body)
	var e ErrorJSON
	require.NoError(t, json.Unmarshal(a.body, &e))
	require.NotEmpty(t, e.Error)
	require.NotContains(t, e.Error, "\n")
	return e.Error
}

// TestRecordAPI drives the record endpoints over a running record service, which reaches the
// ledger through the node's adapter (records.Ledger over the Runner).
func TestRecordAPI(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	p := f.newPatient("carol", true)
	stranger := f.newPatient("dora", false)
	self := f.keys.ID()
	const maxBody, maxBatch = 4096, 8 << 10
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, maxBody, maxBatch, f.log)
	api.attachRecords(r.Service, f.commits)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	do := func(method, path string, body []byte) apiAnswer {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return apiAnswer{resp.StatusCode, resp.Header, data}
	}
	pp := "/v1/patients/" + p.id().String()

	// Import and read back.
	bundle := readTestdata(t, "bundle-collection.json")
	want := stored(t, bundle)
	a := do("POST", pp+"/records", bundle)
	require.Equal(t, http.StatusCreated, a.code, "%s", a.body)
	var imported struct{ Records []records.ImportedRecord }
	require.NoError(t, json.Unmarshal(a.body, &imported))
	require.Len(t, imported.Records, len(want))
	rec := imported.Records[1]
	a = do("GET", "/v1/records/"+rec.ID.String(), nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	require.Equal(t, "application/fhir+json", a.hdr.Get("Content-Type"))
	require.Equal(t, "local", a.hdr.Get("X-MedLedger-Holder"))
	require.Equal(t, "1", a.hdr.Get("X-MedLedger-Record-Version"))
	require.Equal(t, string(want[1].JSON), string(a.body))
	f.waitFor("list", func() bool {
		a := do("GET", pp+"/records", nil)
		var l struct{ Records []records.RecordJSON }
		return a.code == http.StatusOK && json.Unmarshal(a.body, &l) == nil && len(l.Records) == len(want)
	})

	// Erase one record for the 410 case.
	erased := imported.Records[0].ID
	f.erase(p, erased)
	require.True(t, f.record(erased).Erased)

	bigBundle := append(bytes.Repeat([]byte(" "), maxBatch), bundle...)
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		code               int
		want               string
	}{
		{"bad patient id", "GET", "/v1/patients/not-a-patient/records", nil, 400, "want a patient id"},
		{"bad patient id on import", "POST", "/v1/patients/abc/records", bundle, 400, "want a patient id"},
		{"bad record id", "GET", "/v1/records/xyz", nil, 400, "want a record id"},
		{"bad record id on amend", "POST", "/v1/records/xyz/amend", bundle, 400, "want a record id"},
		{"unknown record", "GET", "/v1/records/" + randomHash(t).String(), nil, 404, "record not found"},
		{"erased record", "GET", "/v1/records/" + erased.String(), nil, 410, "erased"},
		{"bad emergency flag", "GET", "/v1/records/" + rec.ID.String() + "?emergency=maybe", nil, 400, "emergency"},
		{"invalid FHIR", "POST", pp + "/records", []byte(`{"resourceType":"Observation","status":"final"}`), 422, "invalid FHIR"},
		{"invalid FHIR bundle", "POST", pp + "/records", []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Nope"}},{"resource":{"resourceType":"Observation"}}]}`), 422, "invalid FHIR"},
		{"unregistered patient", "POST", "/v1/patients/" + stranger.id().String() + "/records", bundle, 409, "not registered"},
		{"emergency without reason", "POST", "/v1/emergency", []byte(`{"patient":"` + p.id().String() + `","purpose":"ETREAT"}`), 400, "needs a reason"},
		{"emergency blank reason", "POST", "/v1/emergency", []byte(`{"patient":"` + p.id().String() + `","reason":"  "}`), 400, "needs a reason"},
		{"oversized import", "POST", pp + "/records", bigBundle, 413, "limit"},
		{"oversized amend", "POST", "/v1/records/" + rec.ID.String() + "/amend", bytes.Repeat([]byte(" "), maxBody+1), 413, "limit"},
		{"bad page limit", "GET", pp + "/records?limit=0", nil, 400, "limit"},
		{"bad page cursor", "GET", pp + "/consents?after=zz", nil, 400, "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(tc.method, tc.path, tc.body)
			require.Equal(t, tc.code, a.code, "%s", a.body)
			require.Contains(t, a.errorLine(t), tc.want)
		})
	}
	// The refused imports anchored nothing.
	a = do("GET", pp+"/records", nil)
	var l struct{ Records []records.RecordJSON }
	require.NoError(t, json.Unmarshal(a.body, &l))
	require.Len(t, l.Records, len(want))
	// The same list a page at a time, by next.
	var paged []records.RecordJSON
	for after := ""; ; {
		a = do("GET", pp+"/records?limit=1&after="+after, nil)
		require.Equal(t, http.StatusOK, a.code, "%s", a.body)
		var page struct {
			Records []records.RecordJSON
			Next    string
		}
		require.NoError(t, json.Unmarshal(a.body, &page))
		require.LessOrEqual(t, len(page.Records), 1)
		paged = append(paged, page.Records...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	require.Len(t, paged, len(l.Records))
	for i := range paged {
		require.Equal(t, l.Records[i].ID, paged[i].ID) // the rest (erasure acks) may move on between reads
	}
	a = do("GET", "/v1/patients/"+stranger.id().String()+"/records", nil)
	require.Equal(t, http.StatusOK, a.code)
	require.JSONEq(t, `{"records":[]}`, string(a.body))
}
