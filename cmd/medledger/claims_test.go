package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every claims command refuses a malformed invocation as a usage error (exit 2) before it
// talks to a node.
func TestClaimsCLIUsage(t *testing.T) {
	home := t.TempDir()
	addr := strings.Repeat("ab", 20)
	id := strings.Repeat("cd", 32)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"claims"}, "needs a subcommand"},
		{[]string{"claims", "schedule", "--home", home, "--fees", "f.csv"}, "--provider is required"},
		{[]string{"claims", "schedule", "--home", home, "--provider", addr}, "--fees is required"},
		{[]string{"claims", "schedule", "--home", home, "--provider", "nope", "--fees", "f.csv"}, "40 hex digits"},
		{[]string{"claims", "coverage", "set", "--home", home, "--patient", addr}, "one of them"},
		{[]string{"claims", "coverage", "set", "--home", home, "--patient", addr, "--from", "2026-01-01", "--fhir", "c.json"}, "one of them"},
		{[]string{"claims", "coverage", "end", "--home", home, "xyz"}, "coverage id"},
		{[]string{"claims", "file", "--home", home, "--payer", addr, "--patient", addr, "--encounter", id}, "--claim is required"},
		{[]string{"claims", "file", "--home", home, "--payer", addr, "--patient", addr, "--encounter", "x", "--claim", "c.json"}, "--encounter"},
		{[]string{"claims", "show", "--home", home}, "accepts 1 arg"},
		{[]string{"claims", "show", "--home", home, "short"}, "claim id"},
		{[]string{"claims", "decide", "--home", home, id}, "one of them"},
		{[]string{"claims", "decide", "--home", home, id, "--line", "60.00", "--deny", "other"}, "one of them"},
		{[]string{"claims", "decide", "--home", home, id, "--deny", "because"}, "denial reason"},
		{[]string{"claims", "decide", "--home", home, id, "--line", "1:2:3:4"}, "PAID[:PATIENT[:REASON]]"},
		{[]string{"claims", "decide", "--home", home, id, "--line", "60.00:0:whim"}, "denial reason"},
		{[]string{"claims", "list", "--home", home, "--patient", "zz"}, "40 hex digits"},
		{[]string{"claims", "verify", "--home", home, id, "extra"}, "accepts 1 arg"},
	} {
		out, code := run(t, c.args...)
		require.Equal(t, 2, code, "%v: %s", c.args, out)
		require.Contains(t, out, c.want, "%v", c.args)
	}
}

func TestParseLineFlag(t *testing.T) {
	d, err := parseLineFlag("60.00:15.00:not-covered")
	require.NoError(t, err)
	require.Equal(t, "60.00", d.Paid)
	require.Equal(t, "15.00", d.Patient)
	require.Equal(t, "not-covered", d.Reason)
	d, err = parseLineFlag("0")
	require.NoError(t, err)
	require.Equal(t, "0", d.Paid)
	require.Empty(t, d.Patient+d.Reason)
}

// fakeClaimNode is a node API that records the claim requests it gets and answers each path
// with a canned body.
func fakeClaimNode(t *testing.T, answers map[string]string) (home string, got *[]string) {
	t.Helper()
	var reqs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs = append(reqs, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		a, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusConflict)
			a = `{"error": "claim refused by the ledger's duplicate rule: already filed", "rule": "duplicate"}`
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, a)
	}))
	t.Cleanup(srv.Close)
	home = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, "config.toml"), []byte("[api]\nlisten = \""+strings.TrimPrefix(srv.URL, "http://")+"\"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(home, "api.token"), []byte(strings.Repeat("ab", 32)), 0o600))
	return home, &reqs
}

// The commands send what the node expects and print its answers; a refusal is exit 1 with the
// node's message.
func TestClaimsCLIAgainstNode(t *testing.T) {
	id := strings.Repeat("cd", 32)
	addr := strings.Repeat("ab", 20)
	claim := `{"id": "` + id + `", "provider": "` + addr + `", "payer": "` + addr + `", "patient": "` + addr + `",
	  "service_date": "2026-12-05", "status": "decided", "settled": "decided",
	  "lines": [{"code_fingerprint": "` + id + `", "billed_cents": 9000, "allowed_cents": 7500, "paid_cents": 6000, "patient_cents": 1500}]}`
	home, got := fakeClaimNode(t, map[string]string{
		"POST /v1/claims/" + id + "/decide": claim,
		"GET /v1/claims/" + id:              claim,
		"GET /v1/payer/claims":              `{"claims": [` + claim + `]}`,
	})
	out, code := run(t, "claims", "decide", "--home", home, id, "--line", "60.00:15.00")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "decided")
	require.Contains(t, out, "60.00")
	require.Contains(t, (*got)[0], `{"lines":[{"paid":"60.00","patient":"15.00"}]}`)

	out, code = run(t, "claims", "list", "--home", home)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "90.00")

	out, code = run(t, "claims", "show", "--home", home, "--json", id)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `"paid_cents": 6000`)

	dir := t.TempDir()
	cf := filepath.Join(dir, "claim.json")
	require.NoError(t, os.WriteFile(cf, []byte(`{"resourceType": "Claim"}`), 0o600))
	out, code = run(t, "claims", "file", "--home", home, "--payer", addr, "--patient", addr, "--encounter", id, "--claim", cf)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "duplicate rule")
}
