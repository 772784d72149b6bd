package state

import (
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// propose opens an authority proposal. Only a member of the set certifying this block may
// propose; the subject is judged against the set being built for h+2, so a proposal never asks
// for what is already scheduled.
func (e *executor) propose(tx *chain.Tx, id chain.Hash, b *chain.AuthorityPropose, res *TxResult) error {
	if !e.cur.Contains(tx.Signer) {
		return fmt.Errorf("state: proposer %s is not a current authority", tx.Signer.Short())
	}
	pending, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return err
	}
	switch b.Action {
	case chain.AuthorityAdd:
		if pending.Contains(b.Subject.Key) {
			return fmt.Errorf("state: %s is already an authority", b.Subject.Key.Short())
		}
		if pending.Size() >= chain.MaxAuthorities {
			return fmt.Errorf("state: authority set already has the maximum %d members", chain.MaxAuthorities)
		}
	case chain.AuthorityRemove:
		if !pending.Contains(b.Subject.Key) {
			return fmt.Errorf("state: %s is not an authority", b.Subject.Key.Short())
		}
		if pending.Size() <= 1 {
			return fmt.Errorf("state: cannot remove the last authority %s", b.Subject.Key.Short())
		}
	}
	var existing ProposalRecord
	found, err := get(e.o, proposalKey(id), "proposal", &existing)
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: proposal %s already exists", id.Short())
	}
	p := &ProposalRecord{
		Version: RecordVersion, ID: id, Proposer: tx.Signer, Action: b.Action, Subject: b.Subject,
		OpenedHeight: e.h.Height, ExpiresHeight: e.h.Height + ProposalLifetime,
		Voters: []chain.PubKey{tx.Signer}, Status: ProposalOpen,
	}
	res.event(EventProposalOpened, "proposal %s: %s %s, open until height %d", id.Short(), b.Action, b.Subject.Key.Short(), p.ExpiresHeight)
	if err := e.tally(p, res); err != nil {
		return err
	}
	e.o.Set(proposalKey(id), chain.Encode(p))
	// Passed, void or open, the record goes when no vote can reach it any more: one index
	// entry written now, none to move when it closes, and a late vote on a closed proposal
	// still learns why it is refused.
	return e.expireAt(p.ExpiresHeight, proposalKey(id))
}

// vote adds a current authority's vote to an open proposal.
func (e *executor) vote(tx *chain.Tx, b *chain.AuthorityVote, res *TxResult) error {
	if !e.cur.Contains(tx.Signer) {
		return fmt.Errorf("state: voter %s is not a current authority", tx.Signer.Short())
	}
	var p ProposalRecord
	found, err := get(e.o, proposalKey(b.Proposal), "proposal", &p)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("state: no proposal %s: never opened, or expired and removed (a proposal leaves state after its last voting height)", b.Proposal.Short())
	}
	if !p.OpenAt(e.h.Height) {
		if p.Status == ProposalOpen {
			return fmt.Errorf("state: proposal %s expired at height %d", b.Proposal.Short(), p.ExpiresHeight)
		}
		return fmt.Errorf("state: proposal %s is closed (%s)", b.Proposal.Short(), p.Status)
	}
	if slices.ContainsFunc(p.Voters, func(k chain.PubKey) bool { return k == tx.Signer }) {
		return fmt.Errorf("state: %s already voted for proposal %s", tx.Signer.Short(), b.Proposal.Short())
	}
	p.Voters = insertSorted(p.Voters, tx.Signer)
	if err := e.tally(&p, res); err != nil {
		return err
	}
	e.o.Set(proposalKey(b.Proposal), chain.Encode(&p))
	return e.closeAuto(&p)
}

