package consensus

import (
	"bytes"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Every signature goes through signVote or signProposal, and both ask SignState.checkHRS first.

// signVote signs a vote of type t for h at the current height and round, broadcasts it and
// counts it. It does nothing for observers and when checkHRS refuses.
func (e *Engine) signVote(t chain.VoteType, h chain.Hash) {
	if !e.canSign() {
		return
	}
	step := StepPrevote
	if t == chain.Precommit {
		step = StepPrecommit
	}
	var v *chain.Vote
	switch e.signed.checkHRS(e.height, e.round, step, h, 0) {
	case signNew:
		v = &chain.Vote{Type: t, Height: e.height, Round: e.round, BlockHash: h}
		v.Sign(*e.cfg.Key, e.cfg.ChainID)
		e.signed.advance(e.height, e.round, step)
		if t == chain.Prevote {
			e.signed.Prevote = v
		} else {
			e.signed.Precommit = v
		}
	case signRepeat:
		if t == chain.Prevote {
			v = e.signed.Prevote
		} else {
			v = e.signed.Precommit
		}
	default:
		return
	}
	e.syncSigned()
	cp := *v
	e.out.Messages = append(e.out.Messages, Message{Vote: &cp})
	e.votes.add(&cp, e.round)
}

// signProposal returns a signed proposal of h at the current height and round, or nil for
// observers and when checkHRS refuses.
func (e *Engine) signProposal(h chain.Hash, pol int32) *chain.Proposal {
	if !e.canSign() {
		return nil
	}
	switch e.signed.checkHRS(e.height, e.round, StepPropose, h, pol) {
	case signNew:
		p := &chain.Proposal{Version: chain.ProposalVersion, Height: e.height, Round: e.round, POLRound: pol, BlockHash: h}
		p.Sign(*e.cfg.Key, e.cfg.ChainID)
		e.signed.advance(e.height, e.round, StepPropose)
		e.signed.Proposal = p
		cp := *p
		return &cp
	case signRepeat:
		cp := *e.signed.Proposal
		return &cp
	}
	return nil
}

// syncSigned copies the lock and valid value into the sign state and marks it for persisting.
// The lock must survive a crash: a restarted node that forgot it could prevote against its own
// precommit.
func (e *Engine) syncSigned() {
	if !e.canSign() {
		return
	}
	s := &e.signed
	if s.Height > e.height {
		return // the record is ahead of this height: nothing here will be signed anyway
	}
	if s.Height < e.height {
		s.advance(e.height, 0, StepNewHeight)
	}
	s.LockedRound, s.LockedHash = e.lockedRound, e.lockedHash()
	s.ValidRound, s.ValidHash = -1, chain.ZeroHash
	if e.valid != nil {
		s.ValidRound, s.ValidHash = e.validRound, e.valid.Hash()
	}
	var blocks []*chain.Block
	for _, b := range []*chain.Block{e.locked, e.valid} {
		if b != nil {
			blocks = append(blocks, b)
		}
	}
	if s.Proposal != nil {
		if b := e.blocks[s.Proposal.BlockHash]; b != nil {
			blocks = append(blocks, b)
		}
	}
	slices.SortFunc(blocks, func(a, b *chain.Block) int {
		ha, hb := a.Hash(), b.Hash()
		return bytes.Compare(ha[:], hb[:])
	})
	s.Blocks = slices.CompactFunc(blocks, func(a, b *chain.Block) bool { return a.Hash() == b.Hash() })
	if s.Blocks == nil {
		s.Blocks = []*chain.Block{}
	}
	s.Proofs = []*chain.Vote{}
	if s.LockedRound >= 0 {
		s.Proofs = append(s.Proofs, e.votes.pol(uint32(s.LockedRound), s.LockedHash)...)
	}
	if s.ValidRound >= 0 && (s.ValidRound != s.LockedRound || s.ValidHash != s.LockedHash) {
		s.Proofs = append(s.Proofs, e.votes.pol(uint32(s.ValidRound), s.ValidHash)...)
	}
	e.signedDirty = true
}

// resend re-sends what this node signed in the current round, unchanged, so that a round
// survives dropped messages once the network heals, and the previous height's decision, for
// nodes that missed them. They go out as Ready.Resends: the driver sends them to each peer
// directly, because gossip drops a payload it has already seen.
func (e *Engine) resend() {
	// A node that signs nothing still tells its peers where it is (Ready.Announce): it may hold
	// blocks that nobody who votes can give a peer behind.
	e.out.Announce = true
	if !e.canSign() {
		return
	}
	e.out.Resends = append(e.out.Resends, e.lastCommit...)
	s := &e.signed
	if s.Height != e.height || s.Round != e.round || s.Step == StepNewHeight {
		return
	}
	if s.Proposal != nil {
		if b := e.blocks[s.Proposal.BlockHash]; b != nil {
			p := *s.Proposal
			e.out.Resends = append(e.out.Resends, Message{Proposal: &p, Block: b})
			e.out.Resends = e.appendPOL(e.out.Resends, &p)
		}
	}
	for _, v := range []*chain.Vote{s.Prevote, s.Precommit} {
		if v != nil {
			cp := *v
			e.out.Resends = append(e.out.Resends, Message{Vote: &cp})
		}
	}
}
