package journal

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records/blobstore"
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
	j, err := Open(dir)
	require.NoError(t, err)
	served := accessEntry(t, 1, chain.AccessServed)
	refused := accessEntry(t, 2, chain.AccessRefused)
	require.NoError(t, j.Add(served))
	require.NoError(t, j.Add(refused))
	require.NoError(t, j.Add(served), "adding again is idempotent")
	require.Error(t, j.Add(chain.AccessEntry{}), "an invalid entry is refused")

	// "Restart": a fresh Journal on the same directory.
	j2, err := Open(dir)
	require.NoError(t, err)
	pending, err := j2.Pending()
	require.NoError(t, err)
	require.ElementsMatch(t, []chain.AccessEntry{served, refused}, pending)

	require.NoError(t, j2.Remove(served.Request.ID()))
	require.NoError(t, j2.Remove(served.Request.ID()), "removing twice is not an error")
	j3, err := Open(dir)
	require.NoError(t, err)
	pending, err = j3.Pending()
	require.NoError(t, err)
	require.Equal(t, []chain.AccessEntry{refused}, pending)
	require.Empty(t, tempFiles(t, dir))
}

func TestJournalSkipsCorruptAndTornFiles(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	require.NoError(t, err)
	j.SetLogger(nil)
	good := accessEntry(t, 1, chain.AccessServed)
	require.NoError(t, j.Add(good))
	torn := filepath.Join(dir, blobstore.TempPrefix+"99")
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
	j, err := Open(t.TempDir())
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

func signingKey(t testing.TB, seed byte) chain.PrivKey {
	t.Helper()
	var s [32]byte
	s[0] = seed
	k, err := chain.PrivKeyFromSeed(s[:])
	require.NoError(t, err)
	return k
}

func accessRequest(t testing.TB, key chain.PrivKey, record chain.Hash, nonce uint64) *chain.AccessRequest {
	t.Helper()
	r := &chain.AccessRequest{Role: "clinician", Record: record, RequesterNode: chain.PubKey{1}, Holder: chain.PubKey{2}, Purpose: "TREAT", IssuedMs: 1_700_000_000_000, Nonce: nonce}
	r.Sign(key, "medledger-test")
	return r
}

// tempFiles lists the temp files (torn writes) anywhere under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), blobstore.TempPrefix) {
			found = append(found, path)
		}
		return nil
	}))
	return found
}

// The used-request check of a holder asks Has: an entry is there from Add until Remove, also
// for a fresh Journal on the same directory (a restart).
func TestJournalHas(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir)
	require.NoError(t, err)
	e := accessEntry(t, 1, chain.AccessServed)
	id := e.Request.ID()
	has, err := j.Has(id)
	require.NoError(t, err)
	require.False(t, has)
	require.NoError(t, j.Add(e))
	j2, err := Open(dir)
	require.NoError(t, err)
	has, err = j2.Has(id)
	require.NoError(t, err)
	require.True(t, has)
	other := accessEntry(t, 2, chain.AccessServed)
	has, err = j2.Has(other.Request.ID())
	require.NoError(t, err)
	require.False(t, has, "another request id of the same record")
	require.NoError(t, j2.Remove(id))
	has, err = j.Has(id)
	require.NoError(t, err)
	require.False(t, has)
}

func TestReceiptsDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenReceipts(dir)
	require.NoError(t, err)
	j.SetLogger(nil)
	rc := chain.AccessReceipt{Request: *accessRequest(t, signingKey(t, 1), chain.Sum256([]byte("record")), 1), CiphertextHash: chain.Sum256([]byte("ct"))}
	require.NoError(t, j.Add(rc))
	require.Error(t, j.Add(chain.AccessReceipt{Request: rc.Request}), "a receipt without a ciphertext hash is refused")
	// A stray file that is not a receipt is set aside, not returned.
	require.NoError(t, os.WriteFile(filepath.Join(dir, chain.Sum256([]byte("x")).String()), []byte("junk"), 0o600))

	j2, err := OpenReceipts(dir)
	require.NoError(t, err)
	j2.SetLogger(nil)
	got, err := j2.Pending()
	require.NoError(t, err)
	require.Equal(t, []chain.AccessReceipt{rc}, got)
	require.NoError(t, j2.Remove(rc.Request.ID()))
	got, err = j2.Pending()
	require.NoError(t, err)
	require.Empty(t, got)
}
