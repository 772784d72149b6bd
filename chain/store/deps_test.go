package store_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoBadgerDependency keeps Badger (and the FUSE test file system) out of what links chain/store
// alone: the consensus replica, p2p and the deterministic simulation.
func TestNoBadgerDependency(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/dgraph-io/badger") || strings.HasPrefix(dep, "github.com/hanwen/go-fuse") {
			t.Errorf("chain/store depends on %s", dep)
		}
	}
}
