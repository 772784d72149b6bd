package node

import (
	"errors"
	"testing"
	"time"
)

func TestClientBacklog(t *testing.T) {
	var b clientBacklog
	t0 := time.Unix(1_000_000, 0)

	// An idle chain commits nothing: the floor is allowed.
	b.update(t0, backlogFloor-1)
	if err := b.check(); err != nil {
		t.Fatalf("below the floor: %v", err)
	}
	b.update(t0, backlogFloor)
	if err := b.check(); !errors.Is(err, ErrBacklog) {
		t.Fatalf("at the floor on an idle chain: %v, want ErrBacklog", err)
	}

	// 1,000 tx/s over the window allow 3 s of it.
	for i := range 10 {
		b.committed(t0.Add(time.Duration(i+1)*time.Second), 1000)
	}
	now := t0.Add(10 * time.Second)
	b.update(now, 2999)
	if err := b.check(); err != nil {
		t.Fatalf("2,999 pending at 1,000 tx/s: %v", err)
	}
	b.update(now, 3000)
	if err := b.check(); !errors.Is(err, ErrBacklog) {
		t.Fatalf("3,000 pending at 1,000 tx/s: %v, want ErrBacklog", err)
	}

	// Commits older than the window no longer count, and are forgotten.
	later := now.Add(backlogWindow + time.Second)
	b.committed(later, 0)
	if len(b.commits) != 1 {
		t.Fatalf("kept %d commits, want only the last", len(b.commits))
	}
	b.update(later, 2000)
	if err := b.check(); !errors.Is(err, ErrBacklog) {
		t.Fatalf("after the window: %v, want ErrBacklog (the rate fell to 0)", err)
	}
	if got := submitStatus(b.check()); got != 503 {
		t.Fatalf("status %d, want 503", got)
	}
}
