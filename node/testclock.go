package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// A test network's clock can be driven forward: with [node] clock_offset_file set, the node's
// clock (block times it proposes and accepts, the record service's consent checks) is the real
// time plus a duration read from that file, so a test can run a year of memberships in block time
// within minutes (`medledger testnet clock --advance 720h` moves every node of a testnet at once).
// Only a chain created by `testnet init` (its id starts with TestnetChainPrefix) accepts it: on a
// real network block time is the wall clock.

// TestnetChainPrefix starts the chain id of every network `medledger testnet init` creates.
const TestnetChainPrefix = "medledger-testnet-"

// offsetRecheck is how often the offset file is read again: nodes of one testnet see a new
// offset within this long of each other, so a proposal ahead of a node's clock is refused for at
// most a round or two.
const offsetRecheck = 100 * time.Millisecond

// MaxClockOffset bounds the offset a file may give (a decade of block time).
const MaxClockOffset = 10 * 365 * 24 * time.Hour

// offsetClock is time.Now plus the offset in a file. The offset never goes back: block time must
// increase, and a clock set back would stall the chain until real time caught up.
type offsetClock struct {
	path string
	log  *slog.Logger

	mu       sync.Mutex
	offset   time.Duration
	readAt   time.Time
	reported bool // a read error was logged; log the next one only after a good read
}

func newOffsetClock(path string, log *slog.Logger) (*offsetClock, error) {
	c := &offsetClock{path: path, log: log}
	d, err := ReadClockOffset(path)
	if err != nil {
		return nil, err
	}
	c.offset, c.readAt = d, time.Now()
	log.Warn("test clock: block time runs ahead of the wall clock by the offset in the file", "file", path, "offset", d)
	return c, nil
}

// Now is the real time plus the current offset.
func (c *offsetClock) Now() time.Time {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.readAt) >= offsetRecheck {
		c.readAt = now
		d, err := ReadClockOffset(c.path)
		switch {
		case err != nil && !c.reported:
			c.log.Warn("test clock: keeping the last offset", "err", err)
			c.reported = true
		case err == nil:
			c.reported = false
			if d > c.offset {
				c.log.Info("test clock advanced", "offset", d, "by", d-c.offset)
				c.offset = d
			}
		}
	}
	return now.Add(c.offset)
}

// ReadClockOffset reads a clock-offset file: one Go duration ("720h", "0s"); a missing file is
// offset 0.
func ReadClockOffset(path string) (time.Duration, error) {
	b, err := ReadLimited(path, 64)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || d < 0 || d > MaxClockOffset {
		return 0, fmt.Errorf("clock offset file %s: want a duration from 0s to %s, such as 720h", path, MaxClockOffset)
	}
	return d, nil
}

// WriteClockOffset replaces the offset in path atomically (a reader never sees half a file).
func WriteClockOffset(path string, d time.Duration) error {
	if d < 0 || d > MaxClockOffset {
		return fmt.Errorf("clock offset %s: want 0s to %s", d, MaxClockOffset)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// nodeClock is the clock a node runs on: time.Now, or the test clock when the config asks for one
// on a testnet.
func nodeClock(home string, cfg *Config, chainID string, log *slog.Logger) (func() time.Time, error) {
	if cfg.Node.ClockOffsetFile == "" {
		return time.Now, nil
	}
	if !strings.HasPrefix(chainID, TestnetChainPrefix) {
		return nil, fmt.Errorf("node.clock_offset_file is for test networks only: chain %q was not made by testnet init", chainID)
	}
	c, err := newOffsetClock(Resolve(home, cfg.Node.ClockOffsetFile), log)
	if err != nil {
		return nil, err
	}
	return c.Now, nil
}
