package state

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// refuse runs a block of tx, expects it refused with an error containing want, and gives the
// signer's nonce back to the test's counter.
func (n *net) refuse(tx *chain.Tx, want string) {
	n.t.Helper()
	before := n.view.clone()
	if _, err := n.try(tx); err == nil || !strings.Contains(err.Error(), want) {
		n.t.Fatalf("%s by %s: %v, want %q", tx.Kind, tx.Signer.Short(), err, want)
	}
	if !mapsEqual(before.m, n.view.m) {
		n.t.Fatal("refused block changed state")
	}
	if tx.Nonce > 0 {
		n.nonces[tx.Signer]--
	}
}

func (n *net) epochs() []AuthorityEpoch {
	n.t.Helper()
	e, err := readEpochs(n.view)
	if err != nil {
		n.t.Fatal(err)
	}
	return e
}

// checkHistory: the history is bounded, in height order, ends with the set certifying the next
// block, and exactly the sets it names are stored.
func (n *net) checkHistory() {
	n.t.Helper()
	epochs := n.epochs()
	if len(epochs) == 0 || len(epochs) > MaxAuthorityEpochs {
		n.t.Fatalf("height %d: %d epochs", n.height, len(epochs))
	}
	next, _ := n.sets()
	if last := epochs[len(epochs)-1]; last.SetHash != next.Hash() || last.From > n.height+1 {
		n.t.Fatalf("height %d: last epoch %+v, next set %s", n.height, last, next.Hash().Short())
	}
	var named []string
	for _, e := range epochs {
		if k := string(authSetKey(e.SetHash)); !slices.Contains(named, k) {
			named = append(named, k)
		}
	}
	var stored []string
	for k := range n.view.m {
		if strings.HasPrefix(k, prefixAuthSet) {
			stored = append(stored, k)
		}
	}
	slices.Sort(named)
	slices.Sort(stored)
	if !slices.Equal(named, stored) {
		n.t.Fatalf("height %d: %d sets stored, %d named by the history", n.height, len(stored), len(named))
	}
	for _, e := range epochs {
		s, err := AuthoritySetAt(n.view, e.From)
		if err != nil || s.Hash() != e.SetHash {
			n.t.Fatalf("height %d: set at %d: %v", n.height, e.From, err)
		}
	}
}

// TestEvidenceJudgedBySetAtVoteHeight: an offender who joined after the votes' height, or had left
// before it, is refused even though it is an authority now; one who was a member then is punished.
func TestEvidenceJudgedBySetAtVoteHeight(t *testing.T) {
	t.Run("joined after", func(t *testing.T) {
		n := newNet(t, 4)
		nk := testKey(t, "newcomer")
		add := n.proposeTx(n.auth[0], chain.AuthorityAdd, nk.Public())
		n.apply(add, n.voteTx(n.auth[1], add.Hash()), n.voteTx(n.auth[2], add.Hash())) // certifies from 3
		n.applyUntil(4)
		n.checkHistory()
		n.refuse(n.evidenceTx(n.auth[0], n.equivocation(nk, 2, 0)), "was not an authority at height 2")
		out := n.apply(n.evidenceTx(n.auth[0], n.equivocation(nk, 3, 0)))
		if out.NextAuthorities == nil || out.NextAuthorities.Contains(nk.Public()) {
			t.Fatal("offender who was a member at the votes' height not removed")
		}
	})
	t.Run("left before and came back", func(t *testing.T) {
		n := newNet(t, 4)
		victim := n.auth[3]
		rm := n.proposeTx(n.auth[0], chain.AuthorityRemove, victim.Public())
		n.apply(rm, n.voteTx(n.auth[1], rm.Hash()), n.voteTx(n.auth[2], rm.Hash())) // gone from 3
		n.applyUntil(3)
		back := n.proposeTx(n.auth[0], chain.AuthorityAdd, victim.Public())
		n.apply(back, n.voteTx(n.auth[1], back.Hash()), n.voteTx(n.auth[2], back.Hash())) // block 4: back from 6
		n.applyUntil(6)
		n.checkHistory()
		if next, _ := n.sets(); !next.Contains(victim.Public()) {
			t.Fatal("victim not back")
		}
		for _, vh := range []uint64{3, 4, 5} {
			n.refuse(n.evidenceTx(n.auth[0], n.equivocation(victim, vh, 0)), fmt.Sprintf("was not an authority at height %d", vh))
		}
		out := n.apply(n.evidenceTx(n.auth[0], n.equivocation(victim, 2, 0)))
		if out.NextAuthorities == nil || out.NextAuthorities.Contains(victim.Public()) {
			t.Fatal("offender who was a member at the votes' height not removed")
		}
	})
}

