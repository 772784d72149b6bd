package state

import (
	"errors"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

func hasEvent(out *Outcome, typ string) bool {
	for _, r := range out.Results {
		for _, e := range r.Events {
			if e.Type == typ {
				return true
			}
		}
	}
	return false
}

// TestAuthorityAddAtQuorum: with 4 authorities the quorum is 3 (> 8/3); the change takes effect
// AuthorityChangeDelay heights after the deciding block.
func TestAuthorityAddAtQuorum(t *testing.T) {
	n := newNet(t, 4)
	genesisSet, _ := n.sets()
	newcomer := testKey(t, "newcomer").Public()
	prop := n.proposeTx(n.auth[0], chain.AuthorityAdd, newcomer)
	id := prop.Hash()
	out := n.apply(prop, n.voteTx(n.auth[1], id))
	if out.NextAuthorities != nil {
		t.Fatal("2 of 4 votes changed the set")
	}
	p, err := AuthorityProposal(n.view, id)
	if err != nil || p == nil || p.Status != ProposalOpen || len(p.Voters) != 2 || p.OpenedHeight != 1 || p.ExpiresHeight != 1+ProposalLifetime {
		t.Fatalf("proposal %+v %v", p, err)
	}
	if _, after := n.sets(); after.Contains(newcomer) {
		t.Fatal("set changed below quorum")
	}
	// The third vote passes it in block 2: set(4) gains the newcomer, set(3) does not.
	out = n.apply(n.voteTx(n.auth[2], id))
	if out.NextAuthorities == nil || !out.NextAuthorities.Contains(newcomer) || out.NextAuthorities.Size() != 5 {
		t.Fatalf("quorum vote: next authorities %v", out.NextAuthorities)
	}
	if !hasEvent(out, EventAuthorityChange) {
		t.Fatal("no change event")
	}
	next, after := n.sets() // set(3), set(4)
	if !setsEqual(next, genesisSet) || !after.Contains(newcomer) {
		t.Fatalf("after deciding block 2: next has newcomer %v, after has %v", next.Contains(newcomer), after.Contains(newcomer))
	}
	p, _ = AuthorityProposal(n.view, id)
	if p.Status != ProposalPassed || p.ClosedHeight != 2 {
		t.Fatalf("proposal %+v", p)
	}
	// The fourth authority's late vote is refused: the proposal is closed.
	if _, err := n.try(n.voteTx(n.auth[3], id)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("late vote: %v", err)
	}
	n.nonces[n.auth[3].Public()]--
	out = n.apply() // block 3: set(4) = set with newcomer certifies the next block
	if out.NextAuthorities != nil {
		t.Fatal("a block without a decision reported a change")
	}
	next, after = n.sets()
	if !next.Contains(newcomer) || !setsEqual(next, after) {
		t.Fatal("newcomer not in set(4)")
	}
	// From height 4 the newcomer votes and 5 members need 4 votes.
	if q := next.Quorum(); q != 4 {
		t.Fatalf("quorum %d", q)
	}
}

func TestAuthorityRemoveAtQuorum(t *testing.T) {
	n := newNet(t, 3) // quorum 3 of 3
	victim := n.auth[2].Public()
	prop := n.proposeTx(n.auth[0], chain.AuthorityRemove, victim)
	out := n.apply(prop, n.voteTx(n.auth[1], prop.Hash()))
	if out.NextAuthorities != nil {
		t.Fatal("2 of 3 removed an authority")
	}
	// The victim may vote for its own removal: one authority, one vote.
	out = n.apply(n.voteTx(n.auth[2], prop.Hash()))
	if out.NextAuthorities == nil || out.NextAuthorities.Contains(victim) || out.NextAuthorities.Size() != 2 {
		t.Fatalf("removal: %v", out.NextAuthorities)
	}
	n.apply()
	next, _ := n.sets()
	if next.Contains(victim) {
		t.Fatal("victim still certifies")
	}
	// The removed authority can no longer propose or vote.
	if _, err := n.try(n.proposeTx(n.auth[2], chain.AuthorityAdd, victim)); err == nil || !strings.Contains(err.Error(), "not a current authority") {
		t.Fatalf("removed authority proposed: %v", err)
	}
}

func TestAuthorityProposalRules(t *testing.T) {
	outsider := testKey(t, "outsider")
	tests := []struct {
		name string
		txs  func(n *net) []*chain.Tx
		want string
	}{
		{"outsider proposes", func(n *net) []*chain.Tx {
			return []*chain.Tx{n.proposeTx(outsider, chain.AuthorityAdd, outsider.Public())}
		}, "not a current authority"},
		{"add existing", func(n *net) []*chain.Tx {
			return []*chain.Tx{n.proposeTx(n.auth[0], chain.AuthorityAdd, n.auth[1].Public())}
		}, "already an authority"},
		{"remove non-member", func(n *net) []*chain.Tx {
			return []*chain.Tx{n.proposeTx(n.auth[0], chain.AuthorityRemove, outsider.Public())}
		}, "not an authority"},
		{"unknown action", func(n *net) []*chain.Tx {
			return []*chain.Tx{chain.NewTx(n.auth[0], testChain, chain.TxAuthorityPropose, n.nonce(n.auth[0]), &chain.AuthorityPropose{Action: 7})}
		}, "unknown authority action"},
		{"outsider votes", func(n *net) []*chain.Tx {
			p := n.proposeTx(n.auth[0], chain.AuthorityAdd, outsider.Public())
			return []*chain.Tx{p, n.voteTx(outsider, p.Hash())}
		}, "not a current authority"},
		{"double vote", func(n *net) []*chain.Tx {
			p := n.proposeTx(n.auth[0], chain.AuthorityAdd, outsider.Public())
			return []*chain.Tx{p, n.voteTx(n.auth[1], p.Hash()), n.voteTx(n.auth[1], p.Hash())}
		}, "already voted"},
		{"proposer votes again", func(n *net) []*chain.Tx {
			p := n.proposeTx(n.auth[0], chain.AuthorityAdd, outsider.Public())
			return []*chain.Tx{p, n.voteTx(n.auth[0], p.Hash())}
		}, "already voted"},
		{"vote before proposal", func(n *net) []*chain.Tx {
			p := chain.NewTx(n.auth[0], testChain, chain.TxAuthorityPropose, 1, &chain.AuthorityPropose{Action: chain.AuthorityAdd, Subject: chain.Authority{Key: outsider.Public()}})
			return []*chain.Tx{n.voteTx(n.auth[1], p.Hash()), p}
		}, "no proposal"},
		{"zero proposal id", func(n *net) []*chain.Tx {
			return []*chain.Tx{n.voteTx(n.auth[1], chain.Hash{})}
		}, "without a proposal id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNet(t, 4)
			before := n.view.clone()
			if _, err := n.try(tc.txs(n)...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if !mapsEqual(before.m, n.view.m) {
				t.Fatal("failed block changed state")
			}
		})
	}
}

func TestAuthorityLastCannotBeRemoved(t *testing.T) {
	n := newNet(t, 1)
	if _, err := n.try(n.proposeTx(n.auth[0], chain.AuthorityRemove, n.auth[0].Public())); err == nil || !strings.Contains(err.Error(), "last authority") {
		t.Fatalf("removing the only authority: %v", err)
	}
	n.nonces[n.auth[0].Public()]--
	// With one authority its proposal is already a quorum.
	newcomer := testKey(t, "second").Public()
	out := n.apply(n.proposeTx(n.auth[0], chain.AuthorityAdd, newcomer))
	if out.NextAuthorities == nil || out.NextAuthorities.Size() != 2 {
		t.Fatalf("sole authority's proposal: %v", out.NextAuthorities)
	}
}

func TestAuthorityProposalVoidAndExpiry(t *testing.T) {
	n := newNet(t, 4)
	x := testKey(t, "x").Public()
	p1 := n.proposeTx(n.auth[0], chain.AuthorityAdd, x)
	p2 := n.proposeTx(n.auth[1], chain.AuthorityAdd, x) // a rival proposal for the same change
	n.apply(p1, p2, n.voteTx(n.auth[1], p1.Hash()), n.voteTx(n.auth[2], p1.Hash()))
	if _, after := n.sets(); !after.Contains(x) {
		t.Fatal("p1 did not pass")
	}
	// p2 reaching quorum later no longer applies: it closes as void, the set is unchanged.
	out := n.apply(n.voteTx(n.auth[0], p2.Hash()), n.voteTx(n.auth[2], p2.Hash()))
	if out.NextAuthorities != nil || !hasEvent(out, EventProposalVoid) {
		t.Fatalf("void proposal: %v", out.NextAuthorities)
	}
	if p, _ := AuthorityProposal(n.view, p2.Hash()); p.Status != ProposalVoid {
		t.Fatalf("p2 status %s", p.Status)
	}
	// A proposal accepts votes up to and including its expiry height, not after.
	p3 := n.proposeTx(n.auth[0], chain.AuthorityRemove, n.auth[3].Public())
	n.apply(p3)
	rec, _ := AuthorityProposal(n.view, p3.Hash())
	n.setTip(rec.ExpiresHeight - 1)
	n.apply(n.voteTx(n.auth[1], p3.Hash())) // at ExpiresHeight
	n.setTip(rec.ExpiresHeight)
	if _, err := n.try(n.voteTx(n.auth[2], p3.Hash())); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("vote after expiry: %v", err)
	}
}

