// Package recovery splits a patient's root secret into k-of-n recovery shares and combines
// them back.
//
// The shares are SLIP-0039 mnemonics (github.com/gavincarr/go-slip39, a port of Trezor's
// reference implementation, checked against its test vectors): one group, threshold k of n
// members (2 <= k <= n <= 16), no SLIP-39 passphrase. Each share is 33 words of the SLIP-39
// wordlist with its own RS1024 checksum and the split's random identifier, so a mistyped word
// and shares of different splits are both detected. Fewer than k shares reveal nothing about
// the secret.
//
// A share file wraps one mnemonic with what a person needs to tell shares apart, and a checksum
// over all of it (docs/wallet.md):
//
//	# comment lines (ignored)
//	medledger-recovery-share
//	version: 1
//	patient: <address hex>
//	threshold: <k>
//	shares: <n>
//	index: <i, 1..n>
//	share: <33 SLIP-39 words>
//	checksum: <first 4 bytes of SHA-256 of the lines above, in hex>
//
// Combine checks every file, that all shares belong to one patient and one split, that there
// are at least k distinct ones, and finally that the recovered secret derives the patient's
// address.
package recovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gavincarr/go-slip39"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/mnemonic"
)

// Limits on k and n.
const (
	MinThreshold = 2
	MaxShares    = 16 // SLIP-39's limit on a group
)

// FormatVersion is the share file format version.
const FormatVersion = 1

// magic is the first non-comment line of a share file.
const magic = "medledger-recovery-share"

// maxFileSize bounds a share file: about 500 bytes with its comments.
const maxFileSize = 8 << 10

// ErrTooFew is returned (wrapped) by Combine when fewer than k distinct shares are given.
var ErrTooFew = errors.New("recovery: not enough shares")

// Share is one recovery share of a patient's root secret.
type Share struct {
	Patient   chain.Address
	Threshold int    // k: how many shares recover the secret
	Count     int    // n: how many shares were made
	Index     int    // this share's number, 1..n
	Words     string // the SLIP-39 mnemonic, words separated by single spaces
}

// FileName is the conventional file name of share i of n.
func FileName(i, n int) string { return fmt.Sprintf("share-%d-of-%d.txt", i, n) }

// Split makes n shares of a root secret, any k of which recover it.
func Split(entropy []byte, k, n int) ([]Share, error) {
	if k < MinThreshold || k > n || n > MaxShares {
		return nil, fmt.Errorf("recovery: %d of %d shares: want 2 <= k <= n <= %d", k, n, MaxShares)
	}
	keys, err := mnemonic.Derive(entropy)
	if err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	groups, err := slip39.GenerateMnemonics(1, []slip39.MemberGroupParameters{{MemberThreshold: k, MemberCount: n}}, entropy)
	if err != nil {
		return nil, fmt.Errorf("recovery: split: %w", err)
	}
	if len(groups) != 1 || len(groups[0]) != n {
		return nil, fmt.Errorf("recovery: split made %v shares, want %d", len(groups), n)
	}
	out := make([]Share, n)
	for i, words := range groups[0] {
		out[i] = Share{Patient: keys.PatientID(), Threshold: k, Count: n, Index: i + 1, Words: words}
		if _, err := out[i].check(); err != nil { // the library's output is checked like any input
			return nil, fmt.Errorf("recovery: split: %w", err)
		}
	}
	return out, nil
}

// body is the checksummed part of a share file.
func (s Share) body() string {
	return fmt.Sprintf("%s\nversion: %d\npatient: %s\nthreshold: %d\nshares: %d\nindex: %d\nshare: %s\n",
		magic, FormatVersion, s.Patient, s.Threshold, s.Count, s.Index, s.Words)
}

func checksum(body string) string {
	h := sha256.Sum256([]byte(body))
	return hex.EncodeToString(h[:4])
}

// Marshal returns the share file.
func (s Share) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# MedLedger recovery share %d of %d for patient %s.\n", s.Index, s.Count, s.Patient)
	fmt.Fprintf(&b, "# Any %d of the %d shares restore the wallet (medledger wallet restore --shares ...).\n", s.Threshold, s.Count)
	fmt.Fprintf(&b, "# Keep it apart from the other shares; whoever holds %d of them holds the patient's keys.\n", s.Threshold)
	body := s.body()
	b.WriteString(body)
	fmt.Fprintf(&b, "checksum: %s\n", checksum(body))
	return b.Bytes()
}

