package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/medledger/medledger/wallet/keystore"
	"github.com/medledger/medledger/wallet/mnemonic"
)

// runCLI runs the medledger command line in-process with no terminal on standard input.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := rootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(""))
	err := root.Execute()
	return out.String(), err
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cheap keeps the scrypt cost of test wallets low (a hidden flag of new and restore).
var cheap = []string{"--scrypt-work-factor", "10"}

func TestWalletNewRestoreShares(t *testing.T) {
	tmp := t.TempDir()
	pass := writeFile(t, filepath.Join(tmp, "pass"), "a long passphrase\nsecond line ignored\n")
	pass2 := writeFile(t, filepath.Join(tmp, "pass2"), "another passphrase\r\n")
	wrong := writeFile(t, filepath.Join(tmp, "wrong"), "not the passphrase\n")
	dir := filepath.Join(tmp, "alice")

	if _, err := runCLI(t, append([]string{"wallet", "new", "--dir", dir}, cheap...)...); err == nil || !strings.Contains(err.Error(), "--passphrase-file") {
		t.Fatalf("new without a passphrase and no terminal: %v", err)
	}
	short := writeFile(t, filepath.Join(tmp, "short"), "short\n")
	if _, err := runCLI(t, append([]string{"wallet", "new", "--dir", dir, "--passphrase-file", short}, cheap...)...); err == nil || !strings.Contains(err.Error(), "shorter than") {
		t.Fatalf("new with a short passphrase: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, keystore.FileName)); err == nil {
		t.Fatal("a refused new left a wallet")
	}

	out, err := runCLI(t, append([]string{"wallet", "new", "--dir", dir, "--passphrase-file", pass, "--json"}, cheap...)...)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Patient, EncryptionKeyID, Mnemonic string
	}
	var raw map[string]string
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	created.Patient, created.EncryptionKeyID, created.Mnemonic = raw["patient"], raw["encryption_key_id"], raw["mnemonic"]
	if len(created.Patient) != 40 || len(created.EncryptionKeyID) != 64 || len(strings.Fields(created.Mnemonic)) != 24 {
		t.Fatalf("new --json: %s", out)
	}
	entropy, err := mnemonic.Decode(created.Mnemonic)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := mnemonic.Derive(entropy)
	if err != nil || keys.PatientID().String() != created.Patient || keys.EncryptionKeyID().String() != created.EncryptionKeyID {
		t.Fatalf("the printed mnemonic does not derive the printed keys: %v", err)
	}
	info, err := keystore.Inspect(dir)
	if err != nil || info.Version != keystore.VersionEncrypted || info.Patient.String() != created.Patient {
		t.Fatalf("wallet file: %+v, %v", info, err)
	}
	if _, err := runCLI(t, append([]string{"wallet", "new", "--dir", dir, "--passphrase-file", pass}, cheap...)...); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second new: %v", err)
	}

	// Text output shows the words once, with the warning.
	out, err = runCLI(t, append([]string{"wallet", "new", "--dir", filepath.Join(tmp, "bob"), "--passphrase-file", pass}, cheap...)...)
	if err != nil || !strings.Contains(out, "WRITE DOWN THESE 24 WORDS") || !strings.Contains(out, " 24. ") {
		t.Fatalf("new: %v\n%s", err, out)
	}

	// Restore from the mnemonic, typed with odd spacing, under another passphrase.
	words := writeFile(t, filepath.Join(tmp, "words"), "  "+strings.ReplaceAll(created.Mnemonic, " ", "\n")+"\n")
	out, err = runCLI(t, append([]string{"wallet", "restore", "--dir", filepath.Join(tmp, "restored"), "--mnemonic-file", words, "--passphrase-file", pass2, "--json"}, cheap...)...)
	if err != nil || !strings.Contains(out, created.Patient) || !strings.Contains(out, created.EncryptionKeyID) {
		t.Fatalf("restore --mnemonic-file: %v\n%s", err, out)
	}
	if w, err := keystore.Open(filepath.Join(tmp, "restored"), keystore.StaticPassphrase([]byte("another passphrase"))); err != nil || w.PatientID().String() != created.Patient {
		t.Fatalf("restored wallet: %v", err)
	}
	bad := writeFile(t, filepath.Join(tmp, "bad-words"), strings.Replace(created.Mnemonic, strings.Fields(created.Mnemonic)[0], "notaword", 1))
	if _, err := runCLI(t, append([]string{"wallet", "restore", "--dir", filepath.Join(tmp, "r2"), "--mnemonic-file", bad, "--passphrase-file", pass}, cheap...)...); err == nil || !strings.Contains(err.Error(), "notaword") {
		t.Errorf("restore from a mistyped mnemonic: %v", err)
	}

	// Shares need the passphrase.
	sharesDir := filepath.Join(tmp, "shares")
	if _, err := runCLI(t, "wallet", "shares", "--dir", dir, "--k", "2", "--n", "3", "--out", sharesDir); err == nil || !strings.Contains(err.Error(), "--passphrase-file") {
		t.Fatalf("shares without a passphrase: %v", err)
	}
	if _, err := runCLI(t, "wallet", "shares", "--dir", dir, "--k", "2", "--n", "3", "--out", sharesDir, "--passphrase-file", wrong); !errors.Is(err, keystore.ErrWrongPassphrase) || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("shares with a wrong passphrase: %v", err)
	}
	for _, kn := range [][2]string{{"1", "3"}, {"4", "3"}, {"2", "17"}} {
		if _, err := runCLI(t, "wallet", "shares", "--dir", dir, "--k", kn[0], "--n", kn[1], "--out", sharesDir, "--passphrase-file", pass); err == nil || !strings.Contains(err.Error(), "want 2 <= K <= N <= 16") {
			t.Errorf("shares --k %s --n %s: %v", kn[0], kn[1], err)
		}
	}
	out, err = runCLI(t, "wallet", "shares", "--dir", dir, "--k", "2", "--n", "3", "--out", sharesDir, "--passphrase-file", pass, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var sh struct {
		Files []string `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &sh); err != nil || len(sh.Files) != 3 {
		t.Fatalf("shares --json: %v\n%s", err, out)
	}
	for i, f := range sh.Files {
		if want := filepath.Join(sharesDir, "share-"+string(rune('1'+i))+"-of-3.txt"); f != want {
			t.Errorf("share file %q, want %q", f, want)
		}
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", f, st.Mode().Perm())
		}
	}
	if _, err := runCLI(t, "wallet", "shares", "--dir", dir, "--k", "2", "--n", "3", "--out", sharesDir, "--passphrase-file", pass); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("shares over existing files: %v", err)
	}

	// Any two restore; one does not.
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {2, 1}} {
		d := filepath.Join(tmp, "from-shares", string(rune('a'+pair[0]))+string(rune('a'+pair[1])))
		out, err := runCLI(t, append([]string{"wallet", "restore", "--dir", d, "--shares", sh.Files[pair[0]] + "," + sh.Files[pair[1]], "--passphrase-file", pass2}, cheap...)...)
		if err != nil || !strings.Contains(out, "patient id "+created.Patient) {
			t.Errorf("restore from shares %v: %v\n%s", pair, err, out)
		}
	}
	if _, err := runCLI(t, append([]string{"wallet", "restore", "--dir", filepath.Join(tmp, "one"), "--shares", sh.Files[0], "--passphrase-file", pass2}, cheap...)...); err == nil || !strings.Contains(err.Error(), "not enough shares") {
		t.Errorf("restore from one share: %v", err)
	}
	if _, err := runCLI(t, "wallet", "restore", "--dir", filepath.Join(tmp, "none"), "--passphrase-file", pass2); err == nil || !strings.Contains(err.Error(), "exactly one of") {
		t.Errorf("restore from nothing: %v", err)
	}
	if _, err := runCLI(t, "wallet", "restore", "--dir", dir, "--mnemonic-file", words, "--passphrase-file", pass2); !errors.Is(err, keystore.ErrExists) {
		t.Errorf("restore over a wallet: %v", err)
	}

	// A version 1 wallet has no mnemonic to split.
	v1 := filepath.Join(tmp, "v1")
	if _, err := keystore.Create(v1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "wallet", "shares", "--dir", v1, "--k", "2", "--n", "3", "--out", filepath.Join(tmp, "v1-shares")); !errors.Is(err, keystore.ErrNoMnemonic) {
		t.Errorf("shares of a v1 wallet: %v", err)
	}
}

// TestWalletCommandsOpenEncrypted: every command that opens the wallet takes --passphrase-file
// for a version 2 wallet, fails clearly without it or with a wrong one, and opens a version 1
// wallet without one. (No node runs here: past the wallet, the commands fail reaching it.)
func TestWalletCommandsOpenEncrypted(t *testing.T) {
	tmp := t.TempDir()
	pass := writeFile(t, filepath.Join(tmp, "pass"), "a long passphrase\n")
	wrong := writeFile(t, filepath.Join(tmp, "wrong"), "not the passphrase\n")
	v2 := filepath.Join(tmp, "v2")
	if _, err := runCLI(t, append([]string{"wallet", "new", "--dir", v2, "--passphrase-file", pass}, cheap...)...); err != nil {
		t.Fatal(err)
	}
	v1 := filepath.Join(tmp, "v1")
	if _, err := keystore.Create(v1, nil); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(tmp, "no-node")
	id := strings.Repeat("ab", 20)
	rec := strings.Repeat("cd", 32)
	for _, args := range [][]string{
		{"register"},
		{"grant", "--to", id},
		{"revoke", "--to", id},
		{"consents"},
		{"audit"},
		{"erase", rec},
	} {
		name := args[0]
		base := func(dir string, extra ...string) []string {
			a := append([]string{"wallet", name, "--dir", dir, "--home", home}, args[1:]...)
			return append(a, extra...)
		}
		if _, err := runCLI(t, base(v2)...); err == nil || !strings.Contains(err.Error(), "--passphrase-file") {
			t.Errorf("%s, v2 without a passphrase: %v", name, err)
		}
		if _, err := runCLI(t, base(v2, "--passphrase-file", wrong)...); !errors.Is(err, keystore.ErrWrongPassphrase) {
			t.Errorf("%s, v2 with a wrong passphrase: %v", name, err)
		}
		for _, tc := range []struct {
			what string
			args []string
		}{{"v2 with its passphrase", base(v2, "--passphrase-file", pass)}, {"v1", base(v1)}} {
			_, err := runCLI(t, tc.args...)
			if err == nil {
				t.Errorf("%s, %s: succeeded without a node", name, tc.what)
				continue
			}
			if strings.Contains(err.Error(), "keystore") || strings.Contains(err.Error(), "passphrase") {
				t.Errorf("%s, %s: the wallet did not open: %v", name, tc.what, err)
			}
		}
	}
}