// TestVotesOfFormerMembersDoNotCount: a vote cast by an authority that has since left the set
// does not count towards the quorum of the current set.
func TestVotesOfFormerMembersDoNotCount(t *testing.T) {
	n := newNet(t, 4)
	x := testKey(t, "x").Public()
	keep := n.proposeTx(n.auth[3], chain.AuthorityAdd, x) // auth[3]'s vote, about to lapse
	rm := n.proposeTx(n.auth[0], chain.AuthorityRemove, n.auth[3].Public())
	n.apply(keep, rm, n.voteTx(n.auth[1], rm.Hash()), n.voteTx(n.auth[2], rm.Hash()))
	n.apply()
	next, _ := n.sets()
	if next.Size() != 3 || next.Contains(n.auth[3].Public()) {
		t.Fatal("auth[3] not removed")
	}
	// Set of 3: quorum 3. auth[0] and auth[1] vote: with auth[3]'s lapsed vote that would be 3.
	out := n.apply(n.voteTx(n.auth[0], keep.Hash()), n.voteTx(n.auth[1], keep.Hash()))
	if out.NextAuthorities != nil {
		t.Fatal("lapsed vote counted")
	}
	out = n.apply(n.voteTx(n.auth[2], keep.Hash()))
	if out.NextAuthorities == nil || !out.NextAuthorities.Contains(x) {
		t.Fatal("quorum of current members did not pass it")
	}
}

