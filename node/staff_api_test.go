package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
)

// cheapHash are argon2id parameters small enough for tests.
var cheapHash = staff.HashParams{MemoryKiB: 64, Time: 1, Threads: 1}

const staffPassword = "a long enough password"

// testClock is a settable time source for sessions.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestStaffRolesSessionsAndAudit drives the API as staff of each role over a running record
// service: what each role may do, sessions ending by idleness, logout and disabling, logins that
// fail alike and are rate-limited, and the local audit log of all of it.
func TestStaffRolesSessionsAndAudit(t *testing.T) {
	f := newRecFixture(t)
	r := f.start()
	p := f.newPatient("frank", true)
	self := f.keys.ID()
	dir := t.TempDir()
	usersFile, auditFile := filepath.Join(dir, "users.json"), filepath.Join(dir, "audit.log")
	clk := &testClock{t: time.Now()}
	for name, role := range map[string]staff.Role{"alice": staff.RoleClinician, "bob": staff.RoleFrontDesk, "ada": staff.RoleAdmin} {
		require.NoError(t, staff.Add(usersFile, name, role, staffPassword, cheapHash, rand.Reader, clk.now()))
	}
	users, err := staff.NewDirectory(usersFile)
	require.NoError(t, err)
	audit, err := auditlog.Open(auditFile, 0, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = audit.Close() })
	api := NewAPI(f.runner, NodeInfo{ChainID: f.g.ChainID, NodeID: "12D3KooWtest", Provider: &self}, testToken, 4096, 8<<10, f.log)
	api.attachRecords(r.Service, f.commits)
	api.attachStaff(staff.NewGate(users, staff.GateConfig{Sessions: staff.SessionConfig{Idle: 15 * time.Minute, Lifetime: 12 * time.Hour}, Hash: cheapHash, Now: clk.now}), audit)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	do := func(token, method, path string, body []byte) apiAnswer {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return apiAnswer{resp.StatusCode, resp.Header, data}
	}
	jsonBody := func(v any) []byte {
		data, err := json.Marshal(v)
		require.NoError(t, err)
		return data
	}
	login := func(name, password string) apiAnswer {
		t.Helper()
		return do("", "POST", "/v1/login", jsonBody(LoginRequest{Name: name, Password: password}))
	}
	session := func(name string) string {
		t.Helper()
		a := login(name, staffPassword)
		require.Equal(t, http.StatusOK, a.code, "%s", a.body)
		var l LoginJSON
		require.NoError(t, json.Unmarshal(a.body, &l))
		require.Equal(t, name, l.User)
		require.Equal(t, 900, l.IdleTimeoutSeconds)
		return l.Token
	}
	clinician, frontDesk, admin := session("alice"), session("bob"), session("ada")
	pp := "/v1/patients/" + p.id().String()

	// A clinician imports and reads.
	a := do(clinician, "POST", pp+"/records", readTestdata(t, "bundle-collection.json"))
	require.Equal(t, http.StatusCreated, a.code, "%s", a.body)
	var imported struct{ Records []records.ImportedRecord }
	require.NoError(t, json.Unmarshal(a.body, &imported))
	rec := imported.Records[0].ID.String()
	a = do(clinician, "GET", "/v1/records/"+rec, nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)

	// The front desk reads no record, lists nothing of a patient's, breaks no glass ...
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/records/" + rec},
		{"GET", "/v1/records/" + rec + "?emergency=true"},
		{"GET", pp + "/records"},
		{"GET", pp + "/consents"},
		{"GET", pp + "/accesses"},
		{"GET", pp + "/export"},
		{"POST", "/v1/emergency"},
		{"POST", "/v1/emergency/cosign"},
		{"GET", "/v1/audit"},
	} {
		a = do(frontDesk, tc.method, tc.path, jsonBody(EmergencyRequest{Patient: new(p.id()), ReasonCode: "life-threatening"}))
		require.Equal(t, http.StatusForbidden, a.code, "%s %s: %s", tc.method, tc.path, a.body)
		require.Contains(t, a.errorLine(t), "the front-desk role does not have")
	}
	// ... but enrols patients.
	a = do(frontDesk, "POST", "/v1/enrolments", jsonBody(EnrolRequest{PatientKey: testKey(t, "new-patient").Public(), EncryptionKey: hex.EncodeToString([]byte("enc"))}))
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)

	// A clinician breaks glass; submits no transaction and reads no audit log.
	a = do(clinician, "POST", "/v1/emergency", jsonBody(EmergencyRequest{Patient: new(p.id()), ReasonCode: "unable-to-consent"}))
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	a = do(clinician, "POST", "/v1/txs", jsonBody(map[string]string{"tx": "00"}))
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)
	a = do(clinician, "GET", "/v1/audit", nil)
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)

	// The admin sees status, users and the audit log, and no record.
	a = do(admin, "GET", "/v1/records/"+rec, nil)
	require.Equal(t, http.StatusForbidden, a.code, "%s", a.body)
	a = do(admin, "GET", "/v1/users", nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	require.NotContains(t, string(a.body), "argon2id")
	require.Contains(t, string(a.body), `"name":"bob","role":"front-desk"`)

	// The operator token still does everything.
	a = do(testToken, "GET", pp+"/records", nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	a = do(testToken, "GET", "/v1/records/"+rec, nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)

	// The ledger's access entries name the role each read was asked under, never the person.
	require.Eventually(t, func() bool {
		a = do(testToken, "GET", pp+"/accesses", nil)
		var out struct{ Accesses []records.AccessJSON }
		require.NoError(t, json.Unmarshal(a.body, &out))
		roles := map[string]int{}
		for _, x := range out.Accesses {
			roles[x.Role]++
		}
		return roles["clinician"] >= 1 && roles["operator"] == 1
	}, 20*time.Second, 50*time.Millisecond, "access entries with roles")
	require.NotContains(t, string(a.body), "alice")

	// Disabling a user ends its live session at once.
	require.NoError(t, staff.Disable(usersFile, "bob", clk.now()))
	a = do(frontDesk, "POST", "/v1/enrolments", nil)
	require.Equal(t, http.StatusUnauthorized, a.code, "%s", a.body)

	// Logout.
	a = do(admin, "POST", "/v1/logout", nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	a = do(admin, "GET", "/v1/status", nil)
	require.Equal(t, http.StatusUnauthorized, a.code, "%s", a.body)

	// Automatic logoff: 15 idle minutes end a session; activity keeps it.
	clk.add(14 * time.Minute)
	a = do(clinician, "GET", "/v1/records/"+rec, nil)
	require.Equal(t, http.StatusOK, a.code, "%s", a.body)
	clk.add(15 * time.Minute)
	a = do(clinician, "GET", "/v1/records/"+rec, nil)
	require.Equal(t, http.StatusUnauthorized, a.code, "%s", a.body)
	require.Contains(t, a.errorLine(t), "log in again")

	// One answer for an unknown user, a wrong password and a disabled user.
	unknown, wrong, disabled := login("zoe", staffPassword), login("ada", "not the password"), login("bob", staffPassword)
	for _, x := range []apiAnswer{wrong, disabled} {
		require.Equal(t, unknown.code, x.code)
		require.Equal(t, string(unknown.body), string(x.body))
	}
	require.Equal(t, http.StatusUnauthorized, unknown.code)
	// Repeated failures lock the name out, right password or not.
	for range staff.DefaultMaxFailuresPerName - 1 {
		require.Equal(t, http.StatusUnauthorized, login("ada", "not the password").code)
	}
	a = login("ada", staffPassword)
	require.Equal(t, http.StatusTooManyRequests, a.code, "%s", a.body)
	require.NotEmpty(t, a.hdr.Get("Retry-After"))

	// Everything above is in the local audit log, refusals and failed logins included.
	entries, err := auditlog.ReadTail(auditFile, 1000, 1<<20)
	require.NoError(t, err)
	has := func(what string, match func(e auditlog.Entry) bool) {
		t.Helper()
		for _, e := range entries {
			if match(e) {
				return
			}
		}
		t.Errorf("audit log has no entry for %s", what)
	}
	has("the clinician's read", func(e auditlog.Entry) bool {
		return e.User == "alice" && e.Role == "clinician" && e.Path == "/v1/records/"+rec && e.Record == rec && e.Status == 200
	})
	has("the front desk's refused read", func(e auditlog.Entry) bool {
		return e.User == "bob" && e.Role == "front-desk" && e.Record == rec && e.Status == 403
	})
	has("the front desk's refused break-glass read", func(e auditlog.Entry) bool {
		return e.User == "bob" && e.Record == rec && e.Emergency && e.Status == 403
	})
	has("the clinician's break-glass", func(e auditlog.Entry) bool {
		return e.User == "alice" && e.Path == "/v1/emergency" && e.Patient == p.id().String() && e.Emergency && e.Status == 200
	})
	has("the enrolment", func(e auditlog.Entry) bool {
		return e.User == "bob" && e.Path == "/v1/enrolments" && e.Patient == testKey(t, "new-patient").Public().Address().String()
	})
	has("the operator's list", func(e auditlog.Entry) bool {
		return e.User == "operator" && e.Role == "operator" && e.Patient == p.id().String() && e.Status == 200
	})
	has("the disabled user's refused request", func(e auditlog.Entry) bool {
		return e.Path == "/v1/enrolments" && e.Status == 401
	})
	has("a failed login", func(e auditlog.Entry) bool {
		return e.User == "zoe" && e.Path == "/v1/login" && e.Note == "login failed" && e.Status == 401
	})
	has("a rate-limited login", func(e auditlog.Entry) bool {
		return e.User == "ada" && e.Note == "login rate-limited" && e.Status == 429
	})
	has("a login", func(e auditlog.Entry) bool { return e.User == "ada" && e.Note == "login" && e.Role == "admin" })
	has("a logout", func(e auditlog.Entry) bool { return e.User == "ada" && e.Path == "/v1/logout" && e.Status == 200 })
	for _, e := range entries {
		require.NotContains(t, e.Path, "?", "no query in the log")
		require.NotContains(t, e.Path, staffPassword)
	}
	fi, err := os.Stat(auditFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
