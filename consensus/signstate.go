package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// SignStateVersion is the encoding version of SignState.
const SignStateVersion = 1

// MaxSignStateBytes bounds an encoded SignState: three distinct blocks at most (locked, valid,
// proposed), a few small messages and the proof-of-lock prevotes.
const MaxSignStateBytes = 3*chain.MaxBlockBytes + 4096 + maxProofs*chain.MaxVoteBytes

// maxProofs bounds the stored proof-of-lock prevotes: one per authority for each of the locked
// and valid values.
const maxProofs = 2 * chain.MaxAuthorities

// SignState is what this authority must remember across a crash so that it never signs two
// conflicting messages: the highest (height, round, step) it signed at, the messages it signed at
// that height and round (to re-send them, identically, after a restart), and its lock and valid
// value with their blocks (Tendermint's lockedValue/validValue), so a restarted node keeps its lock
// and can re-propose.
//
// Step is StepPropose, StepPrevote or StepPrecommit of the last signature, or StepNewHeight when
// nothing has been signed at Height (then Round is 0 and no message is set). Proposal, Prevote and
// Precommit are the messages signed at exactly (Height, Round). The locked and valid values belong
// to Height; their blocks, and the proposal's block, are in Blocks, sorted by hash, each once.
//
// Proofs are the prevotes that justify the locked and valid values (more than two thirds for
// each, in its round). Without them a restarted node keeps a lock it can no longer justify to
// others: when every node that saw the proof has restarted, nobody can relay it, the locked nodes
// refuse every other value, and the height never ends. CometBFT replays its WAL for this; storing
// the proof with the lock is the same guarantee in a few hundred bytes.
type SignState struct {
	_           struct{} `cbor:",toarray"`
	Version     uint8
	Height      uint64
	Round       uint32
	Step        Step
	Proposal    *chain.Proposal
	Prevote     *chain.Vote
	Precommit   *chain.Vote
	LockedRound int32
	LockedHash  chain.Hash
	ValidRound  int32
	ValidHash   chain.Hash
	Blocks      []*chain.Block
	Proofs      []*chain.Vote
}

// EncodeSignState returns the canonical encoding of s.
func EncodeSignState(s *SignState) []byte {
	c := *s
	if c.Blocks == nil {
		c.Blocks = []*chain.Block{} // one encoding for "no blocks"
	}
	if c.Proofs == nil {
		c.Proofs = []*chain.Vote{}
	}
	return chain.Encode(&c)
}

