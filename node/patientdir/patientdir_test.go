package patientdir

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

const bundle = `{"resourceType":"Bundle","type":"collection","entry":[
 {"resource":{"resourceType":"Observation","id":"o"}},
 {"resource":{"resourceType":"Patient","id":"p",
   "identifier":[{"system":"urn:x","value":"SSN-1"},{"type":{"coding":[{"code":"MR"}]},"value":"MRN-7"}],
   "name":[{"use":"nickname","given":["Mo"]},{"use":"official","family":"Okafor","given":["Ngozi"]}],
   "birthDate":"1980-02-29"}}]}`

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestPatientsReadsNameBirthDateMRN(t *testing.T) {
	got := Patients([]byte(bundle))
	require.Equal(t, []Person{{Name: "Ngozi Okafor", BirthDate: "1980-02-29", MRN: "MRN-7"}}, got)
	ndjson := `{"resourceType":"Patient","name":[{"text":"A. Person"}],"identifier":[{"value":"X1"}]}` + "\n" + `{"resourceType":"Condition"}`
	require.Equal(t, []Person{{Name: "A. Person", MRN: "X1"}}, Patients([]byte(ndjson)))
	require.Empty(t, Patients([]byte(`not json`)))
}

func TestDirectorySealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "patients.dir")
	now := func() time.Time { return time.Unix(1700000000, 0) }
	d, err := Open(path, seed(1), now)
	require.NoError(t, err)
	var p chain.Address
	p[0] = 7
	require.NoError(t, d.Note(p, []byte(bundle)))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, clear := range []string{"Okafor", "Ngozi", "MRN-7", "1980-02-29", p.String()} {
		require.NotContains(t, string(raw), clear, "the file holds %q in clear", clear)
	}

	// Reopened with the same key: found by any word of name, MRN or birth date.
	d2, err := Open(path, seed(1), now)
	require.NoError(t, err)
	for _, q := range []string{"okafor", "NGOZI oka", "mrn-7", "1980"} {
		got := d2.Search(q, 10)
		require.Len(t, got, 1, q)
		require.Equal(t, "Ngozi Okafor", got[0].Name)
	}
	require.Empty(t, d2.Search("smith", 10))
	require.Empty(t, d2.Search("", 10))

	// Another provider's key, or an altered file, does not open.
	_, err = Open(path, seed(2), now)
	require.ErrorContains(t, err, "does not open")
	raw[len(raw)-1] ^= 1
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	_, err = Open(path, seed(1), now)
	require.ErrorContains(t, err, "does not open")
	_, err = Open(path, []byte("short"), now)
	require.Error(t, err)
}
