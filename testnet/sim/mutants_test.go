package sim

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The mutation test: each mutant is a deliberate defect compiled in with -tags mutants and named
// with -ldflags -X (see mutant.go in chain, consensus and consensus/replica). For each, a child
// `go test` runs the seeds of the scenario that should expose it until the checker reports a
// violation; the mutant is caught if one does within the budget.

var (
	flagMutants  = flag.Bool("sim.mutants", false, "run the mutation test (make mutants; make test runs it)")
	flagMutant   = flag.String("sim.mutant", "", "in the child: the mutant compiled in")
	flagMutSeeds = flag.Int("sim.mutant-seeds", 400, "seeds the child may run before the mutant counts as missed")
)

// mutants, with the scenario that should expose each.
var mutants = []struct {
	name, what string
	config     func(seed uint64) Config
}{
	{"signgate", "the signing gate (checkHRS) always allows", func(s uint64) Config { return DefaultConfig(s, 4) }},
	{"nosignstate", "the sign state is never persisted", func(s uint64) Config { return DefaultConfig(s, 4) }},
	{"lockamnesia", "the lock is not restored after a catch-up", lossyConfig},
	{"certdup", "a commit certificate may count one signer several times", func(s uint64) Config { return LaggardConfig(s, 4, 60) }},
	{"noproposercheck", "proposals are accepted from any authority, not only the round's proposer", floodConfig},
	{"gapforever", "the mempool admits nonces beyond the window and never expires them", floodConfig},
}

// lossyConfig is the default mix with more crashes, most of them power losses or between
// persisting and sending, on stores that may lose their last commits: a store behind its sign
// state, then a catch-up, is what the lock must survive.
func lossyConfig(seed uint64) Config {
	c := DefaultConfig(seed, 4)
	c.CrashEveryMs, c.PowerLossShare, c.CrashBeforeSend, c.CrashInCommitShare, c.DurableShare = 1500, 0.5, 0.35, 0.1, 0
	return c
}

// floodConfig is the default mix with one Flooder among four authorities.
func floodConfig(seed uint64) Config {
	c := DefaultConfig(seed, 4)
	c.Byzantine = map[int]Behavior{int(seed % 4): Flooder}
	return c
}

var caughtLine = regexp.MustCompile(`MUTANT CAUGHT seed=(\d+) runs=(\d+) violation=(.*)`)

func TestMutants(t *testing.T) {
	if !*flagMutants {
		t.Skip("the mutation test runs with -sim.mutants (make mutants, and make test)")
	}
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			var ldflags []string
			for _, pkg := range []string{"chain", "consensus", "consensus/replica"} {
				ldflags = append(ldflags, fmt.Sprintf("-X github.com/medledger/medledger/%s.mutant=%s", pkg, m.name))
			}
			cmd := exec.Command("go", "test", "-count=1", "-tags", "mutants", "-ldflags", strings.Join(ldflags, " "),
				"-run", "^TestMutantChild$", ".", "-sim.mutant="+m.name, fmt.Sprintf("-sim.mutant-seeds=%d", *flagMutSeeds), "-v")
			cmd.Env = os.Environ()
			out, _ := cmd.CombinedOutput()
			got := caughtLine.FindStringSubmatch(string(out))
			if got == nil {
				t.Fatalf("mutant %q (%s) was not caught in %d seeds:\n%s", m.name, m.what, *flagMutSeeds, tail(string(out), 3000))
			}
			// The control: the same seed on the real code (this process has no mutant compiled
			// in) must break nothing, or the catch proves nothing.
			seed, _ := strconv.ParseUint(got[1], 10, 64)
			if res := Run(m.config(seed)); res.Err() != nil {
				t.Fatalf("seed %d also fails without the mutant: %v", seed, res.Err())
			}
			t.Logf("mutant %q (%s): caught by seed %s after %s runs (the same seed passes without it): %s", m.name, m.what, got[1], got[2], got[3])
		})
	}
}

// TestMutantChild runs in the child built with a mutant: seeds of the mutant's scenario in order
// until one violates an invariant.
func TestMutantChild(t *testing.T) {
	if *flagMutant == "" {
		t.Skip("run by TestMutants")
	}
	for _, m := range mutants {
		if m.name != *flagMutant {
			continue
		}
		for seed := uint64(1); seed <= uint64(*flagMutSeeds); seed++ {
			res := Run(m.config(seed))
			if len(res.Violations) > 0 {
				fmt.Printf("MUTANT CAUGHT seed=%d runs=%d violation=%s\n", seed, seed, res.Violations[0])
				return
			}
		}
		t.Fatalf("mutant %s survived %d seeds", m.name, *flagMutSeeds)
	}
	t.Fatalf("unknown mutant %q", *flagMutant)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
