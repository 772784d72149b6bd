package webui

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/patientdir"
	"github.com/medledger/medledger/node/staff"
)

// fakeAPI stands in for the node's API: it answers the few routes the pages use and records
// what it was asked, with which bearer token.
type fakeAPI struct {
	mu    sync.Mutex
	calls []string // "METHOD path token"
	body  map[string][]byte
	empty bool // the billing and claims routes answer empty lists
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	data, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.RequestURI()+" "+tok)
	if f.body == nil {
		f.body = map[string][]byte{}
	}
	f.body[r.URL.Path] = data
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case isMoneyRoute(r.URL.Path):
		f.money(w, r, data)
	case r.URL.Path == "/v1/login":
		var req struct{ Name, Password string }
		_ = json.Unmarshal(data, &req)
		if req.Password != "right" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid user name or password"}`)
			return
		}
		_, _ = io.WriteString(w, `{"token":"mls_`+req.Name+`"}`)
	case strings.HasSuffix(r.URL.Path, "/records") && r.Method == http.MethodPost:
		if strings.Contains(r.Header.Get("Accept"), "ndjson") {
			_, _ = io.WriteString(w, `{"progress":{"phase":"validated","done":1,"total":1}}`+"\n"+`{"status":201,"result":{"records":[]}}`+"\n")
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"records":[]}`)
	case strings.HasSuffix(r.URL.Path, "/records"):
		_, _ = io.WriteString(w, `{"records":[]}`)
	case strings.HasSuffix(r.URL.Path, "/accesses"):
		_, _ = io.WriteString(w, `{"accesses":[]}`)
	case r.URL.Path == "/v1/emergency":
		_, _ = io.WriteString(w, `{"hash":"00","height":3}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such route"}`)
	}
}

func (f *fakeAPI) asked(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

var patient = chain.Address{1, 2, 3}

func newTestUI(t *testing.T) (*httptest.Server, *fakeAPI) {
	t.Helper()
	api := &fakeAPI{}
	roles := map[string]staff.Role{"mls_doc": staff.RoleClinician, "mls_desk": staff.RoleFrontDesk, "mls_admin": staff.RoleAdmin,
		"mls_bill": staff.RoleBilling}
	dir, err := patientdir.Open(filepath.Join(t.TempDir(), "patients.dir"), bytes.Repeat([]byte{9}, 32), nil)
	require.NoError(t, err)
	require.NoError(t, dir.Note(patient, []byte(`{"resourceType":"Patient","name":[{"text":"<script>alert(1)</script> Evil"}]}`)))
	u, err := New(Config{API: api, Patients: dir, ProviderID: "abcd", Authenticate: func(tok string) (staff.Principal, error) {
		if r, ok := roles[tok]; ok {
			return staff.Principal{User: strings.TrimPrefix(tok, "mls_"), Role: r}, nil
		}
		return staff.Principal{}, staff.ErrNoSession
	}})
	require.NoError(t, err)
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return srv, api
}

func client() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, srv *httptest.Server, path, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: token})
	}
	resp, err := client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(html)
	require.NotNil(t, m, "no CSRF field in %s", html)
	return m[1]
}

func TestSignInSetsAStrictHttpOnlyCookieAndHeadersForbidInlineScript(t *testing.T) {
	srv, api := newTestUI(t)
	resp, _ := get(t, srv, "/", "")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))
	resp, _ = get(t, srv, "/ui/patients", "")
	require.Equal(t, "/ui/login", resp.Header.Get("Location"), "signed out: to the sign-in page")

	resp, err := client().PostForm(srv.URL+"/ui/login", url.Values{"name": {"doc"}, "password": {"wrong"}})
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, string(body), "not correct")
	require.Empty(t, resp.Cookies())

	resp, err = client().PostForm(srv.URL+"/ui/login", url.Values{"name": {"doc"}, "password": {"right"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	c := resp.Cookies()
	require.Len(t, c, 1)
	require.Equal(t, "mls_doc", c[0].Value, "the cookie carries the API's session token")
	require.True(t, c[0].HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c[0].SameSite)
	require.Len(t, api.asked("POST /v1/login"), 2)

	resp, html := get(t, srv, "/ui/", "mls_doc")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "script-src 'self'")
	require.NotContains(t, csp, "unsafe-inline")
	require.NotRegexp(t, `<script>[^<]`, html, "no inline script")

	// Another site's sign-in form is refused.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/login", strings.NewReader("name=doc&password=right"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	resp, err = client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestEndedSessionSignsOut(t *testing.T) {
	srv, _ := newTestUI(t)
	resp, _ := get(t, srv, "/ui/patients", "mls_expired")
	require.Equal(t, "/ui/login?ended=1", resp.Header.Get("Location"))
	require.Equal(t, -1, resp.Cookies()[0].MaxAge, "the cookie is cleared")
}

func TestNamesAreEscapedAndOnlyForRolesThatFindPatients(t *testing.T) {
	srv, _ := newTestUI(t)
	resp, html := get(t, srv, "/ui/patients?q=evil", "mls_doc")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, html, "&lt;script&gt;alert(1)&lt;/script&gt; Evil")
	require.NotContains(t, html, "<script>alert(1)")
	resp, html = get(t, srv, "/ui/patients?q=evil", "mls_admin")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.NotContains(t, html, "Evil")
	resp, html = get(t, srv, "/ui/patients/"+patient.String(), "mls_admin")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, html, "Evil", "an admin sees no name")
}

