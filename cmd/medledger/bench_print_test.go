package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPrintBenchPartial: the table prints whatever a run measured, beside the targets, and a
// report with phases missing (no sustained step, no records) prints without them.
func TestPrintBenchPartial(t *testing.T) {
	r := &benchReport{Authorities: 4, Cores: 2, TxBytes: 300, StepSeconds: 6,
		Steps:   []benchStep{{Target: 1000, Offered: 990, Committed: 250, RSSMaxMB: []float64{140, 150}}},
		RSS:     rssReport{IdleMB: []float64{55, 70}, EndMB: []float64{200, 210}, EndHeight: 40},
		CatchUp: &catchUpReport{TargetHeight: 30, HistoryTxs: 3000, Seconds: 3, TxPerSec: 1000},
		Restart: &restartReport{Node: 1, Height: 40, APISeconds: 1.2, HeadSeconds: 1.3},
		Note:    "no load step was sustained",
	}
	var out bytes.Buffer
	printBench(&out, r)
	s := out.String()
	for _, want := range []string{"≥ 20000 tx/s", "≤ 60 MB", "1000 tx/s of history", "node1 restart at height 40", "Note: no load step was sustained"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "committed at that load") {
		t.Errorf("a run without a sustained step printed its figures:\n%s", s)
	}
	printBench(&out, &benchReport{Records: &recordsReport{LargeReads: []largeReadStats{{Kind: "remote fetch", Samples: 1, P50Ms: 20}}}})
	if !strings.Contains(out.String(), "≤ 50 ms") {
		t.Errorf("records-only table lacks the fetch target:\n%s", out.String())
	}
}
