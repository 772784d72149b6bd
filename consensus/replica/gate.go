package replica

import (
	"fmt"
	"sync/atomic"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// Verdict is the answer to an inbound message, in the terms gossip validators need.
type Verdict int

const (
	// Accept: the message is for now (or the next height) and well formed; relay and handle it.
	Accept Verdict = iota
	// Ignore: not the sender's fault but of no use now (old, too far ahead, refused by the
	// current state): do not relay, do not blame.
	Ignore
	// Reject: the sender is at fault (a forged signature, an off-turn proposal, a non-member's
	// vote); drop it and score the sender.
	Reject
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Ignore:
		return "ignore"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("verdict-%d", int(v))
}

// futureProposalRounds bounds which rounds of the next height a replica buffers proposals for:
// the next proposer starting early uses round 0; a few more cover a quick round change.
const futureProposalRounds = 2

// position is what the cheap checks judge against: the height being decided, the sets certifying
// it and the next height, and the committed state below it. A replica publishes a new one after
// every commit; values are immutable once published.
type position struct {
	height        uint64
	current, next *chain.AuthoritySet
	view          state.View
	lastBlockTime int64
}

// class says where a consensus message stands relative to a position.
type class int

const (
	classOld  class = iota // below the height being decided
	classNow               // the height being decided, within the round window
	classNext              // the next height: buffered
	classFar               // further ahead (or beyond the round window): the sender is ahead of us
)

// classifyProposal checks a proposal from its signed fields and its block's header alone,
// without its transactions: height and round, that its signer proposes that round, and that the
// header matches. Signatures are not checked here. A non-nil error means the sender is at fault.
func classifyProposal(pos *position, round uint32, roundWindow uint64, p *chain.Proposal, h *chain.Header, chainID string) (class, error) {
	var set *chain.AuthoritySet
	switch {
	case p.Height < pos.height:
		return classOld, nil
	case p.Height == pos.height:
		if uint64(p.Round) > uint64(round)+roundWindow {
			return classFar, nil
		}
		set = pos.current
	case p.Height == pos.height+1:
		if p.Round > futureProposalRounds {
			return classFar, nil
		}
		set = pos.next
	default:
		return classFar, nil
	}
	switch want := set.Proposer(p.Height, p.Round); {
	case p.Proposer != want && mutant != "noproposercheck":
		return classOld, fmt.Errorf("replica: proposal at %d/%d signed by %s, the proposer of that round is %s", p.Height, p.Round, p.Proposer.Short(), want.Short())
	case h.ChainID != chainID || h.Height != p.Height:
		return classOld, fmt.Errorf("replica: proposal at %d carries a block for %q/%d", p.Height, h.ChainID, h.Height)
	case h.Hash() != p.BlockHash:
		return classOld, fmt.Errorf("replica: proposal names block %s, carries %s", p.BlockHash.Short(), h.Hash().Short())
	case p.POLRound < 0 && h.Proposer != p.Proposer:
		// A fresh proposal is the proposer's own block; only a re-proposal of a value locked in
		// an earlier round carries another authority's block.
		return classOld, fmt.Errorf("replica: block header names proposer %s, signed by %s", h.Proposer.Short(), p.Proposer.Short())
	case !set.Contains(h.Proposer):
		return classOld, fmt.Errorf("replica: block header names proposer %s, not an authority", h.Proposer.Short())
	}
	if p.Height == pos.height {
		return classNow, nil
	}
	return classNext, nil
}

// classifyVote checks a vote's height and its signer's membership of that height's set.
func classifyVote(pos *position, v *chain.Vote) (class, error) {
	switch {
	case v.Height < pos.height:
		return classOld, nil
	case v.Height == pos.height:
		if !pos.current.Contains(v.Authority) {
			return classOld, fmt.Errorf("replica: vote at %d by %s, not an authority of that height", v.Height, v.Authority.Short())
		}
		return classNow, nil
	case v.Height == pos.height+1:
		if !pos.next.Contains(v.Authority) {
			return classOld, fmt.Errorf("replica: vote at %d by %s, not an authority of that height", v.Height, v.Authority.Short())
		}
		return classNext, nil
	}
	return classFar, nil
}

// member reads a signer's standing from committed state (state.Signer: members, authorities and
// the genesis attestation issuers, whose revocations are admitted like members' transactions).
func member(pos *position, pub chain.PubKey) (Member, error) {
	s, err := state.Signer(pos.view, pub)
	if err != nil {
		return Member{}, err
	}
	m := Member{Nonce: s.Nonce, Certifying: pos.current.Contains(pub)}
	m.Registered = s.Registered || m.Certifying || pos.next.Contains(pub)
	return m, nil
}

// TxCheck is a transaction judged by a Gate: the signer's standing it was judged with, and the
// height being decided when it passed the state check against the state below it (0: not
// checked).
type TxCheck struct {
	Member    Member
	CheckedAt uint64
}

// Gate judges inbound messages cheaply, for a transport's gossip validators: cheap checks first
// (form, height, round, proposer of the round, membership, nonce window), the signature next,
// the state check of a transaction last. It reads the position the replica last published and
// is safe for concurrent use.
type Gate struct {
	chainID     string
	consensusID string
	machine     *state.Machine
	nonceWindow uint64
	pos         atomic.Pointer[position]
	round       atomic.Uint32
	awaiting    atomic.Pointer[map[PeerID]bool] // peers asked for blocks, not answered yet
}

func (g *Gate) publish(p *position, round uint32) {
	g.pos.Store(p)
	g.round.Store(round)
}

// AwaitsSync reports whether the replica asked p for blocks and is waiting for its answer: a
// sync answer from any other peer is dropped unread by the replica, so a transport need not
// read or decode a long one.
func (g *Gate) AwaitsSync(p PeerID) bool {
	m := g.awaiting.Load()
	return m != nil && (*m)[p]
}

// ChainID is the chain the Gate judges for.
func (g *Gate) ChainID() string { return g.chainID }

// Height is the height being decided as of the last publication.
func (g *Gate) Height() uint64 { return g.pos.Load().height }

// Proposal judges a proposal from its signed fields and its block's header, before the block's
// transactions are decoded. Accept covers this height and the next (which the replica buffers).
func (g *Gate) Proposal(p *chain.Proposal, h *chain.Header) (Verdict, error) {
	pos := g.pos.Load()
	c, err := classifyProposal(pos, g.round.Load(), roundWindow, p, h, g.chainID)
	if err != nil {
		return Reject, err
	}
	if c != classNow && c != classNext {
		return Ignore, nil
	}
	if err := p.VerifySig(g.consensusID); err != nil {
		return Reject, err
	}
	return Accept, nil
}

// Vote judges a vote: its height, its signer's membership, its signature.
func (g *Gate) Vote(v *chain.Vote) (Verdict, error) {
	c, err := classifyVote(g.pos.Load(), v)
	if err != nil {
		return Reject, err
	}
	if c != classNow && c != classNext {
		return Ignore, nil
	}
	if err := v.VerifySig(g.consensusID); err != nil {
		return Reject, err
	}
	return Accept, nil
}

// Tx judges a transaction by the mempool's admission rules against committed state: a forged
// signature is the sender's fault (Reject); a signer the ledger does not know, a used nonce, a
// nonce beyond the window, or a transaction the state refuses is not relayed (Ignore), since a
// peer one block ahead or behind may judge it differently. The returned TxCheck lets the
// replica skip work already done.
func (g *Gate) Tx(tx *chain.Tx) (Verdict, TxCheck, error) {
	pos := g.pos.Load()
	v, chk, executable, err := g.txStanding(pos, tx)
	if v != Accept {
		return v, chk, err
	}
	if err := tx.VerifySig(g.chainID); err != nil {
		return Reject, chk, err
	}
	return g.txState(pos, tx, chk, executable)
}

// Txs judges a batch of transactions as Tx judges each, with their signatures verified in one
// batch. It returns one verdict, check and error per transaction.
func (g *Gate) Txs(txs []*chain.Tx) ([]Verdict, []TxCheck, []error) {
	pos := g.pos.Load()
	verdicts, chks, errs := make([]Verdict, len(txs)), make([]TxCheck, len(txs)), make([]error, len(txs))
	executable := make([]bool, len(txs))
	var toVerify []*chain.Tx
	var at []int
	for i, tx := range txs {
		verdicts[i], chks[i], executable[i], errs[i] = g.txStanding(pos, tx)
		if verdicts[i] == Accept {
			toVerify, at = append(toVerify, tx), append(at, i)
		}
	}
	for j, err := range chain.VerifyTxSigs(g.chainID, toVerify) {
		i := at[j]
		if err != nil {
			verdicts[i], errs[i] = Reject, err
			continue
		}
		verdicts[i], chks[i], errs[i] = g.txState(pos, txs[i], chks[i], executable[i])
	}
	return verdicts, chks, errs
}

// txStanding is Tx's cheap part: the chain, the signer's standing and the nonce window. Accept
// means "go on to the signature".
func (g *Gate) txStanding(pos *position, tx *chain.Tx) (v Verdict, chk TxCheck, executable bool, err error) {
	if tx.ChainID != g.chainID {
		return Reject, TxCheck{}, false, fmt.Errorf("replica: transaction for chain %q", tx.ChainID)
	}
	m, err := member(pos, tx.Signer)
	if err != nil {
		return Ignore, TxCheck{}, false, err
	}
	chk = TxCheck{Member: m}
	if !tx.Kind.UsesNonce() {
		if !m.Certifying {
			return Ignore, chk, false, fmt.Errorf("%w: evidence must be signed by an authority", ErrNotMember)
		}
		return Accept, chk, true, nil
	}
	switch {
	case !m.Registered && !(tx.Kind.IsRegistration() && tx.Nonce == 1):
		return Ignore, chk, false, fmt.Errorf("%w: %s may only register itself", ErrNotMember, tx.Signer.Short())
	case tx.Nonce <= m.Nonce:
		return Ignore, chk, false, fmt.Errorf("%w: nonce %d, ledger is at %d", ErrStaleNonce, tx.Nonce, m.Nonce)
	case tx.Nonce > m.Nonce+g.nonceWindow:
		return Ignore, chk, false, fmt.Errorf("%w: nonce %d, ledger is at %d", ErrNonceGap, tx.Nonce, m.Nonce)
	}
	return Accept, chk, tx.Nonce == m.Nonce+1, nil
}

// txState is Tx's last part, after the signature: an executable transaction is checked
// against the state.
func (g *Gate) txState(pos *position, tx *chain.Tx, chk TxCheck, executable bool) (Verdict, TxCheck, error) {
	if executable {
		if err := g.machine.CheckTx(pos.view, tx, pos.lastBlockTime, verifiedOne(tx.Hash())); err != nil {
			return Ignore, chk, fmt.Errorf("%w: %w", ErrRefusedByState, err)
		}
		chk.CheckedAt = pos.height
	}
	return Accept, chk, nil
}

// verifiedOne vouches for one transaction's signature (state.VerifiedSet).
type verifiedOne chain.Hash

func (v verifiedOne) Verified(h chain.Hash) bool { return h == chain.Hash(v) }

// Ahead reports whether a message for height h shows its sender ahead of this replica by more
// than the next height: a gossip validator ignores such a message (nobody here can judge it)
// but should still hand it to the replica as a hint to ask for blocks.
func (g *Gate) Ahead(h uint64) bool { return h > g.pos.Load().height+1 }
