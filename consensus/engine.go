package consensus

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Config is what does not change while the node runs.
type Config struct {
	// ChainID is what this engine signs votes and proposals under: chain.ConsensusID of the
	// chain id and genesis hash.
	ChainID string
	Key     *chain.PrivKey // nil: an observer that follows and commits but never signs
	Params  chain.Params
}

// Start is where the engine begins: the next height to decide and the set that certifies it.
type Start struct {
	Height        uint64              // next height to decide (last committed + 1)
	Authorities   *chain.AuthoritySet // the set certifying Height
	LastBlockTime int64               // Unix ms of block Height-1 (genesis time at height 1)
	Signed        *SignState          // last durably persisted sign state; nil on first start
	// Busy says transactions are waiting: NewHeight starts the height after busyIntervalMs
	// instead of BlockIntervalMs, which only paces empty blocks.
	Busy bool
}

// Engine is one node's consensus state machine. It is not safe for concurrent use: the driver
// calls it from one goroutine.
type Engine struct {
	// now is the time of the input being handled; roundEndAt is when the current round gives up
	// (see roundEndDelay): it moves later while other authorities are active in the round.
	now        int64
	roundEndAt int64
	// newHeightAt is when NewHeight entered this height (the previous block committed).
	newHeightAt int64

	cfg Config
	me  chain.PubKey

	height        uint64
	set           *chain.AuthoritySet
	lastBlockTime int64
	round         uint32
	step          Step

	// Tendermint's lockedValue/lockedRound and validValue/validRound.
	locked      *chain.Block
	lockedRound int32
	valid       *chain.Block
	validRound  int32

	proposals map[uint32]*proposal        // the first acceptable proposal per round
	blocks    map[chain.Hash]*chain.Block // bodies seen at this height, by hash
	votes     *heightVotes

	// Per current round: whether the prevote/precommit wait has been armed and whether the POL
	// rule (line 36) has fired.
	prevoteWait, precommitWait, polSeen bool
	// decision is what this height committed, as messages (the proposal with its block and the
	// certificate's precommits); lastCommit is the previous height's, re-broadcast with this
	// height's resends so that a node that missed them can still commit without block sync.
	decision, lastCommit []Message
	// needBlock is the outstanding request for a block, if any.
	needBlock *BlockRequest

	// signed is the in-memory twin of what the driver persisted; signedDirty says it changed
	// since the last Ready.
	signed      SignState
	signedDirty bool
	// resume is set by New when Signed names this height: Start then resumes instead of
	// starting round 0.
	resume bool

	out Ready
}

// proposal is a proposal with its block and the driver's verdict on the block.
type proposal struct {
	p     *chain.Proposal
	b     *chain.Block
	valid bool
}

// New builds an engine. It returns an error for a configuration no node can run with; it does
// not emit anything until Start.
func New(cfg Config, s Start) (*Engine, error) {
	if cfg.ChainID == "" {
		return nil, errors.New("consensus: empty chain id")
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}
	if err := checkStart(s); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg}
	if cfg.Key != nil {
		e.me = cfg.Key.Public()
	}
	e.signed = SignState{Version: SignStateVersion, LockedRound: -1, ValidRound: -1}
	if s.Signed != nil {
		if err := s.Signed.validate(); err != nil {
			return nil, err
		}
		e.signed = *s.Signed.clone()
	}
	e.enterHeight(s)
	e.restoreSigned()
	return e, nil
}

func checkStart(s Start) error {
	if s.Height == 0 {
		return errors.New("consensus: start height must be at least 1")
	}
	if s.Authorities == nil {
		return errors.New("consensus: no authority set")
	}
	if err := s.Authorities.Validate(); err != nil {
		return fmt.Errorf("consensus: %w", err)
	}
	return nil
}

// enterHeight resets all per-height state.
func (e *Engine) enterHeight(s Start) {
	e.lastCommit = nil
	if s.Height == e.height+1 {
		e.lastCommit = e.decision
	}
	e.decision = nil
	e.height, e.set, e.lastBlockTime = s.Height, s.Authorities, s.LastBlockTime
	e.round, e.step = 0, StepNewHeight
	e.locked, e.lockedRound, e.valid, e.validRound = nil, -1, nil, -1
	e.proposals = make(map[uint32]*proposal)
	e.blocks = make(map[chain.Hash]*chain.Block)
	e.votes = newHeightVotes(s.Height, s.Authorities)
	e.prevoteWait, e.precommitWait, e.polSeen = false, false, false
	e.needBlock = nil
	e.resume = false
}

