// Package purecheck is a test helper that enforces the pure-core rule: a package checked by it
// starts no goroutines, reads no clock, draws no randomness, does no I/O of its own and does not
// depend (even transitively) on libp2p or Badger. Like net/http/httptest, it is imported only by
// tests.
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

// forbiddenDeps may not appear anywhere in the package's transitive dependencies.
var forbiddenDeps = []string{
	"github.com/libp2p/",
	"github.com/dgraph-io/badger",
	"github.com/multiformats/",
}

// Check fails t if the non-test Go files of the package in dir break the pure-core rule.
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
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("purecheck: go list in %s: %v", dir, err)
	}
	var pkg struct {
		ImportPath string
		Deps       []string
	}
	if err := json.Unmarshal(out, &pkg); err != nil {
		t.Fatalf("purecheck: go list output: %v", err)
	}
	for _, dep := range pkg.Deps {
		for _, bad := range forbiddenDeps {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("%s depends on %s: a pure core knows nothing of the network or the disk", pkg.ImportPath, dep)
			}
		}
	}
}
