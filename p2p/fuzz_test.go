package p2p

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p/frame"
)

// FuzzCheckGossip: no input makes a validator panic, and whatever it accepts fits its topic.
func FuzzCheckGossip(f *testing.F) {
	f.Add(uint8(topicTxs), txMsg(f, 1).Encode())
	f.Add(uint8(topicVotes), voteMsg(f, 1).Encode())
	f.Add(uint8(topicProposals), proposalMsg(f, 1, 10).Encode())
	f.Add(uint8(topicVotes), []byte{0x88, 0x01})
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		kind := topicKind(k % uint8(numTopics))
		m, err := checkGossip(testChain, kind, data)
		if err != nil {
			return
		}
		if got, ok := kindOf(m); !ok || got != kind || len(data) > kind.maxBytes() {
			t.Fatalf("accepted a %s of %d bytes on %s", m.Kind(), len(data), kind)
		}
	})
}

// FuzzDirectFrame: reading a frame and handling it never panics and never accepts a frame
// over the limit.
func FuzzDirectFrame(f *testing.F) {
	var good bytes.Buffer
	if err := frame.Write(&good, (&replica.Message{Version: replica.MessageVersion, SyncFrom: 1}).Encode()); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(binary.AppendUvarint(nil, MaxDirectMessageBytes+1))
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 16 // keep allocations small; the limit logic is the same
		r := bytes.NewReader(in)
		n, err := frame.ReadLen(r, limit)
		if err != nil {
			return
		}
		if n <= 0 || n > limit {
			t.Fatalf("frame length %d outside 1..%d", n, limit)
		}
		body := make([]byte, n)
		if _, err := r.Read(body); err != nil {
			return
		}
		_, _ = handleDirect(testChain, body)
	})
}