// restoreSigned brings back the round, lock and valid value this authority recorded at the height
// being entered. That happens on a restart, and also after a catch-up: a store that lost blocks
// below the last signature (power loss without sync) starts lower, block sync brings it back to
// the signed height, and forgetting the lock there could make it prevote against its own
// precommit.
func (e *Engine) restoreSigned() {
	s := &e.signed
	if e.cfg.Key == nil || s.Height != e.height {
		return
	}
	e.resume = true
	e.round = s.Round
	if s.LockedRound >= 0 {
		e.locked, e.lockedRound = s.block(s.LockedHash), s.LockedRound
	}
	if s.ValidRound >= 0 {
		e.valid, e.validRound = s.block(s.ValidHash), s.ValidRound
	}
}

// Start begins the height given to New: round 0 on a first start, or the recorded round, lock and
// signatures when Start.Signed named this height (a restart).
func (e *Engine) Start(now int64) {
	e.now = now
	if e.step != StepNewHeight {
		return
	}
	if e.resume {
		e.resume = false
		e.resumeRound()
		return
	}
	e.startRound(0)
}

// busyIntervalMs is the pause after a commit when transactions are waiting: long enough for
// late precommits to reach the certificate's peers, short enough not to add latency.
const busyIntervalMs = 20

// NewHeight moves to s.Height after the driver durably committed the previous height. Round 0
// begins after BlockIntervalMs (a StepNewHeight timeout); messages for the new height that arrive
// meanwhile are kept. s.Signed is ignored: the engine's own record is newer.
func (e *Engine) NewHeight(s Start, now int64) {
	e.now = now
	if s.Height <= e.height || checkStart(s) != nil {
		return
	}
	e.enterHeight(s)
	if mutant != "lockamnesia" {
		e.restoreSigned()
	}
	if e.resume {
		// This height was already under way before a crash: rejoin its round now.
		e.resume = false
		e.resumeRound()
		e.progress()
		return
	}
	e.newHeightAt = now
	delay := int64(e.cfg.Params.BlockIntervalMs)
	if s.Busy {
		delay = min(delay, busyIntervalMs)
	}
	e.schedule(StepNewHeight, delay)
}

// Hurry tells the engine that a transaction that can go into the next block has arrived. A
// height that is waiting out the empty-block interval then starts after the short busy pause
// instead (counted from the commit), so a transaction submitted to an idle chain does not wait up
// to a whole interval. Only the driver's own verdict calls it: junk that cannot execute never
// does, so it cannot make an idle chain run fast.
func (e *Engine) Hurry(now int64) {
	e.now = now
	if e.step != StepNewHeight || e.resume {
		return
	}
	if wait := e.newHeightAt + busyIntervalMs - now; wait > 0 {
		e.schedule(StepNewHeight, wait)
		return
	}
	e.startRound(0)
	e.progress()
}

// Height is the height being decided.
func (e *Engine) Height() uint64 { return e.height }

// Round is the current round.
func (e *Engine) Round() uint32 { return e.round }

// Step is the current step.
func (e *Engine) Step() Step { return e.step }

// Locked returns the locked round and block (-1, nil when not locked).
func (e *Engine) Locked() (int32, *chain.Block) { return e.lockedRound, e.locked }

// HasReady reports whether Ready has anything to hand out.
func (e *Engine) HasReady() bool { return e.signedDirty || !e.out.empty() }

// Ready drains the pending output. See Ready for the order in which the driver must handle it.
func (e *Engine) Ready() Ready {
	rd := e.out
	e.out = Ready{}
	if e.signedDirty {
		e.signedDirty = false
		rd.SignState = e.signed.clone()
	}
	return rd
}

// canSign reports whether this node signs at the current height: it has a key and is a member.
func (e *Engine) canSign() bool {
	return e.cfg.Key != nil && e.set.Contains(e.me)
}

func (e *Engine) proposer(r uint32) chain.PubKey { return e.set.Proposer(e.height, r) }

// HasVote reports whether v is already counted at the height being decided: a driver skips
// verifying and handling a replayed vote.
func (e *Engine) HasVote(v *chain.Vote) bool { return v != nil && e.votes.hasVote(v) }
