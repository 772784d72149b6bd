package node_test

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/staff"
)

// TestNodeStaffAccounts: a real node reads HOME/users.json, sees a user disabled while it runs,
// and writes every request to HOME/audit.log.
func TestNodeStaffAccounts(t *testing.T) {
	home := soloHome(t)
	h := node.Home(home)
	cheap := staff.HashParams{MemoryKiB: 64, Time: 1, Threads: 1}
	const password = "a long enough password"
	require.NoError(t, staff.Add(h.UsersFile(), "alice", staff.RoleClinician, password, cheap, rand.Reader, time.Now()))
	r := start(t, home)
	defer r.shutdown(t)
	r.waitHeight(t, 1)
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+r.n.APIAddr()+path, strings.NewReader(body))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, data
	}
	code, body := call("POST", "/v1/login", "", `{"name":"alice","password":"`+password+`"}`)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var l node.LoginJSON
	require.NoError(t, json.Unmarshal(body, &l))
	code, body = call("GET", "/v1/status", l.Token, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	code, body = call("POST", "/v1/txs", l.Token, `{"tx":"00"}`)
	require.Equal(t, http.StatusForbidden, code, "%s", body)

	// `medledger users disable` edits the file; the running node sees it at the next request.
	require.NoError(t, staff.Disable(h.UsersFile(), "alice", time.Now()))
	code, body = call("GET", "/v1/status", l.Token, "")
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)

	fi, err := os.Stat(h.AuditLog())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := auditlog.ReadTail(h.AuditLog(), 10_000, 16<<20)
	require.NoError(t, err)
	var seen []string
	for _, e := range entries {
		seen = append(seen, e.User+" "+e.Method+" "+e.Path+" "+http.StatusText(e.Status))
	}
	for _, want := range []string{"alice POST /v1/login OK", "alice GET /v1/status OK", "alice POST /v1/txs Forbidden",
		"alice GET /v1/status Unauthorized", "operator GET /v1/status OK"} {
		require.Contains(t, seen, want)
	}
}