func TestEvidence(t *testing.T) {
	outsider := testKey(t, "outsider") // not registered, not an authority
	tests := []struct {
		name string
		ev   func(n *net) *chain.Evidence
		want string
	}{
		{"ok", func(n *net) *chain.Evidence { return n.equivocation(n.auth[1], n.height, 0) }, ""},
		{"votes from the future", func(n *net) *chain.Evidence { return n.equivocation(n.auth[1], n.height+2, 0) }, "future"},
		{"too old", func(n *net) *chain.Evidence {
			n.setTip(MaxEvidenceAge + 10)
			return n.equivocation(n.auth[1], 9, 0)
		}, "older than"},
		{"oldest accepted", func(n *net) *chain.Evidence {
			n.setTip(MaxEvidenceAge + 10)
			return n.equivocation(n.auth[1], 11, 0)
		}, ""},
		{"not an authority", func(n *net) *chain.Evidence { return n.equivocation(outsider, n.height, 0) }, "not an authority"},
		{"other chain", func(n *net) *chain.Evidence { return equivocation(n.auth[1], "other-chain", n.height, 0) }, "invalid signature"},
		{"forged", func(n *net) *chain.Evidence {
			ev := n.equivocation(n.auth[1], n.height, 0)
			ev.B.Sig[3] ^= 1
			return ev
		}, "invalid signature"},
		{"not conflicting", func(n *net) *chain.Evidence {
			ev := n.equivocation(n.auth[1], n.height, 0)
			ev.B = ev.A
			return ev
		}, "do not conflict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNet(t, 4)
			n.apply()
			reporter := n.auth[0] // an authority of the set certifying the block
			ev := tc.ev(n)
			off := ev.A.Authority
			before := n.view.clone()
			out, err := n.try(n.evidenceTx(reporter, ev))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				if !mapsEqual(before.m, n.view.m) {
					t.Fatal("failed block changed state")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			decided := n.height
			if out.NextAuthorities == nil || out.NextAuthorities.Contains(off) || !hasEvent(out, EventEvidenceAccepted) {
				t.Fatalf("offender not removed: %v", out.NextAuthorities)
			}
			// Removed from set(decided+2), still in set(decided+1).
			next, after := n.sets()
			if !next.Contains(off) || after.Contains(off) {
				t.Fatalf("schedule: next has offender %v, after %v", next.Contains(off), after.Contains(off))
			}
			rec, err := EvidenceAccepted(n.view, ev.Key())
			if err != nil || rec == nil || !rec.Removed || rec.AcceptedHeight != decided || rec.Offender != off {
				t.Fatalf("evidence record %+v %v", rec, err)
			}
			if tc.name != "ok" {
				return // the rest needs votes that stay young enough
			}
			// The same offence is punished once: the same pair, or another pair proving it.
			if _, err := n.try(n.evidenceTx(reporter, ev)); err == nil || !strings.Contains(err.Error(), "already punished") {
				t.Fatalf("same evidence again: %v", err)
			}
			other := chain.Vote{Type: chain.Prevote, Height: ev.A.Height, Round: ev.A.Round, BlockHash: chain.Sum256([]byte("block c"))}
			other.Sign(n.auth[1], n.cid)
			if _, err := n.try(n.evidenceTx(reporter, chain.NewEvidence(ev.A, other))); err == nil || !strings.Contains(err.Error(), "already punished") {
				t.Fatalf("second proof of the same offence: %v", err)
			}
			n.apply()
			if next, _ := n.sets(); next.Contains(off) || next.Size() != 3 {
				t.Fatal("offender still certifies at decided+2")
			}
			// A different offence (another round) by the departed offender is no longer
			// evidence against an authority.
			if _, err := n.try(n.evidenceTx(reporter, n.equivocation(n.auth[1], n.height, 1))); err == nil || !strings.Contains(err.Error(), "not an authority") {
				t.Fatalf("evidence against former authority: %v", err)
			}
		})
	}
}

