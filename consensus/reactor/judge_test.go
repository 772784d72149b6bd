package reactor

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p"
)

// Proposals are judged from their signed header before their block is decoded: an off-turn
// proposal is rejected for being off turn (its garbage transactions never decoded), a big one
// for a far height is ignored as ahead without decoding, and only an on-turn proposal's block is
// decoded, where garbage is rejected for what it is.
func TestJudgeProposalHeaderFirst(t *testing.T) {
	n := newTestNet(t)
	gate := n.replica(t).Gate()
	seen := newSeenSet(16)
	onTurn, offTurn := n.key(t, 1, 0, false), n.key(t, 1, 0, true)

	j := judge(gate, seen, viaProposals, n.garbageProposal(t, offTurn, 1, 100))
	if j.verdict != p2p.Reject || j.err == nil || !strings.Contains(j.err.Error(), "the proposer of that round is") {
		t.Errorf("off-turn proposal with garbage transactions: %v, %v; want rejected for being off turn", j.verdict, j.err)
	}
	j = judge(gate, seen, viaProposals, n.garbageProposal(t, onTurn, 1, 100))
	if j.verdict != p2p.Reject || j.err == nil || !strings.Contains(j.err.Error(), "block does not decode") {
		t.Errorf("on-turn proposal with garbage transactions: %v, %v; want rejected for its block", j.verdict, j.err)
	}
	j = judge(gate, seen, viaDirect, n.garbageProposal(t, n.key(t, 50, 0, true), 50, 3<<20))
	if j.verdict != p2p.Ignore || !j.ahead || j.msg != nil || j.err != nil {
		t.Errorf("3 MiB proposal for a far height: %v ahead=%v decoded=%v err=%v; want ignored as ahead, not decoded", j.verdict, j.ahead, j.msg != nil, j.err)
	}

	good := n.proposal(t, onTurn, 1, 2, 10)
	j = judge(gate, seen, viaProposals, good.Encode())
	if j.verdict != p2p.Accept || !j.in.Verified || j.in.Size != len(good.Encode()) || j.in.Msg.Block.Hash() != good.Block.Hash() {
		t.Errorf("on-turn proposal: %v %+v", j.verdict, j.err)
	}
	// A header that lies about its proposer is rejected from the header.
	lying := n.proposal(t, onTurn, 1, 0, 0)
	lying.Block.Header.Proposer = offTurn.Public()
	lying.Proposal.BlockHash = lying.Block.Hash()
	lying.Proposal.Sign(onTurn, n.cid)
	if j := judge(gate, seen, viaProposals, lying.Encode()); j.verdict != p2p.Reject {
		t.Errorf("header naming another proposer: %v", j.verdict)
	}
	// The next height's proposer is accepted (the replica buffers it).
	next := n.proposal(t, n.key(t, 2, 0, false), 2, 0, 0)
	if j := judge(gate, seen, viaProposals, next.Encode()); j.verdict != p2p.Accept {
		t.Errorf("next height's proposal: %v, %v", j.verdict, j.err)
	}
}

