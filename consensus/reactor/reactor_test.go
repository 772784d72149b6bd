package reactor

import (
	"bytes"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p"
)

// Over the network: an off-turn proposal whose block carries undecodable transactions is
// rejected from its header and its sender banned, while a valid proposal from the round's
// proposer arrives verified.
func TestOffTurnProposalRejectedFromHeader(t *testing.T) {
	n := newTestNet(t)
	bh := newHost(t)
	b := newReactor(t, bh, n.replica(t))
	a := rawPeer(t, newHost(t, bh), allTopics...)
	waitConnected(t, a, bh)
	waitMesh(t, a, TopicProposals, 1)

	if err := a.Publish(TopicProposals, n.garbageProposal(t, n.key(t, 1, 0, true), 1, 4096)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to reject the proposal and ban A", func() bool { return b.Stats().Rejected == 1 && bh.Banned(a.PeerID()) })
	a = rawPeer(t, newHost(t, bh), allTopics...) // another peer, since A is banned
	waitConnected(t, a, bh)
	waitMesh(t, a, TopicProposals, 1)
	good := n.proposal(t, n.key(t, 1, 0, false), 1, 3, 100)
	if err := a.Publish(TopicProposals, good.Encode()); err != nil {
		t.Fatal(err)
	}
	in := receive(t, b)
	if in.Msg.Proposal == nil || in.Msg.Block.Hash() != good.Block.Hash() || !in.Verified || in.From != PeerID(a.PeerID()) || in.Size != len(good.Encode()) {
		t.Fatalf("B received %s from %s (verified %v, size %d), want A's valid proposal", in.Msg.Kind(), in.From, in.Verified, in.Size)
	}
	assertEmpty(t, b)
}

// A replayed vote is checked once: the gossiped original is accepted, and the same payload
// arriving again directly (as re-sends do) is dropped by its hash before decoding or
// verifying it; publishing it again is dropped by pubsub as seen.
func TestReplayedVoteVerifiedOnce(t *testing.T) {
	n := newTestNet(t)
	bh := newHost(t)
	b := newReactor(t, bh, n.replica(t))
	a := rawPeer(t, newHost(t, bh), allTopics...)
	waitConnected(t, a, bh)
	waitMesh(t, a, TopicVotes, 1)

	vote := n.vote(t, 0, 1).Encode()
	if err := a.Publish(TopicVotes, vote); err != nil {
		t.Fatal(err)
	}
	if in := receive(t, b); !bytes.Equal(in.Msg.Encode(), vote) {
		t.Fatalf("B received a %s, want the vote", in.Msg.Kind())
	}
	const replays = 3
	for i := range replays {
		if !a.SendDirect(bh.PeerID(), vote) {
			t.Fatal("send dropped")
		}
		waitFor(t, "B to drop the replay", func() bool { return b.Stats().Duplicates == uint64(i+1) })
	}
	if err := a.Publish(TopicVotes, vote); err != nil {
		t.Fatal(err)
	}
	// A marker after the replays bounds the wait for a second delivery.
	marker := n.vote(t, 1, 1).Encode()
	if err := a.Publish(TopicVotes, marker); err != nil {
		t.Fatal(err)
	}
	if in := receive(t, b); !bytes.Equal(in.Msg.Encode(), marker) {
		t.Fatalf("B delivered a replay (%s) before the marker", in.Msg.Kind())
	}
	assertEmpty(t, b)
	if s := b.Stats(); s.Accepted != 2 || s.Duplicates != replays {
		t.Errorf("B checked %d votes and dropped %d as duplicates; want 2 checked (vote and marker) and %d dropped", s.Accepted, s.Duplicates, replays)
	}

	// A vote for the next height is not remembered: the replica's buffer for it is bounded
	// and may have dropped it, so a re-send gets through (and is checked) again.
	next := n.vote(t, 2, 2).Encode()
	if err := a.Publish(TopicVotes, next); err != nil {
		t.Fatal(err)
	}
	if in := receive(t, b); !bytes.Equal(in.Msg.Encode(), next) {
		t.Fatalf("B received a %s, want the next height's vote", in.Msg.Kind())
	}
	if !a.SendDirect(bh.PeerID(), next) {
		t.Fatal("send dropped")
	}
	if in := receive(t, b); !bytes.Equal(in.Msg.Encode(), next) || in.Size != len(next) {
		t.Fatalf("B received a %s, want the next height's vote again", in.Msg.Kind())
	}
}

// A vote for a height far ahead is not relayed (A-B-C: C never sees it through B) but reaches
// B's replica as a hint, which makes it ask A for blocks; a current vote after it is relayed.
func TestFarFutureMessageIsAHintNotRelayed(t *testing.T) {
	n := newTestNet(t)
	bh := newHost(t)
	rep := n.replica(t)
	b := newReactor(t, bh, rep)
	a := rawPeer(t, newHost(t, bh), allTopics...)
	c := rawPeer(t, newHost(t, bh), allTopics...)
	waitConnected(t, a, bh)
	waitConnected(t, c, bh)
	waitMesh(t, bh, TopicVotes, 2)
	waitMesh(t, a, TopicVotes, 1)
	waitMesh(t, c, TopicVotes, 1)

	far := n.vote(t, 0, 40)
	if err := a.Publish(TopicVotes, far.Encode()); err != nil {
		t.Fatal(err)
	}
	hint := receive(t, b)
	if hint.Msg.Vote == nil || hint.Msg.Vote.Height != 40 || hint.From != PeerID(a.PeerID()) || hint.Verified {
		t.Fatalf("B's replica got %s from %s (verified %v), want the far vote from A as an unverified hint", hint.Msg.Kind(), hint.From, hint.Verified)
	}
	out, err := rep.HandleInbound(hint, time.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Unicast) != 1 || out.Unicast[0].To != hint.From || out.Unicast[0].Msg.SyncFrom != 1 {
		t.Fatalf("the replica answered the hint with %+v, want a sync request to A from height 1", out.Unicast)
	}

	current := n.vote(t, 1, 1).Encode()
	if err := a.Publish(TopicVotes, current); err != nil {
		t.Fatal(err)
	}
	if d := receiveRaw(t, c); !bytes.Equal(d.Data, current) || d.From != bh.PeerID() {
		t.Fatalf("C received %d bytes from %s first, want the current vote relayed by B (the far vote must not be relayed)", len(d.Data), d.From)
	}
	assertEmptyRaw(t, c)
	if s := b.Stats(); s.Hints != 1 {
		t.Errorf("B handed %d hints to its replica, want 1", s.Hints)
	}
}

// Re-sends travel directly to every connected peer (here one that joined no topic at all, so
// gossip could not reach it), every time: there is no nonce and no seen-cache on the way. A
// proposal over the gossip limit travels directly too.
func TestResendsArriveDirectly(t *testing.T) {
	n := newTestNet(t)
	ah := newHost(t)
	a := newReactor(t, ah, n.replica(t))
	b := rawPeer(t, newHost(t, ah)) // no topics: only the direct protocol
	waitConnected(t, ah, b)

	vote := n.vote(t, 2, 1)
	for range 2 {
		a.Resend(vote)
		d := receiveRaw(t, b)
		if d.Topic != "" || d.From != ah.PeerID() || !bytes.Equal(d.Data, vote.Encode()) {
			t.Fatalf("B received %d bytes on %q from %s, want the vote directly from A", len(d.Data), d.Topic, d.From)
		}
	}
	big := n.proposal(t, n.key(t, 1, 0, false), 1, 20, 60<<10)
	if len(big.Encode()) <= MaxGossipProposalBytes {
		t.Fatalf("test proposal is %d bytes, not over the gossip limit", len(big.Encode()))
	}
	a.Broadcast(big)
	if d := receiveRaw(t, b); d.Topic != "" || !bytes.Equal(d.Data, big.Encode()) {
		t.Fatalf("B received %d bytes on %q, want the big proposal directly", len(d.Data), d.Topic)
	}
	if s := a.Stats(); s.Resends != 2 || s.BigProposals != 1 {
		t.Errorf("A stats %+v", s)
	}
}

// A sender of invalid messages (a forged vote on gossip, garbage on the direct protocol) is
// banned at once; junk (transactions ignored as junk) earns a strike per junkPerStrike.
func TestInvalidSenderIsStruck(t *testing.T) {
	n := newTestNet(t)
	bh := newHost(t)
	b := newReactor(t, bh, n.replica(t))
	a := rawPeer(t, newHost(t, bh), allTopics...)
	d := rawPeer(t, newHost(t, bh), allTopics...)
	j := rawPeer(t, newHost(t, bh), allTopics...)
	waitConnected(t, a, bh)
	waitConnected(t, d, bh)
	waitConnected(t, j, bh)
	waitMesh(t, a, TopicVotes, 1)
	waitMesh(t, j, TopicTxs, 1)

	forged := n.vote(t, 0, 1)
	forged.Vote.Sig[0] ^= 1
	if err := a.Publish(TopicVotes, forged.Encode()); err != nil {
		t.Fatal(err)
	}
	if !d.SendDirect(bh.PeerID(), []byte("garbage, not a message")) {
		t.Fatal("send dropped")
	}
	waitFor(t, "B to reject both and ban their senders", func() bool {
		return b.Stats().Rejected == 2 && bh.Banned(a.PeerID()) && bh.Banned(d.PeerID())
	})

	// Transactions by signers the ledger does not know: ignored, not relayed, not blamed one
	// by one, but a strike per junkPerStrike.
	body := &chain.RegisterPatient{EncryptionKey: []byte("patient-encryption-key")}
	for i := range junkPerStrike {
		tx := chain.NewTx(testKey(t, 1000+i), testChain, chain.TxRegisterPatient, 2, body)
		if err := j.Publish(TopicTxs, (&replica.Message{Version: replica.MessageVersion, Tx: tx}).Encode()); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 { // in batches: pubsub's queues to one peer are short
			waitFor(t, "B to judge the batch", func() bool { return bh.Stats().GossipIgnored == uint64(i+1) })
		}
	}
	waitFor(t, "B to strike J for junk", func() bool { return b.Stats().JunkStrikes == 1 })
	if got := bh.Strikes(j.PeerID()); got != 1 || bh.Banned(j.PeerID()) {
		t.Errorf("J has %d strikes at B (banned %v), want 1 and not banned", got, bh.Banned(j.PeerID()))
	}
	if s := bh.Stats(); s.GossipIgnored != junkPerStrike {
		t.Errorf("B ignored %d gossip payloads, want %d", s.GossipIgnored, junkPerStrike)
	}
	assertEmpty(t, b)
}

// A vote that arrives directly is relayed on the votes topic (A sends it to B alone; C gets it
// from B), so two conflicting votes sent to different peers meet somewhere and become
// evidence. A vote B already had goes no further.
func TestDirectVoteIsRelayed(t *testing.T) {
	n := newTestNet(t)
	bh := newHost(t)
	b := newReactor(t, bh, n.replica(t))
	a := rawPeer(t, newHost(t, bh), allTopics...)
	c := rawPeer(t, newHost(t, bh), allTopics...)
	waitConnected(t, a, bh)
	waitConnected(t, c, bh)
	waitMesh(t, bh, TopicVotes, 2)
	waitMesh(t, c, TopicVotes, 1)

	vote := n.vote(t, 0, 1).Encode()
	if !a.SendDirect(bh.PeerID(), vote) {
		t.Fatal("send dropped")
	}
	if in := receive(t, b); !bytes.Equal(in.Msg.Encode(), vote) || !in.Verified {
		t.Fatalf("B's replica received a %s, want the verified vote", in.Msg.Kind())
	}
	if d := receiveRaw(t, c); !bytes.Equal(d.Data, vote) || d.From != bh.PeerID() || d.Topic != TopicVotes {
		t.Fatalf("C received %d bytes on %q from %s, want the vote relayed by B", len(d.Data), d.Topic, d.From)
	}
	if !a.SendDirect(bh.PeerID(), vote) {
		t.Fatal("send dropped")
	}
	waitFor(t, "B to drop the re-sent vote", func() bool { return b.Stats().Duplicates == 1 })
	if s := b.Stats(); s.RelayedVotes != 1 {
		t.Errorf("B relayed %d votes, want 1", s.RelayedVotes)
	}
	assertEmptyRaw(t, c)
}

// Long direct payloads ignored from their head are free up to a burst and a rate per peer;
// each one beyond earns its sender a strike, since nobody can use them and each costs a stream
// and what the sender pushes before the reset.
func TestIgnoredLongPayloadsAreRateLimited(t *testing.T) {
	n := newTestNet(t)
	bh := newHost(t)
	now := time.Unix(1_700_000_000, 0)
	r, err := New(bh, n.replica(t).Gate(), Config{Log: testLogger(t), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	far := n.garbageProposal(t, n.key(t, 50, 0, true), 50, 3<<20)
	head := far[:p2p.DirectHeadBytes]
	from := peer.ID("attacker")
	for range ignoredLongBurst {
		if v := r.headValidator(from, head, len(far)); v != p2p.Ignore {
			t.Fatalf("far proposal from its head: %v, want ignored", v)
		}
	}
	if n := bh.Strikes(from); n != 0 {
		t.Fatalf("%d strikes within the burst", n)
	}
	r.headValidator(from, head, len(far))
	if n := bh.Strikes(from); n != 1 {
		t.Fatalf("%d strikes after the burst, want 1", n)
	}
	now = now.Add(time.Second) // earns ignoredLongRate more
	for range ignoredLongRate {
		r.headValidator(from, head, len(far))
	}
	if n := bh.Strikes(from); n != 1 || r.Stats().LongStrikes != 1 {
		t.Fatalf("%d strikes (%d counted) after a second's allowance, want still 1", n, r.Stats().LongStrikes)
	}
}
