package consensus

import (
	"testing"

	"github.com/medledger/medledger/chain"
)

func timeoutOf(rd Ready, step Step) (Timeout, bool) {
	for _, t := range rd.Timeouts {
		if t.Step == step {
			return t, true
		}
	}
	return Timeout{}, false
}

func TestTimeoutsGrowPerRound(t *testing.T) {
	e, _, _ := soloEngine(t, 0) // proposer of height 1 is node 1
	e.Start(genesisTime)
	prev := int64(0)
	for r := uint32(0); r < 5; r++ {
		rd := e.Ready()
		to, ok := timeoutOf(rd, StepPropose)
		if !ok || to.Round != r || to.Height != 1 {
			t.Fatalf("round %d: no propose timeout in %+v", r, rd.Timeouts)
		}
		want := int64(testParams.TimeoutProposeMs) + int64(r)*int64(testParams.TimeoutDeltaMs)
		if to.DelayMs != want || to.DelayMs <= prev {
			t.Fatalf("round %d: propose timeout %d ms, want %d (growing)", r, to.DelayMs, want)
		}
		prev = to.DelayMs
		e.HandleTimeout(to, genesisTime) // prevote nil
		e.HandleTimeout(Timeout{Height: 1, Round: r, Step: StepPrecommit}, genesisTime)
		if e.Round() != r+1 {
			t.Fatalf("precommit timeout in round %d left the engine in round %d", r, e.Round())
		}
	}
	if d := e.voteDelay(3); d != int64(testParams.TimeoutVoteMs)+3*int64(testParams.TimeoutDeltaMs) {
		t.Fatalf("vote timeout in round 3 = %d", d)
	}
}

func TestStaleTimeoutsAreIgnored(t *testing.T) {
	e, _, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	e.HandleTimeout(Timeout{Height: 1, Round: 0, Step: StepPrecommit}, genesisTime) // to round 1
	e.Ready()
	for _, to := range []Timeout{
		{Height: 1, Round: 0, Step: StepPropose},   // old round
		{Height: 1, Round: 0, Step: StepPrecommit}, // old round
		{Height: 1, Round: 1, Step: StepPrevote},   // wrong step: still proposing
		{Height: 0, Round: 1, Step: StepPropose},   // old height
		{Height: 2, Round: 1, Step: StepPropose},   // future height
		{Height: 1, Round: 1, Step: StepNewHeight}, // not waiting for a height
	} {
		e.HandleTimeout(to, genesisTime)
		if e.HasReady() || e.Round() != 1 || e.Step() != StepPropose {
			t.Fatalf("stale %+v changed the engine: round %d step %s ready %+v", to, e.Round(), e.Step(), e.Ready())
		}
	}
}

// After a commit the next height waits BlockIntervalMs before round 0.
func TestNewHeightWaitsBlockInterval(t *testing.T) {
	e, keys, set := soloEngine(t, 0)
	e.Start(genesisTime)
	b := testBlock(1, 0)
	e.HandleProposal(signedProposal(keys[1], 1, 0, -1, b), b, true, genesisTime)
	for _, i := range []int{1, 2, 3} {
		e.HandleVote(signedVote(keys[i], chain.Precommit, 1, 0, b.Hash()), genesisTime)
	}
	rd := e.Ready()
	if rd.Committed == nil {
		t.Fatal("no commit")
	}
	e.NewHeight(Start{Height: 2, Authorities: set, LastBlockTime: b.Header.Time}, genesisTime)
	rd = e.Ready()
	to, ok := timeoutOf(rd, StepNewHeight)
	if !ok || to.DelayMs != int64(testParams.BlockIntervalMs) || to.Height != 2 || len(rd.Timeouts) != 1 {
		t.Fatalf("timeouts after NewHeight: %+v", rd.Timeouts)
	}
	if e.Step() != StepNewHeight {
		t.Fatalf("step %s before the interval elapsed", e.Step())
	}
	e.HandleTimeout(to, genesisTime+200)
	if e.Step() != StepPropose || e.Height() != 2 {
		t.Fatalf("after the interval: height %d step %s", e.Height(), e.Step())
	}
}

// A transaction arriving while an empty height waits out the block interval starts it after
// the busy pause (counted from the commit), not at the end of the interval.
func TestHurryStartsAnIdleHeightEarly(t *testing.T) {
	e, _, set := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	e.NewHeight(Start{Height: 2, Authorities: set, LastBlockTime: genesisTime}, genesisTime+100)
	e.Ready()
	e.Hurry(genesisTime + 105) // 5 ms after the commit: wait out the rest of the busy pause
	tm, ok := timeoutOf(e.Ready(), StepNewHeight)
	if !ok || tm.DelayMs != busyIntervalMs-5 || e.Step() != StepNewHeight {
		t.Fatalf("hurry within the busy pause: timeout %+v, step %s", tm, e.Step())
	}
	e.Hurry(genesisTime + 500) // well past it: start now
	if e.Step() != StepPropose {
		t.Fatalf("step %s after hurrying an idle height", e.Step())
	}
}