// DecodeSignState decodes and checks a SignState. It is strict: anything that this package would
// not have written is an error, since a corrupt sign state must stop the node, not be guessed at.
func DecodeSignState(data []byte) (*SignState, error) {
	var s SignState
	if err := chain.DecodeCanonical("sign state", data, MaxSignStateBytes, &s); err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *SignState) validate() error {
	if s.Version != SignStateVersion {
		return fmt.Errorf("consensus: %w: sign state version %d (this node understands %d)", chain.ErrUnknownVersion, s.Version, SignStateVersion)
	}
	if s.Blocks == nil {
		return errors.New("consensus: sign state blocks missing")
	}
	if len(s.Proofs) > maxProofs {
		return fmt.Errorf("consensus: sign state holds %d proof votes, at most %d", len(s.Proofs), maxProofs)
	}
	for _, v := range s.Proofs {
		if v == nil || v.Validate() != nil || v.Type != chain.Prevote || v.Height != s.Height ||
			!((int32(v.Round) == s.LockedRound && v.BlockHash == s.LockedHash) || (int32(v.Round) == s.ValidRound && v.BlockHash == s.ValidHash)) {
			return errors.New("consensus: sign state proof vote does not back its lock or valid value")
		}
	}
	if s.Height == 0 {
		return errors.New("consensus: sign state height must be at least 1")
	}
	switch s.Step {
	case StepNewHeight:
		if s.Round != 0 || s.Proposal != nil || s.Prevote != nil || s.Precommit != nil {
			return errors.New("consensus: sign state records messages but no signed step")
		}
	case StepPropose, StepPrevote, StepPrecommit:
	default:
		return fmt.Errorf("consensus: sign state step %d invalid", s.Step)
	}
	if s.Proposal != nil {
		if err := s.Proposal.Validate(); err != nil {
			return fmt.Errorf("consensus: sign state proposal: %w", err)
		}
		if s.Proposal.Height != s.Height || s.Proposal.Round != s.Round {
			return errors.New("consensus: sign state proposal not at the recorded height and round")
		}
	} else if s.Step == StepPropose {
		return errors.New("consensus: sign state step propose without a proposal")
	}
	for _, c := range []struct {
		v    *chain.Vote
		t    chain.VoteType
		step Step
	}{{s.Prevote, chain.Prevote, StepPrevote}, {s.Precommit, chain.Precommit, StepPrecommit}} {
		if c.v == nil {
			if s.Step == c.step {
				return fmt.Errorf("consensus: sign state step %s without its vote", c.step)
			}
			continue
		}
		if err := c.v.Validate(); err != nil {
			return fmt.Errorf("consensus: sign state %s: %w", c.t, err)
		}
		if c.v.Type != c.t || c.v.Height != s.Height || c.v.Round != s.Round || s.Step < c.step {
			return fmt.Errorf("consensus: sign state %s inconsistent with the recorded step", c.t)
		}
	}
	if err := checkRoundHash("locked", s.LockedRound, s.LockedHash); err != nil {
		return err
	}
	if err := checkRoundHash("valid", s.ValidRound, s.ValidHash); err != nil {
		return err
	}
	if s.LockedRound >= 0 && uint32(s.LockedRound) > s.Round {
		return errors.New("consensus: sign state locked in a round after its last signature")
	}
	need := map[chain.Hash]bool{}
	for _, h := range []chain.Hash{s.LockedHash, s.ValidHash} {
		if !h.IsZero() {
			need[h] = true
		}
	}
	if s.Proposal != nil {
		need[s.Proposal.BlockHash] = true
	}
	var prev chain.Hash
	for i, b := range s.Blocks {
		if b == nil {
			return errors.New("consensus: sign state has an empty block")
		}
		if err := b.Validate(); err != nil {
			return fmt.Errorf("consensus: sign state block: %w", err)
		}
		h := b.Hash()
		if i > 0 && bytes.Compare(prev[:], h[:]) >= 0 {
			return errors.New("consensus: sign state blocks not sorted or duplicated")
		}
		prev = h
		if b.Header.Height != s.Height || !need[h] {
			return fmt.Errorf("consensus: sign state holds unreferenced block %s", h.Short())
		}
		delete(need, h)
	}
	if len(need) > 0 {
		return errors.New("consensus: sign state references a block it does not hold")
	}
	return nil
}

func checkRoundHash(what string, r int32, h chain.Hash) error {
	if r < -1 || (r == -1) != h.IsZero() {
		return fmt.Errorf("consensus: sign state %s round %d and hash disagree", what, r)
	}
	return nil
}

// block returns the held block with hash h, or nil.
func (s *SignState) block(h chain.Hash) *chain.Block {
	for _, b := range s.Blocks {
		if b.Hash() == h {
			return b
		}
	}
	return nil
}

// clone copies s deeply enough that later changes to the engine's copy do not show through
// (blocks are immutable once built and are shared).
func (s *SignState) clone() *SignState {
	c := *s
	c.Blocks = slices.Clone(s.Blocks)
	c.Proofs = slices.Clone(s.Proofs)
	if s.Proposal != nil {
		p := *s.Proposal
		c.Proposal = &p
	}
	if s.Prevote != nil {
		v := *s.Prevote
		c.Prevote = &v
	}
	if s.Precommit != nil {
		v := *s.Precommit
		c.Precommit = &v
	}
	return &c
}

// signVerdict is the answer of checkHRS.
type signVerdict int

const (
	signNew    signVerdict = iota // beyond anything signed: sign it
	signRepeat                    // exactly what was signed before: re-send the stored message
	signRefuse                    // a regression or a conflict: never sign
)

// checkHRS is the one gate in front of the private key (CometBFT privval's CheckHRS). Signing at
// (h, r, step) is allowed only beyond the last signature; at the very same point only the identical
// message, which is then re-sent from storage rather than signed anew. hash and pol describe the
// message (pol is the proposal's POL round; ignored for votes).
func (s *SignState) checkHRS(h uint64, r uint32, step Step, hash chain.Hash, pol int32) signVerdict {
	if mutant == "signgate" {
		return signNew
	}
	switch {
	case h > s.Height:
		return signNew
	case h < s.Height:
		return signRefuse
	case s.Step == StepNewHeight: // nothing signed yet at this height
		return signNew
	case r > s.Round:
		return signNew
	case r < s.Round:
		return signRefuse
	case step > s.Step:
		return signNew
	case step < s.Step:
		return signRefuse
	}
	switch step {
	case StepPropose:
		if s.Proposal != nil && s.Proposal.BlockHash == hash && s.Proposal.POLRound == pol {
			return signRepeat
		}
	case StepPrevote:
		if s.Prevote != nil && s.Prevote.BlockHash == hash {
			return signRepeat
		}
	case StepPrecommit:
		if s.Precommit != nil && s.Precommit.BlockHash == hash {
			return signRepeat
		}
	}
	return signRefuse
}

