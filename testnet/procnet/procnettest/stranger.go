package procnettest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/medledger/medledger/testnet/procnet"
)

// StrangerPackage is the test-only program that plays a non-member peer.
const StrangerPackage = "github.com/medledger/medledger/testnet/procnet/stranger"

var (
	strangerOnce sync.Once
	strangerDir  string
	strangerBin  string
	strangerErr  error
)

// StrangerBinary returns the non-member program, built once per test binary.
func StrangerBinary(tb testing.TB) string {
	tb.Helper()
	strangerOnce.Do(func() {
		strangerDir, strangerErr = os.MkdirTemp("", "medledger-procnet-stranger-")
		if strangerErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		strangerBin, strangerErr = procnet.BuildPackage(ctx, strangerDir, StrangerPackage, "stranger")
	})
	if strangerErr != nil {
		tb.Fatalf("building the stranger program: %v", strangerErr)
	}
	return strangerBin
}
