package consensus

import "github.com/medledger/medledger/chain"

// The round rules of Algorithm 1 ("The latest gossip on BFT consensus"); line numbers refer to
// it. Every input records what it carries and then calls progress, which re-evaluates the rules
// against everything known until nothing changes, so rules fire however inputs are ordered.

// startRound is StartRound (line 11).
func (e *Engine) startRound(r uint32) {
	e.round, e.step = r, StepPropose
	e.prevoteWait, e.precommitWait, e.polSeen = false, false, false
	e.needBlock = nil
	e.schedule(StepPropose, e.proposeDelay(r))
	e.armRoundEnd()
	// Every node, signer or not, re-sends on this timer while the round lasts (see resend).
	e.schedule(StepResend, e.resendDelay(r))
	if !e.canSign() {
		return
	}
	if e.proposer(r) != e.me {
		return
	}
	if e.valid != nil {
		e.propose(e.valid, e.validRound)
		return
	}
	e.needBlock = &BlockRequest{Height: e.height, Round: r, MinTime: e.lastBlockTime + 1}
	req := *e.needBlock
	e.out.NeedBlock = &req
}

// resumeRound continues after a restart at the round recorded in the sign state: the messages
// signed there are re-sent (they were persisted before they were first sent) and counted, and
// the step is the one after the last signature, so nothing at an earlier step is signed again.
func (e *Engine) resumeRound() {
	s := &e.signed
	if s.Step == StepNewHeight {
		e.startRound(0)
		return
	}
	e.round, e.step = s.Round, StepPropose
	for _, v := range s.Proofs {
		e.votes.add(v, e.round) // the proof of the lock, to relay with a re-proposal
	}
	e.schedule(StepPropose, e.proposeDelay(e.round))
	e.armRoundEnd()
	e.schedule(StepResend, e.resendDelay(e.round))
	if s.Proposal != nil {
		if b := s.block(s.Proposal.BlockHash); b != nil {
			e.blocks[s.Proposal.BlockHash] = b
			e.proposals[e.round] = &proposal{p: s.Proposal, b: b, valid: true}
		}
	}
	for _, v := range []*chain.Vote{s.Prevote, s.Precommit} {
		if v != nil {
			e.votes.add(v, e.round)
		}
	}
	if s.Step >= StepPrevote {
		e.step = s.Step
	}
	e.resend()
}

// progress applies the rules until the state stops changing.
func (e *Engine) progress() {
	for {
		if e.step == StepCommit || e.tryDecide() || e.step == StepNewHeight {
			return
		}
		r, st := e.round, e.step
		e.applyRules()
		if t, ok := e.votes.skipTarget(); ok && t > e.round {
			e.startRound(t) // line 55: f+1 authorities are in a later round
		}
		if e.round == r && e.step == st {
			return
		}
	}
}

// applyRules evaluates the rules of the current round once, in the paper's order.
func (e *Engine) applyRules() {
	r, n := e.round, e.set.Size()
	prop := e.proposals[r]
	if e.step == StepPropose && prop != nil {
		h, pol := prop.p.BlockHash, prop.p.POLRound
		switch {
		case pol < 0: // line 22
			e.prevote(prop.valid && (e.lockedRound == -1 || e.lockedHash() == h), h)
		case e.votes.has(uint32(pol), chain.Prevote, h): // line 28
			e.prevote(prop.valid && (e.lockedRound <= pol || e.lockedHash() == h), h)
		case !prop.valid:
			// No POL seen yet, but the block is invalid whatever the POL says: prevoting nil
			// now is what the paper would do once the POL arrives, and nil is always safe.
			e.prevote(false, h)
		}
	}
	if e.step == StepPrevote && !e.prevoteWait && quorum(n, e.votes.voters(r, chain.Prevote)) { // line 34
		e.prevoteWait = true
		e.schedule(StepPrevote, e.voteDelay(r))
	}
	if e.step >= StepPrevote && !e.polSeen && prop != nil && prop.valid && e.votes.has(r, chain.Prevote, prop.p.BlockHash) { // line 36
		e.polSeen = true
		if e.step == StepPrevote {
			e.locked, e.lockedRound = prop.b, int32(r)
			e.valid, e.validRound = prop.b, int32(r)
			e.precommit(prop.p.BlockHash)
		} else {
			e.valid, e.validRound = prop.b, int32(r)
			e.syncSigned()
		}
	}
	if e.step == StepPrevote && e.votes.has(r, chain.Prevote, chain.ZeroHash) { // line 44
		e.precommit(chain.ZeroHash)
	}
	if !e.precommitWait && quorum(n, e.votes.voters(r, chain.Precommit)) { // line 47
		e.precommitWait = true
		e.schedule(StepPrecommit, e.voteDelay(r))
	}
	if e.step >= StepPropose && e.step <= StepPrecommit && e.votes.has(r, chain.Precommit, chain.ZeroHash) {
		// More than two thirds precommitted nil: fewer than a third of the precommits are left,
		// so no block can be decided in this round and waiting out line 47's timeout only adds
		// latency (a silent proposer would cost its propose timeout plus this wait). Moving to
		// the next round is always safe: locks carry over.
		e.startRound(r + 1)
	}
}

