package reactor

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// One strike per junkPerStrike junk payloads within the window; a new window starts afresh.
func TestJunkCounterWindow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	j := newJunkCounter(func() time.Time { return now })
	p := peer.ID("p")
	strikes := 0
	for range 2*junkPerStrike + 1 {
		if j.add(p) {
			strikes++
		}
	}
	if strikes != 2 {
		t.Fatalf("%d strikes for %d junk payloads, want 2", strikes, 2*junkPerStrike+1)
	}
	now = now.Add(junkWindow + time.Second)
	for range junkPerStrike - 1 {
		if j.add(p) {
			t.Fatal("struck before the count in the new window reached the limit")
		}
	}
	if j.add(peer.ID("q")) {
		t.Fatal("another peer's first payload struck")
	}
}
