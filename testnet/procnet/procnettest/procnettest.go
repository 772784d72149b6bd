// Package procnettest provides test helpers for multi-process networks: it builds the medledger
// binary once per test binary, picks free loopback ports, initialises a network in a test's
// temporary directory and makes sure no node outlives the test.
package procnettest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/medledger/medledger/testnet/procnet"
)

// BinEnv names an environment variable that, when set, points at a prebuilt medledger binary to
// use instead of building one (for CI that builds once for several packages).
const BinEnv = "MEDLEDGER_BIN"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Binary returns the medledger binary for this test binary: $MEDLEDGER_BIN if set, otherwise one
// built (once) into a temporary directory that Cleanup removes.
func Binary(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv(BinEnv); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "medledger-procnet-bin-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		buildBin, buildErr = procnet.Build(ctx, buildDir)
	})
	if buildErr != nil {
		tb.Fatalf("building medledger: %v", buildErr)
	}
	return buildBin
}

// Cleanup removes the binaries Binary and the test-only programs built. Call it from TestMain
// after m.Run.
func Cleanup() {
	for _, dir := range []string{buildDir, byzantineProgram.dir, strangerProgram.dir, liarProgram.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
}

// program is a test-only command of this module, built once per test binary into its own
// temporary directory.
type program struct {
	pkg, name string
	once      sync.Once
	dir, bin  string
	err       error
}

func (p *program) binary(tb testing.TB) string {
	tb.Helper()
	p.once.Do(func() {
		if p.dir, p.err = os.MkdirTemp("", "medledger-procnet-"+p.name+"-"); p.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		p.bin, p.err = procnet.BuildPackage(ctx, p.dir, p.pkg, p.name)
	})
	if p.err != nil {
		tb.Fatalf("building the %s program: %v", p.name, p.err)
	}
	return p.bin
}

// New creates an n-node network in a temporary directory on free loopback ports, without
// starting any node. When the test ends every node still running is killed; if the test failed,
// the tail of each node's log is printed.
func New(tb testing.TB, n int) *procnet.Network {
	tb.Helper()
	return NewWith(tb, n)
}

// NewWith is New with more `testnet init` flags (such as --test-clock).
func NewWith(tb testing.TB, n int, flags ...string) *procnet.Network {
	tb.Helper()
	bin := Binary(tb)
	base, err := procnet.FreeBasePort(n)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := procnet.InitWith(ctx, bin, tb.TempDir(), n, base, flags...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		nw.Close()
		if tb.Failed() {
			for i := range n {
				tb.Logf("---- node%d log tail (%s) ----\n%s", i, nw.LogPath(i), nw.LogTail(i, 4000))
			}
		}
	})
	tb.Logf("network of %d nodes in %s, base port %d", n, nw.Dir, base)
	return nw
}

// StartAll starts every node of nw, failing the test on error.
func StartAll(tb testing.TB, nw *procnet.Network) {
	tb.Helper()
	for i := range nw.N {
		if err := nw.Start(i); err != nil {
			tb.Fatal(err)
		}
	}
}

// Describe names node i with its pid and ports, for test logs.
func Describe(nw *procnet.Network, i int) string {
	addr, _ := nw.APIAddr(i)
	return fmt.Sprintf("node%d (pid %d, p2p %d, api %s)", i, nw.PID(i), nw.P2PPort(i), addr)
}
