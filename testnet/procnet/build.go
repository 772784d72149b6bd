package procnet

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
)

// MainPackage is the import path of the medledger command.
const MainPackage = "github.com/medledger/medledger/cmd/medledger"

// Build compiles the medledger command into dir and returns the binary's path. It runs the go
// tool, so it works from inside the module (tests); the demo and the benchmark use their own
// executable instead.
func Build(ctx context.Context, dir string) (string, error) {
	return BuildPackage(ctx, dir, MainPackage, "medledger")
}

// BuildPackage compiles the main package pkg into dir/name and returns the binary's path (for
// test-only programs that run beside the nodes).
func BuildPackage(ctx context.Context, dir, pkg, name string) (string, error) {
	bin := filepath.Join(dir, name)
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("procnet: go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// ChildProcAttr is what every child the harness starts runs with: its own process group and,
// on Linux, death with its parent. Other programs a test starts beside the nodes use it too.
func ChildProcAttr() *syscall.SysProcAttr { return sysProcAttr() }
