package sim

import (
	"bufio"
	"flag"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	flagSeeds = flag.Int("sim.seeds", 0, "seeds to run at -sim.n (0: the make test default of 1,000 at n=4 and 150 at n=7)")
	flagN     = flag.Int("sim.n", 4, "authorities per simulated network when -sim.seeds is set")
	flagSeed  = flag.Uint64("sim.seed", 0, "run only this seed (at -sim.n), verbosely")
	flagFirst = flag.Uint64("sim.first", 1, "first seed")
	flagHeal  = flag.Int64("sim.heal", 0, "healed-phase length in ms for -sim.seed (0: the default)")
)

// TestSimulation runs many seeded networks with faults and Byzantine authorities and checks every
// invariant. A failure prints the seed; add it to testdata/regressions.txt once fixed.
func TestSimulation(t *testing.T) {
	if *flagSeed != 0 {
		c := DefaultConfig(*flagSeed, *flagN)
		if *flagHeal > 0 {
			c.HealMs = *flagHeal
		}
		if testing.Verbose() {
			c.Trace = func(s string) { t.Log(s) }
		}
		t.Logf("byzantine: %v", c.Byzantine)
		res := Run(c)
		t.Logf("seed %d: %+v", *flagSeed, res)
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		return
	}
	type set struct{ n, seeds int }
	sets := []set{{4, 1000}, {7, 150}}
	if testing.Short() {
		sets = []set{{4, 100}, {7, 10}}
	}
	if *flagSeeds > 0 {
		sets = []set{{*flagN, *flagSeeds}}
	}
	for _, s := range sets {
		t.Run("n="+strconv.Itoa(s.n), func(t *testing.T) {
			sum := runSeeds(t, s.n, *flagFirst, s.seeds, DefaultConfig)
			t.Logf("n=%d: %d seeds: %s", s.n, s.seeds, sum.Summary())
		})
	}
}

// runSeeds runs seeds in parallel on all cores, fails t for each violating seed, and returns
// the summed results.
func runSeeds(t *testing.T, n int, first uint64, count int, mk func(uint64, int) Config) Result {
	t.Helper()
	var (
		mu       sync.Mutex
		sum      Result
		wg       sync.WaitGroup
		failures int
		next     = first
		end      = first + uint64(count)
	)
	workers := runtime.GOMAXPROCS(0)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= end || failures > 5 { // enough to debug; stop early
					mu.Unlock()
					return
				}
				seed := next
				next++
				mu.Unlock()
				res := Run(mk(seed, n))
				mu.Lock()
				sum.Add(res)
				if err := res.Err(); err != nil {
					failures++
					t.Errorf("%v\nreplay: go test ./testnet/sim -run 'TestSimulation$' -sim.n=%d -sim.seed=%d -v", err, n, seed)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return sum
}

// TestRegressionSeeds replays seeds that once failed.
func TestRegressionSeeds(t *testing.T) {
	f, err := os.Open("testdata/regressions.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			t.Fatalf("regressions.txt: want 'N SEED [comment]', got %q", line)
		}
		n, err1 := strconv.Atoi(fields[0])
		seed, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("regressions.txt: bad line %q", line)
		}
		if err := Run(DefaultConfig(seed, n)); err.Err() != nil {
			t.Error(err.Err())
		}
	}
}

// TestDeterministic: one seed, one run, byte for byte.
func TestDeterministic(t *testing.T) {
	for _, seed := range []uint64{7, 42} {
		a, b := Run(DefaultConfig(seed, 4)), Run(DefaultConfig(seed, 4))
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d ran differently twice:\n%+v\n%+v", seed, a, b)
		}
		if a.Heights == 0 {
			t.Fatalf("seed %d committed nothing", seed)
		}
	}
}

// TestHealthyNetworkMakesProgress: without faults the network commits a block about every
// block interval plus a round trip; this guards against a checker that passes because nothing
// happens.
func TestHealthyNetworkMakesProgress(t *testing.T) {
	c := DefaultConfig(1, 4)
	c.Byzantine = nil
	c.DropRate, c.DupRate, c.PartitionEveryMs, c.CrashEveryMs, c.SlowRate, c.WithholdEveryMs, c.SetChangeEveryMs = 0, 0, 0, 0, 0, 0, 0
	res := Run(c)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Heights < 50 || res.Txs == 0 {
		t.Fatalf("healthy network committed only %d heights and %d transactions in 20 s", res.Heights, res.Txs)
	}
	t.Logf("healthy n=4: %d heights, %d txs in 20 simulated seconds", res.Heights, res.Txs)
}

// TestCheckerCatchesTwoEquivocators is the control run: with 2 of 4 authorities forking (more
// than f=1), safety cannot hold, and the checker must say so for some seed.
func TestCheckerCatchesTwoEquivocators(t *testing.T) {
	for seed := uint64(1); seed <= 100; seed++ {
		c := DefaultConfig(seed, 4)
		c.Byzantine = map[int]Behavior{0: Equivocator, 1: Equivocator}
		c.LeakEquivocation = false
		c.PartitionEveryMs, c.CrashEveryMs, c.DropRate, c.SlowRate, c.WithholdEveryMs, c.SetChangeEveryMs = 0, 0, 0, 0, 0, 0
		res := Run(c)
		for _, v := range res.Violations {
			if strings.Contains(v, "agreement") {
				t.Logf("seed %d: checker reported: %s", seed, v)
				return
			}
		}
	}
	t.Fatal("2 of 4 equivocating authorities never broke agreement in 100 seeds: the checker or the attack is broken")
}

// TestLaggardCatchesUp: an honest authority that missed the first 500 heights catches up by
// block sync while a Flooder answers sync requests with forged blocks and certificates.
func TestLaggardCatchesUp(t *testing.T) {
	seeds := 4
	if testing.Short() {
		seeds = 1
	}
	sum := runSeeds(t, 4, *flagFirst, seeds, func(seed uint64, n int) Config { return LaggardConfig(seed, n, 500) })
	if sum.CatchUps < seeds || sum.CaughtUp < uint64(seeds)*490 {
		t.Fatalf("%d catch-ups over %d heights in %d runs: the laggard did not catch up through sync", sum.CatchUps, sum.CaughtUp, seeds)
	}
	t.Logf("laggard n=4: %d seeds: %s", seeds, sum.Summary())
}
