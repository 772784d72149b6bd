package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMonthBoundary(t *testing.T) {
	start := time.Date(2026, time.January, 31, 9, 0, 0, 0, time.UTC).UnixMilli()
	b, before := monthBoundary(start)
	// A Jan 31 start rolls to Mar 3 in a non-leap year, as chain/state counts periods.
	require.Equal(t, time.Date(2026, time.March, 3, 9, 0, 0, 0, time.UTC).UnixMilli(), b)
	require.Equal(t, b-24*time.Hour.Milliseconds(), before)
}

func TestBoundarySizes(t *testing.T) {
	require.Equal(t, []int{1000, 10_000, 100_000}, boundarySizes(100_000))
	require.Equal(t, []int{1000, 10_000}, boundarySizes(99_999))
	require.Equal(t, []int{500}, boundarySizes(500))
	require.Empty(t, boundarySizes(0))
}

// The phase itself at its smallest size: the state builds through real execution and the
// boundary block writes no more than the block a day before.
func TestMeasureBoundarySmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 1,000 memberships")
	}
	p, err := measureBoundary(context.Background(), 1000)
	require.NoError(t, err)
	require.Equal(t, 1, p.InvoicesBefore)
	require.Equal(t, 2, p.InvoicesAfter)
	require.Equal(t, p.BeforeWrites, p.CrossWrites)
	require.Equal(t, p.BeforeReads, p.CrossReads)
	t.Logf("%+v", p)
}

func TestBoundaryFlatAndPrint(t *testing.T) {
	p := boundaryPoint{Memberships: 1000, BlockTxs: 3, BeforeReads: 23, BeforeWrites: 8, CrossReads: 23, CrossWrites: 8,
		BeforeExecMs: 0.5, BeforeCommitMs: 5, CrossExecMs: 0.6, CrossCommitMs: 6, InvoicesBefore: 1, InvoicesAfter: 2}
	q := p
	q.Memberships = 100_000
	require.True(t, boundaryFlat([]boundaryPoint{p, q}))
	q.CrossWrites = 9 // a write per membership batch would show here
	require.False(t, boundaryFlat([]boundaryPoint{p, q}))
	require.False(t, boundaryFlat(nil))
	require.Equal(t, "1k: 6.6 ms crossing vs 5.5 ms a day before, 23/8 keys read/written vs 23/8", boundarySummary([]boundaryPoint{p}))

	var sb strings.Builder
	r := &benchReport{Authorities: 4, Cores: 2, Billing: &billingReport{Boundary: []boundaryPoint{p}, Claims: 8, Workers: 8, FiledPerSec: 4,
		ByRule: 6, Pended: 2, Decided: 2, Duplicates: 5, DuplicatesRefused: 5}}
	printBench(&sb, r)
	out := sb.String()
	require.Contains(t, out, "claims filed at node0")
	require.Regexp(t, `exact duplicates refused +0; 5 of 5 +0; all +yes`, out)
	require.Contains(t, out, "period boundary at 1000 → 1000 memberships")
	require.Contains(t, out, "invoices before→after")
	require.Contains(t, out, "1→2")
}