// A long direct payload is judged from its head before the rest is read: proposals off turn,
// lying about their proposer or for a far height are refused there, with the verdict judge
// gives the whole payload; a long payload that is no proposal (a sync answer) is ignored unless
// it comes from a peer the replica asked for blocks; anything else (an acceptable proposal, an
// awaited answer, a head cut before the header) is left to judge.
func TestJudgeHead(t *testing.T) {
	n := newTestNet(t)
	rep := n.replica(t)
	gate := rep.Gate()
	// A vote from far ahead makes the replica ask its sender for blocks.
	if out, err := rep.Handle("ahead", n.vote(t, 1, 40), time.Now().UnixMilli()); err != nil || len(out.Unicast) != 1 {
		t.Fatalf("far vote: %v, %+v; want a sync request", err, out.Unicast)
	}
	onTurn, offTurn := n.key(t, 1, 0, false), n.key(t, 1, 0, true)
	lying := n.proposal(t, onTurn, 1, 0, 0)
	lying.Block.Header.Proposer = offTurn.Public()
	lying.Proposal.BlockHash = lying.Block.Hash()
	lying.Proposal.Sign(onTurn, n.cid)
	answer := (&replica.Message{Version: replica.MessageVersion, SyncBlocks: []*chain.Block{n.proposal(t, onTurn, 1, 40, 100).Block}, SyncCerts: []*chain.CommitCert{{}}}).Encode()
	head := func(data []byte) []byte { return data[:min(len(data), p2p.DirectHeadBytes)] }
	cases := []struct {
		name    string
		from    replica.PeerID
		data    []byte
		decided bool
		verdict p2p.Verdict
		ahead   bool
	}{
		{"off turn, 3 MiB of garbage", "x", n.garbageProposal(t, offTurn, 1, 3<<20), true, p2p.Reject, false},
		{"lying header", "x", lying.Encode(), true, p2p.Reject, false},
		{"far height, 3 MiB", "x", n.garbageProposal(t, n.key(t, 50, 0, true), 50, 3<<20), true, p2p.Ignore, true},
		{"on turn, full block", "x", n.proposal(t, onTurn, 1, 40, 100).Encode(), false, p2p.Accept, false},
		{"on turn, garbage block", "x", n.garbageProposal(t, onTurn, 1, 3<<20), false, p2p.Accept, false},
		{"sync answer, unasked", "x", answer, true, p2p.Ignore, false},
		{"sync answer from the peer asked", "ahead", answer, false, p2p.Accept, false},
		{"garbage", "x", []byte{0xff, 0x00}, true, p2p.Reject, false},
	}
	for _, c := range cases {
		j, decided := judgeHead(gate, c.from, head(c.data))
		if decided != c.decided || (decided && (j.verdict != c.verdict || j.ahead != c.ahead)) {
			t.Errorf("%s: decided=%v %v ahead=%v (%v); want decided=%v %v ahead=%v", c.name, decided, j.verdict, j.ahead, j.err, c.decided, c.verdict, c.ahead)
			continue
		}
		if !decided || errors.Is(j.err, errUnasked) {
			continue
		}
		if whole := judge(gate, newSeenSet(4), viaDirect, c.data); whole.verdict != j.verdict || whole.ahead != j.ahead {
			t.Errorf("%s: the head says %v ahead=%v, the whole payload %v ahead=%v", c.name, j.verdict, j.ahead, whole.verdict, whole.ahead)
		}
	}
	// A head cut before the block header settles nothing.
	off := n.garbageProposal(t, offTurn, 1, 3<<20)
	if _, decided := judgeHead(gate, "x", off[:150]); decided {
		t.Error("a head without the block header was judged")
	}
}

