package blobs

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

func accessEntry(t *testing.T, nonce uint64, outcome chain.AccessOutcome) chain.AccessEntry {
	t.Helper()
	e := chain.AccessEntry{Request: *accessRequest(t, signingKey(t, 1), chain.Sum256([]byte("record")), nonce), Outcome: outcome}
	if outcome == chain.AccessRefused {
		e.Reason = "no consent"
	}
	return e
}

func TestJournalDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	require.NoError(t, err)
	served := accessEntry(t, 1, chain.AccessServed)
	refused := accessEntry(t, 2, chain.AccessRefused)
	require.NoError(t, j.Add(served))
	require.NoError(t, j.Add(refused))
	require.NoError(t, j.Add(served), "adding again is idempotent")
	require.Error(t, j.Add(chain.AccessEntry{}), "an invalid entry is refused")

	// "Restart": a fresh Journal on the same directory.
	j2, err := OpenJournal(dir)
	require.NoError(t, err)
	pending, err := j2.Pending()
	require.NoError(t, err)
	require.ElementsMatch(t, []chain.AccessEntry{served, refused}, pending)

	require.NoError(t, j2.Remove(served.Request.ID()))
	require.NoError(t, j2.Remove(served.Request.ID()), "removing twice is not an error")
	j3, err := OpenJournal(dir)
	require.NoError(t, err)
	pending, err = j3.Pending()
	require.NoError(t, err)
	require.Equal(t, []chain.AccessEntry{refused}, pending)
	require.Empty(t, tempFiles(t, dir))
}

func TestJournalSkipsCorruptAndTornFiles(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	require.NoError(t, err)
	j.SetLogger(nil)
	good := accessEntry(t, 1, chain.AccessServed)
	require.NoError(t, j.Add(good))
	torn := filepath.Join(dir, tempPrefix+"99")
	require.NoError(t, os.WriteFile(torn, []byte{0x84}, 0o600))
	// A file named after one request holding another: not what it claims.
	other := accessEntry(t, 2, chain.AccessServed)
	wrongName := filepath.Join(dir, chain.Sum256([]byte("x")).String())
	require.NoError(t, os.WriteFile(wrongName, chain.Encode(&other), 0o600))
	garbage := filepath.Join(dir, chain.Sum256([]byte("y")).String())
	require.NoError(t, os.WriteFile(garbage, []byte("not cbor"), 0o600))

	pending, err := j.Pending()
	require.NoError(t, err)
	require.Equal(t, []chain.AccessEntry{good}, pending)
	require.NoFileExists(t, torn)
	require.NoFileExists(t, wrongName)
	require.FileExists(t, filepath.Join(dir, corruptDir, filepath.Base(garbage)), "kept for inspection")

	pending, err = j.Pending()
	require.NoError(t, err)
	require.Equal(t, []chain.AccessEntry{good}, pending)
}

func TestJournalConcurrent(t *testing.T) {
	j, err := OpenJournal(t.TempDir())
	require.NoError(t, err)
	entries := make([]chain.AccessEntry, 16)
	for i := range entries {
		entries[i] = accessEntry(t, uint64(i), chain.AccessServed)
	}
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() {
			if err := j.Add(e); err != nil {
				t.Error(err)
			}
			if _, err := j.Pending(); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if err := j.Remove(e.Request.ID()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	pending, err := j.Pending()
	require.NoError(t, err)
	require.Len(t, pending, 8)
}
