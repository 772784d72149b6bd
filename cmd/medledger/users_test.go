package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/node/staff"
)

// run runs the medledger command line in-process and returns its output and exit status.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		return out.String() + err.Error(), exitCode(err)
	}
	return out.String(), 0
}

func TestUsersCommandsRoundTrip(t *testing.T) {
	home := t.TempDir()
	h := node.Home(home)
	out, code := run(t, "users", "add", "--home", home, "--name", "alice", "--role", "clinician")
	require.Equal(t, 0, code, out)
	m := regexp.MustCompile(`initial password \(shown once\): (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	pwFile := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("front desk password\n"), 0o600))
	out, code = run(t, "users", "add", "--home", home, "--name", "bob", "--role", "front-desk", "--password-file", pwFile)
	require.Equal(t, 0, code, out)
	require.NotContains(t, out, "password (shown once)")

	users, err := staff.Load(h.UsersFile())
	require.NoError(t, err)
	require.Len(t, users, 2)
	for i, pw := range []string{m[1], "front desk password"} {
		ok, err := staff.VerifyPassword(users[i].PasswordHash, pw)
		require.NoError(t, err)
		require.True(t, ok, users[i].Name)
	}
	fi, err := os.Stat(h.UsersFile())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	out, code = run(t, "users", "add", "--home", home, "--name", "alice", "--role", "admin")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "exists")

	out, code = run(t, "users", "disable", "--home", home, "--name", "bob")
	require.Equal(t, 0, code, out)
	out, code = run(t, "users", "list", "--home", home)
	require.Equal(t, 0, code, out)
	require.Regexp(t, `alice\s+clinician\s+\S+\s+active`, out)
	require.Regexp(t, `bob\s+front-desk\s+\S+\s+disabled`, out)
	require.NotContains(t, out, "argon2id")
	out, code = run(t, "users", "list", "--home", home, "--json")
	require.Equal(t, 0, code, out)
	var list struct{ Users []node.UserJSON }
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Users, 2)
	require.True(t, list.Users[1].Disabled)
	require.NotContains(t, out, "argon2id")

	out, code = run(t, "users", "disable", "--home", home, "--name", "nobody")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "no such user")

	// Usage errors exit 2.
	for _, args := range [][]string{
		{"users", "add", "--name", "carol", "--role", "admin"},
		{"users", "add", "--home", home, "--name", "carol", "--role", "nurse"},
		{"users", "add", "--home", home, "--name", "Carol!", "--role", "admin"},
		{"users", "add", "--home", home, "--name", "carol", "--role", "admin", "--colour", "red"},
		{"users", "list", "--home", home, "extra"},
		{"users", "list", "--home", filepath.Join(home, "missing")},
		{"users", "disable", "--home", home},
		{"login", "--home", home},
	} {
		out, code := run(t, args...)
		require.Equal(t, 2, code, "%s: %s", strings.Join(args, " "), out)
	}
	short := filepath.Join(t.TempDir(), "short")
	require.NoError(t, os.WriteFile(short, []byte("short\n"), 0o600))
	out, code = run(t, "users", "add", "--home", home, "--name", "carol", "--role", "admin", "--password-file", short)
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "password")
}
