package keystore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// seeded is a deterministic randomness source for tests.
func seeded(b byte) *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{b}, 256)) }

func TestCreateOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "patient", "wallet")
	before := time.Now().Add(-time.Second)
	w, err := Create(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.File() != filepath.Join(dir, FileName) {
		t.Errorf("File() = %q", w.File())
	}
	if c := w.Created(); c.Before(before) || c.After(time.Now()) {
		t.Errorf("Created() = %v", c)
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
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %v (%v), want only %s", entries, err, FileName)
	}

	var fj map[string]any
	data, err := os.ReadFile(w.File())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &fj); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	if fj["version"] != 1.0 || fj["signing_seed"] != hex.EncodeToString(w.SigningKey().Seed()) ||
		fj["encryption_key"] != hex.EncodeToString(w.EncryptionKey().Bytes()) || fj["created"] != w.Created().Format(time.RFC3339) || len(fj) != 4 {
		t.Errorf("file content %s", data)
	}

	o, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.SigningKey().Public() != w.SigningKey().Public() {
		t.Error("signing key differs after Open")
	}
	if !o.EncryptionKey().Public().Equal(w.EncryptionKey().Public()) || !bytes.Equal(o.EncryptionKey().Bytes(), w.EncryptionKey().Bytes()) {
		t.Error("encryption key differs after Open")
	}
	if o.PatientID() != w.PatientID() || o.PatientID() != w.SigningKey().Public().Address() {
		t.Error("patient id differs after Open")
	}
	if !o.Created().Equal(w.Created()) || o.File() != w.File() {
		t.Errorf("Open: created %v file %q", o.Created(), o.File())
	}

	// The keys work: a signature verifies, a sealed record opens.
	msg := []byte("consent")
	sig := o.SigningKey().Sign(chain.DomainTx, "test-chain", msg)
	if err := chain.Verify(w.SigningKey().Public(), chain.DomainTx, "test-chain", msg, sig); err != nil {
		t.Error(err)
	}
	ctx := envelope.Context{ChainID: "test-chain", RecordID: chain.Sum256([]byte("record-1")), Version: 1}
	sealed, err := envelope.Seal(rand.Reader, []byte("record"), ctx, []envelope.Recipient{{Key: w.EncryptionKey().Public()}})
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := envelope.Open(o.EncryptionKey(), sealed, ctx); err != nil || string(pt) != "record" {
		t.Errorf("Open record: %q, %v", pt, err)
	}
}

