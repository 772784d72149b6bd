package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/p2p/frame"
)

// The direct protocol: SendDirect delivers (also payloads larger than gossip carries), the
// same payload sent twice arrives twice (direct sends are not deduplicated here), an ignored
// payload closes the stream without blame, and malformed or rejected streams are reset and
// struck without being delivered.
func TestDirectProtocol(t *testing.T) {
	c := newStaticTestHost(t)
	a := newStaticTestHost(t, c)
	waitFor(t, "A and C to connect", func() bool { return slices.Contains(c.Peers(), a.ID()) })

	for range 2 {
		if !a.SendDirect(c.PeerID(), []byte("ok sync request")) {
			t.Fatal("send dropped")
		}
		if d := receive(t, c); d.From != a.PeerID() || d.Topic != "" || text(d) != "ok sync request" {
			t.Fatalf("C received %q on %q from %s, want the request from A directly", text(d), d.Topic, d.From)
		}
	}
	big := "ok " + strings.Repeat("B", MaxGossipBytes)
	if n := a.SendDirectAll([]byte(big)); n != 1 {
		t.Fatalf("SendDirectAll started %d sends, want 1", n)
	}
	if d := receive(t, c); text(d) != big {
		t.Fatalf("C received %d bytes, want the big payload", len(text(d)))
	}

	if !a.SendDirect(c.PeerID(), []byte("skip me")) {
		t.Fatal("send dropped")
	}
	waitFor(t, "C to ignore the payload", func() bool { return c.Stats().DirectIgnored == 1 })

	var junk bytes.Buffer
	if err := frame.Write(&junk, []byte("garbage that is no payload")); err != nil {
		t.Fatal(err)
	}
	overLimit := binary.AppendUvarint(nil, uint64(c.maxDirect)+1)
	// Each bad stream is invalid data: its sender is banned at once, so each comes from a
	// new sender.
	for i, raw := range [][]byte{junk.Bytes(), overLimit} {
		a := newStaticTestHost(t, c)
		waitFor(t, "the sender to connect", func() bool { return slices.Contains(c.Peers(), a.ID()) })
		s, err := a.host.NewStream(ctxT(t), c.PeerID(), a.direct)
		if err != nil {
			t.Fatal(err)
		}
		// C may reset the stream before we finish: write errors are expected.
		if _, err := s.Write(raw); err == nil {
			_ = s.CloseWrite()
		}
		if _, err := io.ReadAll(s); err == nil {
			t.Errorf("stream %d: C closed it cleanly, want a reset", i)
		}
		waitFor(t, "C to count the bad stream and ban its sender", func() bool {
			return c.Stats().DirectRejected == uint64(i+1) && c.gate.isBanned(a.PeerID()) && !slices.Contains(c.Peers(), a.ID())
		})
	}
	if n := c.Strikes(a.PeerID()); n != 0 {
		t.Errorf("A has %d strikes at C, want none (the ignored payload is no offence)", n)
	}
	assertEmpty(t, c)
}

// The inbox is bounded by bytes per delivering peer and in total: a peer that floods a slow
// reader loses its excess, and another peer's payloads still get in.
func TestInboxBoundsPerPeer(t *testing.T) {
	const payload = 30 << 10
	cfg := testConfig(t)
	cfg.DisableDHT = true
	cfg.MaxDirectBytes = 32 << 10
	cfg.Inbox = InboxLimits{Messages: 100, Bytes: 80 << 10, PeerBytes: 64 << 10}
	b := joinTest(t, startHost(t, cfg))
	a := newStaticTestHost(t, b)
	c := newStaticTestHost(t, b)
	waitFor(t, "A and C to connect to B", func() bool {
		return slices.Contains(b.Peers(), a.ID()) && slices.Contains(b.Peers(), c.ID())
	})

	// Nobody reads B's inbox meanwhile. One at a time, so the sender's own limits stay out of it.
	const flood = 6
	for i := range flood {
		if !a.SendDirect(b.PeerID(), []byte("ok "+strings.Repeat("a", payload)+string(rune('0'+i)))) {
			t.Fatal("send dropped by the sender")
		}
		waitFor(t, "B to take or drop A's payload", func() bool {
			s := b.Stats()
			return s.Delivered+s.InboxDropped == uint64(i+1)
		})
	}
	if s := b.Stats(); s.Delivered != 2 || s.InboxDropped != flood-2 {
		t.Fatalf("B kept %d and dropped %d of A's payloads, want 2 kept (64 KiB per peer)", s.Delivered, s.InboxDropped)
	}
	if !c.SendDirect(b.PeerID(), []byte("ok from C")) {
		t.Fatal("send dropped by the sender")
	}
	waitFor(t, "B to take C's payload", func() bool { return b.Stats().Delivered == 3 })
	// The total (80 KiB) is nearly full now: a second payload from C is dropped although C's share is not.
	if !c.SendDirect(b.PeerID(), []byte("ok "+strings.Repeat("c", payload))) {
		t.Fatal("send dropped by the sender")
	}
	waitFor(t, "B to drop C's second payload", func() bool { return b.Stats().InboxDropped == flood-1 })

	from := map[peer.ID]int{}
	for range 3 {
		from[receive(t, b).From]++
	}
	if from[a.PeerID()] != 2 || from[c.PeerID()] != 1 {
		t.Errorf("B delivered %v, want 2 from A and 1 from C", from)
	}
	assertEmpty(t, b)
	// Taking payloads out frees their bytes.
	if !a.SendDirect(b.PeerID(), []byte("ok again")) {
		t.Fatal("send dropped by the sender")
	}
	if d := receive(t, b); text(d) != "ok again" {
		t.Fatalf("B received %q, want A's payload after the inbox drained", text(d))
	}
}