func TestJudgeVotesAndKinds(t *testing.T) {
	n := newTestNet(t)
	gate := n.replica(t).Gate()
	seen := newSeenSet(16)
	outsider := &chain.Vote{Type: chain.Prevote, Height: 1, BlockHash: chain.Sum256([]byte("b"))}
	outsider.Sign(testKey(t, 99), n.cid)
	forged := n.vote(t, 1, 1)
	forged.Vote.Sig[0] ^= 1
	cases := []struct {
		name    string
		rt      route
		data    []byte
		verdict p2p.Verdict
		ahead   bool
	}{
		{"vote", viaVotes, n.vote(t, 0, 1).Encode(), p2p.Accept, false},
		{"vote directly", viaDirect, n.vote(t, 1, 1).Encode(), p2p.Accept, false},
		{"next height's vote", viaVotes, n.vote(t, 2, 2).Encode(), p2p.Accept, false},
		{"far vote", viaVotes, n.vote(t, 3, 9).Encode(), p2p.Ignore, true},
		{"forged vote", viaVotes, forged.Encode(), p2p.Reject, false},
		{"outsider's vote", viaVotes, (&replica.Message{Version: replica.MessageVersion, Vote: outsider}).Encode(), p2p.Reject, false},
		{"vote on the transactions topic", viaTxs, n.vote(t, 0, 1).Encode(), p2p.Reject, false},
		{"sync request on the votes topic", viaVotes, (&replica.Message{Version: replica.MessageVersion, SyncFrom: 3}).Encode(), p2p.Reject, false},
		{"sync request directly", viaDirect, (&replica.Message{Version: replica.MessageVersion, SyncFrom: 3}).Encode(), p2p.Accept, false},
		{"garbage", viaDirect, []byte{0xff, 0x00}, p2p.Reject, false},
		{"empty", viaVotes, nil, p2p.Reject, false},
	}
	for _, c := range cases {
		j := judge(gate, seen, c.rt, c.data)
		if j.verdict != c.verdict || j.ahead != c.ahead {
			t.Errorf("%s: %v ahead=%v (%v); want %v ahead=%v", c.name, j.verdict, j.ahead, j.err, c.verdict, c.ahead)
		}
		if j.verdict == p2p.Accept && j.key != chain.Sum256(c.data) {
			t.Errorf("%s: key is not the payload's hash", c.name)
		}
	}
	if j := judge(gate, seen, viaVotes, n.vote(t, 3, 9).Encode()); j.msg == nil || j.msg.Vote.Height != 9 {
		t.Error("a far vote carries no message for the hint")
	}
}

// A payload delivered before is dropped by its hash before anything else: even bytes that
// would not decode are ignored, not rejected, once their hash is in the set.
func TestJudgeDeduplicatesBeforeDecoding(t *testing.T) {
	n := newTestNet(t)
	gate := n.replica(t).Gate()
	seen := newSeenSet(16)
	junk := []byte("not a message at all")
	seen.add(chain.Sum256(junk))
	if j := judge(gate, seen, viaDirect, junk); j.verdict != p2p.Ignore || !j.dedup {
		t.Errorf("seen payload: %v dedup=%v", j.verdict, j.dedup)
	}
}

func TestJudgeTransactions(t *testing.T) {
	n := newTestNet(t)
	gate := n.replica(t).Gate()
	seen := newSeenSet(16)
	body := &chain.RegisterPatient{EncryptionKey: []byte("patient-encryption-key")}
	txMsg := func(tx *chain.Tx) []byte { return (&replica.Message{Version: replica.MessageVersion, Tx: tx}).Encode() }

	stranger := chain.NewTx(testKey(t, 50), testChain, chain.TxRegisterPatient, 2, body)
	if j := judge(gate, seen, viaTxs, txMsg(stranger)); j.verdict != p2p.Ignore || !j.junk {
		t.Errorf("a stranger's second transaction: %v junk=%v (%v); want ignored as junk", j.verdict, j.junk, j.err)
	}
	forged := chain.NewTx(testKey(t, 51), testChain, chain.TxRegisterPatient, 1, body)
	forged.Sig[0] ^= 1
	if j := judge(gate, seen, viaTxs, txMsg(forged)); j.verdict != p2p.Reject {
		t.Errorf("forged transaction: %v (%v)", j.verdict, j.err)
	}
	other := chain.NewTx(n.keys[0], "another-chain", chain.TxRegisterPatient, 1, body)
	if j := judge(gate, seen, viaTxs, txMsg(other)); j.verdict != p2p.Reject {
		t.Errorf("another chain's transaction: %v (%v)", j.verdict, j.err)
	}
	gap := chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, 1000, body)
	if j := judge(gate, seen, viaTxs, txMsg(gap)); j.verdict != p2p.Ignore || !j.junk {
		t.Errorf("nonce far beyond the window: %v junk=%v (%v)", j.verdict, j.junk, j.err)
	}
	later := chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, 2, body)
	if j := judge(gate, seen, viaTxs, txMsg(later)); j.verdict != p2p.Accept || j.in.Tx == nil || !j.in.Verified {
		t.Errorf("an authority's pending transaction: %v (%v)", j.verdict, j.err)
	}
}

