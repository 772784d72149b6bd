package consensus

import "fmt"

// Step is where the engine is within a height. The order of StepPropose < StepPrevote <
// StepPrecommit is also the order of signatures within a round (see SignState).
type Step uint8

// Steps. StepResend is not a step of the round: it names the periodic re-broadcast timer.
const (
	StepNewHeight Step = 0 // waiting BlockIntervalMs after a commit before round 0
	StepPropose   Step = 1
	StepPrevote   Step = 2
	StepPrecommit Step = 3
	StepCommit    Step = 4 // decided; waiting for the driver's NewHeight
	StepResend    Step = 5 // timer only: re-broadcast this node's messages of the round
	StepRoundEnd  Step = 6 // timer only: the round's fallback deadline
)

func (s Step) String() string {
	switch s {
	case StepNewHeight:
		return "new-height"
	case StepPropose:
		return "propose"
	case StepPrevote:
		return "prevote"
	case StepPrecommit:
		return "precommit"
	case StepCommit:
		return "commit"
	case StepResend:
		return "resend"
	case StepRoundEnd:
		return "round-end"
	}
	return fmt.Sprintf("step-%d", uint8(s))
}

// Timeout asks the driver to call HandleTimeout with it after DelayMs milliseconds. Height, Round
// and Step let the engine ignore it if it has moved on by then.
type Timeout struct {
	Height  uint64
	Round   uint32
	Step    Step
	DelayMs int64
}

// The timeout arithmetic: each round waits longer than the one before, so that once the network
// is synchronous again some round lasts long enough for every honest node to hear each other.

func (e *Engine) proposeDelay(r uint32) int64 {
	return int64(e.cfg.Params.TimeoutProposeMs) + int64(r)*int64(e.cfg.Params.TimeoutDeltaMs)
}

func (e *Engine) voteDelay(r uint32) int64 {
	return int64(e.cfg.Params.TimeoutVoteMs) + int64(r)*int64(e.cfg.Params.TimeoutDeltaMs)
}

// resendDelay is the re-broadcast period: long enough not to flood a healthy round (which ends
// well within propose+vote timeouts), short enough that a healed network soon hears everyone.
func (e *Engine) resendDelay(r uint32) int64 {
	return e.proposeDelay(r) + e.voteDelay(r)
}

// roundEndDelay bounds how long a round may last. The paper's rules alone can wait forever when
// messages are lost for good rather than delayed (a crash between sending and persisting, a
// partition that ate the only copy): for example two nodes that precommitted nil in round r wait
// for a third round-r precommit while the third node, restarted, is already in round r+1 and
// cannot prove it. Moving to the next round is always safe (locks carry over), and only this
// node's own timer triggers it, so a Byzantine node cannot drive rounds forward with it. The
// deadline measures inactivity: votes from others in the round push it back (HandleVote), so a
// node that got ahead does not leave each round just as the others arrive.
func (e *Engine) roundEndDelay(r uint32) int64 {
	return 2 * (e.proposeDelay(r) + 2*e.voteDelay(r))
}

// armRoundEnd sets the current round's fallback deadline and its timer.
func (e *Engine) armRoundEnd() {
	d := e.roundEndDelay(e.round)
	e.roundEndAt = e.now + d
	e.schedule(StepRoundEnd, d)
}

func (e *Engine) schedule(step Step, delay int64) {
	e.out.Timeouts = append(e.out.Timeouts, Timeout{Height: e.height, Round: e.round, Step: step, DelayMs: delay})
}
