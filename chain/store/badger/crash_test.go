package badger

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain/statetree"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/storetest"
)

var (
	crashCycles = flag.Int("crash.cycles", 200, "kill -9 cycles in TestCrashRecovery")
	crashSeed   = flag.Uint64("crash.seed", 0, "seed for TestCrashRecovery (0: from the clock)")
)

// The child writer reads its instructions from these; only this test sets them.
const (
	envCrashDir  = "MEDLEDGER_STORE_CRASH_DIR"
	envCrashSeed = "MEDLEDGER_STORE_CRASH_SEED"
	envCrashSync = "MEDLEDGER_STORE_CRASH_SYNC"
)

const crashMemTable = 4 << 20 // small, so big blocks span several Badger transactions

// TestCrashWriterChild is the process TestCrashRecovery kills: it opens the store and commits
// deterministic blocks until killed, reporting each commit after Commit returns.
func TestCrashWriterChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("run by TestCrashRecovery")
	}
	seed, err := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	policy := store.SyncNone
	if os.Getenv(envCrashSync) == "1" {
		policy = store.SyncEveryCommit
	}
	s, err := Open(dir, Options{Store: store.Options{Sync: policy}, MemTableSize: crashMemTable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Genesis(); err != nil {
		if _, err := s.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed)); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(os.Stdout, "ready %d\n", s.Height())
	// A parent that died would leave this running; the deadline bounds it.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := storetest.Extend(s, seed, 1, storetest.CrashSpec); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(os.Stdout, "committed %d\n", s.Height())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashRecovery kills a writing process with SIGKILL at random instants, then checks that the
// store opens with every reported commit, intact blocks and certificates, and the state root
// that replaying the same blocks into a Memory store gives. Each cycle continues the same chain.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(envCrashDir) != "" || os.Getenv(envLossDir) != "" {
		t.Skip("in a child")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	cycles := *crashCycles
	if testing.Short() {
		cycles = min(cycles, 20)
	}
	t.Logf("seed %d (rerun with -crash.seed=%d), %d cycles", seed, seed, cycles)
	r := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()

	ref := store.NewMemory() // the same chain, replayed without crashes
	verified := uint64(0)
	start := time.Now()
	var killedDuringOpen, syncCycles int
	for cycle := range cycles {
		sync := r.IntN(4) == 0
		if sync {
			syncCycles++
		}
		lines, wait := startChild(t, dir, seed, sync)
		// Mostly kill while blocks are being written; sometimes during open and recovery.
		var reported uint64
		if r.IntN(8) == 0 {
			killedDuringOpen++
			time.Sleep(time.Duration(r.IntN(60)) * time.Millisecond)
		} else {
			waitReady(t, lines)
			time.Sleep(time.Duration(10+r.IntN(150)) * time.Millisecond)
		}
		out := wait()
		for _, l := range strings.Split(out, "\n") {
			if h, ok := strings.CutPrefix(l, "committed "); ok {
				reported, _ = strconv.ParseUint(h, 10, 64)
			}
		}

		s, err := Open(dir, Options{Store: store.Options{Sync: store.SyncNone}, MemTableSize: crashMemTable})
		if err != nil {
			t.Fatalf("cycle %d (seed %d): reopen: %v", cycle, seed, err)
		}
		height := s.Height()
		if height < reported {
			t.Fatalf("cycle %d (seed %d): store at height %d, child reported %d committed", cycle, seed, height, reported)
		}
		if _, err := s.Genesis(); err == nil && refGenesis(ref) {
			if _, err := ref.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed)); err != nil {
				t.Fatal(err)
			}
		}
		// Replay newly committed heights into the reference and compare block by block.
		for ref.Height() < height {
			if err := storetest.Extend(ref, seed, 1, storetest.CrashSpec); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := s.StateRoot(), ref.StateRoot(); got != want {
			t.Fatalf("cycle %d (seed %d): state root at %d is %s, replay gives %s", cycle, seed, height, got.Short(), want.Short())
		}
		for h := uint64(1); h <= height; h++ {
			// New blocks are checked against the replay. Older ones were checked when new; all of
			// them are re-read every 25 cycles and at the end, a sample otherwise (keeps cycles short).
			full := cycle%25 == 0 || cycle == cycles-1
			if h <= verified && !full && r.IntN(int(verified)) >= 20 {
				continue
			}
			b, err := s.Block(h)
			if err != nil {
				t.Fatalf("cycle %d (seed %d): block %d: %v", cycle, seed, h, err)
			}
			cert, err := s.Cert(h)
			if err != nil || cert.BlockHash != b.Hash() {
				t.Fatalf("cycle %d (seed %d): certificate %d: %v", cycle, seed, h, err)
			}
			if h > verified {
				want, err := ref.Block(h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(want.Encode(), b.Encode()) {
					t.Fatalf("cycle %d (seed %d): block %d differs from the replay", cycle, seed, h)
				}
			}
		}
		if err := storetest.CheckLatestState(ref, s, storetest.StateKeys()); err != nil {
			t.Fatalf("cycle %d (seed %d): %v", cycle, seed, err)
		}
		if height > 0 {
			h := uint64(r.Int64N(int64(height) + 1))
			p, err := s.Prove(h, []byte("k/00007"))
			if err != nil {
				t.Fatalf("cycle %d: prove at %d: %v", cycle, h, err)
			}
			if err := statetree.VerifyProof(mustRoot(t, ref, h), p); err != nil {
				t.Fatalf("cycle %d: proof at %d: %v", cycle, h, err)
			}
		}
		verified = height
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d cycles in %s, final height %d, %d killed during open, %d with SyncEveryCommit", cycles, time.Since(start).Round(time.Millisecond), verified, killedDuringOpen, syncCycles)
	if verified == 0 {
		t.Fatal("the writer never committed a block")
	}
}

// refGenesis reports whether ref still needs its genesis.
func refGenesis(ref store.Store) bool {
	_, err := ref.Genesis()
	return err != nil
}

// mustRoot is the state root after height h in s (header h+1's StateRoot, or the tip's root).
func mustRoot(t *testing.T, s store.Store, h uint64) [32]byte {
	t.Helper()
	if h == s.Height() {
		return s.StateRoot()
	}
	b, err := s.Block(h + 1)
	if err != nil {
		t.Fatal(err)
	}
	return b.Header.StateRoot
}

// startChild re-executes the test binary as the writer. wait kills it with SIGKILL and returns
// its output.
func startChild(t *testing.T, dir string, seed uint64, sync bool) (<-chan string, func() string) {
	t.Helper()
	return startTest(t, "TestCrashWriterChild", envCrashDir+"="+dir, envCrashSeed+"="+strconv.FormatUint(seed, 10), envCrashSync+"="+flag01(sync))
}

// startWriter starts TestPowerLossWriterChild on dir, as startChild does.
func startWriter(t *testing.T, dir string, seed uint64, legacy, signing bool) (<-chan string, func() string) {
	t.Helper()
	return startTest(t, "TestPowerLossWriterChild", envLossDir+"="+dir, envLossSeed+"="+strconv.FormatUint(seed, 10), envLossLegacy+"="+flag01(legacy), envLossSign+"="+flag01(signing))
}

func flag01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// startTest re-executes the test binary running only the named test, with env added.
func startTest(t *testing.T, name string, env ...string) (<-chan string, func() string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	done := make(chan string)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		done <- all.String()
	}()
	return lines, func() string {
		_ = cmd.Process.Kill()
		out := <-done
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			// Anything but death by our signal means the child failed on its own.
			t.Fatalf("writer exited with %v before being killed:\n%s\n%s", err, out, stderr.String())
		}
		return out
	}
}

func waitReady(t *testing.T, lines <-chan string) {
	t.Helper()
	timeout := time.After(30 * time.Second) // generous: a deadline, not a timing assumption
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return // the child died; wait() reports why
			}
			if strings.HasPrefix(l, "ready ") {
				return
			}
		case <-timeout:
			t.Fatal("writer did not open the store within 30s")
		}
	}
}
