package recovery

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/medledger/medledger/wallet/mnemonic"
)

func newSecret(t *testing.T) ([]byte, mnemonic.Keys) {
	t.Helper()
	e, err := mnemonic.NewEntropy(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := mnemonic.Derive(e)
	if err != nil {
		t.Fatal(err)
	}
	return e, k
}

// subsets calls f with every subset of {0..n-1} of size k.
func subsets(n, k int, f func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			f(append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

// TestEveryKSubset: for small k-of-n, every k-subset (through the file format) recovers the
// secret and every (k-1)-subset is refused.
func TestEveryKSubset(t *testing.T) {
	for _, kn := range [][2]int{{2, 2}, {2, 3}, {3, 5}} {
		k, n := kn[0], kn[1]
		e, keys := newSecret(t)
		shares, err := Split(e, k, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(shares) != n {
			t.Fatalf("%d shares, want %d", len(shares), n)
		}
		parsed := make([]Share, n)
		for i, s := range shares {
			if s.Patient != keys.PatientID() || s.Threshold != k || s.Count != n || s.Index != i+1 || len(strings.Fields(s.Words)) != 33 {
				t.Fatalf("share %d: %+v", i, s)
			}
			if parsed[i], err = Parse(s.Marshal()); err != nil {
				t.Fatalf("Parse(share %d): %v\n%s", i+1, err, s.Marshal())
			}
			if parsed[i] != s {
				t.Fatalf("share %d changed through its file: %+v", i+1, parsed[i])
			}
		}
		count := 0
		subsets(n, k, func(idx []int) {
			count++
			var pick []Share
			for _, i := range idx {
				pick = append(pick, parsed[i])
			}
			got, err := Combine(pick)
			if err != nil || !bytes.Equal(got, e) {
				t.Errorf("%d of %d, shares %v: %x, %v", k, n, idx, got, err)
			}
		})
		subsets(n, k-1, func(idx []int) {
			var pick []Share
			for _, i := range idx {
				pick = append(pick, parsed[i])
			}
			if _, err := Combine(pick); !errors.Is(err, ErrTooFew) {
				t.Errorf("%d of %d, only shares %v: %v, want ErrTooFew", k, n, idx, err)
			}
		})
		if count == 0 {
			t.Fatal("no subset tried")
		}
		// More than k is fine too.
		if got, err := Combine(parsed); err != nil || !bytes.Equal(got, e) {
			t.Errorf("%d of %d, all shares: %v", k, n, err)
		}
	}
}

func TestSplitRefuses(t *testing.T) {
	e, _ := newSecret(t)
	for _, kn := range [][2]int{{1, 3}, {0, 3}, {4, 3}, {2, 17}, {17, 17}} {
		if _, err := Split(e, kn[0], kn[1]); err == nil {
			t.Errorf("split %d of %d", kn[0], kn[1])
		}
	}
	if _, err := Split(e[:16], 2, 3); err == nil {
		t.Error("split 16 bytes")
	}
	if s, err := Split(e, 16, 16); err != nil || len(s) != 16 {
		t.Errorf("16 of 16: %v", err)
	}
}

func TestCombineRefuses(t *testing.T) {
	e, _ := newSecret(t)
	a, err := Split(e, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Split(e, 2, 3) // the same wallet split a second time
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := newSecret(t)
	b, err := Split(e2, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		shares []Share
		msg    string
	}{
		{"none", nil, "not enough shares"},
		{"one", a[:1], "1 of 3 given"},
		{"twice the same", []Share{a[0], a[0]}, "given twice"},
		{"different wallets", []Share{a[0], b[1]}, "different wallets"},
		{"different splits", []Share{a[0], again[1]}, "different splits"},
	} {
		_, err := Combine(tc.shares)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
}

// TestTamperedShare: a changed character in a share file is caught by the file checksum; a
// changed word with a recomputed file checksum is caught by SLIP-39's own checksum; a wrong
// patient is caught before combining, or after it by the address check.
func TestTamperedShare(t *testing.T) {
	e, _ := newSecret(t)
	shares, err := Split(e, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	file := string(shares[0].Marshal())
	words := strings.Fields(shares[0].Words)

	// Replace the 10th word by another word of the list.
	repl := "academic"
	if words[9] == repl {
		repl = "acid"
	}
	badWords := append([]string(nil), words...)
	badWords[9] = repl
	rewrapped := shares[0]
	rewrapped.Words = strings.Join(badWords, " ")

	otherPatient := shares[0]
	otherPatient.Patient[0] ^= 1

	for _, tc := range []struct{ name, file, msg string }{
		{"word changed", strings.Replace(file, "share: "+shares[0].Words, "share: "+rewrapped.Words, 1), "checksum"},
		{"index changed", strings.Replace(file, "index: 1", "index: 2", 1), "checksum"},
		{"threshold changed", strings.Replace(file, "threshold: 2", "threshold: 3", 1), "checksum"},
		{"patient changed", strings.Replace(file, "patient: "+shares[0].Patient.String(), "patient: "+otherPatient.Patient.String(), 1), "checksum"},
		{"word changed, checksum recomputed", string(rewrapped.Marshal()), "not a valid SLIP-39 share"},
		{"line missing", strings.Replace(file, "shares: 3\n", "", 1), "fields"},
		{"not a share", "hello\n", "not a MedLedger recovery share"},
		{"version 2", strings.Replace(file, "version: 1", "version: 2", 1), "version"},
	} {
		if _, err := Parse([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}

	// A share claiming another patient (its checksum recomputed) is refused by the address
	// check after combining.
	p, err := Parse(otherPatient.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	q := shares[1]
	q.Patient = p.Patient
	if _, err := Combine([]Share{p, q}); err == nil || !strings.Contains(err.Error(), "recover the keys of patient") {
		t.Errorf("combined shares relabelled to another patient: %v", err)
	}

	// Whitespace, comments and capitals do not matter.
	typed := "\n  # typed back from paper\n" + strings.ToUpper(strings.ReplaceAll(file, "\n", "  \n\n"))
	got, err := Parse([]byte(typed))
	if err != nil || got != shares[0] {
		t.Errorf("typed share: %+v, %v\n%s", got, err, typed)
	}
}