// The inbox's bookkeeping without a network: counts, bytes and per-peer bytes are released as
// the pump hands payloads out.
func TestInboxAccounting(t *testing.T) {
	b := newInbox(InboxLimits{Messages: 3, Bytes: 250, PeerBytes: 200})
	p, q := peer.ID("p"), peer.ID("q")
	steps := []struct {
		from peer.ID
		size int
		ok   bool
	}{
		{p, 150, true},
		{p, 60, false}, // p's share would be 210 > 200
		{q, 100, true}, // the total is 250: full
	}
	for i, s := range steps {
		if got := b.put(Delivery{From: s.from, Size: s.size}); got != s.ok {
			t.Fatalf("step %d: put = %v, want %v", i, got, s.ok)
		}
	}
	if b.put(Delivery{From: q, Size: 1}) {
		t.Fatal("put beyond the total")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.pump(ctx) }()
	if d := <-b.out; d.From != p {
		t.Fatalf("first out from %s, want p", d.From)
	}
	waitFor(t, "p's bytes to be released", func() bool { _, bytes, pb := b.usage(p); return bytes == 100 && pb == 0 })
	if !b.put(Delivery{From: p, Size: 150}) {
		t.Fatal("p's share was not released")
	}
	if msgs, bytes, _ := b.usage(q); msgs != 2 || bytes != 250 {
		t.Fatalf("inbox holds %d messages, %d bytes; want 2 and 250", msgs, bytes)
	}
	cancel()
	<-done
}

// A long direct payload meets the head validator first: Ignore and Reject end the stream from
// its first DirectHeadBytes (the validator never sees the payload; only Reject strikes), Accept
// reads the rest and hands the whole payload, intact, to the validator. A short payload skips
// the head validator.
func TestDirectHeadValidator(t *testing.T) {
	c := newStaticTestHost(t)
	a := newStaticTestHost(t, c)
	waitFor(t, "A and C to connect", func() bool { return slices.Contains(c.Peers(), a.ID()) })
	var heads, wholes atomic.Int64
	c.HandleDirectHead(func(_ peer.ID, head []byte, size int) Verdict {
		heads.Add(1)
		if len(head) != DirectHeadBytes || size <= DirectHeadBytes {
			t.Errorf("head validator got %d of %d bytes", len(head), size)
		}
		return testValidatorVerdict(head)
	})
	c.HandleDirect(func(from peer.ID, data []byte) (Verdict, any) {
		wholes.Add(1)
		return testValidator(from, data)
	})
	long := func(prefix string) []byte { return []byte(prefix + strings.Repeat("x", 512<<10)) }

	if !a.SendDirect(c.PeerID(), long("skip")) {
		t.Fatal("send dropped")
	}
	waitFor(t, "C to ignore the long payload from its head", func() bool {
		s := c.Stats()
		return s.DirectHeadRefused == 1 && s.DirectIgnored == 1
	})
	ok := long("ok")
	if !a.SendDirect(c.PeerID(), ok) {
		t.Fatal("send dropped")
	}
	if d := receive(t, c); text(d) != string(ok) {
		t.Fatalf("C received %d bytes, want the %d-byte payload whole", len(text(d)), len(ok))
	}
	if !a.SendDirect(c.PeerID(), []byte("skip short")) {
		t.Fatal("send dropped")
	}
	waitFor(t, "C to ignore the short payload", func() bool { return c.Stats().DirectIgnored == 2 })
	if !a.SendDirect(c.PeerID(), long("bad")) {
		t.Fatal("send dropped")
	}
	waitFor(t, "C to reject the long payload from its head and ban A", func() bool {
		s := c.Stats()
		return s.DirectHeadRefused == 2 && s.DirectRejected == 1 && c.gate.isBanned(a.PeerID())
	})
	if h, w := heads.Load(), wholes.Load(); h != 3 || w != 2 {
		t.Errorf("head validator called %d times, validator %d; want 3 and 2 (none for the payload refused from its head)", h, w)
	}
	assertEmpty(t, c)
}

// testValidatorVerdict is testValidator's verdict alone.
func testValidatorVerdict(data []byte) Verdict {
	v, _ := testValidator("", data)
	return v
}