// tally counts the votes of current authorities (votes of members who have since left do not
// count) and, at more than two thirds of the current set, applies the change to the set taking
// effect at h+AuthorityChangeDelay and closes the proposal. A change that no longer applies
// closes the proposal as void rather than failing the vote, so the quorum's decision is recorded.
func (e *executor) tally(p *ProposalRecord, res *TxResult) error {
	n := 0
	for _, k := range p.Voters {
		if e.cur.Contains(k) {
			n++
		}
	}
	q := e.cur.Quorum()
	if n < q {
		res.event(EventVoteCounted, "proposal %s: %d of %d votes, needs %d", p.ID.Short(), n, e.cur.Size(), q)
		return nil
	}
	pending, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return err
	}
	var next *chain.AuthoritySet
	if p.Action == chain.AuthorityAdd {
		next, err = pending.With(p.Subject)
	} else {
		next, err = pending.Without(p.Subject.Key)
	}
	p.ClosedHeight = e.h.Height
	if err != nil {
		p.Status = ProposalVoid
		res.event(EventProposalVoid, "proposal %s reached %d votes but no longer applies: %v", p.ID.Short(), n, err)
		return nil
	}
	p.Status = ProposalPassed
	writeSet(e.o, keyAfter, next)
	res.event(EventAuthorityChange, "proposal %s passed with %d of %d votes: %s %s from height %d",
		p.ID.Short(), n, e.cur.Size(), p.Action, p.Subject.Key.Short(), e.h.Height+chain.AuthorityChangeDelay)
	return nil
}

// evidence punishes an equivocation once: the offender leaves the set taking effect at
// h+AuthorityChangeDelay. The offender must have been a member of the set that certified the
// votes' height (from the retained history, see epochs.go), whatever the set is now, and must
// still be in the current or pending set: evidence against an authority already gone has nothing
// left to punish, and refusing it keeps an ex-authority's equivocations (one offence per round,
// unboundedly many) off the ledger. The set is never emptied; evidence against the last authority
// is recorded without removal.
//
// Evidence consumes no nonce, so what bounds it is who may send it: only an authority of the set
// certifying this block, the nodes that see votes first hand. Each offence is accepted once and
// refused once too old, which is its replay protection.
func (e *executor) evidence(tx *chain.Tx, ev *chain.Evidence, res *TxResult) error {
	if !e.cur.Contains(tx.Signer) {
		return fmt.Errorf("state: evidence signer %s is not an authority of the set certifying block %d", tx.Signer.Short(), e.h.Height)
	}
	if err := ev.VerifySig(e.consensusID); err != nil {
		return fmt.Errorf("state: evidence: %w", err)
	}
	off := ev.A.Authority
	vh := ev.A.Height // Validate made A and B agree on height
	if vh > e.h.Height {
		return fmt.Errorf("state: evidence votes at height %d are from the future (block %d)", vh, e.h.Height)
	}
	if e.h.Height-vh > MaxEvidenceAge {
		return fmt.Errorf("state: evidence votes at height %d older than %d heights", vh, MaxEvidenceAge)
	}
	key := ev.Key()
	var existing EvidenceRecord
	found, err := get(e.o, evidenceKey(key), "evidence", &existing)
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("state: offence %s by %s already punished at height %d", key.Short(), off.Short(), existing.AcceptedHeight)
	}
	then, oldest, err := e.setAt(vh)
	if err != nil {
		return err
	}
	if then == nil {
		return fmt.Errorf("state: evidence votes at height %d are older than the oldest retained authority set (from height %d)", vh, oldest)
	}
	if !then.Contains(off) {
		return fmt.Errorf("state: evidence offender %s was not an authority at height %d", off.Short(), vh)
	}
	pending, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return err
	}
	if !e.cur.Contains(off) && !pending.Contains(off) {
		return fmt.Errorf("state: evidence offender %s is not an authority any more: nothing left to punish", off.Short())
	}
	rec := &EvidenceRecord{Version: RecordVersion, Offender: off, VoteHeight: vh, AcceptedHeight: e.h.Height}
	res.event(EventEvidenceAccepted, "%s equivocated (%s at %d/%d)", off.Short(), ev.A.Type, vh, ev.A.Round)
	if pending.Contains(off) {
		next, err := pending.Without(off)
		if err == nil {
			writeSet(e.o, keyAfter, next)
			rec.Removed = true
			res.event(EventAuthorityChange, "%s removed for equivocation from height %d", off.Short(), e.h.Height+chain.AuthorityChangeDelay)
		} else {
			res.event(EventOffenderNotRemoved, "%s is the last authority: %v", off.Short(), err)
		}
	} else {
		res.event(EventOffenderNotRemoved, "%s already leaves the set", off.Short())
	}
	e.o.Set(evidenceKey(key), chain.Encode(rec))
	// From this height on the age check refuses the offence's evidence, so the record that
	// refused it twice is no longer needed.
	return e.expireAt(vh+MaxEvidenceAge+1, evidenceKey(key))
}
