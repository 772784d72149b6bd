package auditlog

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLogAppendsRotatesAndStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, 1000, 2)
	require.NoError(t, err)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		require.NoError(t, l.Write(Entry{Time: t0, User: "alice", Role: "clinician", Method: "GET", Path: fmt.Sprintf("/v1/records/%d", i), Status: 200}))
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.LessOrEqual(t, fi.Size(), int64(1000))
	for _, p := range []string{path + ".1", path + ".2"} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.LessOrEqual(t, fi.Size(), int64(1000))
	}
	_, err = os.Stat(path + ".3")
	require.True(t, os.IsNotExist(err), "only keep=2 rotated files")

	tail, err := l.Tail(3)
	require.NoError(t, err)
	require.Len(t, tail, 3)
	require.Equal(t, "/v1/records/99", tail[2].Path)
	require.Equal(t, "/v1/records/97", tail[0].Path)
	require.NoError(t, l.Close())

	// Reopening appends.
	l, err = Open(path, 1000, 2)
	require.NoError(t, err)
	require.NoError(t, l.Write(Entry{User: "operator", Path: "/v1/status", Status: 200}))
	tail, err = l.Tail(1)
	require.NoError(t, err)
	require.Equal(t, "operator", tail[0].User)
	require.NoError(t, l.Close())
}
