package consensus

import (
	"testing"

	"github.com/medledger/medledger/chain"
)

func TestHappyPathCommitsEveryHeightInRoundZero(t *testing.T) {
	nw := newNetwork(t, 4)
	nw.runUntil("height 5 everywhere", nw.allCommitted(5))
	for i, nd := range nw.nodes {
		for h, c := range nd.commits[:5] {
			if c.Cert.Round != 0 {
				t.Errorf("node %d height %d committed in round %d, want 0", i, h+1, c.Cert.Round)
			}
			if len(c.Cert.Sigs) < nw.set.Quorum() {
				t.Errorf("node %d height %d: %d signatures", i, h+1, len(c.Cert.Sigs))
			}
		}
	}
}

func TestProposerOfflineRoundOneCommits(t *testing.T) {
	nw := newNetwork(t, 4)
	nw.stop(1) // proposer of height 1, round 0
	nw.runUntil("height 1", nw.allCommitted(1))
	for i, nd := range nw.nodes {
		if nd.down {
			continue
		}
		if got := nd.commits[0].Cert.Round; got != 1 {
			t.Errorf("node %d committed height 1 in round %d, want 1", i, got)
		}
	}
	nw.runUntil("height 4", nw.allCommitted(4))
}

func TestObserversFollowButNeverSign(t *testing.T) {
	outsider := testKey(99) // a key that is not an authority
	nw := newNetwork(t, 4, nil, &outsider)
	nw.runUntil("height 3", nw.allCommitted(3))
	for _, i := range []int{4, 5} {
		if n := len(nw.nodes[i].sent); n != 0 {
			t.Errorf("observer %d sent %d messages", i, n)
		}
		if nw.nodes[i].disk != nil {
			t.Errorf("observer %d persisted a sign state", i)
		}
	}
}

func TestInvalidProposalGetsNilPrevote(t *testing.T) {
	nw := newNetwork(t, 4)
	nw.valid = func(to int, b *chain.Block) bool { return to != 2 }
	nw.runUntil("height 1", nw.allCommitted(1))
	pv := nw.nodes[2].sent[hrs{1, 0, StepPrevote}].Vote
	if pv == nil || !pv.BlockHash.IsZero() {
		t.Fatalf("node 2 prevote at 1/0 = %+v, want nil", pv)
	}
	if pv := nw.nodes[0].sent[hrs{1, 0, StepPrevote}].Vote; pv == nil || pv.BlockHash.IsZero() {
		t.Fatalf("node 0 prevote at 1/0 = %+v, want the block", pv)
	}
}

// A node locked on B in round 0 must not prevote a different block in round 1 when the
// proposal carries no POL. Nodes 1 and 3 lock on B0; nodes 0 and 2 never see the POL, so round 1
// (proposer 2, a new block) fails, and round 2 (proposer 3) re-proposes B0 with its POL and
// commits it.
func TestLockedNodeRefusesNewBlockWithoutPOL(t *testing.T) {
	const x = 3
	nw := newNetwork(t, 4)
	nw.drop = func(from, to int, m Message) bool {
		// Round 0: node 0 never gets the proposal and prevotes nil; node 1's own prevote reaches
		// only x, so only nodes 1 and x see a POL and lock.
		if m.Proposal != nil {
			return m.Proposal.Round == 0 && to == 0
		}
		return m.Vote.Round == 0 && m.Vote.Type == chain.Prevote && from == 1 && to != x
	}
	nw.runUntil("height 1", nw.allCommitted(1))
	b0 := nw.nodes[x].sent[hrs{1, 0, StepPrecommit}].Vote
	if b0 == nil || b0.BlockHash.IsZero() {
		t.Fatalf("node %d did not precommit (lock) in round 0: %+v", x, b0)
	}
	p1 := nw.nodes[2].sent[hrs{1, 1, StepPropose}].Proposal
	if p1 == nil || p1.BlockHash == b0.BlockHash || p1.POLRound != -1 {
		t.Fatalf("round 1 proposal %+v, want a new block without POL", p1)
	}
	pv := nw.nodes[x].sent[hrs{1, 1, StepPrevote}].Vote
	if pv == nil || !pv.BlockHash.IsZero() {
		t.Fatalf("locked node prevoted %+v in round 1, want nil", pv)
	}
	got := nw.nodes[0].commits[0]
	if got.Block.Hash() != b0.BlockHash || got.Cert.Round != 2 {
		t.Fatalf("committed %s in round %d; want the locked block in round 2", got.Block.Hash().Short(), got.Cert.Round)
	}
}

