package synth

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ScanChunk is how many new bytes of a file the scanner reads at a time. Each round also keeps
// the tail of the round before, as long as the longest form searched for, so a marker that
// straddles two chunks is still found.
const ScanChunk = 4 << 20

// Needle is one form of one marker, as the scanner searches for it.
type Needle struct {
	// Marker is the marker as given (one of [Person.Marker]'s strings, say).
	Marker string
	// Form says how it is written: "text", "JSON string", "JSON \u-escaped" or "hex".
	Form string
	pat  []byte // ASCII-lower-cased
}

// Pattern is the bytes searched for, with ASCII letters in lower case; the search ignores ASCII
// letter case.
func (n Needle) Pattern() []byte { return n.pat }

// Needles returns the forms of each marker the scanner searches for: as written, in lower and
// upper case, JSON-escaped (Go's HTML-safe escaping, and \u escapes of everything beyond ASCII)
// and hex-encoded. Every search ignores ASCII letter case, so forms that differ only in that are
// listed once.
func Needles(markers []string) []Needle {
	var out []Needle
	seen := map[string]bool{}
	add := func(m, form, s string) {
		p := string(asciiLower([]byte(s)))
		if s == "" || seen[p] {
			return
		}
		seen[p] = true
		out = append(out, Needle{Marker: m, Form: form, pat: []byte(p)})
	}
	for _, m := range markers {
		for _, cased := range []string{m, strings.ToLower(m), strings.ToUpper(m)} {
			add(m, "text", cased)
			js, _ := json.Marshal(cased)
			add(m, "JSON string", string(js[1:len(js)-1]))
			add(m, `JSON \u-escaped`, JSONEscapeASCII(cased))
			add(m, "hex", hex.EncodeToString([]byte(cased)))
		}
	}
	return out
}

// JSONEscapeASCII is s as the inside of a JSON string with every non-ASCII rune \u-escaped
// (beyond the BMP as a UTF-16 surrogate pair), the way many JSON encoders other than Go's write
// it.
func JSONEscapeASCII(s string) string {
	js, _ := json.Marshal(s)
	var b strings.Builder
	for _, r := range string(js[1 : len(js)-1]) {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xD800+(r>>10)&0x3FF, 0xDC00+r&0x3FF)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// Hit is one form of one marker found in a file (or in scanned bytes).
type Hit struct {
	// File is the path of the file, "" for [ScanBytes].
	File string
	// Offset is where in the file the first occurrence starts.
	Offset int64
	// Marker is the marker as given; Form how it was written (see [Needle]).
	Marker, Form string
}

func (h Hit) String() string {
	where := h.File
	if where == "" {
		where = "data"
	}
	return fmt.Sprintf("%s at offset %d holds %q (as %s)", where, h.Offset, h.Marker, h.Form)
}

// Stats says what a scan covered.
type Stats struct {
	// Files and Bytes count the regular files scanned and their sizes.
	Files int
	Bytes int64
	// Kinds counts the files by [FileKind].
	Kinds map[string]int
}

// ScanDir searches every regular file under dir for every form of every marker (see [Needles]),
// ignoring ASCII letter case, and returns the hits, at most one per file and form, with what the
// scan covered. It reads each file in chunks of [ScanChunk] and finds markers across chunk
// boundaries. Symbolic links are not followed.
func ScanDir(dir string, markers []string) ([]Hit, Stats, error) {
	return scanDir(dir, Needles(markers), ScanChunk)
}

// ScanBytes searches data for every form of every marker, like [ScanDir] a file.
func ScanBytes(data []byte, markers []string) []Hit {
	low := asciiLower(data)
	var hits []Hit
	for _, n := range Needles(markers) {
		if at := bytes.Index(low, n.pat); at >= 0 {
			hits = append(hits, Hit{Offset: int64(at), Marker: n.Marker, Form: n.Form})
		}
	}
	return hits
}

func scanDir(dir string, needles []Needle, chunk int) ([]Hit, Stats, error) {
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n.pat))
	}
	st := Stats{Kinds: map[string]int{}}
	var hits []Hit
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st.Files++
		st.Bytes += info.Size()
		st.Kinds[FileKind(path)]++
		found, err := scanFile(path, needles, longest, chunk)
		hits = append(hits, found...)
		if err != nil {
			return fmt.Errorf("synth: scanning %s: %w", path, err)
		}
		return nil
	})
	return hits, st, err
}

// scanFile reads chunk new bytes at a time after the last overlap bytes of the round before.
func scanFile(path string, needles []Needle, overlap, chunk int) ([]Hit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hits []Hit
	done := make([]bool, len(needles))
	buf := make([]byte, 0, chunk+overlap)
	var base int64 // file offset of buf[0]
	for {
		n, rerr := io.ReadFull(f, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+n]
		low := asciiLower(buf)
		for k, nd := range needles {
			if done[k] {
				continue
			}
			if at := bytes.Index(low, nd.pat); at >= 0 {
				done[k] = true
				hits = append(hits, Hit{File: path, Offset: base + int64(at), Marker: nd.Marker, Form: nd.Form})
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return hits, nil
		}
		if rerr != nil {
			return hits, rerr
		}
		// Keep the tail so a needle across the boundary is found in the next round.
		keep := min(overlap, len(buf))
		base += int64(len(buf) - keep)
		copy(buf, buf[len(buf)-keep:])
		buf = buf[:keep]
	}
}

// FileKind classifies a file of a MedLedger network directory for coverage checks: "log" (node
// logs, *.log), "badger" (Badger tables, value logs, memtables, manifest, key registry, discard
// stats), "journal" (under a journal directory), "blob" (anything else under a blobs directory)
// or "other".
func FileKind(path string) string {
	base := filepath.Base(path)
	slashed := filepath.ToSlash(path)
	switch {
	case strings.HasSuffix(base, ".log"):
		return "log"
	case strings.HasSuffix(base, ".sst"), strings.HasSuffix(base, ".vlog"), strings.HasSuffix(base, ".mem"), strings.HasPrefix(base, "MANIFEST"), base == "KEYREGISTRY", base == "DISCARD":
		return "badger"
	case strings.Contains(slashed, "/billing/"), strings.Contains(slashed, "/billing-keys/"): // a practice's billing book, a payer's keys
		return "billing"
	case strings.Contains(slashed, "/journal/"): // the access journal lives in the blob directory
		return "journal"
	case strings.Contains(slashed, "/blobs/"):
		return "blob"
	}
	return "other"
}
