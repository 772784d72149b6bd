package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/testnet/procnet"
)

// The phases of `medledger bench` after the load search: overload and recovery, node restart;
// and the nodes' profile arguments. Catch-up is in bench_catchup.go.

// benchNodeArgs are the authorities' extra arguments (procnet.Network.Args) for the profiles
// the bench was asked for; it creates the profile directories.
func benchNodeArgs(o benchOptions) (map[int][]string, error) {
	for _, dir := range []string{o.cpuProfile, o.memProfile} {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
		}
	}
	args := make(map[int][]string, o.n)
	for i := range o.n {
		args[i] = profileArgs(o, "node"+strconv.Itoa(i))
	}
	return args, nil
}

// profileArgs are the node arguments that write the profiles asked for: a CPU profile
// CPUDIR/name.pprof and a heap profile MEMDIR/name.heap, both written when the node stops
// (absolute paths: they must not depend on the child's working directory).
func profileArgs(o benchOptions, name string) []string {
	var a []string
	if o.cpuProfile != "" {
		a = append(a, "--cpuprofile", absPath(filepath.Join(o.cpuProfile, name+".pprof")))
	}
	if o.memProfile != "" {
		a = append(a, "--memprofile", absPath(filepath.Join(o.memProfile, name+".heap")))
	}
	return a
}

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// listProfiles returns the profiles written, for the report.
func listProfiles(o benchOptions) []string {
	var out []string
	if o.cpuProfile != "" {
		m, _ := filepath.Glob(filepath.Join(o.cpuProfile, "*.pprof"))
		out = append(out, m...)
	}
	if o.memProfile != "" {
		m, _ := filepath.Glob(filepath.Join(o.memProfile, "*.heap"))
		out = append(out, m...)
	}
	return out
}

