package blobstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// tempFiles lists the temp files (torn writes) anywhere under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), TempPrefix) {
			found = append(found, path)
		}
		return nil
	}))
	return found
}

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	require.NoError(t, err)
	for _, sub := range []string{"blobs", "envelopes"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	}

	data := []byte("ciphertext one")
	h, err := s.Put(data)
	require.NoError(t, err)
	require.Equal(t, chain.Sum256(data), h)
	require.True(t, s.Has(h))
	require.Equal(t, filepath.Join(dir, "blobs", h.String()), s.Path(h))
	got, err := s.Get(h)
	require.NoError(t, err)
	require.Equal(t, data, got)

	h2, err := s.Put(data) // idempotent
	require.NoError(t, err)
	require.Equal(t, h, h2)

	other := []byte("ciphertext two")
	require.ErrorIs(t, s.PutExpect(h, other), ErrHashMismatch)
	require.NoError(t, s.PutExpect(chain.Sum256(other), other))

	_, err = s.Put(make([]byte, envelope.MaxCiphertextLen+1))
	require.ErrorIs(t, err, ErrTooLarge)

	missing := chain.Sum256([]byte("missing"))
	require.False(t, s.Has(missing))
	_, err = s.Get(missing)
	require.ErrorIs(t, err, ErrNotFound)

	require.NoError(t, s.Delete(h))
	require.NoError(t, s.Delete(h)) // missing is not an error
	_, err = s.Get(h)
	require.ErrorIs(t, err, ErrNotFound)

	// Durable: a reopened store still has the other blob.
	s2, err := OpenStore(dir)
	require.NoError(t, err)
	got, err = s2.Get(chain.Sum256(other))
	require.NoError(t, err)
	require.Equal(t, other, got)
}

func TestStoreAtomicNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	require.NoError(t, err)
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 2)
	_, err = s.Put(sl.Ciphertext)
	require.NoError(t, err)
	for _, e := range sl.Envelopes {
		require.NoError(t, s.PutEnvelope(record, e))
	}
	require.Empty(t, tempFiles(t, dir))

	// A crash mid-write leaves a temp file; it is never served and reopening deletes it.
	torn := filepath.Join(dir, "blobs", TempPrefix+"123")
	require.NoError(t, os.WriteFile(torn, []byte("half a blob"), 0o600))
	tornEnv := filepath.Join(dir, "envelopes", TempPrefix+"456")
	require.NoError(t, os.WriteFile(tornEnv, []byte("half an envelope"), 0o600))
	es, err := s.Envelopes(record)
	require.NoError(t, err)
	require.Len(t, es, 2)
	_, err = OpenStore(dir)
	require.NoError(t, err)
	require.Empty(t, tempFiles(t, dir))
}

func TestStoreCorruptOnRead(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	data := []byte("the real ciphertext")
	h, err := s.Put(data)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(s.Path(h), []byte("bit rot"), 0o600))

	_, err = s.Get(h)
	require.ErrorIs(t, err, ErrCorrupt)
	require.True(t, s.Has(h), "a corrupt blob is not deleted automatically")

	// Storing the right bytes again repairs it.
	_, err = s.Put(data)
	require.NoError(t, err)
	got, err := s.Get(h)
	require.NoError(t, err)
	require.Equal(t, data, got)
}

func TestStoreEnvelopesAndDeleteRecord(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "a medical record", 3)
	h, err := s.Put(sl.Ciphertext)
	require.NoError(t, err)
	for _, e := range sl.Envelopes {
		require.NoError(t, s.PutEnvelope(record, e))
	}
	e0 := sl.Envelopes[0]
	got, err := s.Envelope(record, e0.RecipientKeyID)
	require.NoError(t, err)
	require.Equal(t, e0, got)
	all, err := s.Envelopes(record)
	require.NoError(t, err)
	require.ElementsMatch(t, sl.Envelopes, all)

	_, err = s.Envelope(record, chain.Sum256([]byte("nobody")))
	require.ErrorIs(t, err, ErrNotFound)
	none, err := s.Envelopes(chain.Sum256([]byte("other record")))
	require.NoError(t, err)
	require.Empty(t, none)

	bad := e0
	bad.Wrapped = bad.Wrapped[:10]
	require.Error(t, s.PutEnvelope(record, bad))
	require.Error(t, s.PutEnvelope(chain.Hash{}, e0))

	require.NoError(t, s.RemoveEnvelope(record, e0.RecipientKeyID))
	_, err = s.Envelope(record, e0.RecipientKeyID)
	require.ErrorIs(t, err, ErrNotFound)
	all, err = s.Envelopes(record)
	require.NoError(t, err)
	require.Len(t, all, 2)

	require.NoError(t, s.DeleteRecord(record, h))
	require.False(t, s.Has(h))
	_, err = s.Get(h)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Envelope(record, e0.RecipientKeyID)
	require.ErrorIs(t, err, ErrNotFound)
	all, err = s.Envelopes(record)
	require.NoError(t, err)
	require.Empty(t, all)
	require.NoError(t, s.DeleteRecord(record, h), "erasing twice is not an error")
}

