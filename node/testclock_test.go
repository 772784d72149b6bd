package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOffsetClock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "clock-offset")
	c, err := newOffsetClock(file, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(c.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("no file: the wall clock, got %s off", d)
	}
	set := func(d time.Duration) {
		t.Helper()
		if err := WriteClockOffset(file, d); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.readAt = time.Time{} // read again now rather than after offsetRecheck
		c.mu.Unlock()
	}
	set(720 * time.Hour)
	if d := time.Until(c.Now()); d < 719*time.Hour || d > 721*time.Hour {
		t.Fatalf("offset 720h: clock %s ahead", d)
	}
	set(time.Hour) // the clock never goes back
	if d := time.Until(c.Now()); d < 719*time.Hour {
		t.Fatalf("a smaller offset moved the clock back to %s ahead", d)
	}
	if err := os.WriteFile(file, []byte("next tuesday"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.readAt = time.Time{}
	if d := time.Until(c.Now()); d < 719*time.Hour {
		t.Fatalf("an unreadable file changed the offset: %s ahead", d)
	}
	if _, err := ReadClockOffset(file); err == nil {
		t.Fatal("a file that is not a duration was accepted")
	}
	if err := WriteClockOffset(file, -time.Hour); err == nil {
		t.Fatal("a negative offset was written")
	}
}

func TestClockOffsetOnlyOnTestnets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Node.ClockOffsetFile = "clock-offset"
	log := slog.New(slog.DiscardHandler)
	if _, err := nodeClock(t.TempDir(), &cfg, "regional-net-1", log); err == nil || !strings.Contains(err.Error(), "test networks only") {
		t.Fatalf("a clock offset on a real network: %v", err)
	}
	if _, err := nodeClock(t.TempDir(), &cfg, TestnetChainPrefix+"abc", log); err != nil {
		t.Fatal(err)
	}
	cfg.Node.ClockOffsetFile = ""
	if now, err := nodeClock(t.TempDir(), &cfg, "regional-net-1", log); err != nil || time.Since(now()) > time.Second {
		t.Fatalf("default clock: %v", err)
	}
}
