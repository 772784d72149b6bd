package p2p

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestScoreParamsValid(t *testing.T) {
	// pubsub validates the parameters when a host starts; this checks the arithmetic the
	// thresholds' comment promises.
	_, th := scoreParams(func(peer.ID) float64 { return 0 })
	tp := topicScoreParams()
	p4 := func(n float64) float64 { return tp.InvalidMessageDeliveriesWeight * n * n }
	if !(p4(3) < th.GossipThreshold && p4(4) < th.PublishThreshold && p4(5) < th.GraylistThreshold && p4(2) > th.GossipThreshold) {
		t.Errorf("invalid-message penalties %v..%v do not cross the thresholds as documented", p4(2), p4(5))
	}
	if tp.MeshMessageDeliveriesWeight != 0 || tp.MeshFailurePenaltyWeight != 0 {
		t.Error("mesh delivery penalties are on")
	}
	if strikeLimit*appStrikeWeight > th.PublishThreshold {
		t.Errorf("a banned peer's strikes (%v) stay above the publish threshold", strikeLimit*appStrikeWeight)
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

// p2p carries bytes and peer ids: it must not link the replica, the store or Badger.
func TestDependenciesStayLow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/consensus", "/chain/store", "/chain/state", "dgraph-io/badger"} {
			if strings.Contains(dep, bad) {
				t.Errorf("p2p depends on %s", dep)
			}
		}
	}
}