// FuzzJudge: no input makes a validator panic, what one accepts is a message of its route's
// kind, and a verdict from a payload's head is the one judge gives the whole payload.
func FuzzJudge(f *testing.F) {
	n := newTestNet(f)
	f.Add(uint8(viaVotes), n.vote(f, 0, 1).Encode())
	f.Add(uint8(viaProposals), n.proposal(f, n.key(f, 1, 0, false), 1, 1, 10).Encode())
	f.Add(uint8(viaProposals), n.garbageProposal(f, n.key(f, 1, 0, false), 1, 10))
	f.Add(uint8(viaDirect), (&replica.Message{Version: replica.MessageVersion, SyncFrom: 3}).Encode())
	f.Add(uint8(viaTxs), []byte{0x88, 0x01})
	gate := n.replica(f).Gate()
	f.Fuzz(func(t *testing.T, r uint8, data []byte) {
		rt := route(r % 4)
		j := judge(gate, newSeenSet(4), rt, data)
		// (A long payload that is no proposal is ignored from its head by policy: see judgeHead.)
		if hj, decided := judgeHead(gate, "x", data[:min(len(data), p2p.DirectHeadBytes)]); decided && rt == viaDirect && !errors.Is(hj.err, errUnasked) && (hj.verdict != j.verdict || hj.ahead != j.ahead) {
			t.Fatalf("from its head %v ahead=%v (%v), whole %v ahead=%v (%v)", hj.verdict, hj.ahead, hj.err, j.verdict, j.ahead, j.err)
		}
		if j.verdict != p2p.Accept {
			return
		}
		m := j.in.Msg
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid %s: %v", m.Kind(), err)
		}
		if rt != viaDirect && routeOf(&replica.Head{Proposal: m.Proposal, Vote: m.Vote, Tx: m.Tx}) != rt {
			t.Fatalf("accepted a %s on %s", m.Kind(), rt)
		}
	})
}

func TestSeenSetEvictsLeastRecentlyUsed(t *testing.T) {
	s := newSeenSet(3)
	h := func(i byte) chain.Hash { return chain.Hash{i} }
	for i := range byte(3) {
		s.add(h(i))
	}
	s.has(h(0)) // refreshed: 1 is now the least recently used
	s.add(h(3))
	if s.has(h(1)) || !s.has(h(0)) || !s.has(h(2)) || !s.has(h(3)) || s.len() != 3 {
		t.Errorf("after eviction: 0:%v 1:%v 2:%v 3:%v len %d", s.has(h(0)), s.has(h(1)), s.has(h(2)), s.has(h(3)), s.len())
	}
}

// A batch of transactions is judged as each would be, with one batch signature check: accepted
// with what the Gate kept (and a check per transaction), rejected whole for one forged
// signature, ignored when nothing in it is kept, and a junk strike when junk is most of it.
func TestJudgeTransactionBatches(t *testing.T) {
	n := newTestNet(t)
	gate := n.replica(t).Gate()
	body := &chain.RegisterPatient{EncryptionKey: []byte("patient-encryption-key")}
	batch := func(txs ...*chain.Tx) []byte {
		return (&replica.Message{Version: replica.MessageVersion, Txs: txs}).Encode()
	}
	good := func(nonce uint64) *chain.Tx {
		return chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, nonce, body)
	}
	junk := func(i int) *chain.Tx {
		return chain.NewTx(testKey(t, 60+i), testChain, chain.TxRegisterPatient, 2, body)
	}

	j := judge(gate, newSeenSet(16), viaTxs, batch(good(2), good(3), junk(0)))
	if j.verdict != p2p.Accept || len(j.in.Msg.Txs) != 2 || len(j.in.TxChecks) != 2 || !j.in.Verified || j.junk {
		t.Fatalf("a batch of two good transactions and one junk: %v, %d kept, junk=%v (%v)", j.verdict, len(j.in.Msg.Txs), j.junk, j.err)
	}
	forged := good(4)
	forged.Sig[0] ^= 1
	if j := judge(gate, newSeenSet(16), viaTxs, batch(good(2), forged)); j.verdict != p2p.Reject {
		t.Fatalf("a batch with a forged signature: %v (%v)", j.verdict, j.err)
	}
	if j := judge(gate, newSeenSet(16), viaTxs, batch(junk(1), junk(2))); j.verdict != p2p.Ignore || !j.junk {
		t.Fatalf("a batch of junk: %v junk=%v", j.verdict, j.junk)
	}
	if j := judge(gate, newSeenSet(16), viaTxs, batch(good(2), junk(3), junk(4))); j.verdict != p2p.Accept || !j.junk {
		t.Fatalf("a batch mostly of junk: %v junk=%v", j.verdict, j.junk)
	}
	// On the votes topic a batch is out of place: its sender's fault.
	if j := judge(gate, newSeenSet(16), viaVotes, batch(good(2))); j.verdict != p2p.Reject {
		t.Fatalf("a batch on the votes topic: %v", j.verdict)
	}
	// Empty and oversized batches do not decode.
	if j := judge(gate, newSeenSet(16), viaTxs, chain.Encode(&rawMessage{Version: replica.MessageVersion, Txs: []any{}})); j.verdict != p2p.Reject {
		t.Fatalf("an empty batch: %v", j.verdict)
	}
}

