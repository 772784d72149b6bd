package badger

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/badger/lossyfs"
	"github.com/medledger/medledger/chain/store/storetest"
)

var (
	lossCycles = flag.Int("powerloss.cycles", 12, "power-loss cycles in TestPowerLoss")
	lossSeed   = flag.Uint64("powerloss.seed", 0, "seed for TestPowerLoss (0: from the clock)")
	lossLegacy = flag.Bool("powerloss.legacy", false, "run TestPowerLoss on the durability before SyncWrites (one DB.Sync after the marker): it is expected to fail")
)

// The power-loss writer reads its instructions from these; only TestPowerLoss sets them.
const (
	envLossDir    = "MEDLEDGER_STORE_LOSS_DIR"
	envLossSeed   = "MEDLEDGER_STORE_LOSS_SEED"
	envLossLegacy = "MEDLEDGER_STORE_LOSS_LEGACY"
	envLossSign   = "MEDLEDGER_STORE_LOSS_SIGN" // "1": SyncNone, and a sign state after each commit
)

// lossOptions make Badger rotate often: a 1 MiB memtable (a new write-ahead log every couple of
// commits) and 1 MiB value-log files; at that memtable size block chunks (256 KiB) go to the
// value log, and every third block is big (~600 KB of transactions, 400 KB of state changes).
func lossOptions(legacy bool) Options {
	return Options{
		Store:            store.Options{Sync: store.SyncEveryCommit},
		MemTableSize:     1 << 20,
		ValueLogFileSize: 1 << 20,
		GCInterval:       -1,
		legacySync:       legacy,
	}
}

var lossSpec = storetest.BlockSpec{TxBytes: 250, BigEach: 3}

