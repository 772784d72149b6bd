package keystore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/mnemonic"
)

// testWorkFactor keeps scrypt cheap in tests; the format and code path are those of the default.
const testWorkFactor = MinScryptWorkFactor

var (
	zeroEntropy = make([]byte, mnemonic.EntropyLen)
	// Golden keys of the all-zero root secret (see wallet/mnemonic's TestGoldenDerivation).
	zeroPatient = "cdbb7811b7516a79c41cf490a96c4bde44b43228"
	zeroKeyID   = "941a6e5b9ec2d0ac223815c072e69718895dbaa4bbdc0316c10bd10dee7c1e27"
)

func mustNotAsk(t *testing.T) Passphrase {
	return func() ([]byte, error) {
		t.Error("the passphrase was asked for")
		return nil, errors.New("no")
	}
}

func TestEncryptedRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "alice")
	pass := []byte("correct horse battery staple")
	w, err := CreateEncrypted(dir, zeroEntropy, pass, testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if w.PatientID().String() != zeroPatient || w.EncryptionKey().Public().KeyID().String() != zeroKeyID {
		t.Fatalf("patient %s key %s, want the golden %s %s", w.PatientID(), w.EncryptionKey().Public().KeyID(), zeroPatient, zeroKeyID)
	}
	if w.Version() != VersionEncrypted || w.File() != filepath.Join(dir, FileName) {
		t.Errorf("version %d file %s", w.Version(), w.File())
	}
	if runtime.GOOS != "windows" {
		for path, want := range map[string]fs.FileMode{dir: 0o700, w.File(): 0o600} {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
			}
		}
	}

	// The file holds the metadata in the clear and nothing secret.
	data, err := os.ReadFile(w.File())
	if err != nil {
		t.Fatal(err)
	}
	var fj map[string]any
	if err := json.Unmarshal(data, &fj); err != nil {
		t.Fatal(err)
	}
	if fj["version"] != 2.0 || fj["patient"] != zeroPatient || fj["encryption_key_id"] != zeroKeyID ||
		fj["created"] != w.Created().Format("2006-01-02T15:04:05Z07:00") || len(fj) != 5 ||
		!strings.HasPrefix(fj["secret"].(string), "-----BEGIN AGE ENCRYPTED FILE-----\n") {
		t.Errorf("file content %s", data)
	}
	for _, secret := range []string{hex.EncodeToString(w.SigningKey().Seed()), hex.EncodeToString(w.EncryptionKey().Bytes()[2:]), "abandon", string(pass)} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the file contains a secret in the clear: %q", secret)
		}
	}

	info, err := Inspect(dir)
	if err != nil || !info.Encrypted() || info.Patient.String() != zeroPatient || info.EncryptionKeyID.String() != zeroKeyID || !info.Created.Equal(w.Created()) {
		t.Errorf("Inspect: %+v, %v", info, err)
	}

	if _, err := Open(dir, nil); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("Open without a passphrase: %v", err)
	}
	for _, wrong := range []string{"correct horse battery stapler", "x", ""} {
		_, err := Open(dir, StaticPassphrase([]byte(wrong)))
		if !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "wrong passphrase") {
			t.Errorf("Open with %q: %v, want ErrWrongPassphrase", wrong, err)
		}
	}
	asked := 0
	o, err := Open(dir, func() ([]byte, error) { asked++; return bytes.Clone(pass), nil })
	if err != nil {
		t.Fatal(err)
	}
	if asked != 1 {
		t.Errorf("asked for the passphrase %d times", asked)
	}
	if o.PatientID() != w.PatientID() || !bytes.Equal(o.EncryptionKey().Bytes(), w.EncryptionKey().Bytes()) ||
		!bytes.Equal(o.SigningKey().Seed(), w.SigningKey().Seed()) || !o.Created().Equal(w.Created()) || o.Version() != VersionEncrypted {
		t.Error("the opened wallet differs from the created one")
	}
	e, err := o.Entropy()
	if err != nil || !bytes.Equal(e, zeroEntropy) {
		t.Errorf("Entropy: %x, %v", e, err)
	}

	// The keys work.
	msg := []byte("consent")
	sig := o.SigningKey().Sign(chain.DomainTx, "test-chain", msg)
	if err := chain.Verify(w.SigningKey().Public(), chain.DomainTx, "test-chain", msg, sig); err != nil {
		t.Error(err)
	}

	// Never overwritten.
	if _, err := CreateEncrypted(dir, zeroEntropy, pass, testWorkFactor); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateEncrypted: %v", err)
	}
}

