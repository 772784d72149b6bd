package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// The table `medledger bench` prints without --json: the load steps, then every figure next to
// its issue-10 target, then the records phase's details.

// Issue 10's targets (docs/bench.md). The bench prints them beside its figures; it asserts
// nothing.
const (
	targetTxPerSec      = 6000
	targetCPUPerTxMs    = 0.3
	targetP50Ms         = 250
	targetP99Ms         = 1000
	targetIdleRSSMB     = 60
	targetLoadRSSMB     = 150
	targetCatchUpTxPerS = 20000
	targetRecordsPerSec = 2000
	targetGrantP50Ms    = 300
	targetFetchP50Ms    = 50
)

// met says whether a figure meets its target ("" when it was not measured).
func met(ok, measured bool) string {
	switch {
	case !measured:
		return ""
	case ok:
		return "yes"
	}
	return "no"
}

func allAtMost(v []float64, limit float64) bool {
	return len(v) > 0 && slices.Max(v) <= limit
}

func printBench(w io.Writer, r *benchReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Steps) == 0 {
		fmt.Fprintf(w, "MedLedger bench: %d authorities (separate processes), %d cores, no load steps\n\n", r.Authorities, r.Cores)
	} else {
		fmt.Fprintf(tw, "MedLedger bench: %d authorities (separate processes), %d cores, %d-byte transactions, %.0fs steps\n\n", r.Authorities, r.Cores, r.TxBytes, r.StepSeconds)
		fmt.Fprintf(tw, "step\ttarget tx/s\toffered tx/s\tcommitted tx/s\tblocks/s\tCPU ms/tx\tmax mempool\tmax RSS MB\tsustained\t\n")
		steps := slices.Clone(r.Steps)
		names := make([]string, len(steps))
		for i := range steps {
			names[i] = fmt.Sprint(i + 1)
		}
		if o := r.Overload; o != nil {
			steps = append(steps, o.Step, o.Recovery)
			names = append(names, "overload", "recovery")
		}
		for i, s := range steps {
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.2f\t%.3f\t%d\t%.0f\t%v\t%s\n", names[i], s.Target, s.Offered, s.Committed, s.Blocks, s.CPUPerTxMs, s.MaxMempool, maxOf(s.RSSMaxMB), s.Sustained, s.Note)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(figure, value, target, ok string) { fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", figure, value, target, ok) }
	row("figure", "value", "issue 10 target", "met")
	row("Ed25519 verifications/s per core", fmt.Sprintf("%.0f one by one, %.0f in batches of %d", r.VerifyPerCore, r.BatchVerifyPerCore, r.BatchSize), "", "")
	row(fmt.Sprintf("verification ceiling (per core × %d cores ÷ %d nodes)", r.Cores, r.Authorities), fmt.Sprintf("%.0f tx/s (batched: %.0f)", r.Ceiling, r.BatchCeiling), "", "")
	if r.SustainedOffered > 0 {
		row("highest sustained offered load", fmt.Sprintf("%.0f tx/s", r.SustainedOffered), "", "")
		row("committed at that load", fmt.Sprintf("%.0f tx/s (%.0f%% of the ceiling)", r.Committed, 100*r.RatioToCeiling), fmt.Sprintf("≥ %d tx/s", targetTxPerSec), met(r.Committed >= targetTxPerSec, true))
		row("blocks per second", fmt.Sprintf("%.2f", r.BlocksPerSec), "", "")
		row("node CPU per committed tx (all nodes)", fmt.Sprintf("%.3f ms", r.CPUPerTxMs), fmt.Sprintf("≤ %.1f ms", targetCPUPerTxMs), met(r.CPUPerTxMs <= targetCPUPerTxMs, r.CPUPerTxMs > 0))
		row(fmt.Sprintf("submit-to-final at %.0f tx/s", r.LatencyOffered), fmt.Sprintf("p50 %.0f ms, p99 %.0f ms (%d samples, %d not final)", r.LatencyP50Ms, r.LatencyP99Ms, r.LatencySamples, r.LatencyMissing),
			fmt.Sprintf("p50 ≤ %d ms, p99 ≤ %d ms", targetP50Ms, targetP99Ms), met(r.LatencyP50Ms <= targetP50Ms && r.LatencyP99Ms <= targetP99Ms, r.LatencySamples > 0))
	}
	row(fmt.Sprintf("RSS idle, before load (height %d)", r.RSS.IdleHeight), fmtMBList(r.RSS.IdleMB), fmt.Sprintf("≤ %d MB", targetIdleRSSMB), met(allAtMost(r.RSS.IdleMB, targetIdleRSSMB), len(r.RSS.IdleMB) > 0))
	if len(r.RSS.LoadMB) > 0 {
		row(fmt.Sprintf("RSS under load (peak of step %d)", r.RSS.LoadStepIndex), fmtMBList(r.RSS.LoadMB), fmt.Sprintf("≤ %d MB", targetLoadRSSMB), met(allAtMost(r.RSS.LoadMB, targetLoadRSSMB), true))
	}
	if len(r.RSS.OverloadMB) > 0 {
		row("RSS under overload (peak)", fmtMBList(r.RSS.OverloadMB), fmt.Sprintf("≤ %d MB", targetLoadRSSMB), met(allAtMost(r.RSS.OverloadMB, targetLoadRSSMB), true))
	}
	if len(r.RSS.AfterLoadMB) > 0 {
		row(fmt.Sprintf("RSS idle after the load (height %d)", r.RSS.AfterHeight), fmtMBList(r.RSS.AfterLoadMB), "flat as the chain grows", "")
	}
	if len(r.RSS.EndMB) > 0 {
		row(fmt.Sprintf("RSS at the end (height %d)", r.RSS.EndHeight), fmtMBList(r.RSS.EndMB), "flat as the chain grows", "")
	}
	if len(r.PeakRSSMB) > 0 {
		row("peak RSS (VmHWM)", fmtMBList(r.PeakRSSMB), "", "")
	}
	if o := r.Overload; o != nil {
		s := o.Step
		row(fmt.Sprintf("overload: %.0f tx/s for %.0f s, answered", s.Target, o.Seconds),
			fmt.Sprintf("%d accepted, %d refused for load (503), %d other refusals, %d unanswered; answers p50 %.0f ms, p99 %.0f ms; mempool max %d; drained %.1f s after",
				s.Accepted, s.RefusedLoad, s.RefusedOther, s.Failed, s.AnswerP50Ms, s.AnswerP99Ms, s.MaxMempool, s.DrainSeconds),
			"excess refused early with 503, not queued", "")
		rc := o.Recovery
		row(fmt.Sprintf("after it, at %.0f tx/s", rc.Target),
			fmt.Sprintf("%.0f tx/s committed, %.3f ms CPU/tx (fresh network: %.0f tx/s, %.3f ms; ratios %.2f and %.2f), sustained=%v",
				rc.Committed, rc.CPUPerTxMs, o.FreshCommitted, o.FreshCPUPerTxMs, o.CommittedRatio, o.CPURatio, rc.Sustained),
			"commits as a fresh network does", "")
	}
	if rr := r.Records; rr != nil {
		row("FHIR resources imported at node0 (sealed, anchored, replicated)", fmt.Sprintf("%.0f /s", rr.RecordsPerSec), fmt.Sprintf("≥ %d /s", targetRecordsPerSec), met(rr.RecordsPerSec >= targetRecordsPerSec, rr.RecordsPerSec > 0))
		row(fmt.Sprintf("grant → first read on node%d", rr.GrantReader), fmt.Sprintf("p50 %.0f ms, p99 %.0f ms", rr.GrantP50Ms, rr.GrantP99Ms), fmt.Sprintf("p50 ≤ %d ms", targetGrantP50Ms), met(rr.GrantP50Ms <= targetGrantP50Ms, rr.GrantSamples > 0))
		for _, s := range rr.LargeReads {
			if strings.HasPrefix(s.Kind, "remote") { // "remote fetch": served by a peer over libp2p
				row(fmt.Sprintf("fetch-and-decrypt %.2f MiB from another node", float64(rr.LargePlainBytes)/(1<<20)), fmt.Sprintf("p50 %.1f ms, p99 %.1f ms", s.P50Ms, s.P99Ms), fmt.Sprintf("p50 ≤ %d ms", targetFetchP50Ms), met(s.P50Ms <= targetFetchP50Ms, s.Samples > 0))
			}
		}
	}
	printBillingRows(row, r.Billing)
	if c := r.CatchUp; c != nil {
		row("fresh node catching up to the head", fmt.Sprintf("%.0f tx/s of history (%d txs, %d blocks in %.1f s; API after %.1f s, so %.0f tx/s syncing; at the head after %.1f s; %.1f s CPU, RSS %.0f MB) %s",
			c.TxPerSec, c.HistoryTxs, c.TargetHeight, c.Seconds, c.APISeconds, c.SyncTxPerSec, c.HeadSeconds, c.CPUSeconds, c.RSSMB, c.Note),
			fmt.Sprintf("≥ %d tx/s, or a verified snapshot", targetCatchUpTxPerS), met(c.TxPerSec >= targetCatchUpTxPerS, c.TxPerSec > 0))
	}
	if rs := r.Restart; rs != nil {
		row(fmt.Sprintf("node%d restart at height %d", rs.Node, rs.Height), fmt.Sprintf("stopped in %.1f s; API after %.2f s, at the head after %.2f s %s", rs.StopSeconds, rs.APISeconds, rs.HeadSeconds, rs.Note),
			"does not replay the chain (flat in history)", "")
	}
	if len(r.Scale) > 0 {
		var vals []string
		lo, hi := r.Scale[0], r.Scale[0]
		for _, p := range r.Scale {
			vals = append(vals, fmt.Sprintf("%dk: %.0f/%.0f/%.0f µs, reopen %.0f ms", p.Records/1000, p.ListUs, p.ConsentsUs, p.AccessesUs, p.ReopenMs))
			lo.ListUs, hi.ListUs = min(lo.ListUs, p.ListUs), max(hi.ListUs, p.ListUs)
		}
		flat := hi.ListUs <= 2*lo.ListUs
		row(fmt.Sprintf("per-patient list/consents/accesses at %d → %d records", r.Scale[0].Records, r.Scale[len(r.Scale)-1].Records),
			strings.Join(vals, "; ")+fmt.Sprintf(" (list %.1f× from smallest to largest)", hi.ListUs/lo.ListUs), "time flat", met(flat, true))
	} else {
		row("per-patient list, consents, accesses at 10^4 → 10^6 records", "not measured (--scale 0)", "time flat", "")
	}
	_ = tw.Flush()
	if r.Note != "" {
		fmt.Fprintf(w, "\nNote: %s\n", r.Note)
	}
	if len(r.Profiles) > 0 {
		fmt.Fprintf(w, "\nProfiles (go tool pprof):\n")
		for _, p := range r.Profiles {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	if r.Records != nil {
		printRecordsBench(w, r.Records, r.Authorities, r.Cores)
	}
	if r.Billing != nil {
		printBoundary(w, r.Billing.Boundary)
	}
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}

func fmtMBList(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmtMBs(v) + " MB"
}