// height is node0's height now (0 if it does not answer).
func (b *bencher) height(ctx context.Context) uint64 {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := b.nw.Status(qctx, 0)
	if err != nil {
		return 0
	}
	return st.Height
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// overloadReport: twice the sustained load for a while, then the sustained load again. The
// issue wants the second step to commit as the fresh network did, and the excess refused early
// with 503 rather than queued.
type overloadReport struct {
	Seconds  float64   `json:"seconds"`
	Step     benchStep `json:"step"`     // at twice the sustained load
	Recovery benchStep `json:"recovery"` // right after, at the sustained load
	// The fresh network's figures at the sustained load (the search's best step).
	FreshCommitted  float64 `json:"fresh_committed_tx_per_sec"`
	FreshCPUPerTxMs float64 `json:"fresh_node_cpu_ms_per_tx"`
	CommittedRatio  float64 `json:"recovery_committed_over_fresh"`
	CPURatio        float64 `json:"recovery_cpu_over_fresh"`
}

func (b *bencher) overloadPhase(ctx context.Context, best *benchStep, dur time.Duration) (*overloadReport, error) {
	r := &overloadReport{Seconds: dur.Seconds(), FreshCommitted: best.Committed, FreshCPUPerTxMs: best.CPUPerTxMs}
	fmt.Fprintf(b.progress, "overload: %.0f tx/s (twice the sustained load) for %s...\n", 2*best.Target, dur)
	s, err := b.runStep(ctx, 2*best.Target, dur, nil)
	if err != nil {
		return nil, err
	}
	r.Step = *s
	fmt.Fprintf(b.progress, "  answered: %d accepted, %d refused for load (503), %d other refusals, %d unanswered; answers p50 %.0f ms, p99 %.0f ms; drained in %.1f s\n",
		s.Accepted, s.RefusedLoad, s.RefusedOther, s.Failed, s.AnswerP50Ms, s.AnswerP99Ms, s.DrainSeconds)
	if ctx.Err() != nil {
		return r, nil
	}
	fmt.Fprintf(b.progress, "recovery: the sustained load (%.0f tx/s) again...\n", best.Target)
	s, err = b.runStep(ctx, best.Target, b.step, nil)
	if err != nil {
		return nil, err
	}
	r.Recovery = *s
	if r.FreshCommitted > 0 {
		r.CommittedRatio = s.Committed / r.FreshCommitted
	}
	if r.FreshCPUPerTxMs > 0 {
		r.CPURatio = s.CPUPerTxMs / r.FreshCPUPerTxMs
	}
	return r, nil
}

// restartReport: one authority stopped cleanly and started again. The issue wants a restart
// that does not replay the chain, so these times should not grow with Height.
type restartReport struct {
	Node        int     `json:"node"`
	Height      uint64  `json:"height"`       // node0's height when the node was stopped
	StopSeconds float64 `json:"stop_seconds"` // SIGTERM → exit
	APISeconds  float64 `json:"api_seconds"`  // start → the API answers /v1/status
	HeadSeconds float64 `json:"head_seconds"` // start → at node0's height
	RSSMB       float64 `json:"rss_mb"`       // VmRSS once back at the head
	Note        string  `json:"note,omitempty"`
}

// restartPhase stops node i with SIGTERM, starts it again and times it. Failures go into the
// report's note: the bench reports, it does not judge.
func (b *bencher) restartPhase(ctx context.Context, i int, o benchOptions) *restartReport {
	nw := b.nw
	r := &restartReport{Node: i, Height: b.height(ctx)}
	fmt.Fprintf(b.progress, "restart: node%d at height %d (SIGTERM, start, API, head)...\n", i, r.Height)
	t0 := time.Now()
	if err := nw.Stop(i); err != nil {
		r.Note = joinNote(r.Note, trimLog(err.Error()))
	}
	r.StopSeconds = time.Since(t0).Seconds()
	if nw.Args != nil {
		// The first run's profiles are complete now; the restarted node writes its own.
		nw.Args[i] = profileArgs(o, fmt.Sprintf("node%d-restart", i))
	}
	t1 := time.Now()
	if err := nw.Start(i); err != nil {
		r.Note = joinNote(r.Note, trimLog(err.Error()))
		return r
	}
	exited := func() error {
		if e, ok := nw.Exited(i); ok {
			return procnet.Permanent(fmt.Errorf("node%d exited (%v); log tail:\n%s", i, e, nw.LogTail(i, 2000)))
		}
		return nil
	}
	err := procnet.WaitFor(ctx, 5*time.Minute, 20*time.Millisecond, fmt.Sprintf("node%d's API", i), func(ctx context.Context) (bool, error) {
		if err := exited(); err != nil {
			return false, err
		}
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := nw.Status(qctx, i)
		return err == nil, err
	})
	r.APISeconds = time.Since(t1).Seconds()
	if err != nil {
		r.Note = joinNote(r.Note, trimLog(err.Error()))
		return r
	}
	err = procnet.WaitFor(ctx, 5*time.Minute, 50*time.Millisecond, fmt.Sprintf("node%d at the head", i), func(ctx context.Context) (bool, error) {
		if err := exited(); err != nil {
			return false, err
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		head, err := nw.Status(qctx, 0)
		if err != nil {
			return false, err
		}
		st, err := nw.Status(qctx, i)
		if err != nil {
			return false, err
		}
		return st.Height >= head.Height, nil
	})
	r.HeadSeconds = time.Since(t1).Seconds()
	if err != nil {
		r.Note = joinNote(r.Note, trimLog(err.Error()))
	}
	if u, err := nw.Usage(i); err == nil {
		r.RSSMB = bytesToMB(u.RSS)
	}
	fmt.Fprintf(b.progress, "  stopped in %.1f s; API after %.2f s, at the head after %.2f s %s\n", r.StopSeconds, r.APISeconds, r.HeadSeconds, r.Note)
	return r
}

// trimLog shortens a multi-line error for a one-line note.
func trimLog(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
