package state

import (
	"slices"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

func (n *net) expiryPage(height uint64, page uint32) *expiryRecord {
	n.t.Helper()
	var r expiryRecord
	found, err := get(n.view, expiryKey(height, page), "expiry index", &r)
	if err != nil {
		n.t.Fatal(err)
	}
	if !found {
		return nil
	}
	return &r
}

// applyUntil runs empty blocks until the tip is height.
func (n *net) applyUntil(height uint64) {
	n.t.Helper()
	for n.height < height {
		n.apply()
	}
}

// TestProposalsLeaveStateAtExpiry: open and passed proposals alike are deleted when the block at
// their ExpiresHeight finishes, not before; a vote at that height still counts; the deletion is
// exactly what changes the root; a later vote is refused with a clear error.
func TestProposalsLeaveStateAtExpiry(t *testing.T) {
	n := newNet(t, 4)
	x, y := testKey(t, "x").Public(), testKey(t, "y").Public()
	open := n.proposeTx(n.auth[0], chain.AuthorityAdd, x)
	passed := n.proposeTx(n.auth[1], chain.AuthorityAdd, y)
	n.apply(open, passed, n.voteTx(n.auth[0], passed.Hash()), n.voteTx(n.auth[2], passed.Hash()))
	if p, _ := AuthorityProposal(n.view, passed.Hash()); p == nil || p.Status != ProposalPassed {
		t.Fatalf("passed proposal %+v", p)
	}
	exp := uint64(1 + ProposalLifetime)
	keys := [][]byte{proposalKey(open.Hash()), proposalKey(passed.Hash())}
	if idx := n.expiryPage(exp, 0); idx == nil || idx.Pages != 1 || !slices.EqualFunc(idx.Keys, keys, slices.Equal) {
		t.Fatalf("expiry index at %d: %+v", exp, idx)
	}

	n.applyUntil(exp - 1)
	for _, k := range keys {
		if n.view.m[string(k)] == nil {
			t.Fatalf("proposal %x gone before its expiry height", k)
		}
	}
	// Block exp on two copies of state: one with the index, one as if there were none.
	control := n.view.clone()
	delete(control.m, string(expiryKey(exp, 0)))
	lateVote := n.voteTx(n.auth[1], open.Hash())
	out := n.apply(lateVote)
	if !hasEvent(out, EventVoteCounted) {
		t.Fatal("a vote at the last height did not count")
	}
	ref, err := n.m.ApplyBlock(control, &chain.Header{Version: chain.HeaderVersion, ChainID: testChain, Height: exp, Time: n.time}, []*chain.Tx{lateVote}, nil)
	if err != nil {
		t.Fatal(err)
	}
	control.commit(ref.Changes)
	for _, id := range []chain.Hash{open.Hash(), passed.Hash()} {
		if p, err := AuthorityProposal(n.view, id); p != nil || err != nil {
			t.Fatalf("proposal %s after its expiry: %+v %v", id.Short(), p, err)
		}
	}
	if n.expiryPage(exp, 0) != nil {
		t.Fatal("expiry index outlived its height")
	}
	if stateDigest(n.view) == stateDigest(control) {
		t.Fatal("expiry did not change the state root")
	}
	for _, k := range keys {
		delete(control.m, string(k))
	}
	if stateDigest(n.view) != stateDigest(control) {
		t.Fatal("expiry changed more than the expired records")
	}
	var deleted []string
	for _, c := range out.Changes.Changes {
		if c.Delete {
			deleted = append(deleted, string(c.Key))
		}
	}
	want := []string{string(keys[0]), string(keys[1]), string(expiryKey(exp, 0))}
	slices.Sort(want)
	if !slices.Equal(deleted, want) {
		t.Fatalf("deleted %q, want %q", deleted, want)
	}

	if _, err := n.try(n.voteTx(n.auth[2], open.Hash())); err == nil || !strings.Contains(err.Error(), "expired and removed") {
		t.Fatalf("vote on an expired proposal: %v", err)
	}
}

// TestExpiryIndexPages: more keys than one page holds expire at one height; every page is read
// and deleted.
func TestExpiryIndexPages(t *testing.T) {
	n := newNet(t, 1) // a sole authority's proposal passes at once: one block, many proposals
	const count = 2*maxExpiryPageKeys + 7
	var txs []*chain.Tx
	for i := range count {
		txs = append(txs, n.proposeTx(n.auth[0], chain.AuthorityAdd, testKey(t, "member-"+string(rune('A'+i))).Public()))
	}
	n.apply(txs...)
	exp := uint64(1 + ProposalLifetime)
	head := n.expiryPage(exp, 0)
	if head == nil || head.Pages != 3 || len(head.Keys) != maxExpiryPageKeys {
		t.Fatalf("head page %+v", head)
	}
	if p := n.expiryPage(exp, 2); p == nil || p.Pages != 0 || len(p.Keys) != 7 {
		t.Fatalf("last page %+v", p)
	}
	n.setTip(exp - 1) // empty blocks over a set of 130 members are slow; the index is by height
	n.apply()
	for _, tx := range txs {
		if p, _ := AuthorityProposal(n.view, tx.Hash()); p != nil {
			t.Fatalf("proposal %s outlived its expiry", tx.Hash().Short())
		}
	}
	for page := range uint32(3) {
		if n.expiryPage(exp, page) != nil {
			t.Fatalf("page %d outlived its height", page)
		}
	}
}

// TestEvidenceLeavesStateAtExpiry: an evidence record goes when the block at
// VoteHeight+MaxEvidenceAge+1 finishes; the same offence stays refused before (already punished)
// and after (too old).
func TestEvidenceLeavesStateAtExpiry(t *testing.T) {
	n := newNet(t, 4)
	n.apply()
	ev := n.equivocation(n.auth[1], 1, 0)
	n.apply(n.evidenceTx(n.auth[0], ev))
	exp := uint64(1 + MaxEvidenceAge + 1)
	if idx := n.expiryPage(exp, 0); idx == nil || len(idx.Keys) != 1 || string(idx.Keys[0]) != string(evidenceKey(ev.Key())) {
		t.Fatalf("expiry index at %d: %+v", exp, idx)
	}
	n.setTip(exp - 2)
	n.apply() // block exp-1: the last height that would judge the offence
	if rec, _ := EvidenceAccepted(n.view, ev.Key()); rec == nil {
		t.Fatal("evidence record gone before its expiry height")
	}
	before := stateDigest(n.view)
	n.apply()
	if rec, err := EvidenceAccepted(n.view, ev.Key()); rec != nil || err != nil {
		t.Fatalf("evidence record after its expiry: %+v %v", rec, err)
	}
	if n.expiryPage(exp, 0) != nil || stateDigest(n.view) == before {
		t.Fatal("expiry index outlived its height, or state did not change")
	}
	if _, err := n.try(n.evidenceTx(n.auth[0], ev)); err == nil || !strings.Contains(err.Error(), "older than") {
		t.Fatalf("old evidence after its record expired: %v", err)
	}
}

// TestEvidenceRefusedAtEveryAge: between acceptance and expiry the record refuses the offence,
// at expiry the age check does.
func TestEvidenceRefusedAtEveryAge(t *testing.T) {
	for _, tc := range []struct {
		tip  uint64 // the block runs at tip+1
		want string
	}{
		{3, "already punished"},
		{MaxEvidenceAge, "already punished"}, // block 1+MaxEvidenceAge: the oldest judged
		{MaxEvidenceAge + 1, "older than"},   // block of the record's expiry
		{MaxEvidenceAge + 5, "older than"},
	} {
		n := newNet(t, 4)
		n.apply()
		ev := n.equivocation(n.auth[1], 1, 0)
		n.apply(n.evidenceTx(n.auth[0], ev))
		n.setTip(tc.tip)
		if _, err := n.try(n.evidenceTx(n.auth[0], ev)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("block %d: %v, want %q", tc.tip+1, err, tc.want)
		}
	}
}
