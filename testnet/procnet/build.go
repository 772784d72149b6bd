package procnet

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// MainPackage is the import path of the medledger command.
const MainPackage = "github.com/medledger/medledger/cmd/medledger"

// Build compiles the medledger command into dir and returns the binary's path. It runs the go
// tool, so it works from inside the module (tests); the demo and the benchmark use their own
// executable instead.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "medledger")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, MainPackage).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("procnet: go build %s: %w\n%s", MainPackage, err, out)
	}
	return bin, nil
}