func TestEvidenceInBlockWithVotes(t *testing.T) {
	// Two offences by one authority in one block: the second is recorded without removing again.
	n := newNet(t, 4)
	n.apply()
	r := n.auth[1]
	out := n.apply(n.evidenceTx(r, n.equivocation(n.auth[0], 1, 0)), n.evidenceTx(r, n.equivocation(n.auth[0], 1, 1)))
	if out.NextAuthorities == nil || out.NextAuthorities.Size() != 3 || !hasEvent(out, EventOffenderNotRemoved) {
		t.Fatalf("double offence: %v", out.NextAuthorities)
	}
}

func TestEvidenceNeverEmptiesSet(t *testing.T) {
	n := newNet(t, 1)
	n.apply()
	r := n.auth[0] // the sole authority reports itself
	ev := n.equivocation(n.auth[0], 1, 0)
	out := n.apply(n.evidenceTx(r, ev))
	if out.NextAuthorities != nil || !hasEvent(out, EventOffenderNotRemoved) {
		t.Fatalf("last authority removed: %v", out.NextAuthorities)
	}
	if rec, _ := EvidenceAccepted(n.view, ev.Key()); rec == nil || rec.Removed {
		t.Fatalf("record %+v", rec)
	}
	if _, err := n.try(n.evidenceTx(r, ev)); err == nil {
		t.Fatal("evidence counted twice")
	}
}

