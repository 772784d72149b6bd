package p2p

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p/frame"
)

// The validators' typed core, without a network.
func TestCheckGossip(t *testing.T) {
	badSig := voteMsg(t, 1)
	badSig.Vote.Sig[0] ^= 1
	otherChain := txMsg(t, 1)
	swapped := proposalMsg(t, 1, 10)
	swapped.Block = proposalMsg(t, 2, 10).Block
	cases := []struct {
		name string
		k    topicKind
		data []byte
		ok   bool
	}{
		{"tx", topicTxs, txMsg(t, 1).Encode(), true},
		{"vote", topicVotes, voteMsg(t, 1).Encode(), true},
		{"proposal", topicProposals, proposalMsg(t, 2, 100).Encode(), true},
		{"bad vote signature", topicVotes, badSig.Encode(), false},
		{"tx on votes", topicVotes, txMsg(t, 1).Encode(), false},
		{"vote on proposals", topicProposals, voteMsg(t, 1).Encode(), false},
		{"sync request on txs", topicTxs, (&replica.Message{Version: replica.MessageVersion, SyncFrom: 3}).Encode(), false},
		{"oversized vote", topicVotes, make([]byte, MaxGossipVoteBytes+1), false},
		{"garbage", topicTxs, []byte{0xff, 0x00}, false},
		{"empty", topicTxs, nil, false},
		{"block not the one signed", topicProposals, swapped.Encode(), false},
	}
	for _, c := range cases {
		m, err := checkGossip(testChain, c.k, c.data)
		if c.ok && (err != nil || m == nil) {
			t.Errorf("%s: rejected: %v", c.name, err)
		}
		if !c.ok && err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if _, err := checkGossip("another-chain", topicTxs, otherChain.Encode()); err == nil {
		t.Error("a transaction of another chain was accepted")
	}
	if _, err := checkGossip("another-chain", topicVotes, voteMsg(t, 1).Encode()); err == nil {
		t.Error("a vote signed for another chain was accepted")
	}
}

func TestTopicNamesAreNamespaced(t *testing.T) {
	want := []string{"/medledger/net-a/txs/1", "/medledger/net-a/proposals/1", "/medledger/net-a/votes/1"}
	got := TopicNames("net-a")
	if len(got) != len(want) {
		t.Fatalf("topics %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("topic %d = %s, want %s", i, got[i], want[i])
		}
	}
	if p := directProtocol("net-a"); p != "/medledger/net-a/direct/1.0.0" {
		t.Errorf("direct protocol %s", p)
	}
}

func TestScoreParamsValid(t *testing.T) {
	// pubsub validates the parameters when a host starts; this checks the arithmetic the
	// thresholds' comment promises.
	params, th := scoreParams(testChain, func(peer.ID) float64 { return 0 })
	p4 := func(n float64) float64 { return invalidMessageWeight * n * n }
	if !(p4(3) < th.GossipThreshold && p4(4) < th.PublishThreshold && p4(5) < th.GraylistThreshold && p4(2) > th.GossipThreshold) {
		t.Errorf("invalid-message penalties %v..%v do not cross the thresholds as documented", p4(2), p4(5))
	}
	for name, tp := range params.Topics {
		if tp.MeshMessageDeliveriesWeight != 0 || tp.MeshFailurePenaltyWeight != 0 {
			t.Errorf("%s: mesh delivery penalties are on", name)
		}
	}
	if strikeLimit*appStrikeWeight > th.PublishThreshold {
		t.Errorf("a banned peer's strikes (%v) stay above the publish threshold", strikeLimit*appStrikeWeight)
	}
}

func TestHandleDirect(t *testing.T) {
	if _, err := handleDirect(testChain, []byte("junk")); err == nil {
		t.Error("junk decoded")
	}
	badSig := voteMsg(t, 1)
	badSig.Vote.Sig[3] ^= 1
	if _, err := handleDirect(testChain, badSig.Encode()); err == nil {
		t.Error("a vote with a bad signature was accepted directly")
	}
	req := &replica.Message{Version: replica.MessageVersion, SyncFrom: 9}
	m, err := handleDirect(testChain, req.Encode())
	if err != nil || m.SyncFrom != 9 {
		t.Errorf("sync request: %v", err)
	}
	big := proposalMsg(t, 20, 60<<10)
	var buf bytes.Buffer
	if err := frame.Write(&buf, big.Encode()); err != nil {
		t.Fatal(err)
	}
	br := bytes.NewReader(buf.Bytes())
	n, err := frame.ReadLen(br, MaxDirectMessageBytes)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	if _, err := handleDirect(testChain, body); err != nil {
		t.Errorf("big proposal: %v", err)
	}
}

func TestStrikesWindowAndBanExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newStrikes(func() time.Time { return now })
	p := peer.ID("peer")
	for range strikeLimit - 1 {
		if banned, _ := s.strike(p); banned {
			t.Fatal("banned before the limit")
		}
	}
	now = now.Add(strikeWindow + time.Second) // the window passes: strikes are forgiven
	if banned, n := s.strike(p); banned || n != 1 {
		t.Fatalf("after the window: banned %v, %d strikes", banned, n)
	}
	for range strikeLimit - 2 {
		s.strike(p)
	}
	if banned, _ := s.strike(p); !banned {
		t.Fatal("not banned at the limit")
	}
	if s.InterceptSecured(0, p, nil) || s.InterceptPeerDial(p) {
		t.Fatal("banned peer let through")
	}
	now = now.Add(banDuration)
	if !s.InterceptSecured(0, p, nil) || s.current(p) != 0 {
		t.Fatal("ban did not expire")
	}
}
