package consensus

import "github.com/medledger/medledger/chain"

// HandleProposal records a proposal whose signature the driver has verified, with its block and
// the driver's verdict on the block against state. Proposals of another height, not from the
// round's proposer, whose hash does not match the block, or too far ahead are dropped. Only the
// first proposal of a round counts; a later, different one is kept only for its body, and only
// if honest authorities voted for it.
func (e *Engine) HandleProposal(p *chain.Proposal, b *chain.Block, valid bool, now int64) {
	e.now = now
	if p == nil || b == nil || p.Validate() != nil || p.Height != e.height || b.Header.Height != e.height {
		return
	}
	if (p.Proposer != e.proposer(p.Round) && mutant != "noproposercheck") || p.BlockHash != b.Hash() || uint64(p.Round) > uint64(e.round)+roundWindow {
		return
	}
	if have := e.proposals[p.Round]; have != nil {
		if have.p.BlockHash != p.BlockHash && e.votes.wants(p.BlockHash) {
			e.blocks[p.BlockHash] = b
			e.progress()
		}
		return
	}
	e.proposals[p.Round] = &proposal{p: p, b: b, valid: valid}
	e.blocks[p.BlockHash] = b
	if e.step == StepNewHeight && !e.resume && p.Round == 0 {
		// The proposer has started the height (it had transactions waiting): follow at once
		// rather than idle out the block interval. Starting a round early is always safe.
		e.startRound(0)
	}
	e.progress()
}

// Propose is the driver's answer to Ready.NeedBlock. A block for a request that is no longer
// current (the round moved on), of another height or older than MinTime is dropped.
func (e *Engine) Propose(b *chain.Block, now int64) {
	e.now = now
	req := e.needBlock
	if req == nil || b == nil || req.Height != e.height || req.Round != e.round || e.step != StepPropose ||
		b.Header.Height != e.height || b.Header.Time < req.MinTime {
		return
	}
	e.needBlock = nil
	e.propose(b, -1)
	e.progress()
}

// propose signs and broadcasts a proposal of b at the current round and counts it as received.
func (e *Engine) propose(b *chain.Block, pol int32) {
	h := b.Hash()
	p := e.signProposal(h, pol)
	if p == nil {
		return
	}
	e.blocks[h] = b
	if e.proposals[e.round] == nil {
		e.proposals[e.round] = &proposal{p: p, b: b, valid: true}
	}
	e.syncSigned()
	e.out.Messages = append(e.out.Messages, Message{Proposal: p, Block: b})
	e.relayPOL(p)
}

// relayPOL re-broadcasts the prevotes that justify p's POL round (signed by others; receivers
// verify them like any vote).
func (e *Engine) relayPOL(p *chain.Proposal) {
	e.out.Messages = e.appendPOL(e.out.Messages, p)
}

func (e *Engine) appendPOL(out []Message, p *chain.Proposal) []Message {
	if p.POLRound < 0 {
		return out
	}
	for _, v := range e.votes.pol(uint32(p.POLRound), p.BlockHash) {
		cp := *v
		out = append(out, Message{Vote: &cp})
	}
	return out
}

// ProposalAt returns the block hash of the proposal counted for round r of the height being
// decided, if any: a driver uses it to skip executing a proposal it has already judged.
func (e *Engine) ProposalAt(r uint32) (chain.Hash, bool) {
	if p := e.proposals[r]; p != nil {
		return p.p.BlockHash, true
	}
	return chain.Hash{}, false
}