// TestRestoreSameWallet: the same root secret under another passphrase is the same patient.
func TestRestoreSameWallet(t *testing.T) {
	e, err := mnemonic.NewEntropy(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := CreateEncrypted(t.TempDir(), e, []byte("first passphrase"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	words, err := mnemonic.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := mnemonic.Decode(words)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := CreateEncrypted(dir, back, []byte("another passphrase"), testWorkFactor); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, StaticPassphrase([]byte("another passphrase")))
	if err != nil {
		t.Fatal(err)
	}
	if a.PatientID() != b.PatientID() || !a.EncryptionKey().Public().Equal(b.EncryptionKey().Public()) {
		t.Error("restored wallet has other keys")
	}
}

func TestPlainWalletNeedsNoPassphrase(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, seeded(5))
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(dir, mustNotAsk(t))
	if err != nil || o.PatientID() != w.PatientID() || o.Version() != VersionPlain {
		t.Fatalf("Open v1: %v", err)
	}
	if _, err := o.Entropy(); !errors.Is(err, ErrNoMnemonic) {
		t.Errorf("Entropy of a v1 wallet: %v", err)
	}
	info, err := Inspect(dir)
	if err != nil || info.Encrypted() || info.Patient != w.PatientID() || info.EncryptionKeyID != w.EncryptionKey().Public().KeyID() {
		t.Errorf("Inspect v1: %+v, %v", info, err)
	}
}

func TestCreateEncryptedRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entropy []byte
		pass    string
		wf      int
		msg     string
	}{
		{"empty passphrase", zeroEntropy, "", testWorkFactor, "passphrase is empty"},
		{"short entropy", make([]byte, 16), "pass phrase", testWorkFactor, "entropy is 16 bytes"},
		{"work factor too small", zeroEntropy, "pass phrase", MinScryptWorkFactor - 1, "work factor"},
		{"work factor too large", zeroEntropy, "pass phrase", MaxScryptWorkFactor + 1, "work factor"},
	} {
		dir := t.TempDir()
		_, err := CreateEncrypted(dir, tc.entropy, []byte(tc.pass), tc.wf)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
		if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: a wallet file was left: %v", tc.name, err)
		}
	}
}

func TestEncryptedOpenRefusesPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := t.TempDir()
	w, err := CreateEncrypted(dir, zeroEntropy, []byte("pass phrase"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.File(), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, mustNotAsk(t))
	if err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("mode 0640: %v", err)
	}
	if _, err := Inspect(dir); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("Inspect mode 0640: %v", err)
	}
}

func TestEncryptedOpenRefusesCorrupt(t *testing.T) {
	src := t.TempDir()
	pass := []byte("pass phrase")
	if _, err := CreateEncrypted(src, zeroEntropy, pass, testWorkFactor); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	e := bytes.Repeat([]byte{0x7f}, mnemonic.EntropyLen)
	if _, err := CreateEncrypted(other, e, pass, testWorkFactor); err != nil {
		t.Fatal(err)
	}
	load := func(dir string) map[string]any {
		data, err := os.ReadFile(filepath.Join(dir, FileName))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	with := func(key string, v any) map[string]any {
		m := load(src)
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		return m
	}
	secret := load(src)["secret"].(string)
	lines := strings.Split(secret, "\n")
	lines[len(lines)/2] = strings.Repeat("A", len(lines[len(lines)/2]))
	flipped := strings.Join(lines, "\n")

	for _, tc := range []struct {
		name string
		file map[string]any
		msg  string
	}{
		{"no patient", with("patient", nil), "patient is missing"},
		{"bad patient", with("patient", "xyz"), "patient"},
		{"other patient", with("patient", load(other)["patient"]), "the file was altered"},
		{"other key id", with("encryption_key_id", load(other)["encryption_key_id"]), "the file was altered"},
		{"no key id", with("encryption_key_id", nil), "encryption_key_id is missing"},
		{"no created", with("created", nil), "created is missing"},
		{"no secret", with("secret", nil), "secret is missing"},
		{"secret not armored", with("secret", "AGE"), "not an armored age file"},
		{"secret of another wallet", with("secret", load(other)["secret"]), "the file was altered"},
		{"secret damaged", with("secret", flipped), "secret"},
		{"huge secret", with("secret", "-----BEGIN AGE ENCRYPTED FILE-----\n"+strings.Repeat("A", maxSecretArmor)), "at most"},
		{"unknown field", with("signing_seed", "00"), "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data, err := json.Marshal(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
				t.Fatal(err)
			}
			w, err := Open(dir, StaticPassphrase(pass))
			if err == nil {
				t.Fatalf("opened: patient %s", w.PatientID())
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "keystore: ") {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
			if errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("a damaged file reported as a wrong passphrase: %v", err)
			}
		})
	}
}
