package consensus

import "github.com/medledger/medledger/chain"

// Ready is the engine's pending output, drained by Engine.Ready. The driver handles it in this
// order, because each step relies on the one before it being done (docs/consensus.md lists the
// same order, and the replica's handleReady follows it):
//
//  1. SignState, if non-nil: persist it durably (fsync). Only then may Messages leave the process;
//     otherwise a crash after sending could let the restarted node sign something conflicting.
//  2. Messages: broadcast them. Resends: send them again to each peer directly (they were
//     persisted when first signed; gossip would drop them as already seen). Announce: the
//     round stalls; tell each peer this node's committed height, so one behind can ask for
//     blocks even if nobody ahead of it signs anything.
//  3. Timeouts: arm each; call HandleTimeout with it after DelayMs.
//  4. Evidence: submit each as a transaction.
//  5. NeedBlock: build a block for that height and round and hand it to Propose.
//  6. Committed: execute and durably store the block with its certificate, then call NewHeight.
type Ready struct {
	SignState *SignState
	Messages  []Message
	Resends   []Message
	Announce  bool
	Timeouts  []Timeout
	Evidence  []*chain.Evidence
	NeedBlock *BlockRequest
	Committed *Commit
}

// Message is one consensus message to broadcast: a proposal with its block, or a vote.
type Message struct {
	Proposal *chain.Proposal
	Block    *chain.Block
	Vote     *chain.Vote
}

// BlockRequest asks the driver for a block: this node proposes at Height and Round and has no
// valid value to re-propose. The block's header time must be at least MinTime.
type BlockRequest struct {
	Height  uint64
	Round   uint32
	MinTime int64
}

// Commit is a finalized block and the certificate that proves it.
type Commit struct {
	Block *chain.Block
	Cert  *chain.CommitCert
}

func (r *Ready) empty() bool {
	return r.SignState == nil && len(r.Messages) == 0 && len(r.Resends) == 0 && !r.Announce && len(r.Timeouts) == 0 &&
		r.NeedBlock == nil && r.Committed == nil && len(r.Evidence) == 0
}