func TestStoreConcurrent(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	require.NoError(t, err)
	record := chain.Sum256([]byte("record"))
	sl := sealed(t, record, "body", 4)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			data := fmt.Appendf(nil, "blob %d", i%3)
			h, err := s.Put(data)
			if err != nil {
				t.Error(err)
				return
			}
			if got, err := s.Get(h); err != nil || !bytes.Equal(got, data) {
				t.Errorf("get %d: %v", i, err)
			}
			if err := s.PutEnvelope(record, sl.Envelopes[i%4]); err != nil {
				t.Error(err)
			}
			if _, err := s.Envelopes(record); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	all, err := s.Envelopes(record)
	require.NoError(t, err)
	require.Len(t, all, 4)
}

// PutBatch stores what separate Put and PutEnvelope calls would, leaves no temp files, and
// refuses a malformed batch before writing anything.
func TestStorePutBatch(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	require.NoError(t, err)
	var batch []RecordFiles
	for i := range 5 {
		record := chain.Sum256([]byte(fmt.Sprintf("record %d", i)))
		sl := sealed(t, record, fmt.Sprintf("medical record %d", i), 3)
		batch = append(batch, RecordFiles{Record: record, Ciphertext: sl.Ciphertext, Envelopes: sl.Envelopes})
	}
	hashes, err := s.PutBatch(batch)
	require.NoError(t, err)
	require.Len(t, hashes, len(batch))
	for i, r := range batch {
		require.Equal(t, chain.Sum256(r.Ciphertext), hashes[i])
		got, err := s.Get(hashes[i])
		require.NoError(t, err)
		require.Equal(t, r.Ciphertext, got)
		envs, err := s.Envelopes(r.Record)
		require.NoError(t, err)
		require.ElementsMatch(t, r.Envelopes, envs)
	}
	require.Empty(t, tempFiles(t, dir))

	bad := []RecordFiles{{Record: chain.Sum256([]byte("x")), Ciphertext: []byte("ct"), Envelopes: []envelope.Envelope{{Version: 9}}}}
	_, err = s.PutBatch(bad)
	require.ErrorIs(t, err, ErrMalformed)
	require.False(t, s.Has(chain.Sum256([]byte("ct"))), "nothing of a refused batch is written")
	_, err = s.PutBatch([]RecordFiles{{Record: chain.Sum256([]byte("y"))}})
	require.ErrorIs(t, err, ErrMalformed)
}

// A store written with one file per envelope (envelopes/<record>/<key id>) is converted at open
// to one set file per record, also when a conversion was cut short by a crash.
func TestStoreMigratesEnvelopeDirs(t *testing.T) {
	dir := t.TempDir()
	envDir := filepath.Join(dir, "envelopes")
	require.NoError(t, os.MkdirAll(envDir, 0o700))
	var recs []chain.Hash
	var sls []*envelope.Sealed
	for i := range 3 {
		record := chain.Sum256(fmt.Appendf(nil, "old record %d", i))
		sl := sealed(t, record, "body", 3)
		rd := filepath.Join(envDir, record.String())
		require.NoError(t, os.MkdirAll(rd, 0o700))
		for _, e := range sl.Envelopes {
			require.NoError(t, os.WriteFile(filepath.Join(rd, e.RecipientKeyID.String()), e.Encode(), 0o600))
		}
		require.NoError(t, os.WriteFile(filepath.Join(rd, TempPrefix+"torn"), []byte("half"), 0o600))
		recs, sls = append(recs, record), append(sls, sl)
	}
	// Record 2's conversion was cut short: its set is written, its directory half deleted.
	require.NoError(t, os.WriteFile(filepath.Join(envDir, recs[2].String()+migrateSuffix), encodeSet(sortedEnvs(sls[2].Envelopes)), 0o600))
	require.NoError(t, os.Remove(filepath.Join(envDir, recs[2].String(), sls[2].Envelopes[0].RecipientKeyID.String())))

	s, err := OpenStore(dir)
	require.NoError(t, err)
	for i, record := range recs {
		fi, err := os.Stat(filepath.Join(envDir, record.String()))
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular())
		all, err := s.Envelopes(record)
		require.NoError(t, err)
		require.ElementsMatch(t, sls[i].Envelopes, all)
	}
	ents, err := os.ReadDir(envDir)
	require.NoError(t, err)
	require.Len(t, ents, len(recs))
}

func sortedEnvs(es []envelope.Envelope) []envelope.Envelope {
	out, err := mergeEnvelopes(nil, es)
	if err != nil {
		panic(err)
	}
	return out
}

const testChain = "medledger-test"

func testRand(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// sealed seals a record body for n fresh recipients.
func sealed(t testing.TB, record chain.Hash, body string, n int) *envelope.Sealed {
	t.Helper()
	var rs []envelope.Recipient
	for i := range n {
		k, err := envelope.GenerateKey(testRand(uint64(1000 + i)))
		require.NoError(t, err)
		rs = append(rs, envelope.Recipient{Key: k.Public()})
	}
	s, err := envelope.Seal(testRand(7), []byte(body), envelope.Context{ChainID: testChain, RecordID: record, Version: 1}, rs)
	require.NoError(t, err)
	return s
}