// advance records that a signature at (h, r, step) is about to be made, dropping the messages
// of an earlier height or round.
func (s *SignState) advance(h uint64, r uint32, step Step) {
	if h != s.Height {
		s.LockedRound, s.LockedHash, s.ValidRound, s.ValidHash = -1, chain.Hash{}, -1, chain.Hash{}
	}
	if h != s.Height || r != s.Round || s.Step == StepNewHeight {
		s.Proposal, s.Prevote, s.Precommit = nil, nil, nil
	}
	s.Height, s.Round, s.Step = h, r, step
}

// signRecord is how a SignState is persisted: everything but the blocks, which the store keeps
// apart by hash and writes once, so that a signature costs a write of a few hundred bytes rather
// than of up to three whole blocks.
type signRecord struct {
	_           struct{} `cbor:",toarray"`
	Version     uint8
	Height      uint64
	Round       uint32
	Step        Step
	Proposal    *chain.Proposal
	Prevote     *chain.Vote
	Precommit   *chain.Vote
	LockedRound int32
	LockedHash  chain.Hash
	ValidRound  int32
	ValidHash   chain.Hash
	BlockHashes []chain.Hash
	Proofs      []*chain.Vote
}

// signRecordVersion is the encoding version of the persisted record.
const signRecordVersion = 2

// MaxSignRecordBytes bounds an encoded sign record: a few small messages, the block hashes and
// the proof-of-lock prevotes.
const MaxSignRecordBytes = 4096 + maxProofs*chain.MaxVoteBytes

// EncodeSignRecord returns the canonical encoding of s without its blocks; BlockHashes lists
// them, sorted, as s holds them.
func EncodeSignRecord(s *SignState) []byte {
	r := signRecord{
		Version: signRecordVersion, Height: s.Height, Round: s.Round, Step: s.Step,
		Proposal: s.Proposal, Prevote: s.Prevote, Precommit: s.Precommit,
		LockedRound: s.LockedRound, LockedHash: s.LockedHash, ValidRound: s.ValidRound, ValidHash: s.ValidHash,
		BlockHashes: make([]chain.Hash, len(s.Blocks)), Proofs: s.Proofs,
	}
	for i, b := range s.Blocks {
		r.BlockHashes[i] = b.Hash()
	}
	if r.Proofs == nil {
		r.Proofs = []*chain.Vote{}
	}
	return chain.Encode(&r)
}

// DecodeSignRecord rebuilds a SignState from its record and the blocks stored with it, and
// checks it as strictly as DecodeSignState: a record whose blocks are missing or do not hash to
// what it names must stop the node, not be guessed at.
func DecodeSignRecord(rec []byte, blocks map[chain.Hash][]byte) (*SignState, error) {
	var r signRecord
	if err := chain.DecodeCanonical("sign record", rec, MaxSignRecordBytes, &r); err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}
	if r.Version != signRecordVersion {
		return nil, fmt.Errorf("consensus: %w: sign record version %d (this node understands %d)", chain.ErrUnknownVersion, r.Version, signRecordVersion)
	}
	if r.BlockHashes == nil || r.Proofs == nil {
		return nil, errors.New("consensus: sign record lists missing")
	}
	s := &SignState{
		Version: SignStateVersion, Height: r.Height, Round: r.Round, Step: r.Step,
		Proposal: r.Proposal, Prevote: r.Prevote, Precommit: r.Precommit,
		LockedRound: r.LockedRound, LockedHash: r.LockedHash, ValidRound: r.ValidRound, ValidHash: r.ValidHash,
		Blocks: make([]*chain.Block, 0, len(r.BlockHashes)), Proofs: r.Proofs,
	}
	for _, h := range r.BlockHashes {
		enc, ok := blocks[h]
		if !ok {
			return nil, fmt.Errorf("consensus: sign record names block %s, which the store does not hold", h.Short())
		}
		b, err := chain.DecodeBlock(enc)
		if err != nil {
			return nil, fmt.Errorf("consensus: sign record block %s: %w", h.Short(), err)
		}
		if b.Hash() != h {
			return nil, fmt.Errorf("consensus: sign record block %s holds %s", h.Short(), b.Hash().Short())
		}
		s.Blocks = append(s.Blocks, b)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}