// Parse reads a share file, checking its checksum, its fields and that they agree with what the
// SLIP-39 mnemonic itself carries. Comment lines (#), blank lines, spaces around values and
// capitals do not matter (a share typed back from paper parses).
func Parse(data []byte) (Share, error) {
	if len(data) > maxFileSize {
		return Share{}, fmt.Errorf("recovery: share file is larger than %d bytes", maxFileSize)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.ToLower(strings.TrimSpace(l))
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 || lines[0] != magic {
		return Share{}, errors.New("recovery: not a MedLedger recovery share (no medledger-recovery-share line)")
	}
	keys := []string{"version", "patient", "threshold", "shares", "index", "share", "checksum"}
	if len(lines) != 1+len(keys) {
		return Share{}, fmt.Errorf("recovery: share file has %d fields, want %d (%s)", len(lines)-1, len(keys), strings.Join(keys, ", "))
	}
	vals := make(map[string]string, len(keys))
	for i, key := range keys {
		k, v, ok := strings.Cut(lines[1+i], ":")
		if !ok || strings.TrimSpace(k) != key {
			return Share{}, fmt.Errorf("recovery: line %q: want the field %q", lines[1+i], key)
		}
		vals[key] = strings.TrimSpace(v)
	}
	if vals["version"] != strconv.Itoa(FormatVersion) {
		return Share{}, fmt.Errorf("recovery: share format version %q, this program reads version %d", vals["version"], FormatVersion)
	}
	var s Share
	var err error
	if s.Patient, err = chain.ParseAddress(vals["patient"]); err != nil {
		return Share{}, fmt.Errorf("recovery: patient: %w", err)
	}
	for _, f := range []struct {
		key string
		to  *int
	}{{"threshold", &s.Threshold}, {"shares", &s.Count}, {"index", &s.Index}} {
		n, err := strconv.Atoi(vals[f.key])
		if err != nil {
			return Share{}, fmt.Errorf("recovery: %s %q is not a number", f.key, vals[f.key])
		}
		*f.to = n
	}
	s.Words = mnemonic.Normalize(vals["share"])
	if got, want := vals["checksum"], checksum(s.body()); got != want {
		return Share{}, fmt.Errorf("recovery: share %d of patient %s: checksum %s does not match its content (%s): the share was mistyped or damaged", s.Index, s.Patient, got, want)
	}
	if _, err := s.check(); err != nil {
		return Share{}, fmt.Errorf("recovery: %w", err)
	}
	return s, nil
}

// check validates the fields and the mnemonic, and that they agree; it returns the SLIP-39
// split identifier.
func (s Share) check() (int, error) {
	if s.Threshold < MinThreshold || s.Threshold > s.Count || s.Count > MaxShares {
		return 0, fmt.Errorf("share of %d of %d: want 2 <= k <= n <= %d", s.Threshold, s.Count, MaxShares)
	}
	if s.Index < 1 || s.Index > s.Count {
		return 0, fmt.Errorf("share index %d, want 1 to %d", s.Index, s.Count)
	}
	p, err := slip39.ParseShare(s.Words)
	if err != nil {
		return 0, fmt.Errorf("share %d: the words are not a valid SLIP-39 share (mistyped?): %w", s.Index, err)
	}
	if p.GroupCount != 1 || p.GroupThreshold != 1 || p.MemberThreshold != s.Threshold || p.MemberIndex != s.Index-1 {
		return 0, fmt.Errorf("share %d: the words say share %d of threshold %d (%d groups), the file says share %d of threshold %d",
			s.Index, p.MemberIndex+1, p.MemberThreshold, p.GroupCount, s.Index, s.Threshold)
	}
	return p.Identifier, nil
}

// Combine recovers the root secret from at least k shares of one split. It refuses shares of
// different patients or splits, duplicates, and fewer than k distinct shares (ErrTooFew), and
// checks that the recovered secret derives the shares' patient.
func Combine(shares []Share) ([]byte, error) {
	if len(shares) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrTooFew)
	}
	first := shares[0]
	firstID, err := first.check()
	if err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	var seen []int
	var words []string
	for _, s := range shares {
		id, err := s.check()
		if err != nil {
			return nil, fmt.Errorf("recovery: %w", err)
		}
		switch {
		case s.Patient != first.Patient:
			return nil, fmt.Errorf("recovery: shares of different wallets: patient %s and patient %s", first.Patient, s.Patient)
		case s.Threshold != first.Threshold || s.Count != first.Count || id != firstID:
			return nil, fmt.Errorf("recovery: shares of different splits of patient %s's wallet (%d of %d and %d of %d): use shares made together", s.Patient, first.Threshold, first.Count, s.Threshold, s.Count)
		case slices.Contains(seen, s.Index):
			return nil, fmt.Errorf("recovery: share %d of %d given twice", s.Index, s.Count)
		}
		seen = append(seen, s.Index)
		words = append(words, s.Words)
	}
	if len(seen) < first.Threshold {
		return nil, fmt.Errorf("%w: %d of %d given, any %d of the %d shares are needed", ErrTooFew, len(seen), first.Count, first.Threshold, first.Count)
	}
	// Exactly k shares: SLIP-39 combining refuses more than the threshold.
	entropy, err := slip39.CombineMnemonics(words[:first.Threshold])
	if err != nil {
		return nil, fmt.Errorf("recovery: combine: %w", err)
	}
	if len(entropy) != mnemonic.EntropyLen {
		clear(entropy)
		return nil, fmt.Errorf("recovery: the shares hold %d bytes, want %d", len(entropy), mnemonic.EntropyLen)
	}
	keys, err := mnemonic.Derive(entropy)
	if err != nil {
		clear(entropy)
		return nil, fmt.Errorf("recovery: %w", err)
	}
	if keys.PatientID() != first.Patient {
		clear(entropy)
		return nil, fmt.Errorf("recovery: the shares recover the keys of patient %s, not %s", keys.PatientID(), first.Patient)
	}
	return entropy, nil
}