// The batcher sends what it collects as one message after its delay, a lone transaction in
// the single form, and a batch that would outgrow the topic's limit in several messages.
func TestTxBatcher(t *testing.T) {
	n := newTestNet(t)
	sent := make(chan []byte, 16)
	b := newTxBatcher(func(data []byte) { sent <- data })
	defer b.close()
	body := &chain.RegisterPatient{EncryptionKey: []byte("patient-encryption-key")}
	for i := range 5 {
		b.add(chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, uint64(i+2), body))
	}
	m, err := replica.DecodeMessage(<-sent)
	if err != nil || len(m.Txs) != 5 {
		t.Fatalf("batch of 5: %v, %d transactions", err, len(m.Txs))
	}
	b.add(chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, 9, body))
	if m, err := replica.DecodeMessage(<-sent); err != nil || m.Tx == nil {
		t.Fatalf("a lone transaction: %v %+v", err, m)
	}
	big := &chain.RegisterPatient{EncryptionKey: make([]byte, 30<<10)}
	for i := range 5 {
		b.add(chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, uint64(i+10), big))
	}
	total := 0
	for total < 5 {
		data := <-sent
		if len(data) > MaxGossipTxBytes {
			t.Fatalf("a batch of %d bytes, limit %d", len(data), MaxGossipTxBytes)
		}
		m, err := replica.DecodeMessage(data)
		if err != nil {
			t.Fatal(err)
		}
		total += max(len(m.Txs), 1)
	}
}

// preverify vouches for exactly the transactions of a sync answer whose signatures verify.
func TestPreverifySyncAnswer(t *testing.T) {
	n := newTestNet(t)
	body := &chain.RegisterPatient{EncryptionKey: []byte("patient-encryption-key")}
	var blocks []*chain.Block
	var all []*chain.Tx
	for b := range 3 {
		var txs []*chain.Tx
		for i := range 70 {
			tx := chain.NewTx(n.keys[0], testChain, chain.TxRegisterPatient, uint64(b*100+i+1), body)
			txs = append(txs, tx)
		}
		all = append(all, txs...)
		blocks = append(blocks, &chain.Block{Version: chain.BlockVersion, Txs: txs})
	}
	forged := blocks[1].Txs[5]
	forged.Sig[0] ^= 1
	set := preverify(testChain, blocks)
	for _, tx := range all {
		_, ok := set[tx.Hash()]
		if ok == (tx == forged) {
			t.Fatalf("transaction %s: vouched for %v", tx.Hash().Short(), ok)
		}
	}
	if preverify(testChain, []*chain.Block{{Version: chain.BlockVersion}}) != nil {
		t.Fatal("an empty answer vouches for something")
	}
}