// TestAuthorityHistoryBounded: a set that changes every few blocks keeps at most
// MaxAuthorityEpochs epochs and stores only the sets they name; evidence from before the oldest
// retained epoch is refused; once MaxEvidenceAge heights pass without a change, one epoch is left.
func TestAuthorityHistoryBounded(t *testing.T) {
	n := newNet(t, 1) // a sole authority's proposals pass at once
	a := n.auth[0]
	for i := range MaxAuthorityEpochs/2 + 10 {
		x := testKey(t, fmt.Sprintf("churn-%d", i)).Public()
		n.apply(n.proposeTx(a, chain.AuthorityAdd, x))    // set(h+2) = {a, x}
		n.apply(n.proposeTx(a, chain.AuthorityRemove, x)) // set(h+3) = {a}
		n.apply()                                         // certified by {a, x}
		n.checkHistory()
	}
	epochs := n.epochs()
	if len(epochs) != MaxAuthorityEpochs {
		t.Fatalf("%d epochs after %d changes", len(epochs), 2*(MaxAuthorityEpochs/2+10))
	}
	oldest := epochs[0].From
	if oldest <= 2 {
		t.Fatalf("oldest epoch from %d: nothing was dropped", oldest)
	}
	// The offender was an authority at every height, but the history no longer reaches back.
	n.refuse(n.evidenceTx(a, n.equivocation(a, oldest-1, 0)), "older than the oldest retained authority set")
	if _, err := AuthoritySetAt(n.view, oldest-1); err == nil {
		t.Fatal("set before the oldest epoch answered")
	}
	out := n.apply(n.evidenceTx(a, n.equivocation(a, oldest, 0)))
	if !hasEvent(out, EventEvidenceAccepted) {
		t.Fatal("evidence within the history refused")
	}
	next, after := n.sets()
	for h, want := range map[uint64]*chain.AuthoritySet{n.height + 1: next, n.height + 2: after} {
		if s, err := AuthoritySetAt(n.view, h); err != nil || s.Hash() != want.Hash() {
			t.Fatalf("set at %d: %v", h, err)
		}
	}
	if _, err := AuthoritySetAt(n.view, n.height+3); err == nil {
		t.Fatal("set of an unscheduled height answered")
	}

	// MaxEvidenceAge heights without a change: only the current set's epoch is left.
	n.setTip(n.height + MaxEvidenceAge)
	n.apply()
	n.checkHistory()
	if epochs := n.epochs(); len(epochs) != 1 {
		t.Fatalf("%d epochs left after MaxEvidenceAge quiet heights", len(epochs))
	}
}

// TestAuthorityHistoryAtGenesis: genesis starts the history with its set from height 1, and a
// block that changes nothing leaves it alone.
func TestAuthorityHistoryAtGenesis(t *testing.T) {
	n := newNet(t, 3)
	next, _ := n.sets()
	if e := n.epochs(); len(e) != 1 || e[0].From != 1 || e[0].SetHash != next.Hash() {
		t.Fatalf("genesis epochs %+v", e)
	}
	n.checkHistory()
	n.apply()
	n.checkHistory()
}
