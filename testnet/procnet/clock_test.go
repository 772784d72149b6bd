package procnet_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// TestTestClockDrivesBlockTime: a testnet made with --test-clock follows `medledger testnet
// clock --advance`: every authority re-reads the shared offset, the next blocks carry a block
// time a month ahead, and consensus goes on across the jump (a proposal briefly ahead of a node
// that has not read the file yet costs a round, not the chain). This is what lets a test run a
// year of billing periods in minutes.
func TestTestClockDrivesBlockTime(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process")
	}
	nw := procnettest.NewWith(t, 4, "--test-clock")
	procnettest.StartAll(t, nw)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := nw.WaitHeight(ctx, 0, 2, time.Minute)
	require.NoError(t, err)
	before := blockTime(t, ctx, nw, st.Height)
	require.WithinDuration(t, time.Now(), before, time.Minute, "before the advance, block time is the wall clock")

	const month = 30 * 24 * time.Hour
	out, err := exec.CommandContext(ctx, nw.Bin, "testnet", "clock", "--dir", nw.Dir, "--advance", month.String()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "720h0m0s ahead")

	// The blocks after the advance carry the new time on every node, and the chain keeps going.
	var jumped uint64
	require.Eventually(t, func() bool {
		s, err := nw.Status(ctx, 0)
		if err != nil || s.Height <= st.Height {
			return false
		}
		if blockTime(t, ctx, nw, s.Height).After(before.Add(month)) {
			jumped = s.Height
			return true
		}
		return false
	}, time.Minute, 200*time.Millisecond, "no block a month ahead after testnet clock --advance")
	for i := range nw.N {
		_, err := nw.WaitHeight(ctx, i, jumped+3, time.Minute)
		require.NoError(t, err, "node%d after the jump", i)
	}
	require.True(t, blockTime(t, ctx, nw, jumped+3).After(blockTime(t, ctx, nw, jumped)), "block time still increases")
}

func blockTime(t *testing.T, ctx context.Context, nw *procnet.Network, h uint64) time.Time {
	t.Helper()
	b, err := nw.Block(ctx, 0, h)
	require.NoError(t, err)
	ts, err := time.Parse(time.RFC3339Nano, strings.Trim(string(b.Time), `"`))
	require.NoError(t, err, "block %d time %s", h, b.Time)
	return ts
}
