package synth

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// nonASCIIPerson is the first person of a fixed seed whose given name is not ASCII.
func nonASCIIPerson(t *testing.T) *Person {
	t.Helper()
	rnd := seeded(3)
	for i := range 200 {
		if p := Patient(rnd, i); !isASCII(p.Given) {
			return p
		}
	}
	t.Fatal("no person with a non-ASCII given name in 200")
	return nil
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// noise is deterministic filler that holds no marker.
func noise(n int) []byte {
	b := make([]byte, n)
	rnd := seeded(99)
	for i := range b {
		b[i] = byte(rnd.UintN(256))
	}
	return b
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNeedlesForms(t *testing.T) {
	p := nonASCIIPerson(t)
	html := `Zo<r>&"q` // Go's JSON encoder escapes all of these
	ns := Needles([]string{p.Given, html})
	forms := map[string][]string{}
	for _, n := range ns {
		forms[n.Marker] = append(forms[n.Marker], n.Form)
		if !bytes.Equal(n.Pattern(), asciiLower(n.Pattern())) {
			t.Errorf("pattern %q is not lower-cased", n.Pattern())
		}
	}
	// Go's JSON string of an ASCII marker is its \u-escaped form, and of a marker without HTML
	// characters its text: the duplicates are left out.
	for m, want := range map[string][]string{p.Given: {"text", `JSON \u-escaped`, "hex"}, html: {"text", "JSON string", "hex"}} {
		for _, w := range want {
			if !slices.Contains(forms[m], w) {
				t.Errorf("%q: no %s form among %v", m, w, forms[m])
			}
		}
	}
	if got, want := JSONEscapeASCII("é😀"), `\u00e9\ud83d\ude00`; got != want {
		t.Errorf("JSONEscapeASCII = %q, want %q", got, want)
	}
	if Needles(nil) != nil || len(Needles([]string{""})) != 0 {
		t.Error("an empty marker gave needles")
	}
}

// TestScanFindsEveryForm plants one form of a marker per file, in the middle of noise, and
// checks that the scan finds each, in its file, at its offset, and nothing in clean files.
func TestScanFindsEveryForm(t *testing.T) {
	p := nonASCIIPerson(t)
	other := Patient(seeded(4), 0)
	html := `Zo<r>&"q`
	upper := strings.ToUpper(p.Given)
	cases := []struct {
		name, marker, planted, form string
	}{
		{"as written", p.Note, p.Note, "text"},
		{"other case", p.MRN, strings.ToLower(p.MRN), "text"},
		{"upper case non-ASCII", p.Given, upper, "text"},
		{"JSON string", html, `Zo\u003cr\u003e\u0026\"q`, "JSON string"},
		{`JSON \u escapes`, p.Given, JSONEscapeASCII(p.Given), `JSON \u-escaped`},
		{`JSON \u escapes, upper-case digits`, p.Given, strings.ToUpper(JSONEscapeASCII(upper)), `JSON \u-escaped`},
		{"hex", p.Family, hex.EncodeToString([]byte(p.Family)), "hex"},
		{"upper-case hex", p.ID, strings.ToUpper(hex.EncodeToString([]byte(p.ID))), "hex"},
	}
	markers := append(p.Marker(), html)
	dir := t.TempDir()
	pad := noise(5000)
	want := map[string]Hit{}
	for k, c := range cases {
		file := filepath.Join(dir, "planted", c.name+".dat")
		at := 1000 + 37*k
		write(t, file, slices.Concat(pad[:at], []byte(c.planted), pad[at:]))
		want[file] = Hit{File: file, Offset: int64(at), Marker: c.marker, Form: c.form}
	}
	// Clean files: noise, another person's record, an empty file.
	write(t, filepath.Join(dir, "clean", "noise"), noise(3*4096))
	write(t, filepath.Join(dir, "clean", "other.json"), other.Bundle(seeded(5), 12))
	write(t, filepath.Join(dir, "clean", "empty"), nil)

	for _, chunk := range []int{ScanChunk, 256} {
		hits, st, err := scanDir(dir, Needles(markers), chunk)
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != len(cases)+3 {
			t.Errorf("chunk %d: scanned %d files, want %d", chunk, st.Files, len(cases)+3)
		}
		got := map[string][]Hit{}
		for _, h := range hits {
			got[h.File] = append(got[h.File], h)
		}
		for file, w := range want {
			if !slices.Contains(got[file], w) {
				t.Errorf("chunk %d: missed %v; hits in the file: %v", chunk, w, got[file])
			}
			delete(got, file)
		}
		for file, hs := range got {
			t.Errorf("chunk %d: hits in %s, which holds no marker: %v", chunk, file, hs)
		}
	}
}

// TestScanAcrossChunks plants a marker at every position across a chunk boundary, with a small
// chunk, and once across a real ScanChunk boundary.
func TestScanAcrossChunks(t *testing.T) {
	p := nonASCIIPerson(t)
	planted := JSONEscapeASCII(strings.ToUpper(p.Given))
	const chunk = 64
	pad := noise(4 * chunk)
	ns := Needles(p.Marker())
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	for _, boundary := range []int{chunk, 2 * chunk} { // the first and a later boundary
		for at := boundary - len(planted) - 1; at <= boundary+1; at++ {
			write(t, file, slices.Concat(pad[:at], []byte(planted), pad[at:]))
			hits, _, err := scanDir(dir, ns, chunk)
			if err != nil {
				t.Fatal(err)
			}
			w := Hit{File: file, Offset: int64(at), Marker: p.Given, Form: `JSON \u-escaped`}
			if len(hits) != 1 || hits[0] != w {
				t.Fatalf("planted at %d (boundary %d): hits %v, want %v", at, boundary, hits, w)
			}
		}
	}

	// The real chunk size: a marker straddling the first ScanChunk boundary of a 3-chunk file.
	big := bytes.Repeat([]byte{0xA5}, 3*ScanChunk)
	at := ScanChunk - len(planted)/2
	write(t, file, slices.Concat(big[:at], []byte(planted), big[at:]))
	hits, st, err := ScanDir(dir, p.Marker())
	if err != nil {
		t.Fatal(err)
	}
	w := Hit{File: file, Offset: int64(at), Marker: p.Given, Form: `JSON \u-escaped`}
	if len(hits) != 1 || hits[0] != w {
		t.Fatalf("across the ScanChunk boundary: hits %v, want %v", hits, w)
	}
	if st.Bytes != int64(3*ScanChunk+len(planted)) {
		t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, 3*ScanChunk+len(planted))
	}
}

func TestScanStatsKinds(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"node0.log":                  "log",
		"node0/data/000001.sst":      "badger",
		"node0/data/000001.vlog":     "badger",
		"node0/data/MANIFEST":        "badger",
		"node0/blobs/ab/abcdef":      "blob",
		"node0/blobs/journal/000001": "journal",
		"node0/config.toml":          "other",
		"node0/billing/book.json":    "billing",
		"payer/billing-keys/ab.key":  "billing",
	}
	var size int64
	for f := range files {
		write(t, filepath.Join(dir, f), []byte(f))
		size += int64(len(f))
	}
	if err := os.Symlink(filepath.Join(dir, "node0.log"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	hits, st, err := ScanDir(dir, []string{"nothing-like-this-here"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 0 {
		t.Errorf("hits: %v", hits)
	}
	wantKinds := map[string]int{}
	for f, k := range files {
		wantKinds[k]++
		if got := FileKind(filepath.Join(dir, f)); got != k {
			t.Errorf("FileKind(%s) = %s, want %s", f, got, k)
		}
	}
	if st.Files != len(files) || st.Bytes != size || !mapsEqual(st.Kinds, wantKinds) {
		t.Errorf("stats %+v, want %d files, %d bytes, kinds %v", st, len(files), size, wantKinds)
	}
	if _, _, err := ScanDir(filepath.Join(dir, "missing"), []string{"x"}); err == nil {
		t.Error("scanning a missing directory gave no error")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestScanBytes(t *testing.T) {
	p := Patient(seeded(6), 2)
	data := slices.Concat(noise(300), []byte(strings.ToUpper(p.Phone)), noise(20))
	hits := ScanBytes(data, p.Marker())
	if len(hits) != 1 || hits[0] != (Hit{Offset: 300, Marker: p.Phone, Form: "text"}) {
		t.Fatalf("hits %v", hits)
	}
	if hits := ScanBytes(noise(10000), p.Marker()); len(hits) != 0 {
		t.Fatalf("hits in noise: %v", hits)
	}
}
