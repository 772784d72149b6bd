// Package purecheck is a test helper that enforces the pure-core rule: a package checked by it
// starts no goroutines, reads no clock, draws no randomness and does no I/O, neither in its own
// code nor through a dependency. Every package of this module it depends on is held to the same
// source rules, and a dependency from outside the module must be on an allow-list of libraries
// judged to be pure computation (encoding, hashing, signatures); anything else, libp2p and
// Badger included, fails. Like net/http/httptest, it is imported only by tests.
package purecheck

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports may not appear in a pure package's own imports: clocks, randomness, I/O.
var forbiddenImports = map[string]string{
	"math/rand":    "randomness must be an input",
	"math/rand/v2": "randomness must be an input",
	"crypto/rand":  "randomness must be an input",
	"os":           "no I/O in a pure core",
	"os/exec":      "no I/O in a pure core",
	"io/ioutil":    "no I/O in a pure core",
	"net":          "no I/O in a pure core",
	"net/http":     "no I/O in a pure core",
	"syscall":      "no I/O in a pure core",
	"runtime":      "no scheduler or memory state in a pure core",
	"hash/maphash": "maphash is seeded randomly per process",
	"log":          "no global logger in a pure core",
	"log/slog":     "no logging in a pure core: return effects instead",
	"sync":         "no concurrency in a pure core",
	"unsafe":       "no unsafe in a pure core",
}

// forbiddenTimeFuncs read the clock or make timers; time.Duration and friends stay allowed.
var forbiddenTimeFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true,
	"NewTimer": true, "NewTicker": true, "Tick": true,
}

// modulePrefix is this module: its packages among the dependencies get the source check too.
const modulePrefix = "github.com/medledger/medledger/"

// allowedDeps are the packages from outside the module (and the standard library) that a pure
// package may depend on, by import path prefix: computation only, no clock, randomness or I/O
// on the paths this module calls. Adding one is a deliberate decision.
var allowedDeps = []string{
	"github.com/fxamacker/cbor/v2",             // canonical CBOR
	"github.com/x448/float16",                  // used by cbor
	"github.com/oasisprotocol/curve25519-voi/", // ZIP-215 Ed25519 batch verification
	"github.com/transparency-dev/merkle",       // RFC 6962 Merkle trees
	"golang.org/x/crypto/",                     // used by curve25519-voi
	"golang.org/x/sys/cpu",                     // CPU feature detection for crypto
}

// Check fails t if the non-test Go files of the package in dir, or of any package of this module
// it depends on, break the pure-core rule, or if it depends on a package outside the module that
// is not allowed.
func Check(t testing.TB, dir string) {
	t.Helper()
	checkSource(t, dir)
	checkDeps(t, dir)
}

func checkSource(t testing.TB, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("purecheck: parse %s: %v", name, err)
		}
		checked++
		timeName := ""
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if why, bad := forbiddenImports[path]; bad {
				t.Errorf("%s imports %q: %s", fset.Position(imp.Pos()), path, why)
			}
			if imp.Name != nil && imp.Name.Name == "." {
				t.Errorf("%s dot-imports %q: a pure core names what it uses (a dot import hides time.Now and friends)", fset.Position(imp.Pos()), path)
			}
			if path == "time" {
				timeName = "time"
				if imp.Name != nil {
					timeName = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: go statement in a pure core", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && timeName != "" && id.Name == timeName && forbiddenTimeFuncs[n.Sel.Name] {
					t.Errorf("%s: time.%s in a pure core: time must be an input", fset.Position(n.Pos()), n.Sel.Name)
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatalf("purecheck: no Go source files in %s", dir)
	}
}

func checkDeps(t testing.TB, dir string) {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,Standard", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("purecheck: go list in %s: %v", dir, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var self string
	for dec.More() {
		var pkg struct {
			ImportPath string
			Dir        string
			Standard   bool
		}
		if err := dec.Decode(&pkg); err != nil {
			t.Fatalf("purecheck: go list output: %v", err)
		}
		self = pkg.ImportPath // the package itself comes last
		switch {
		case pkg.Standard:
			// Reached only through this module's packages, whose own imports are checked, or
			// through allowed libraries.
		case strings.HasPrefix(pkg.ImportPath, modulePrefix):
			if pkg.Dir != "" && filepath.Clean(pkg.Dir) != filepath.Clean(absDir(dir)) {
				checkSource(t, pkg.Dir)
			}
		default:
			if !allowed(pkg.ImportPath) {
				t.Errorf("depends on %s, which is not on purecheck's allow-list of pure libraries", pkg.ImportPath)
			}
		}
	}
	if self == "" {
		t.Fatalf("purecheck: go list in %s listed nothing", dir)
	}
}

// allowed reports whether path is an allow-listed package or lies below one.
func allowed(path string) bool {
	for _, p := range allowedDeps {
		p = strings.TrimSuffix(p, "/")
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func absDir(dir string) string {
	a, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	return a
}

// CheckImports fails t if the package in dir depends, directly or through any other package
// (test files aside), on a package that forbidden names: an import path names that package
// alone, a path ending in "/..." that package and every package below it (as in go list
// patterns). This is how a folder of the layout map keeps out of what it may not import.
func CheckImports(t testing.TB, dir string, forbidden ...string) {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("purecheck: go list in %s: %v", dir, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatalf("purecheck: go list in %s listed nothing", dir)
	}
	self := deps[len(deps)-1] // the package itself comes last
	for _, dep := range deps {
		for _, f := range forbidden {
			if matchPattern(f, dep) {
				t.Errorf("%s depends on %s (forbidden: %s)", self, dep, f)
			}
		}
	}
}

// matchPattern reports whether path is pattern, or lies below pattern's "/..." prefix.
func matchPattern(pattern, path string) bool {
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == p || strings.HasPrefix(path, p+"/")
	}
	return path == pattern
}