// TestPowerLossWriterChild is the process TestPowerLoss kills before cutting the power: it commits
// deterministic blocks with SyncEveryCommit through the lossy mount, reporting each height after
// Commit returned, that is once the store has promised it survives power loss.
func TestPowerLossWriterChild(t *testing.T) {
	dir := os.Getenv(envLossDir)
	if dir == "" {
		t.Skip("run by TestPowerLoss")
	}
	seed, err := strconv.ParseUint(os.Getenv(envLossSeed), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	opts := lossOptions(os.Getenv(envLossLegacy) == "1")
	signing := os.Getenv(envLossSign) == "1"
	if signing {
		opts.Store.Sync = store.SyncNone
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Genesis(); err != nil {
		if _, err := s.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed)); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(os.Stdout, "ready %d\n", s.Height())
	deadline := time.Now().Add(time.Minute) // bounds a child whose parent died
	for time.Now().Before(deadline) {
		if err := storetest.Extend(s, seed, 1, lossSpec); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(os.Stdout, "committed %d\n", s.Height())
		if signing {
			h := s.Height()
			if err := s.SaveSignState(signRecord(h), signBlocksAt(seed, h)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(os.Stdout, "signed %d\n", h)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPowerLoss cuts the power under a writer at random instants: the writer commits on a lossy
// FUSE mount (chain/store/badger/lossyfs) that forgets every write not yet fsynced; the test
// kills it, loses power, unmounts, reopens the store on the backing directory, and requires every
// commit the writer reported, intact, with the state root of a crash-free replay into Memory.
//
// With -powerloss.legacy it runs the durability before SyncWrites and is expected to fail: a
// synced commit marker survives while earlier writes of the same commit, in a memtable log or
// value-log file Badger had rotated away from, are lost.
func TestPowerLoss(t *testing.T) {
	if os.Getenv(envLossDir) != "" || os.Getenv(envCrashDir) != "" {
		t.Skip("in a child")
	}
	if err := lossyfs.Available(); err != nil {
		t.Skipf("FUSE unavailable, power loss cannot be simulated: %v", err)
	}
	seed := *lossSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	cycles := *lossCycles
	if testing.Short() {
		cycles = min(cycles, 4)
	}
	t.Logf("seed %d (rerun with -powerloss.seed=%d), %d cycles, legacy durability %v", seed, seed, cycles, *lossLegacy)
	r := rand.New(rand.NewPCG(seed, 1))
	backing := t.TempDir()
	ref := store.NewMemory() // the same chain, replayed without crashes
	verified := uint64(0)
	start := time.Now()
	var dropped, reportedTotal int
	for cycle := range cycles {
		mnt := t.TempDir()
		fsys, err := lossyfs.Mount(mnt, backing)
		if err != nil {
			t.Skipf("FUSE mount refused, power loss cannot be simulated: %v", err)
		}
		t.Cleanup(func() { _ = fsys.Unmount() }) // after a failure; Unmount is idempotent
		lines, wait := startWriter(t, mnt, seed, *lossLegacy, false)
		var reported uint64
		early := r.IntN(8) == 0
		if early {
			time.Sleep(time.Duration(r.IntN(300)) * time.Millisecond) // during open and recovery
		} else {
			waitReady(t, lines)
			time.Sleep(time.Duration(200+r.IntN(1200)) * time.Millisecond)
		}
		for _, l := range strings.Split(wait(), "\n") {
			if h, ok := strings.CutPrefix(l, "committed "); ok {
				reported, _ = strconv.ParseUint(h, 10, 64)
				reportedTotal++
			}
		}
		if err := fsys.PowerLoss(); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Unmount(); err != nil {
			t.Fatal(err)
		}
		st := fsys.Stats()
		dropped += st.DroppedPages

		what := fmt.Sprintf("cycle %d (seed %d; %d pages lost, %d late write-backs dropped)", cycle, seed, st.DroppedPages, st.LateWrites)
		s, err := Open(backing, lossOptions(false))
		if err != nil {
			t.Fatalf("%s: reopen after power loss: %v", what, err)
		}
		height := s.Height()
		if height < reported {
			t.Fatalf("%s: store at height %d, the writer reported %d committed", what, height, reported)
		}
		if height < verified {
			t.Fatalf("%s: store at height %d, below the %d verified earlier", what, height, verified)
		}
		if _, err := s.Genesis(); err == nil && refGenesis(ref) {
			if _, err := ref.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed)); err != nil {
				t.Fatal(err)
			}
		}
		for ref.Height() < height {
			if err := storetest.Extend(ref, seed, 1, lossSpec); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := s.StateRoot(), ref.StateRoot(); got != want {
			t.Fatalf("%s: state root at %d is %s, replay gives %s", what, height, got.Short(), want.Short())
		}
		if err := storetest.CheckLatestState(ref, s, storetest.StateKeys()); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// Every block: a lost value-log page shows up as a block that no longer reads back.
		for h := uint64(1); h <= height; h++ {
			b, err := s.Block(h)
			if err != nil {
				t.Fatalf("%s: block %d: %v", what, h, err)
			}
			want, err := ref.Block(h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want.Encode(), b.Encode()) {
				t.Fatalf("%s: block %d differs from the replay", what, h)
			}
			if cert, err := s.Cert(h); err != nil || cert.BlockHash != b.Hash() {
				t.Fatalf("%s: certificate %d: %v", what, h, err)
			}
		}
		verified = height
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d cycles in %s, final height %d, %d commits reported, %d unsynced pages lost in all", cycles, time.Since(start).Round(time.Millisecond), verified, reportedTotal, dropped)
	if verified == 0 {
		t.Fatal("the writer never committed a block")
	}
	if dropped == 0 {
		t.Fatal("no power loss lost anything: the test would not notice a missing sync")
	}
}

// signRecord and signBlocksAt are the sign state the signing writer saves after committing h:
// two blocks of a few hundred KB (64 KiB chunks, several memtables per save), one of them the
// previous save's, so saves both reuse and delete blocks.
func signRecord(h uint64) []byte { return fmt.Appendf(nil, "signed after %d", h) }

func signBlocksAt(seed, h uint64) []store.SignBlock {
	var out []store.SignBlock
	for _, k := range []uint64{h, h - 1} {
		enc := signBlockBytes(seed, k)
		out = append(out, store.SignBlock{Hash: chain.Sum256(enc), Encode: func() []byte { return enc }})
	}
	return out
}

func signBlockBytes(seed, k uint64) []byte {
	r := rand.New(rand.NewPCG(seed, k))
	b := make([]byte, 200_000+r.IntN(400_000))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestPowerLossSignStateSyncNone cuts the power under a writer with SyncNone that saves a sign
// state after every commit: SaveSignState must be durable whatever the policy, so the store must
// come back with the last reported sign state or a later one, its blocks intact, and (since the
// save synced everything before it) at least the height it was saved at, with the replay's root.
// Its blocks span several memtables: Badger's DB.Sync alone would not make them durable.
func TestPowerLossSignStateSyncNone(t *testing.T) {
	if os.Getenv(envLossDir) != "" || os.Getenv(envCrashDir) != "" {
		t.Skip("in a child")
	}
	if err := lossyfs.Available(); err != nil {
		t.Skipf("FUSE unavailable, power loss cannot be simulated: %v", err)
	}
	seed := *lossSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	cycles := min(*lossCycles, 6)
	if testing.Short() {
		cycles = min(cycles, 2)
	}
	t.Logf("seed %d (rerun with -powerloss.seed=%d), %d cycles", seed, seed, cycles)
	r := rand.New(rand.NewPCG(seed, 2))
	backing := t.TempDir()
	ref := store.NewMemory()
	var signedTotal, dropped, rollbacks int
	for cycle := range cycles {
		mnt := t.TempDir()
		fsys, err := lossyfs.Mount(mnt, backing)
		if err != nil {
			t.Skipf("FUSE mount refused, power loss cannot be simulated: %v", err)
		}
		t.Cleanup(func() { _ = fsys.Unmount() })
		lines, wait := startWriter(t, mnt, seed, *lossLegacy, true)
		waitReady(t, lines)
		time.Sleep(time.Duration(300+r.IntN(1200)) * time.Millisecond)
		var signed uint64
		for _, l := range strings.Split(wait(), "\n") {
			if h, ok := strings.CutPrefix(l, "signed "); ok {
				signed, _ = strconv.ParseUint(h, 10, 64)
				signedTotal++
			}
		}
		if err := fsys.PowerLoss(); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Unmount(); err != nil {
			t.Fatal(err)
		}
		dropped += fsys.Stats().DroppedPages
		what := fmt.Sprintf("cycle %d (seed %d, %d pages lost)", cycle, seed, fsys.Stats().DroppedPages)
		opts := lossOptions(false)
		opts.Store.Sync = store.SyncNone
		s, err := Open(backing, opts)
		if err != nil {
			t.Fatalf("%s: reopen after power loss: %v", what, err)
		}
		rec, blocks, err := s.SignState()
		if err != nil {
			t.Fatalf("%s: sign state: %v", what, err)
		}
		if signed > 0 || rec != nil {
			var at uint64
			if _, err := fmt.Sscanf(string(rec), "signed after %d", &at); err != nil || at < signed {
				t.Fatalf("%s: sign record %q, the writer reported one saved after %d", what, rec, signed)
			}
			for _, b := range signBlocksAt(seed, at) {
				if !bytes.Equal(blocks[b.Hash], b.Encode()) {
					t.Fatalf("%s: sign block %s lost or damaged", what, b.Hash.Short())
				}
			}
			if len(blocks) != 2 {
				t.Fatalf("%s: %d sign blocks, want 2", what, len(blocks))
			}
			if s.Height() < at {
				t.Fatalf("%s: store at height %d, below the sign state saved after %d", what, s.Height(), at)
			}
		}
		if _, err := s.Genesis(); err == nil && refGenesis(ref) {
			if _, err := ref.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed)); err != nil {
				t.Fatal(err)
			}
		}
		// A power loss under SyncNone may take the store back below the reference.
		if s.Height() < ref.Height() {
			ref = store.NewMemory()
			if _, err := ref.InitGenesis(storetest.Genesis(seed), storetest.GenesisState(seed)); err != nil {
				t.Fatal(err)
			}
		}
		for ref.Height() < s.Height() {
			if err := storetest.Extend(ref, seed, 1, lossSpec); err != nil {
				t.Fatal(err)
			}
		}
		if s.StateRoot() != ref.StateRoot() {
			t.Fatalf("%s: state root at %d differs from the replay", what, s.Height())
		}
		// The marker may have survived blocks written before it; recovery rolls such a tail back,
		// so every block it kept reads back whole.
		if from, to, ok := s.RolledBack(); ok {
			rollbacks++
			t.Logf("%s: recovery rolled a damaged tail back from %d to %d", what, from, to)
		}
		for h := uint64(1); h <= s.Height(); h++ {
			if _, err := s.Block(h); err != nil {
				t.Fatalf("%s: block %d: %v", what, h, err)
			}
		}
		if err := storetest.CheckLatestState(ref, s, storetest.StateKeys()); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d sign states reported saved, %d unsynced pages lost in all, %d damaged tails rolled back", signedTotal, dropped, rollbacks)
	if signedTotal == 0 || dropped == 0 {
		t.Fatalf("the test did not exercise anything: %d saves, %d pages lost", signedTotal, dropped)
	}
}