func TestPagesEnforceTheRolesPermissions(t *testing.T) {
	srv, api := newTestUI(t)
	for _, path := range []string{"/audit", "/consents", "/emergency"} {
		resp, _ := get(t, srv, "/ui/patients/"+patient.String()+path, "mls_desk")
		require.Equal(t, http.StatusForbidden, resp.StatusCode, path)
	}
	resp, _ := get(t, srv, "/ui/records/"+strings.Repeat("ab", 32), "mls_desk")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Empty(t, api.asked("GET /v1/patients/"), "nothing was asked of the API for a forbidden page")
	require.Empty(t, api.asked("GET /v1/records/"))

	resp, _ = get(t, srv, "/ui/patients/"+patient.String()+"/audit", "mls_doc")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, []string{"GET /v1/patients/" + patient.String() + "/accesses mls_doc"}, api.asked("GET /v1/patients/"+patient.String()+"/accesses"))
	resp, _ = get(t, srv, "/ui/patients/nothex", "mls_doc")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestPostsNeedTheSessionsCSRFToken(t *testing.T) {
	srv, api := newTestUI(t)
	_, html := get(t, srv, "/ui/patients/"+patient.String()+"/emergency", "mls_doc")
	tok := csrfOf(t, html)
	post := func(form url.Values, cookie string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/patients/"+patient.String()+"/emergency", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		resp, err := client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	form := url.Values{"reason_code": {"life-threatening"}, "reason": {"collapsed in the waiting room"}}
	require.Equal(t, http.StatusForbidden, post(form, "mls_doc"), "no token")
	form.Set("csrf", strings.Repeat("0", 64))
	require.Equal(t, http.StatusForbidden, post(form, "mls_doc"), "a wrong token")
	require.Empty(t, api.asked("POST /v1/emergency"))
	form.Set("csrf", tok)
	require.Equal(t, http.StatusSeeOther, post(form, "mls_doc"))
	require.Equal(t, []string{"POST /v1/emergency mls_doc"}, api.asked("POST /v1/emergency"))
	var sent map[string]string
	require.NoError(t, json.Unmarshal(api.body["/v1/emergency"], &sent))
	require.Equal(t, map[string]string{"patient": patient.String(), "reason_code": "life-threatening", "reason": "collapsed in the waiting room"}, sent)
	// Another session's token does not fit this one.
	require.Equal(t, http.StatusForbidden, post(form, "mls_desk"))

	form.Set("reason", "  ")
	require.Equal(t, http.StatusBadRequest, post(form, "mls_doc"), "a reason is required")
}

func TestImportStreamsTheAPIsProgress(t *testing.T) {
	srv, api := newTestUI(t)
	_, html := get(t, srv, "/ui/patients/"+patient.String(), "mls_doc")
	tok := csrfOf(t, html)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "visit.json")
	_, _ = fw.Write([]byte(`{"resourceType":"Condition"}`))
	require.NoError(t, mw.Close())
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/patients/"+patient.String()+"/import", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("X-CSRF-Token", tok)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: "mls_doc"})
	resp, err := client().Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	require.Len(t, lines, 2, string(body))
	require.Contains(t, lines[0], `"phase":"validated"`)
	require.Contains(t, lines[1], `"status":201`)
	require.Equal(t, `{"resourceType":"Condition"}`, string(api.body["/v1/patients/"+patient.String()+"/records"]))
}

func TestRenderResourceShowsValuesWithUnits(t *testing.T) {
	var obs map[string]any
	require.NoError(t, json.Unmarshal([]byte(`{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"display":"Body weight"}]},"valueQuantity":{"value":72.5,"unit":"kg"},
		"effectiveDateTime":"2024-01-02","note":[{"text":"after breakfast"}]}`), &obs))
	v := RenderResource(obs)
	require.Equal(t, "Observation: Body weight", v.Title)
	require.Contains(t, v.Fields, Field{"Value", "72.5 kg"})
	require.Contains(t, v.Rest, Field{"note", "after breakfast"})
	var unknown map[string]any
	require.NoError(t, json.Unmarshal([]byte(`{"resourceType":"Flag","status":"active","code":{"text":"Fall risk"}}`), &unknown))
	v = RenderResource(unknown)
	require.Equal(t, []Field{{"code", "Fall risk"}, {"status", "active"}}, v.Rest, "an unknown type is a key/value view")
}

func TestSyncLine(t *testing.T) {
	require.Equal(t, "caught up (block 15)", syncLine([]metricLine{{Name: "medledger_height", Value: "15"}, {Name: "medledger_sync_target_height", Value: "15"}}))
	require.Equal(t, "syncing: block 50 of 200 (25%)", syncLine([]metricLine{{Name: "medledger_height", Value: "50"}, {Name: "medledger_sync_target_height", Value: "200"}}))
	require.Contains(t, syncLine(nil), "unknown")
}
