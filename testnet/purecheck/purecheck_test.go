package purecheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder captures failures so the checker itself can be tested: a checker that cannot fail
// proves nothing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) { r.errs = append(r.errs, format) }
func (r *recorder) Helper()                           {}

func TestCheckSourceFindsViolations(t *testing.T) {
	dir := t.TempDir()
	src := `package bad
import (
	"math/rand"
	clock "time"
)
func f() int {
	go func() {}()
	_ = clock.Now()
	return rand.Int()
}
`
	if err := os.WriteFile(filepath.Join(dir, "bad.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	checkSource(r, dir)
	joined := strings.Join(r.errs, "\n")
	if len(r.errs) != 3 {
		t.Fatalf("want 3 violations (import, go, time.Now), got %d: %s", len(r.errs), joined)
	}
}

func TestCheckSourceAcceptsPureCode(t *testing.T) {
	dir := t.TempDir()
	src := "package good\nimport \"time\"\nfunc f(d time.Duration) time.Duration { return 2 * d }\n"
	if err := os.WriteFile(filepath.Join(dir, "good.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	checkSource(r, dir)
	if len(r.errs) != 0 {
		t.Fatalf("pure code flagged: %v", r.errs)
	}
}

func TestCheckSourceFindsDotImportsAndHiddenClocks(t *testing.T) {
	dir := t.TempDir()
	src := `package bad
import (
	. "time"
	"runtime"
	"hash/maphash"
)
func f() (Time, int, maphash.Seed) { return Now(), runtime.NumGoroutine(), maphash.MakeSeed() }
`
	if err := os.WriteFile(filepath.Join(dir, "bad.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	checkSource(r, dir)
	if len(r.errs) != 3 {
		t.Fatalf("want 3 violations (dot import of time, runtime, hash/maphash), got %d: %v", len(r.errs), r.errs)
	}
}

func TestAllowListIsByPrefixAndExplicit(t *testing.T) {
	for path, want := range map[string]bool{
		"github.com/fxamacker/cbor/v2":                               true,
		"github.com/oasisprotocol/curve25519-voi/primitives/ed25519": true,
		"github.com/transparency-dev/merkle/rfc6962":                 true,
		"github.com/libp2p/go-libp2p":                                false,
		"github.com/dgraph-io/badger/v4":                             false,
		"github.com/fxamacker/cbor/v2x":                              false,
	} {
		if got := allowed(path); got != want {
			t.Errorf("allowed(%q) = %v, want %v", path, got, want)
		}
	}
}

// The real pure packages pass, including every package of this module they depend on.
func TestPurePackagesPass(t *testing.T) {
	for _, dir := range []string{"../../consensus", "../../chain/state"} {
		r := &recorder{TB: t}
		Check(r, dir)
		if len(r.errs) != 0 {
			t.Errorf("%s: %v", dir, r.errs)
		}
	}
}

func TestCheckImports(t *testing.T) {
	// purecheck itself links go/parser (below go/...) but nothing of this module's node.
	r := &recorder{TB: t}
	CheckImports(r, ".", "go/...", modulePrefix+"node")
	if len(r.errs) == 0 {
		t.Fatal("a forbidden dependency (go/...) was not reported")
	}
	r = &recorder{TB: t}
	CheckImports(r, ".", "go", "go/par", modulePrefix+"node/...")
	if len(r.errs) != 0 {
		t.Fatalf("exact paths and prefixes that are not packages were matched: %v", r.errs)
	}
}