// TestEvidenceNonceFree: evidence carries nonce 0 and leaves the signer's nonce alone; when two
// authorities report one offence the first executes and the second is refused, in one block or
// in the next, so the loser leaves no nonce gap; a non-zero nonce is refused; only an authority
// of the set certifying the block may report.
func TestEvidenceNonceFree(t *testing.T) {
	n := newNet(t, 4)
	add := n.proposeTx(n.auth[0], chain.AuthorityAdd, testKey(t, "x").Public()) // auth[0] has nonce 1, auth[1] none
	n.apply(add, n.voteTx(n.auth[2], add.Hash()), n.voteTx(n.auth[3], add.Hash()))
	ev := n.equivocation(n.auth[3], 1, 0)
	first, second := n.evidenceTx(n.auth[0], ev), n.evidenceTx(n.auth[1], ev)
	if k1, ok1 := chain.EvidenceKeyOf(first); !ok1 || k1 != ev.Key() {
		t.Fatal("EvidenceKeyOf of the first report")
	}
	if k2, _ := chain.EvidenceKeyOf(second); k2 != ev.Key() {
		t.Fatal("two reports of one offence have different keys")
	}
	for _, tx := range []*chain.Tx{first, second} {
		if err := n.m.CheckTx(n.view, tx, n.time, nil); err != nil {
			t.Fatalf("CheckTx of a report by %s: %v", tx.Signer.Short(), err)
		}
	}
	// One block with both: the builder keeps the first, refuses the second.
	b := n.m.NewBuilder(n.view, n.header(), nil)
	if err := b.Add(first); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(second); err == nil || !strings.Contains(err.Error(), "already punished") {
		t.Fatalf("second report in the same block: %v", err)
	}
	if _, err := n.try(first, second); err == nil || !strings.Contains(err.Error(), "already punished") {
		t.Fatalf("block with both reports: %v", err)
	}
	n.apply(first)
	for i, k := range n.auth[:2] {
		if got, err := Nonce(n.view, k.Public().Address()); err != nil || got != uint64(1-i) {
			t.Fatalf("authority %d nonce %d after evidence (%v)", i, got, err)
		}
	}
	if err := n.m.CheckTx(n.view, second, n.time, nil); err == nil || !strings.Contains(err.Error(), "already punished") {
		t.Fatalf("CheckTx of the losing report: %v", err)
	}
	n.refuse(second, "already punished")
	// The losing reporter's next transaction takes the next nonce: no gap.
	n.apply(n.proposeTx(n.auth[1], chain.AuthorityAdd, testKey(t, "y").Public()))
	if got, _ := Nonce(n.view, n.auth[1].Public().Address()); got != 1 {
		t.Fatalf("reporter's nonce %d after its next transaction", got)
	}

	other := n.equivocation(n.auth[2], 2, 0)
	for _, nonce := range []uint64{1, 2, 5} {
		tx := chain.NewTx(n.auth[1], testChain, chain.TxEvidence, nonce, other)
		n.refuse(tx, "must be 0")
		if err := n.m.CheckTx(n.view, tx, n.time, nil); err == nil || errors.Is(err, ErrNonce) {
			t.Fatalf("CheckTx of evidence with nonce %d: %v", nonce, err)
		}
	}
	n.refuse(n.evidenceTx(testKey(t, "outsider"), other), "not an authority of the set certifying")
	// x, added in block 1, certifies the next block and reports like any other authority.
	n.apply(n.evidenceTx(testKey(t, "x"), other))
	if rec, _ := EvidenceAccepted(n.view, other.Key()); rec == nil {
		t.Fatal("report by a newly added authority not recorded")
	}
}
