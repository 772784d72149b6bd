package main

import (
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
	p, err := measureBoundary(1000)
	require.NoError(t, err)
	require.Equal(t, 1, p.InvoicesBefore)
	require.Equal(t, 2, p.InvoicesAfter)
	require.Equal(t, p.BeforeWrites, p.CrossWrites)
	require.Equal(t, p.BeforeReads, p.CrossReads)
	t.Logf("%+v", p)
}
