package replica

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/consensus"
)

// maxExecuted bounds the executed proposals kept at one height: the replica executes only the
// first proposal of each round from that round's proposer, rounds within the window.
const maxExecuted = consensus.RoundWindow + 2

// execCache keeps the outcomes of blocks executed at the height being decided, so a block is
// executed once whether it is judged as a proposal, built here, or committed. It is emptied at
// every commit and holds at most maxExecuted outcomes (oldest evicted first).
type execCache struct {
	outcomes map[chain.Hash]*state.Outcome
	order    []chain.Hash
}

func newExecCache() *execCache { return &execCache{outcomes: make(map[chain.Hash]*state.Outcome)} }

func (c *execCache) get(h chain.Hash) (*state.Outcome, bool) { o, ok := c.outcomes[h]; return o, ok }

func (c *execCache) put(h chain.Hash, o *state.Outcome) {
	if _, ok := c.outcomes[h]; ok {
		return
	}
	if len(c.order) >= maxExecuted {
		delete(c.outcomes, c.order[0])
		c.order = c.order[1:]
	}
	c.outcomes[h] = o
	c.order = append(c.order, h)
}

func (c *execCache) reset() {
	clear(c.outcomes)
	c.order = c.order[:0]
}

// Len is the number of cached outcomes.
func (c *execCache) Len() int { return len(c.outcomes) }

// validateProposal checks a proposed block against this replica's chain and executes it. The
// caller has already checked, cheaply, that its proposer proposes this round.
func (r *Replica) validateProposal(p *chain.Proposal, b *chain.Block, now int64) error {
	if p.BlockHash != b.Hash() {
		return fmt.Errorf("replica: proposal hash does not match block")
	}
	if _, ok := r.exec.get(p.BlockHash); ok {
		return nil
	}
	if err := r.validateHeader(&b.Header, now, true); err != nil {
		return err
	}
	if len(b.Txs) > int(r.params.MaxBlockTxs) {
		return fmt.Errorf("replica: block has %d transactions, limit %d", len(b.Txs), r.params.MaxBlockTxs)
	}
	if n := len(b.Encode()); n > int(r.params.MaxBlockBytes) {
		return fmt.Errorf("replica: block is %d bytes, limit %d", n, r.params.MaxBlockBytes)
	}
	outcome, err := r.machine.ApplyBlock(r.store.State(), &b.Header, b.Txs, r.mempool)
	if err != nil {
		return err
	}
	r.exec.put(p.BlockHash, outcome)
	return nil
}

// validateHeader checks the header's commitments to this replica's chain. checkClock bounds the
// block time by the local clock; finalized blocks skip it, since their time was agreed.
func (r *Replica) validateHeader(h *chain.Header, now int64, checkClock bool) error {
	height := r.store.Height() + 1
	if h.ChainID != r.chainID || h.Height != height {
		return fmt.Errorf("replica: block %q/%d, expected %q/%d", h.ChainID, h.Height, r.chainID, height)
	}
	prevHash, prevTime := chain.ZeroHash, r.cfg.Genesis.TimeMs
	if height > 1 {
		prev, err := r.store.Block(height - 1)
		if err != nil {
			return fmt.Errorf("replica: previous block: %w", err)
		}
		prevHash, prevTime = prev.Hash(), prev.Header.Time
	}
	switch {
	case h.PrevHash != prevHash:
		return fmt.Errorf("replica: block %d previous hash %s, expected %s", height, h.PrevHash.Short(), prevHash.Short())
	case h.StateRoot != r.store.StateRoot():
		return fmt.Errorf("replica: block %d state root %s, expected %s", height, h.StateRoot.Short(), r.store.StateRoot().Short())
	case h.Time <= prevTime:
		return fmt.Errorf("replica: block %d time %d not after previous %d", height, h.Time, prevTime)
	case checkClock && h.Time > now+int64(r.params.MaxClockDriftMs):
		return fmt.Errorf("replica: block %d time %d is more than %d ms ahead of local clock %d", height, h.Time, r.params.MaxClockDriftMs, now)
	case !r.current.Contains(h.Proposer):
		return fmt.Errorf("replica: block %d proposer %s is not an authority", height, h.Proposer.Short())
	}
	if err := state.CheckHeaderAuthorities(r.store.State(), h); err != nil {
		return fmt.Errorf("replica: block %d: %w", height, err)
	}
	return nil
}