// TestPatientIDStable: the patient id follows from the signing key alone
// and survives any number of reopenings; different wallets have different
// ids.
func TestPatientIDStable(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	k, err := chain.GenerateKey(seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	if w.PatientID() != k.Public().Address() {
		t.Errorf("patient id %s, want the address of the key, %s", w.PatientID(), k.Public().Address())
	}
	for range 3 {
		o, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if o.PatientID() != w.PatientID() {
			t.Fatalf("patient id changed: %s, was %s", o.PatientID(), w.PatientID())
		}
	}
	other, err := Create(t.TempDir(), seeded(2))
	if err != nil {
		t.Fatal(err)
	}
	if other.PatientID() == w.PatientID() {
		t.Error("two wallets share a patient id")
	}
}

func TestCreateRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(w.File())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Create(dir, nil)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	after, err := os.ReadFile(w.File())
	if err != nil || !bytes.Equal(before, after) {
		t.Fatal("the existing wallet was changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
	o, err := Open(dir, nil)
	if err != nil || o.PatientID() != w.PatientID() {
		t.Fatalf("the first wallet no longer opens: %v", err)
	}

	// Any file at the name counts, even an empty one or a symlink.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir2, nil); !errors.Is(err, ErrExists) {
		t.Errorf("Create over an empty file: %v", err)
	}
	dir3 := t.TempDir()
	if err := os.Symlink(filepath.Join(dir3, "nowhere"), filepath.Join(dir3, FileName)); err == nil {
		if _, err := Create(dir3, nil); !errors.Is(err, ErrExists) {
			t.Errorf("Create over a dangling symlink: %v", err)
		}
	}
}

func TestOpenRefusesOpenPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o606} {
		dir := t.TempDir()
		w, err := Create(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(w.File(), mode); err != nil {
			t.Fatal(err)
		}
		_, err = Open(dir, nil)
		if err == nil || !strings.Contains(err.Error(), "too open") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: got %v, want a refusal", mode, err)
		}
	}
	// 0400 is fine: only the owner can read it.
	dir := t.TempDir()
	w, err := Create(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.File(), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestOpenRefusesCorrupt(t *testing.T) {
	good := func() map[string]any {
		s, _ := chain.GenerateKey(seeded(3))
		e, _ := envelope.GenerateKey(seeded(4))
		return map[string]any{
			"version":        1,
			"signing_seed":   hex.EncodeToString(s.Seed()),
			"encryption_key": hex.EncodeToString(e.Bytes()),
			"created":        "2025-03-04T10:11:12Z",
		}
	}
	encode := func(m map[string]any) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	with := func(key string, v any) string {
		m := good()
		if v == nil {
			delete(m, key)
		} else {
			m[key] = v
		}
		return encode(m)
	}
	badSuite := good()
	key, _ := hex.DecodeString(badSuite["encryption_key"].(string))
	key[1] = 9
	badSuite["encryption_key"] = hex.EncodeToString(key)

	if _, err := parsePlain([]byte(encode(good()))); err != nil {
		t.Fatalf("the good wallet is refused: %v", err)
	}
	for _, tc := range []struct {
		name, content, msg string
	}{
		{"empty", "", "not a wallet file"},
		{"not JSON", "signing_seed=00", "not a wallet file"},
		{"truncated", encode(good())[:60], "not a wallet file"},
		{"two objects", encode(good()) + encode(good()), "data after"},
		{"unknown field", with("passphrase", "x"), "unknown field"},
		{"version 3", with("version", 3), "wallet version 3, this program reads versions 1 and 2"},
		{"version 2 with version 1 fields", with("version", 2), "unknown field"},
		{"no version", with("version", nil), "version is missing"},
		{"no signing seed", with("signing_seed", nil), "signing_seed is missing"},
		{"short signing seed", with("signing_seed", strings.Repeat("ab", 31)), "signing_seed is 62 hex characters, want 64"},
		{"signing seed not hex", with("signing_seed", strings.Repeat("zz", 32)), "signing_seed is not hex"},
		{"signing seed a number", with("signing_seed", 7), "not a wallet file"},
		{"no encryption key", with("encryption_key", nil), "encryption_key is missing"},
		{"long encryption key", with("encryption_key", strings.Repeat("01", envelope.PrivateKeyLen+1)), "encryption_key is 70 hex characters, want 68"},
		{"encryption key of an unknown suite", encode(badSuite), "encryption_key"},
		{"no created", with("created", nil), "created is missing"},
		{"bad created", with("created", "yesterday"), "created"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			w, err := Open(dir, nil)
			if err == nil {
				t.Fatalf("opened: patient %s", w.PatientID())
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "keystore: ") {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
			t.Log(err)
		})
	}
}

func TestOpenRefusesOther(t *testing.T) {
	if _, err := Open(t.TempDir(), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no wallet: %v, want fs.ErrNotExist", err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	dir = t.TempDir()
	big := append([]byte(`{"version":1,"created":"`), bytes.Repeat([]byte("x"), maxFileSize)...)
	if err := os.WriteFile(filepath.Join(dir, FileName), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a huge file: %v", err)
	}
}

func TestCreateBadRandomness(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	if _, err := Create(dir, bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("created a wallet from 10 bytes of randomness")
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a wallet file was left behind: %v", err)
	}
}
