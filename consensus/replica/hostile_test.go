package replica

import (
	"errors"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus"
)

// proposalBy builds a valid block for the next height of st, proposed by k in round r.
func proposalBy(t *testing.T, r *Replica, st *store.Memory, k chain.PrivKey, round uint32, salt int64, txs ...*chain.Tx) *Message {
	t.Helper()
	height := st.Height() + 1
	prev, prevTime := chain.ZeroHash, r.cfg.Genesis.TimeMs
	if height > 1 {
		b, err := st.Block(height - 1)
		if err != nil {
			t.Fatal(err)
		}
		prev, prevTime = b.Hash(), b.Header.Time
	}
	b := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{
		Version: chain.HeaderVersion, ChainID: chainID, Height: height, Time: prevTime + 1 + salt,
		PrevHash: prev, StateRoot: st.StateRoot(), AuthoritiesHash: r.current.Hash(), NextAuthoritiesHash: r.next.Hash(),
		Proposer: k.Public(),
	}, Txs: txs}
	b.Header.TxRoot = chain.TxRoot(txs)
	p := &chain.Proposal{Height: height, Round: round, POLRound: -1, BlockHash: b.Hash()}
	p.Sign(k, r.consensusID)
	return &Message{Version: MessageVersion, Proposal: p, Block: b}
}

func keyOf(t *testing.T, keys []chain.PrivKey, pub chain.PubKey) chain.PrivKey {
	t.Helper()
	for _, k := range keys {
		if k.Public() == pub {
			return k
		}
	}
	t.Fatal("no such key")
	return chain.PrivKey{}
}