// tryDecide is line 49 for any round: more than two thirds precommitted a block whose body is
// known. The driver's validity verdict is not consulted: a quorum of precommits means honest
// authorities found the block valid, and refusing a final block would only stall this node.
func (e *Engine) tryDecide() bool {
	r, h, ok := e.votes.committed()
	if !ok {
		return false
	}
	b := e.blocks[h]
	if b == nil {
		return false // wait for the proposal carrying the body; the votes are kept
	}
	e.step = StepCommit
	e.needBlock = nil
	e.out.Committed = &Commit{Block: b, Cert: e.votes.cert(r, h)}
	e.decision = e.decisionMessages(r, h)
	return true
}

func (e *Engine) decisionMessages(r uint32, h chain.Hash) []Message {
	var out []Message
	if p := e.proposals[r]; p != nil && p.p.BlockHash == h {
		out = append(out, Message{Proposal: p.p, Block: p.b})
	}
	for _, v := range e.votes.votesFor(r, chain.Precommit, h) {
		out = append(out, Message{Vote: v})
	}
	return out
}

func (e *Engine) lockedHash() chain.Hash {
	if e.locked == nil {
		return chain.ZeroHash
	}
	return e.locked.Hash()
}

// prevote moves to the prevote step, voting for h if ok and nil otherwise.
func (e *Engine) prevote(ok bool, h chain.Hash) {
	if !ok {
		h = chain.ZeroHash
	}
	e.step = StepPrevote
	e.signVote(chain.Prevote, h)
}

func (e *Engine) precommit(h chain.Hash) {
	e.step = StepPrecommit
	e.signVote(chain.Precommit, h)
}

// HandleTimeout handles a timeout the engine asked for. Timeouts of another height, round or step
// are stale and ignored.
func (e *Engine) HandleTimeout(t Timeout, now int64) {
	e.now = now
	if t.Height != e.height {
		return
	}
	switch t.Step {
	case StepNewHeight:
		if e.step == StepNewHeight && !e.resume {
			e.startRound(0)
		}
	case StepPropose: // line 57
		if t.Round == e.round && e.step == StepPropose {
			e.prevote(false, chain.ZeroHash)
		}
	case StepPrevote: // line 61
		if t.Round == e.round && e.step == StepPrevote {
			e.precommit(chain.ZeroHash)
		}
	case StepPrecommit: // line 65
		if t.Round == e.round && e.step >= StepPropose && e.step <= StepPrecommit {
			e.startRound(e.round + 1)
		}
	case StepRoundEnd:
		if t.Round != e.round || e.step < StepPropose || e.step > StepPrecommit {
			break
		}
		if now < e.roundEndAt {
			e.schedule(StepRoundEnd, e.roundEndAt-now) // others were active: wait on
			break
		}
		// Give up on the round only if more than two thirds (counting this node) are in it or
		// beyond: a node at the front waits for the pack instead of running further ahead, and
		// a node at the back, which always has the honest majority at or beyond its round,
		// jumps to the furthest round seen (within roundWindow, so a Byzantine voter in a huge
		// round gains little). Either way the honest nodes meet in one round.
		if !quorum(e.votes.set.Size(), 1+e.votes.atOrBeyond(e.round, e.me)) {
			e.armRoundEnd()
			break
		}
		next := e.round + 1
		if top := e.votes.highestSeen(); top > next && top <= e.round+roundWindow {
			next = top
		}
		e.startRound(next)
	case StepResend:
		if t.Round == e.round && e.step >= StepPropose && e.step <= StepCommit {
			e.resend()
			e.schedule(StepResend, e.resendDelay(e.round))
		}
	}
	e.progress()
}

// HandleVote records a vote whose signature the driver has verified. Votes of other heights and
// from non-members are dropped; a second, different vote by the same authority at the same round
// and step becomes Evidence (once per offence) and does not count.
func (e *Engine) HandleVote(v *chain.Vote, now int64) {
	e.now = now
	added, ev := e.votes.add(v, e.round)
	if ev != nil {
		e.out.Evidence = append(e.out.Evidence, ev)
	}
	if added && v.Round == e.round && v.Authority != e.me {
		// Someone is working on this round: do not abandon it just as they arrive. Each
		// authority adds at most a few votes per round, so this cannot postpone forever.
		e.roundEndAt = max(e.roundEndAt, now+e.roundEndDelay(e.round))
	}
	// A vote too far ahead is not stored but may still complete a round skip.
	if added || (v != nil && v.Height == e.height && v.Round > e.round) {
		e.progress()
	}
}
