package node

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// autoVoteRetry is how long the voter waits before submitting a vote again that has not shown
// on the ledger (lost to a full mempool, a restart of a peer).
const autoVoteRetry = 30 * time.Second

// autoVoter votes, with this node's authority key, for every open automatic proposal: the
// removal the state machine files for an authority whose licence lapsed or was revoked. That is
// what honest authorities do (docs/security.md, "Roles"), so a lapsed authority leaves the set
// without anyone acting.
type autoVoter struct {
	key     chain.PrivKey
	chainID string
	store   committedState
	ledger  ledger
	log     *slog.Logger
	sent    map[chain.Hash]time.Time // proposal -> when our vote was submitted
}

func (v *autoVoter) run(ctx context.Context) {
	wake, unsubscribe := v.ledger.Subscribe()
	defer unsubscribe()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		v.voteOpen(ctx)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

func (v *autoVoter) voteOpen(ctx context.Context) {
	view := v.store.State()
	set, _, err := state.Authorities(view)
	if err != nil || set == nil || !set.Contains(v.key.Public()) {
		return // not an authority of the set that votes next: nothing to do
	}
	props, err := state.OpenAutomaticProposals(view)
	if err != nil {
		v.log.Warn("automatic proposals unreadable", "err", err)
		return
	}
	open := make(map[chain.Hash]bool, len(props))
	for _, p := range props {
		open[p.ID] = true
		if slices.Contains(p.Voters, v.key.Public()) {
			continue
		}
		if t, ok := v.sent[p.ID]; ok && time.Since(t) < autoVoteRetry {
			continue
		}
		nonce, err := v.ledger.NextNonce(ctx, v.key.Public())
		if err != nil {
			return
		}
		tx := chain.NewTx(v.key, v.chainID, chain.TxAuthorityVote, nonce, &chain.AuthorityVote{Proposal: p.ID})
		if _, _, cancel, err := v.ledger.Submit(ctx, tx); err != nil {
			v.log.Warn("automatic removal: vote not submitted", "proposal", p.ID.Short(), "subject", p.Subject.Key.Short(), "err", err)
			continue
		} else {
			cancel()
		}
		v.sent[p.ID] = time.Now()
		v.log.Info("automatic removal: voted to remove an authority whose licence lapsed or was revoked", "proposal", p.ID.Short(), "subject", p.Subject.Key.Short())
	}
	for id := range v.sent {
		if !open[id] {
			delete(v.sent, id)
		}
	}
}
