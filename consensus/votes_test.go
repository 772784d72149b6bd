package consensus

import (
	"testing"

	"github.com/medledger/medledger/chain"
)

func TestEquivocationProducesExactlyOneEvidence(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	x, y, z := testBlock(1, 1).Hash(), testBlock(1, 2).Hash(), testBlock(1, 3).Hash()
	first := signedVote(keys[2], chain.Prevote, 1, 0, x)
	e.HandleVote(first, genesisTime)
	e.HandleVote(first, genesisTime) // a re-broadcast is not an offence
	e.HandleVote(signedVote(keys[2], chain.Prevote, 1, 0, y), genesisTime)
	e.HandleVote(signedVote(keys[2], chain.Prevote, 1, 0, z), genesisTime)              // same offence again
	e.HandleVote(signedVote(keys[2], chain.Prevote, 1, 0, chain.ZeroHash), genesisTime) // and again
	rd := e.Ready()
	if len(rd.Evidence) != 1 {
		t.Fatalf("got %d evidence, want 1", len(rd.Evidence))
	}
	ev := rd.Evidence[0]
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := ev.VerifySig(testChain); err != nil {
		t.Fatal(err)
	}
	if ev.A.Authority != keys[2].Public() {
		t.Fatalf("evidence names %s", ev.A.Authority.Short())
	}
	// Each distinct vote counts for its own value (at most maxVotesPerAuthority of them), but
	// the authority is one voter.
	pv := e.votes.get(0, chain.Prevote).tally
	if pv.count(x) != 1 || pv.count(y) != 1 || pv.count(z) != 1 || pv.count(chain.ZeroHash) != 0 || pv.voters != 1 {
		t.Fatalf("want x, y, z counted once each, nil dropped, one voter: %+v", pv)
	}
	// A different step of the same round is a separate offence.
	e.HandleVote(signedVote(keys[2], chain.Precommit, 1, 0, x), genesisTime)
	e.HandleVote(signedVote(keys[2], chain.Precommit, 1, 0, y), genesisTime)
	if rd := e.Ready(); len(rd.Evidence) != 1 {
		t.Fatalf("precommit equivocation: %d evidence, want 1", len(rd.Evidence))
	}
}

func TestVotesFromNonMembersAndOtherHeightsAreDropped(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	h := testBlock(1, 1).Hash()
	outsider := testKey(77)
	e.HandleVote(signedVote(outsider, chain.Prevote, 1, 0, h), genesisTime)
	e.HandleVote(signedVote(keys[1], chain.Prevote, 2, 0, h), genesisTime)
	e.HandleVote(&chain.Vote{Version: 9, Type: chain.Prevote, Height: 1, Authority: keys[1].Public()}, genesisTime)
	e.HandleVote(nil, genesisTime)
	if n := e.votes.voters(0, chain.Prevote); n != 0 {
		t.Fatalf("%d prevotes counted", n)
	}
}

func TestRoundSkipOnFPlusOneHigherRoundVotes(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	e.HandleVote(signedVote(keys[1], chain.Prevote, 1, 5, chain.ZeroHash), genesisTime)
	if e.Round() != 0 {
		t.Fatalf("one vote (f = 1) moved the engine to round %d", e.Round())
	}
	e.HandleVote(signedVote(keys[2], chain.Precommit, 1, 7, chain.ZeroHash), genesisTime)
	if e.Round() != 5 {
		t.Fatalf("f+1 authorities at rounds >= 5: engine in round %d, want 5", e.Round())
	}
	// Far beyond the window: not stored, but still enough to skip.
	e.HandleVote(signedVote(keys[1], chain.Prevote, 1, 1000, chain.ZeroHash), genesisTime)
	e.HandleVote(signedVote(keys[3], chain.Prevote, 1, 1000, chain.ZeroHash), genesisTime)
	if e.Round() != 1000 {
		t.Fatalf("engine in round %d, want 1000", e.Round())
	}
	if _, ok := e.votes.rounds[1000]; ok {
		t.Fatal("votes beyond the window were stored")
	}
}

