package consensus

import (
	"testing"

	"github.com/medledger/medledger/chain"
)

// roundEnd returns the round-end timeout the engine armed most recently in rd, if any.
func roundEnd(rd Ready) (Timeout, bool) {
	var last Timeout
	found := false
	for _, t := range rd.Timeouts {
		if t.Step == StepRoundEnd {
			last, found = t, true
		}
	}
	return last, found
}

func startAlone(t *testing.T, i int) (*Engine, []chain.PrivKey, Timeout) {
	t.Helper()
	e, keys, _ := soloEngine(t, i)
	e.Start(genesisTime) // the first height starts round 0 at once
	re, ok := roundEnd(e.Ready())
	if !ok {
		t.Fatal("round 0 armed no round-end timer")
	}
	return e, keys, re
}

// A node alone in its round (the others silent or behind) must not run further ahead: it waits
// for the pack.
func TestRoundEndWaitsWhenAhead(t *testing.T) {
	e, _, re := startAlone(t, 1)
	e.HandleTimeout(re, int64(genesisTime+10_000))
	if e.Round() != 0 {
		t.Fatalf("moved to round %d with nobody else in round 0", e.Round())
	}
	if _, ok := roundEnd(e.Ready()); !ok {
		t.Fatal("waiting node must re-arm its round-end timer")
	}
}

// A node behind the others (2f+1 at or beyond its round) gives up the round and jumps to the
// furthest round it has seen, within the window.
func TestRoundEndJumpsToTheFurthestRound(t *testing.T) {
	e, keys, re := startAlone(t, 1)
	// One authority is in round 3, another still in round 0: with this node, 2f+1 are at or
	// beyond round 0, but only one is beyond it, so the f+1 round skip does not apply.
	e.HandleVote(signedVote(keys[0], chain.Prevote, 1, 3, chain.ZeroHash), genesisTime+100)
	e.HandleVote(signedVote(keys[2], chain.Precommit, 1, 0, chain.ZeroHash), genesisTime+100)
	e.Ready()
	if e.Round() != 0 {
		t.Fatalf("setup: already in round %d", e.Round())
	}
	e.HandleTimeout(re, int64(genesisTime+10_000))
	if e.Round() != 3 {
		t.Fatalf("round %d after round end, want 3 (the furthest seen)", e.Round())
	}
}

// Votes from others in the current round push the deadline back: a node does not abandon a
// round just as the others arrive in it.
func TestRoundEndExtendsWhileOthersAreActive(t *testing.T) {
	e, keys, re := startAlone(t, 1)
	late := int64(genesisTime) + re.DelayMs - 1
	for _, k := range []int{0, 2, 3} {
		e.HandleVote(signedVote(keys[k], chain.Prevote, 1, 0, chain.ZeroHash), late)
	}
	e.Ready()
	e.HandleTimeout(re, int64(genesisTime)+re.DelayMs+1)
	if e.Round() != 0 {
		t.Fatalf("left round 0 at its first deadline although others just voted in it (round %d)", e.Round())
	}
	again, ok := roundEnd(e.Ready())
	if !ok || again.DelayMs <= 0 {
		t.Fatal("extended round must re-arm its timer")
	}
}

// More than two thirds of nil precommits end the round at once: nothing can be decided in it.
func TestNilPrecommitQuorumStartsTheNextRound(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	for _, i := range []int{1, 2, 3} {
		e.HandleVote(signedVote(keys[i], chain.Precommit, 1, 0, chain.ZeroHash), genesisTime+10)
	}
	if e.Round() != 1 {
		t.Fatalf("round %d after a nil-precommit quorum in round 0, want 1 at once", e.Round())
	}
	// Two nil and one for a block: not a nil quorum, the round waits.
	e2, keys2, _ := soloEngine(t, 0)
	e2.Start(genesisTime)
	e2.Ready()
	e2.HandleVote(signedVote(keys2[1], chain.Precommit, 1, 0, chain.ZeroHash), genesisTime)
	e2.HandleVote(signedVote(keys2[2], chain.Precommit, 1, 0, chain.ZeroHash), genesisTime)
	e2.HandleVote(signedVote(keys2[3], chain.Precommit, 1, 0, chain.Hash{5}), genesisTime)
	if e2.Round() != 0 {
		t.Fatalf("round %d without a nil quorum, want 0", e2.Round())
	}
}