// An authority that proposes out of turn is blamed and its block is never executed; the round's
// proposer gets one execution per round, however often it sends, and a proposal beyond the round
// window is not executed either.
func TestOffTurnProposalsAreRefusedBeforeExecution(t *testing.T) {
	r, st, g, keys, _ := startReplica(t, 4)
	now := g.TimeMs + 5
	set := r.Authorities()
	for round := uint32(0); round < 4; round++ {
		for _, k := range keys {
			if k.Public() == set.Proposer(1, round) {
				continue
			}
			_, err := r.Handle("mallory", proposalBy(t, r, st, k, round, int64(round)), now)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("off-turn proposal at round %d: %v, want ErrInvalid", round, err)
			}
		}
	}
	if r.exec.Len() != 0 {
		t.Fatalf("executed %d off-turn blocks", r.exec.Len())
	}
	// The proposer of round 1 re-sends the same proposal many times and sends a second,
	// different one: one execution.
	p1 := keyOf(t, keys, set.Proposer(1, 1))
	m := proposalBy(t, r, st, p1, 1, 0)
	for range 20 {
		if _, err := r.Handle("peer", m, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Handle("peer", proposalBy(t, r, st, p1, 1, 9), now); err != nil {
		t.Fatal(err)
	}
	if r.exec.Len() != 1 {
		t.Fatalf("%d executions for one round's proposals, want 1", r.exec.Len())
	}
	// Far beyond the round window: not executed.
	far := uint32(roundWindow + 5)
	if _, err := r.Handle("peer", proposalBy(t, r, st, keyOf(t, keys, set.Proposer(1, far)), far, 3), now); err != nil {
		t.Fatal(err)
	}
	if r.exec.Len() != 1 {
		t.Fatalf("executed a proposal %d rounds ahead", far)
	}
	// A header that names another proposer than the one who signed a fresh proposal.
	p2 := keyOf(t, keys, set.Proposer(1, 2))
	lie := proposalBy(t, r, st, p2, 2, 0)
	lie.Block.Header.Proposer = p1.Public()
	lie.Proposal.BlockHash = lie.Block.Hash()
	lie.Proposal.Sign(p2, r.consensusID)
	if _, err := r.Handle("mallory", lie, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("header lying about its proposer: %v", err)
	}
}

// Messages for the next height are held within bounds: only from that height's authorities,
// one proposal per round and proposer, a bounded number of votes per authority, and a byte cap
// per peer and in all.
func TestNextHeightBufferIsBounded(t *testing.T) {
	r, st, g, keys, _ := startReplicaWith(t, 4, func(c *Config) {
		c.Future = FutureLimits{MaxBytes: 64 << 10, MaxPeerBytes: 32 << 10}
	})
	now := g.TimeMs + 5
	// A stranger's vote for the next height is the sender's fault.
	stranger := key(t, 200)
	v := &chain.Vote{Type: chain.Prevote, Height: 2, Round: 0, BlockHash: chain.Hash{1}}
	v.Sign(stranger, r.consensusID)
	if _, err := r.Handle("mallory", &Message{Version: MessageVersion, Vote: v}, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("non-member's future vote: %v", err)
	}
	// An authority floods votes for the next height in every round with random hashes.
	for round := uint32(0); round <= roundWindow; round++ {
		for i := range 10 {
			v := &chain.Vote{Type: chain.Prevote, Height: 2, Round: round, BlockHash: chain.Hash{byte(i), 1}}
			v.Sign(keys[1], r.consensusID)
			if _, err := r.Handle("peer1", &Message{Version: MessageVersion, Vote: v}, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, _ := r.Buffered(); n > maxFutureVotes {
		t.Fatalf("buffered %d votes of one authority, bound %d", n, maxFutureVotes)
	}
	// Big proposals for the next height from the right proposer: one per round, bytes capped.
	big := make([]*chain.Tx, 0, 40)
	for i := range 40 {
		k := key(t, byte(50+i))
		big = append(big, regTx(t, k, 1, chain.MaxEncryptionKeyLen))
	}
	for round := uint32(0); round <= futureProposalRounds; round++ {
		k := keyOf(t, keys, r.next.Proposer(2, round))
		m := proposalBy(t, r, st, k, round, 0, big...)
		m.Proposal.Height, m.Block.Header.Height = 2, 2
		m.Block.Header.PrevHash = chain.Hash{9}
		m.Proposal.BlockHash = m.Block.Hash()
		m.Proposal.Sign(k, r.consensusID)
		for range 3 {
			if _, err := r.Handle(PeerID("peer-"+string(rune('a'+round))), m, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, bytes := r.Buffered(); bytes > 64<<10 {
		t.Fatalf("buffered %d bytes, cap %d", bytes, 64<<10)
	}
}

// A transaction that can never execute (a nonce gap) does not make the chain busy: after a
// commit the next height waits the block interval, not the short busy pause.
func TestJunkDoesNotMakeTheChainBusy(t *testing.T) {
	r, st, g, _, out := startReplica(t, 1)
	k := key(t, 77)
	if _, _, err := r.SubmitTx(patientTx(t, k, 1), g.TimeMs); err != nil {
		t.Fatal(err)
	}
	var delays []int64
	observe := func(o Output) {
		for _, tm := range o.Timeouts {
			if tm.Step == consensus.StepNewHeight {
				delays = append(delays, tm.DelayMs)
			}
		}
	}
	now, pending := driveObserved(t, r, out.Timeouts, g.TimeMs, func() bool { return st.Height() >= 2 }, observe)
	gap := chain.NewTx(k, chainID, chain.TxConsentRevoke, 3, &chain.ConsentRevoke{Consent: chain.Hash{1}})
	if _, _, err := r.SubmitTx(gap, now); err != nil {
		t.Fatal(err)
	}
	if r.Mempool().Executable() {
		t.Fatal("a gap nonce counts as executable")
	}
	delays = nil
	driveObserved(t, r, pending, now, func() bool { return st.Height() >= 5 }, observe)
	if len(delays) < 3 {
		t.Fatalf("saw %d new heights", len(delays))
	}
	for _, d := range delays {
		if d != int64(g.Params.BlockIntervalMs) {
			t.Fatalf("new height after %d ms with only junk pending, want the block interval %d", d, g.Params.BlockIntervalMs)
		}
	}
}

// The Gate knows which peers the replica asked for blocks: only their answers are worth reading
// (the replica drops any other unread), and an answer, even a bad one, ends the wait.
func TestGateAwaitsSyncOnlyFromAskedPeers(t *testing.T) {
	r, _, g, keys, _ := startReplica(t, 4)
	now := g.TimeMs + 5
	gate := r.Gate()
	if gate.AwaitsSync("ahead") || gate.AwaitsSync("other") {
		t.Fatal("awaits an answer before asking anyone")
	}
	far := &chain.Vote{Type: chain.Prevote, Height: 40, BlockHash: chain.Hash{4}}
	far.Sign(keys[1], r.consensusID)
	out, err := r.Handle("ahead", &Message{Version: MessageVersion, Vote: far}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Unicast) != 1 || out.Unicast[0].To != "ahead" || out.Unicast[0].Msg.SyncFrom == 0 {
		t.Fatalf("a vote from height 40 led to %+v, want a sync request to its sender", out.Unicast)
	}
	if !gate.AwaitsSync("ahead") || gate.AwaitsSync("other") {
		t.Fatalf("after asking: awaits ahead %v, other %v; want only the peer asked", gate.AwaitsSync("ahead"), gate.AwaitsSync("other"))
	}
	bogus := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{Version: chain.HeaderVersion, ChainID: chainID, Height: 1, TxRoot: chain.TxRoot(nil)}}
	answer := &Message{Version: MessageVersion, SyncBlocks: []*chain.Block{bogus}, SyncCerts: []*chain.CommitCert{{}}}
	if _, err := r.Handle("ahead", answer, now+1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a forged sync answer: %v, want ErrInvalid", err)
	}
	if gate.AwaitsSync("ahead") {
		t.Fatal("still awaits the peer that answered")
	}
}

// Votes and proposals are signed under the consensus id, which names the genesis: a network
// re-created with the same chain id and keys (another genesis) cannot pass its votes off here.
func TestMessagesOfAnotherGenesisAreRefused(t *testing.T) {
	r, st, g, keys, _ := startReplica(t, 4)
	other := *g
	other.TimeMs++
	otherID := chain.ConsensusID(g.ChainID, other.Hash())
	v := &chain.Vote{Type: chain.Prevote, Height: 1, BlockHash: chain.Hash{1}}
	v.Sign(keys[1], otherID)
	if _, err := r.Handle("peer", &Message{Version: MessageVersion, Vote: v}, g.TimeMs+5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("vote signed for another genesis: %v", err)
	}
	plain := &chain.Vote{Type: chain.Prevote, Height: 1, BlockHash: chain.Hash{1}}
	plain.Sign(keys[1], g.ChainID)
	if _, err := r.Handle("peer", &Message{Version: MessageVersion, Vote: plain}, g.TimeMs+5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("vote signed under the bare chain id: %v", err)
	}
	m := proposalBy(t, r, st, keyOf(t, keys, r.Authorities().Proposer(1, 0)), 0, 0)
	m.Proposal.Sign(keyOf(t, keys, r.Authorities().Proposer(1, 0)), otherID)
	if _, err := r.Handle("peer", m, g.TimeMs+5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("proposal signed for another genesis: %v", err)
	}
}

// A block finalized by a quorum of precommits but never judged here (its body arrived in a
// second proposal of the round) is checked against this chain before it is stored: one that
// does not follow it stops the replica rather than enter its store.
func TestFinalizedBlockIsCheckedBeforeCommit(t *testing.T) {
	r, st, g, keys, _ := startReplica(t, 4)
	now := g.TimeMs + 5
	prop := keyOf(t, keys, r.Authorities().Proposer(1, 0))
	first := proposalBy(t, r, st, prop, 0, 0)
	if _, err := r.Handle("peer", first, now); err != nil {
		t.Fatal(err)
	}
	bad := proposalBy(t, r, st, prop, 0, 7)
	bad.Block.Header.StateRoot = chain.Hash{0xba, 0xd}
	bad.Proposal.BlockHash = bad.Block.Hash()
	bad.Proposal.Sign(prop, r.consensusID)
	// Honest-looking votes for the bad block come first, so the engine keeps its body.
	var err error
	for i, k := range keys {
		if i == 0 {
			continue
		}
		for _, typ := range []chain.VoteType{chain.Prevote, chain.Precommit} {
			v := &chain.Vote{Type: typ, Height: 1, Round: 0, BlockHash: bad.Block.Hash()}
			v.Sign(k, r.consensusID)
			if _, err = r.Handle("peer", &Message{Version: MessageVersion, Vote: v}, now); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		_, err = r.Handle("peer", bad, now)
	}
	if err == nil || errors.Is(err, ErrInvalid) || st.Height() != 0 {
		t.Fatalf("a finalized block with a wrong state root: err %v, height %d; want the replica to stop before storing it", err, st.Height())
	}
}

// A peer's status naming a height above this replica's makes it ask that peer for blocks: a
// node that signs nothing sends no votes, and this is how a peer behind it learns to sync.
func TestStatusAheadAsksForBlocks(t *testing.T) {
	r, _, g, _, _ := startReplica(t, 4)
	out, err := r.Handle("ahead", &Message{Version: MessageVersion, Status: 7}, g.TimeMs+5)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Unicast) != 1 || out.Unicast[0].To != "ahead" || out.Unicast[0].Msg.SyncFrom != 1 {
		t.Fatalf("after a status of height 7 at height 0: %+v", out.Unicast)
	}
}

// A transaction submitted here is sent again, directly, every ownResendMs while it stays
// pending (gossip delivers a payload once: one published while this node had no peer would be
// lost); one that committed is not.
func TestOwnPendingTransactionsAreResent(t *testing.T) {
	r, st, g, _, out := startReplica(t, 1)
	k := key(t, 77)
	if _, _, err := r.SubmitTx(patientTx(t, k, 1), g.TimeMs); err != nil {
		t.Fatal(err)
	}
	now, pending := driveObserved(t, r, out.Timeouts, g.TimeMs, func() bool { return st.Height() >= 2 }, nil)
	gap := chain.NewTx(k, chainID, chain.TxConsentRevoke, 3, &chain.ConsentRevoke{Consent: chain.Hash{1}})
	if _, _, err := r.SubmitTx(gap, now); err != nil {
		t.Fatal(err)
	}
	sentAt := []int64{now}
	driveObserved(t, r, pending, now, func() bool { return len(sentAt) >= 3 }, func(o Output) {
		for _, m := range o.Resend {
			if m.Tx == nil {
				continue
			}
			if m.Tx.Hash() != gap.Hash() {
				t.Fatalf("resent %s, which is not pending", m.Tx.Hash().Short())
			}
			sentAt = append(sentAt, o.Committed[len(o.Committed)-1].Header.Time)
		}
	})
	for i := 1; i < len(sentAt); i++ {
		if d := sentAt[i] - sentAt[i-1]; d < ownResendMs || d > ownResendMs+2*int64(g.Params.BlockIntervalMs) {
			t.Fatalf("resent %d ms after the previous send, want about %d", d, ownResendMs)
		}
	}
}

// A batch of transactions enters the mempool as its transactions would one by one; a forged
// one in it is the sender's fault, and the rest still enter.
func TestTransactionBatchEntersTheMempool(t *testing.T) {
	r, _, g, _, _ := startReplica(t, 1)
	a, b := patientTx(t, key(t, 81), 1), patientTx(t, key(t, 82), 1)
	if _, err := r.Handle("peer", &Message{Version: MessageVersion, Txs: []*chain.Tx{a, b}}, g.TimeMs+1); err != nil {
		t.Fatal(err)
	}
	if !r.Mempool().Has(a.Hash()) || !r.Mempool().Has(b.Hash()) {
		t.Fatal("a batch's transactions are not pending")
	}
	forged := patientTx(t, key(t, 83), 1)
	forged.Sig[0] ^= 1
	c := patientTx(t, key(t, 84), 1)
	_, err := r.Handle("peer", &Message{Version: MessageVersion, Txs: []*chain.Tx{forged, c}}, g.TimeMs+2)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("a batch with a forged transaction: %v, want ErrInvalid", err)
	}
	if !r.Mempool().Has(c.Hash()) || r.Mempool().Has(forged.Hash()) {
		t.Fatal("the batch's good transaction is missing, or the forged one entered")
	}
}