// When the round-1 proposer saw the round-0 POL it re-proposes the locked block with POLRound
// 0, and the locked node prevotes it.
func TestProposerReproposesValidValueWithPOL(t *testing.T) {
	nw := newNetwork(t, 4)
	nw.noSync = true // node 3 commits in round 0; the others must get there by consensus
	nw.drop = func(from, to int, m Message) bool {
		// Round 0: node 0 misses the proposal; nodes 1, 2, 3 see the POL and lock, but node
		// 3's precommit is lost, so only node 3 can commit in round 0.
		if m.Proposal != nil {
			return m.Proposal.Round == 0 && to == 0
		}
		return m.Vote.Round == 0 && m.Vote.Type == chain.Precommit && from == 3
	}
	nw.runUntil("height 1", nw.allCommitted(1))
	p0 := nw.nodes[1].sent[hrs{1, 0, StepPropose}].Proposal
	p1 := nw.nodes[2].sent[hrs{1, 1, StepPropose}].Proposal
	if p0 == nil || p1 == nil || p1.BlockHash != p0.BlockHash || p1.POLRound != 0 {
		t.Fatalf("round 1 proposal %+v, want round 0's block with POL round 0 (%+v)", p1, p0)
	}
	if c := nw.nodes[0].commits[0]; c.Block.Hash() != p0.BlockHash || c.Cert.Round != 1 {
		t.Fatalf("committed %s in round %d, want %s in round 1", c.Block.Hash().Short(), c.Cert.Round, p0.BlockHash.Short())
	}
	if len(nw.nodes[2].requested) != 0 {
		t.Fatalf("proposer with a valid value asked for a new block: %+v", nw.nodes[2].requested)
	}
}

// Dropping every message for a while stalls the network; the periodic re-broadcast revives it
// once the network heals.
func TestLivenessAfterPartitionHeals(t *testing.T) {
	nw := newNetwork(t, 4)
	healAt := int64(genesisTime + 20_000)
	nw.drop = func(from, to int, m Message) bool { return nw.now < healAt }
	nw.runUntil("height 2", nw.allCommitted(2))
	if nw.now < healAt {
		t.Fatalf("committed while partitioned")
	}
}

// Restarting a node from its persisted sign state at every point of a run, with the crash before
// or after persisting, never makes it sign two different messages at one height/round/step
// (network.checkSent fails the test if it does) and the network still commits.
func TestRestartAtEveryStepNeverEquivocates(t *testing.T) {
	for _, mode := range []crashMode{crashBeforePersist, crashAfterPersist} {
		for victim := range 4 {
			for at := 1; at <= 30; at++ {
				nw := newNetwork(t, 4)
				n := 0
				nw.crash = func(i int, rd Ready) crashMode {
					if i != victim {
						return noCrash
					}
					n++
					if n == at {
						return mode
					}
					return noCrash
				}
				nw.runUntil("height 3", nw.allCommitted(3))
				if t.Failed() {
					t.Fatalf("mode %d victim %d crash at %d", mode, victim, at)
				}
			}
		}
	}
}

// Restarting every node repeatedly in mid-round keeps them safe and live.
func TestRepeatedRestartsOfAllNodes(t *testing.T) {
	nw := newNetwork(t, 4)
	count := 0
	nw.crash = func(i int, rd Ready) crashMode {
		count++
		switch count % 7 {
		case 3:
			return crashAfterPersist
		case 5:
			return crashBeforePersist
		}
		return noCrash
	}
	for h := 1; h <= 3; h++ {
		nw.runUntil("progress", nw.allCommitted(h))
	}
}

// With exactly 2f+1 nodes up, one that missed the precommits of height 1 stalls height 2 for
// everyone; the re-broadcast of the previous decision lets it commit without block sync.
func TestLaggardCommitsFromRelayedDecision(t *testing.T) {
	nw := newNetwork(t, 4)
	nw.noSync = true
	nw.stop(3)
	nw.drop = func(from, to int, m Message) bool {
		v := m.Vote
		return v != nil && v.Height == 1 && v.Type == chain.Precommit && to == 0 && nw.nodes[from].key.Public() == v.Authority
	}
	nw.runUntil("height 3", nw.allCommitted(3))
}

// A node that signs nothing still announces itself when a round stalls.
func TestObserversAnnounceWhenARoundStalls(t *testing.T) {
	_, set := testKeys(4)
	e, err := New(Config{ChainID: testChain, Params: testParams}, Start{Height: 1, Authorities: set, LastBlockTime: genesisTime})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(genesisTime)
	tm, ok := timeoutOf(e.Ready(), StepResend)
	if !ok {
		t.Fatal("an observer arms no re-send timer")
	}
	e.HandleTimeout(tm, genesisTime+tm.DelayMs)
	rd := e.Ready()
	if !rd.Announce || len(rd.Resends) != 0 || len(rd.Messages) != 0 {
		t.Fatalf("observer's stalled round: announce %v, %d resends, %d messages", rd.Announce, len(rd.Resends), len(rd.Messages))
	}
}