// buildBlock packs executable transactions into a block for the engine to propose. A
// transaction the builder refuses is dropped from the mempool with its signer's later nonces.
func (r *Replica) buildBlock(req *consensus.BlockRequest, now int64, out *Output) (*chain.Block, error) {
	height := r.store.Height() + 1
	prevHash := chain.ZeroHash
	if height > 1 {
		prev, err := r.store.Block(height - 1)
		if err != nil {
			return nil, fmt.Errorf("replica: previous block: %w", err)
		}
		prevHash = prev.Hash()
	}
	h := chain.Header{
		Version: chain.HeaderVersion, ChainID: r.chainID, Height: height,
		Time: max(now, req.MinTime), PrevHash: prevHash, StateRoot: r.store.StateRoot(),
		AuthoritiesHash: r.current.Hash(), NextAuthoritiesHash: r.next.Hash(),
		Proposer: r.cfg.Key.Public(),
	}
	builder := r.machine.NewBuilder(r.store.State(), &h, r.mempool)
	budget := int(r.params.MaxBlockBytes) - chain.MaxHeaderBytes - 64
	var rejected []struct {
		hash chain.Hash
		err  error
	}
	for _, tx := range r.mempool.Pending(int(r.params.MaxBlockTxs)) {
		size := len(tx.Encode()) + 8
		if size > budget {
			break
		}
		if err := builder.Add(tx); err != nil {
			if errors.Is(err, state.ErrBlockFull) {
				break
			}
			rejected = append(rejected, struct {
				hash chain.Hash
				err  error
			}{tx.Hash(), err})
			continue
		}
		budget -= size
	}
	for _, rj := range rejected {
		out.Dropped = append(out.Dropped, r.mempool.Reject(rj.hash, rj.err)...)
	}
	outcome, err := builder.Finish()
	if err != nil {
		return nil, err
	}
	b := &chain.Block{Version: chain.BlockVersion, Header: h, Txs: builder.Txs()}
	b.Header.TxRoot = chain.TxRoot(b.Txs)
	r.exec.put(b.Hash(), outcome)
	return b, nil
}

// verified is the signatures this replica has checked: the mempool's and, while a sync answer
// is applied, the transport's.
func (r *Replica) verified() state.VerifiedSet {
	if r.syncVerified == nil {
		return r.mempool
	}
	return syncVerifiedSet{r.mempool, r.syncVerified}
}

type syncVerifiedSet struct {
	mempool *Mempool
	sync    map[chain.Hash]struct{}
}

func (s syncVerifiedSet) Verified(h chain.Hash) bool {
	_, ok := s.sync[h]
	return ok || s.mempool.Verified(h)
}

// commit executes (or reuses the execution of) a finalized block, stores it atomically with its
// certificate and state changes, brings the mempool up to date and moves consensus to the next
// height. A finalized block that does not match this replica's chain or does not execute here
// means this replica's state or code differs from more than two thirds of the authorities': it
// stops rather than diverge.
func (r *Replica) commit(b *chain.Block, cert *chain.CommitCert, now int64, out *Output) error {
	hash := b.Hash()
	outcome, ok := r.exec.get(hash)
	if !ok {
		if err := r.validateHeader(&b.Header, now, false); err != nil {
			return fmt.Errorf("replica: finalized block %d does not follow this chain: %w", b.Header.Height, err)
		}
		var err error
		outcome, err = r.machine.ApplyBlock(r.store.State(), &b.Header, b.Txs, r.verified())
		if err != nil {
			return fmt.Errorf("replica: finalized block %d does not execute here: %w", b.Header.Height, err)
		}
	}
	if _, err := r.store.Commit(b, cert, outcome.Changes); err != nil {
		return fmt.Errorf("replica: commit block %d: %w", b.Header.Height, err)
	}
	r.exec.reset()
	start, err := r.startState()
	if err != nil {
		return err
	}
	view := r.store.State()
	out.Dropped = append(out.Dropped, r.mempool.Update(Commit{
		Height: b.Header.Height, Txs: b.Txs,
		Nonce: func(pub chain.PubKey) (uint64, error) { return state.Nonce(view, pub.Address()) },
		Check: r.checker(view, b.Header.Time),
	})...)
	for _, tx := range r.mempool.DueOwn(now, ownResendMs, ownResendMax) {
		out.Resend = append(out.Resend, &Message{Version: MessageVersion, Tx: tx})
	}
	start.Busy = r.mempool.Executable()
	r.engine.NewHeight(start, now)
	r.publish()
	out.Committed = append(out.Committed, b)
	return nil
}
