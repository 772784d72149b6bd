package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"github.com/medledger/medledger/records/index"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet/procnet"
)

func benchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a local network of authority node processes: throughput, latency, CPU, memory, overload, catch-up and restart",
		Long: `bench starts a local testnet with each authority as its own 'medledger node' process on 127.0.0.1
and measures, in one run, every figure of issue 10's table it can (docs/bench.md):

  - this machine's Ed25519 verification rate per core (one by one, as the mempool verifies, and in
    batches), and from it the verification ceiling of the network: a transaction costs one
    verification on each node, so ceiling = verifications/s per core × cores ÷ authorities;
  - the highest offered load (unique signed ~300-byte patient registrations, submitted in batches
    to every node's API) that the network sustains: nothing refused and no more than 3 s of load
    accepted but not yet committed at the step's end, so the mempools do not grow without bound;
    the load climbs in steps (doubling, then bisecting once a step fails);
  - at that load: committed tx/s, blocks/s, node CPU time per committed transaction (user+system
    from /proc/<pid>/stat, summed over all nodes) and its ratio to the ceiling;
  - at half that load: submit-to-final latency p50/p99 (from the batch request to the first poll
    of node0 that shows the transaction in a committed block);
  - RSS of each node (VmRSS from /proc/<pid>/status): idle after start, peak during the sustained
    step and the overload, idle after the load, at the end; and the peak (VmHWM);
  - overload (--overload, default 30s; 0 skips): twice the sustained load, how it was answered
    (accepted, refused for load with 503, other refusals, unanswered; answer times), then a step
    at the sustained load compared with the fresh network's;
  - with --records N (default 10000; 0 skips): N FHIR resources imported at node0 as Bundles of
    100 (records/s, node CPU per record), grant-to-first-read latency on node2, and
    fetch-and-decrypt latency of a --record-mib record, local and fetched from a peer.
    --records-only skips the load steps;
  - catch-up (--catch-up, default on): a fresh full node (no authority key, a licence from the
    testnet's licensing authority as its ticket, node0 as bootstrap) syncs the whole chain: time
    to node0's height and transactions of history replayed per second;
  - restart (--restart, default on): node1 stopped with SIGTERM and started again: time until
    its API answers and until it is back at node0's height;
  - scale (--scale N, default 1000000; 0 skips), before the network starts: a per-patient index
    (records/index) grown with synthetic blocks to 10^4, 10^5 and 10^6 records over 100,000
    patients (up to N), timing one patient's record list, consents and accesses and a reopen at
    each size;
  - billing (docs/billing.md), in two parts. With --billing-memberships N (default 100000; 0
    skips), before the network starts: a ledger with 10^3, 10^4 … up to N monthly memberships
    starting at the same instant, built through full execution (patient registrations, a plan,
    enrolments; the bench's own transaction signatures are taken as verified, as a mempool cache
    vouches for them, the co-signatures are checked) on the node's Badger store in a temporary
    directory (10^5 takes minutes); then the same block of 3 registrations executed on that
    state with its time a day before the month's end and just after it (median of 15 each; state
    keys read and written), the commit time (fsync, as an authority) of blocks a day before and
    of the crossing block, and one statement's read. Invoices are derived on read, so these
    should not grow with the memberships. With --claims N (default 500; 0 skips), after the
    records phase: a payer's node joins (licence from the testnet's payers registry), publishes a
    fee schedule for node0's practice and covers N/4 patients; node0 anchors an encounter per
    claim and files the N claims (8 concurrent requests, each answered once committed; a
    quarter carry a code without a fee and wait for the payer's signed decision): claims filed
    and adjudicated per second, filing latency p50/p99, node CPU per claim, refusals, and 5
    exact duplicates (refused). --billing-only skips the load steps and the records phase.

With --cpuprofile DIR every node runs with 'medledger node --cpuprofile DIR/node<i>.pprof' (the
full node DIR/full.pprof, node1 after its restart DIR/node1-restart.pprof); the nodes stop with
SIGTERM, so the profiles are complete for 'go tool pprof'. --memprofile DIR does the same with
'medledger node --memprofile DIR/node<i>.heap' (the live heap when the node stops).

Benchmarks report figures; nothing here is a pass/fail test. Progress goes to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBench(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	cmd.Flags().IntVar(&o.n, "authorities", 4, "number of authority nodes (processes)")
	cmd.Flags().DurationVar(&o.step, "duration", 15*time.Second, "length of each load step (the first quarter, at most 3 s, is warm-up)")
	cmd.Flags().BoolVar(&o.json, "json", false, "write the results as one JSON document on stdout instead of a table")
	cmd.Flags().StringVar(&o.dir, "dir", "", "network directory (default: a new temporary directory)")
	cmd.Flags().IntVar(&o.basePort, "base-port", 0, "first node's p2p port (default 0: pick free ports)")
	cmd.Flags().IntVar(&o.startRate, "start-rate", 1000, "offered load of the first step, tx/s")
	cmd.Flags().IntVar(&o.maxSteps, "max-steps", 8, "most load steps to search for the sustained load")
	cmd.Flags().IntVar(&o.records, "records", 10000, "FHIR resources to import in the records phase (0 skips the phase)")
	cmd.Flags().BoolVar(&o.recordsOnly, "records-only", false, "skip the transaction load steps; run only the records phase")
	cmd.Flags().Float64Var(&o.recordMiB, "record-mib", 1, "size of the large record whose fetch-and-decrypt latency is measured, MiB")
	cmd.Flags().IntVar(&o.recordReplicas, "record-replicas", -1, "set the genesis params.replicas (record holders besides the author, 1..16) before start (-1: the default 2)")
	cmd.Flags().StringVar(&o.cpuProfile, "cpuprofile", "", "directory for a CPU profile of every node (DIR/node<i>.pprof, written when the node stops)")
	cmd.Flags().StringVar(&o.memProfile, "memprofile", "", "directory for a heap profile of every node (DIR/node<i>.heap: live objects when the node stops)")
	cmd.Flags().DurationVar(&o.overload, "overload", 30*time.Second, "length of the overload step at twice the sustained load, followed by a recovery step at the sustained load (0 skips both)")
	cmd.Flags().BoolVar(&o.catchUp, "catch-up", true, "after the other phases, time a fresh full node syncing the chain")
	cmd.Flags().BoolVar(&o.restart, "restart", true, "at the end, time node1's restart (SIGTERM, start, API up, back at the head)")
	cmd.Flags().Uint64Var(&o.scale, "scale", 1_000_000, "largest index size of the scale phase, records (0 skips it)")
	cmd.Flags().IntVar(&o.billingMemberships, "billing-memberships", 100_000, "largest number of memberships whose period boundary is measured (10^3 up to it by factors of 10; 0 skips)")
	cmd.Flags().IntVar(&o.claims, "claims", 500, "claims filed and adjudicated on the network in the billing phase (0 skips)")
	cmd.Flags().BoolVar(&o.billingOnly, "billing-only", false, "skip the transaction load steps and the records phase; run the billing phase")
	return cmd
}

type benchOptions struct {
	n, basePort, startRate, maxSteps int
	step                             time.Duration
	json                             bool
	dir                              string
	records                          int
	recordsOnly                      bool
	recordMiB                        float64
	recordReplicas                   int
	cpuProfile, memProfile           string
	overload                         time.Duration
	scale                            uint64
	catchUp, restart                 bool
	billingMemberships, claims       int
	billingOnly                      bool
}

// benchReport is the JSON document --json writes.
type benchReport struct {
	Command     string  `json:"command"`
	Authorities int     `json:"authorities"`
	Cores       int     `json:"cores"`
	GoMaxProcs  int     `json:"gomaxprocs"`
	StepSeconds float64 `json:"step_seconds"`
	TxBytes     int     `json:"tx_bytes"`

	VerifyPerCore      float64 `json:"verify_per_sec_per_core"`
	BatchVerifyPerCore float64 `json:"batch_verify_per_sec_per_core"`
	BatchSize          int     `json:"batch_size"`
	Ceiling            float64 `json:"ceiling_tx_per_sec"`
	BatchCeiling       float64 `json:"batch_ceiling_tx_per_sec"`

	SustainedOffered float64 `json:"sustained_offered_tx_per_sec"`
	Committed        float64 `json:"committed_tx_per_sec"`
	RatioToCeiling   float64 `json:"ratio_to_ceiling"`
	BlocksPerSec     float64 `json:"blocks_per_sec"`
	CPUPerTxMs       float64 `json:"node_cpu_ms_per_tx"`

	LatencyOffered float64 `json:"latency_offered_tx_per_sec"`
	LatencyP50Ms   float64 `json:"latency_p50_ms"`
	LatencyP99Ms   float64 `json:"latency_p99_ms"`
	LatencySamples int     `json:"latency_samples"`
	LatencyMissing int     `json:"latency_not_final"`

	// Memory per node, MB: VmRSS sampled at each point, the peak of 250 ms samples during a
	// step, and the kernel's high-water mark (VmHWM) at the end.
	RSS       rssReport `json:"rss"`
	PeakRSSMB []float64 `json:"peak_rss_mb"`

	Steps    []benchStep     `json:"steps"`
	Overload *overloadReport `json:"overload,omitempty"`
	Records  *recordsReport  `json:"records,omitempty"`
	Billing  *billingReport  `json:"billing,omitempty"`
	CatchUp  *catchUpReport  `json:"catch_up,omitempty"`
	Restart  *restartReport  `json:"restart,omitempty"`
	// Scale is the per-patient index at growing sizes (scale phase).
	Scale []index.ScalePoint `json:"scale,omitempty"`
	// Note says what the run could not measure, and why.
	Note string `json:"note,omitempty"`
	// Profiles lists the profile files written (with --cpuprofile, --memprofile).
	Profiles []string `json:"profiles,omitempty"`
	Dir      string   `json:"dir"`
}

// rssReport is each node's resident memory at the bench's milestones, MB, with node0's chain
// height at each (the issue wants memory flat as the chain grows).
type rssReport struct {
	IdleMB        []float64 `json:"idle_mb"` // after start and provider registration, before load
	IdleHeight    uint64    `json:"idle_height"`
	LoadMB        []float64 `json:"load_peak_mb,omitempty"`     // peak during the sustained step
	OverloadMB    []float64 `json:"overload_peak_mb,omitempty"` // peak during the overload step
	AfterLoadMB   []float64 `json:"after_load_mb,omitempty"`    // idle again, after the load phases drained
	AfterHeight   uint64    `json:"after_load_height,omitempty"`
	EndMB         []float64 `json:"end_mb"` // after every phase but the restart
	EndHeight     uint64    `json:"end_height"`
	LoadStepIndex int       `json:"load_step,omitempty"` // 1-based index in steps of the step LoadMB comes from
}

// benchStep is one load step's outcome.
type benchStep struct {
	Target       float64 `json:"target_tx_per_sec"`
	Seconds      float64 `json:"seconds"`
	Offered      float64 `json:"offered_tx_per_sec"`
	Committed    float64 `json:"committed_tx_per_sec"`
	Accepted     int     `json:"accepted"`
	Refused      int     `json:"refused"`
	RefusedLoad  int     `json:"refused_for_load"` // 503, or its message in a batch answer
	RefusedOther int     `json:"refused_other"`
	Failed       int     `json:"unanswered"` // no answer within 30 s, or the connection failed
	// AnswerP50Ms and AnswerP99Ms: time from a batch request to its answer, accepted or refused.
	AnswerP50Ms  float64   `json:"answer_p50_ms"`
	AnswerP99Ms  float64   `json:"answer_p99_ms"`
	BacklogStart int       `json:"backlog_start"`
	BacklogEnd   int       `json:"backlog_end"`
	DrainSeconds float64   `json:"drain_seconds"` // after the step, until the backlog committed
	MaxMempool   int       `json:"max_mempool"`
	Blocks       float64   `json:"blocks_per_sec"`
	CPUPerTxMs   float64   `json:"node_cpu_ms_per_tx"`
	RSSMaxMB     []float64 `json:"rss_max_mb"`
	Sustained    bool      `json:"sustained"`
	Note         string    `json:"note,omitempty"`
	committedIn  int
}

func runBench(ctx context.Context, stdout, progress io.Writer, o benchOptions) (err error) {
	if o.step < 3*time.Second {
		return fmt.Errorf("--duration must be at least 3s")
	}
	if o.overload != 0 && o.overload < 3*time.Second {
		return fmt.Errorf("--overload must be 0 (skip) or at least 3s")
	}
	if o.recordsOnly && o.records <= 0 {
		return fmt.Errorf("--records-only with --records %d leaves nothing to measure", o.records)
	}
	if o.billingOnly && o.claims <= 0 && o.billingMemberships <= 0 {
		return fmt.Errorf("--billing-only with --claims 0 and --billing-memberships 0 leaves nothing to measure")
	}
	rep := benchReport{
		Command: "medledger " + joinArgs(os.Args[1:]), Authorities: o.n, Cores: runtime.NumCPU(),
		GoMaxProcs: runtime.GOMAXPROCS(0), StepSeconds: o.step.Seconds(), BatchSize: 64,
	}

	fmt.Fprintf(progress, "measuring Ed25519 verification on this machine (one core)...\n")
	rep.VerifyPerCore, rep.BatchVerifyPerCore = measureVerify(rep.BatchSize)
	rep.Ceiling = rep.VerifyPerCore * float64(rep.Cores) / float64(o.n)
	rep.BatchCeiling = rep.BatchVerifyPerCore * float64(rep.Cores) / float64(o.n)
	fmt.Fprintf(progress, "  %.0f verifications/s/core one by one, %.0f in batches of %d\n", rep.VerifyPerCore, rep.BatchVerifyPerCore, rep.BatchSize)

	if o.scale > 0 {
		if rep.Scale, err = scalePhase(progress, o.scale); err != nil {
			return fmt.Errorf("scale phase: %w", err)
		}
	}

	if o.billingMemberships > 0 && ctx.Err() == nil {
		rep.Billing = &billingReport{}
		if rep.Billing.Boundary, err = boundaryPhase(ctx, progress, boundarySizes(o.billingMemberships)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("billing phase (period boundary): %w", err)
		}
	}

	nw, err := startBenchNetwork(ctx, progress, o)
	var full *fullNode // the catch-up phase's node, stopped with the network
	defer func() {
		if full != nil {
			err = joinErr(err, full.stop())
		}
		err = joinErr(err, shutdownNetwork(progress, nw))
	}()
	if err != nil {
		return err
	}
	rep.Dir = nw.Dir
	if o.cpuProfile != "" || o.memProfile != "" {
		fmt.Fprintf(progress, "profiles (written as the nodes stop): %s\n", strings.Join(nw.Args[0], " "))
	}
	g, err := nw.Genesis()
	if err != nil {
		return err
	}
	b := newBencher(nw, g, progress, o.step)
	if b.enrollers, err = benchEnrollers(ctx, nw); err != nil {
		return err
	}
	b.keyLen, rep.TxBytes = sizeEncryptionKey(g.ChainID, 300)
	go b.follow(ctx)
	rep.RSS.IdleMB, rep.RSS.IdleHeight = b.rss(), b.height(ctx)
	fmt.Fprintf(progress, "idle RSS at height %d: %s MB\n", rep.RSS.IdleHeight, fmtMBs(rep.RSS.IdleMB))

	if !o.recordsOnly && !o.billingOnly {
		best, err := b.search(ctx, o, &rep)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if best == nil {
			// Not fatal: the phases that need no sustained load still run.
			rep.Note = joinNote(rep.Note, fmt.Sprintf("no load step was sustained (see the steps and the logs in %s): no latency, load RSS or overload figures", nw.Dir))
			fmt.Fprintf(progress, "%s\n", rep.Note)
		}
	}
	if best := rep.bestStep(); best != nil && ctx.Err() == nil {
		rep.SustainedOffered, rep.Committed, rep.BlocksPerSec, rep.CPUPerTxMs = best.Offered, best.Committed, best.Blocks, best.CPUPerTxMs
		rep.RatioToCeiling = rep.Committed / rep.Ceiling
		rep.RSS.LoadMB = best.RSSMaxMB

		// Latency at half the sustained load.
		lat := &latencies{}
		half := best.Offered / 2
		fmt.Fprintf(progress, "latency at half load (%.0f tx/s)...\n", half)
		if _, err := b.runStep(ctx, half, o.step, lat); err != nil {
			return err
		}
		rep.LatencyOffered = half
		rep.LatencyP50Ms, rep.LatencyP99Ms, rep.LatencySamples, rep.LatencyMissing = lat.summary()

		if o.overload > 0 && ctx.Err() == nil {
			if rep.Overload, err = b.overloadPhase(ctx, best, o.overload); err != nil {
				return err
			}
			rep.RSS.OverloadMB = rep.Overload.Step.RSSMaxMB
		}
		if ctx.Err() != nil {
			return nil
		}
		// Idle again: does memory come back down, or does it stay with the chain?
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Second):
		}
		rep.RSS.AfterLoadMB, rep.RSS.AfterHeight = b.rss(), b.height(ctx)
		fmt.Fprintf(progress, "idle RSS after the load at height %d: %s MB\n", rep.RSS.AfterHeight, fmtMBs(rep.RSS.AfterLoadMB))
	}
	if o.records > 0 && !o.billingOnly && ctx.Err() == nil {
		rr, err := runRecords(ctx, nw, g, progress, o.records, o.recordMiB, rep.VerifyPerCore, rep.Cores)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("records phase: %w", err)
		}
		rep.Records = rr
	}
	if o.claims > 0 && ctx.Err() == nil {
		cr, err := runClaims(ctx, nw, g, progress, o.claims)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("billing phase (claims): %w", err)
		}
		if rep.Billing != nil {
			cr.Boundary = rep.Billing.Boundary
		}
		rep.Billing = cr
	}
	if o.catchUp && ctx.Err() == nil {
		rep.CatchUp, full = b.catchUpPhase(ctx, o)
		if full != nil {
			err := full.stop()
			full = nil
			if err != nil {
				rep.CatchUp.Note = joinNote(rep.CatchUp.Note, err.Error())
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}

	rep.RSS.EndMB, rep.RSS.EndHeight = b.rss(), b.height(ctx)
	for i := range nw.N {
		u, err := nw.Usage(i)
		if err != nil {
			return err
		}
		rep.PeakRSSMB = append(rep.PeakRSSMB, bytesToMB(u.PeakRSS))
	}
	if o.restart && nw.N > 1 && ctx.Err() == nil {
		rep.Restart = b.restartPhase(ctx, 1, o)
	}
	if ctx.Err() != nil {
		return nil
	}
	// The profiles are written as the nodes stop: stop them before the report names them.
	if o.cpuProfile != "" || o.memProfile != "" {
		err := shutdownNetwork(progress, nw)
		nw = nil
		if err != nil {
			return err
		}
		rep.Profiles = listProfiles(o)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printBench(stdout, &rep)
	return nil
}

// search finds the sustained load: it doubles the rate until a step fails, then bisects between
// the last good and the first bad rate, and returns the sustained step with the highest offered
// load.
func (b *bencher) search(ctx context.Context, o benchOptions, rep *benchReport) (*benchStep, error) {
	var good, bad float64
	best := -1
	rate := float64(o.startRate)
	for steps := 0; steps < o.maxSteps && ctx.Err() == nil; steps++ {
		s, err := b.runStep(ctx, rate, o.step, nil)
		if err != nil {
			return nil, err
		}
		rep.Steps = append(rep.Steps, *s)
		if s.Sustained {
			good = rate
			if best < 0 || s.Offered > rep.Steps[best].Offered {
				best = len(rep.Steps) - 1
			}
		} else {
			bad = rate
		}
		switch {
		case bad == 0:
			rate *= 2
		case good == 0:
			rate /= 2
		default:
			rate = (good + bad) / 2
			if bad-good < 0.1*good {
				steps = o.maxSteps // close enough
			}
		}
		if rate < 10 {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, nil
	}
	if best < 0 {
		return nil, nil
	}
	rep.RSS.LoadStepIndex = best + 1
	return &rep.Steps[best], nil
}

// bestStep is the sustained step the search settled on, if any.
func (r *benchReport) bestStep() *benchStep {
	if r.RSS.LoadStepIndex < 1 || r.RSS.LoadStepIndex > len(r.Steps) {
		return nil
	}
	return &r.Steps[r.RSS.LoadStepIndex-1]
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

func joinErr(a, b error) error {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return fmt.Errorf("%w; %w", a, b)
}

// measureVerify returns Ed25519 verifications per second on one goroutine, one by one
// (chain.Verify, as the mempool checks each transaction) and in batches (chain.BatchVerifier).
func measureVerify(batch int) (single, batched float64) {
	const chainID = "medledger-bench"
	type sample struct {
		pub chain.PubKey
		msg []byte
		sig chain.Signature
	}
	samples := make([]sample, 256)
	for i := range samples {
		k, err := chain.GenerateKey(rand.Reader)
		if err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		msg := make([]byte, 300)
		_, _ = rand.Read(msg)
		samples[i] = sample{k.Public(), msg, k.Sign(chain.DomainTx, chainID, msg)}
	}
	const minTime = 1500 * time.Millisecond
	n, start := 0, time.Now()
	for time.Since(start) < minTime {
		for _, s := range samples[:64] {
			if chain.Verify(s.pub, chain.DomainTx, chainID, s.msg, s.sig) != nil {
				panic("bench: a valid signature failed to verify")
			}
		}
		n += 64
	}
	single = float64(n) / time.Since(start).Seconds()
	n, start = 0, time.Now()
	for time.Since(start) < minTime {
		for off := 0; off+batch <= len(samples); off += batch {
			bv := chain.NewBatchVerifier()
			for _, s := range samples[off : off+batch] {
				bv.Add(s.pub, chain.DomainTx, chainID, s.msg, s.sig)
			}
			if ok, _ := bv.Verify(); !ok {
				panic("bench: a valid batch failed to verify")
			}
			n += batch
		}
	}
	batched = float64(n) / time.Since(start).Seconds()
	return single, batched
}

// benchEnrollers reads every node's provider key and waits until each is a registered provider
// (nodes register themselves at start): patients are enrolled by them.
func benchEnrollers(ctx context.Context, nw *procnet.Network) ([]chain.PrivKey, error) {
	keys := make([]chain.PrivKey, nw.N)
	for i := range keys {
		k, err := node.ReadKeyFile(node.Resolve(nw.Home(i), node.DefaultConfig().Records.ProviderKey))
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, k := range keys {
		for {
			code, _, data, err := nw.Request(wctx, 0, http.MethodGet, "/v1/accounts/"+k.Public().Address().String(), "", nil)
			var acct node.AccountJSON
			if err == nil && code == http.StatusOK && json.Unmarshal(data, &acct) == nil && acct.Provider {
				break
			}
			select {
			case <-wctx.Done():
				return nil, fmt.Errorf("bench: provider %s not registered: %w", k.Public().Address(), wctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return keys, nil
}

// sizeEncryptionKey picks the encryption key length that makes a patient registration about
// target bytes encoded, and returns it with the resulting size.
func sizeEncryptionKey(chainID string, target int) (keyLen, txBytes int) {
	k, _ := chain.GenerateKey(rand.Reader)
	probe := func(n int) int {
		// The co-signature has a fixed size: a placeholder measures the same.
		body := &chain.RegisterPatient{EncryptionKey: make([]byte, n), Enroller: chain.Address{1}, EnrollerSig: chain.Signature{1}}
		return len(chain.NewTx(k, chainID, chain.TxRegisterPatient, 1, body).Encode())
	}
	keyLen = max(1, target-(probe(100)-100))
	return keyLen, probe(keyLen)
}

// scalePhase grows a per-patient index to 10^4, 10^5 and 10^6 records (up to max) in a temporary
// directory and times one patient's lists at each size.
func scalePhase(progress io.Writer, max uint64) ([]index.ScalePoint, error) {
	var sizes []uint64
	for n := uint64(10_000); n <= max; n *= 10 {
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 {
		sizes = []uint64{max}
	}
	dir, err := os.MkdirTemp("", "medledger-scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(progress, "scale: a per-patient index grown to %v records over %d patients...\n", sizes, scalePatients)
	return index.MeasureScale(dir, sizes, scalePatients, func(p index.ScalePoint) {
		fmt.Fprintf(progress, "  %d records (built in %.0f s, %d tables): list %.0f µs, consents %.0f µs, accesses %.0f µs, reopen %.1f ms\n",
			p.Records, p.GrowSecs, p.Tables, p.ListUs, p.ConsentsUs, p.AccessesUs, p.ReopenMs)
	})
}

// scalePatients is how many patients the scale phase spreads its records over.
const scalePatients = 100_000