func TestCommitWaitsForTheBlockAndCertHoldsExactlyItsPrecommits(t *testing.T) {
	e, keys, set := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	b := testBlock(1, 0)
	for _, i := range []int{1, 2, 3} {
		e.HandleVote(signedVote(keys[i], chain.Precommit, 1, 0, b.Hash()), genesisTime)
	}
	if rd := e.Ready(); rd.Committed != nil {
		t.Fatal("committed without the block body")
	}
	// A proposal from the wrong proposer does not deliver the body.
	e.HandleProposal(signedProposal(keys[2], 1, 0, -1, b), b, true, genesisTime)
	if e.HasReady() && e.Ready().Committed != nil {
		t.Fatal("accepted a block from the wrong proposer")
	}
	e.HandleProposal(signedProposal(keys[1], 1, 0, -1, b), b, true, genesisTime)
	rd := e.Ready()
	if rd.Committed == nil {
		t.Fatal("no commit once the block arrived")
	}
	c := rd.Committed.Cert
	if err := c.Verify(testChain, set, 1, b.Hash()); err != nil {
		t.Fatal(err)
	}
	// Node 0 prevoted for the block on the proposal, but never precommitted it (no POL seen),
	// so the certificate holds exactly the three precommits it was given.
	if len(c.Sigs) != 3 || c.Version != chain.CertVersion {
		t.Fatalf("certificate has %d signatures", len(c.Sigs))
	}
	for _, s := range c.Sigs {
		if s.Authority == keys[0].Public() {
			t.Fatal("own precommit in the certificate without having signed one")
		}
	}
	if e.Step() != StepCommit {
		t.Fatalf("step %s after commit", e.Step())
	}
}

func TestNilPrecommitsAreNeverInACertificate(t *testing.T) {
	_, keys, set := testKeys4()
	hv := newHeightVotes(1, set)
	b := testBlock(1, 0).Hash()
	for i, h := range []chain.Hash{b, b, chain.ZeroHash, b} {
		hv.add(signedVote(keys[i], chain.Precommit, 1, 2, h), 0)
	}
	r, h, ok := hv.committed()
	if !ok || r != 2 || h != b {
		t.Fatalf("committed() = %d %s %v", r, h.Short(), ok)
	}
	c := hv.cert(r, h)
	if len(c.Sigs) != 3 {
		t.Fatalf("%d signatures", len(c.Sigs))
	}
	if err := c.Verify(testChain, set, 1, b); err != nil {
		t.Fatal(err)
	}
}

func testKeys4() (int, []chain.PrivKey, *chain.AuthoritySet) {
	keys, set := testKeys(4)
	return 4, keys, set
}

func TestInvalidProposalPrevotesNil(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	b := testBlock(1, 0)
	e.HandleProposal(signedProposal(keys[1], 1, 0, -1, b), b, false, genesisTime)
	vs := votesIn(e.Ready())
	if len(vs) != 1 || vs[0].Type != chain.Prevote || !vs[0].BlockHash.IsZero() {
		t.Fatalf("votes after an invalid proposal: %+v", vs)
	}
}

func TestMismatchedProposalIsDropped(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	b, other := testBlock(1, 0), testBlock(1, 9)
	e.HandleProposal(signedProposal(keys[1], 1, 0, -1, b), other, true, genesisTime) // hash mismatch
	e.HandleProposal(signedProposal(keys[1], 2, 0, -1, testBlock(2, 0)), testBlock(2, 0), true, genesisTime)
	e.HandleProposal(nil, b, true, genesisTime)
	e.HandleProposal(signedProposal(keys[1], 1, 0, -1, b), nil, true, genesisTime)
	if e.HasReady() || e.Step() != StepPropose {
		t.Fatalf("a bad proposal had an effect: step %s", e.Step())
	}
}

// An equivocator that fills its quota with junk values must not keep its vote for a value
// others support out of the tally: that would let it hide a proof of lock.
func TestJunkVotesCannotCrowdOutASupportedVote(t *testing.T) {
	e, keys, _ := soloEngine(t, 0)
	e.Start(genesisTime)
	e.Ready()
	x := testBlock(1, 1).Hash()
	for i := range maxVotesPerAuthority {
		e.HandleVote(signedVote(keys[3], chain.Prevote, 1, 0, chain.Hash{0xee, byte(i)}), genesisTime)
	}
	e.HandleVote(signedVote(keys[1], chain.Prevote, 1, 0, x), genesisTime)
	e.HandleVote(signedVote(keys[2], chain.Prevote, 1, 0, x), genesisTime)
	e.HandleVote(signedVote(keys[3], chain.Prevote, 1, 0, x), genesisTime)
	pv := e.votes.get(0, chain.Prevote)
	if got := pv.tally.count(x); got != 3 {
		t.Fatalf("x counted %d times, want 3 (the equivocator's vote for x must displace junk)", got)
	}
	if n := len(pv.byAuthority[keys[3].Public()]); n != maxVotesPerAuthority {
		t.Fatalf("equivocator holds %d votes, want the cap %d", n, maxVotesPerAuthority)
	}
	if pv.tally.voters != 3 {
		t.Fatalf("%d voters, want 3", pv.tally.voters)
	}
	// A further junk vote, supported by nobody, displaces nothing.
	e.HandleVote(signedVote(keys[3], chain.Prevote, 1, 0, chain.Hash{0xef}), genesisTime)
	if got := pv.tally.count(x); got != 3 {
		t.Fatalf("junk displaced a supported vote: x counted %d", got)
	}
}
