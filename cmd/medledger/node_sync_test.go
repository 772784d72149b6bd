package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medledger/medledger/node"
)

// scriptedSync answers SyncProgress from a script, one step a call, repeating the last.
type scriptedSync struct {
	mu    sync.Mutex
	steps []node.SyncProgress
	calls int
}

func (s *scriptedSync) SyncProgress(context.Context) (node.SyncProgress, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.steps[min(s.calls, len(s.steps)-1)]
	s.calls++
	return p, nil
}

func (s *scriptedSync) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls > len(s.steps)
}

// Off a terminal, a node behind its peers logs that it syncs and, at the head, that it follows;
// no progress bar is drawn.
func TestReportSyncLogsOffATerminal(t *testing.T) {
	src := &scriptedSync{steps: []node.SyncProgress{
		{Height: 0, Target: 0, Peers: 0},
		{Height: 3, Target: 500, Peers: 1},
		{Height: 250, Target: 520, Peers: 1},
		{Height: 521, Target: 521, Peers: 1},
	}}
	var logBuf, out bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logBuf}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); reportSync(ctx, src, &out, log) }()
	deadline := time.Now().Add(30 * time.Second)
	for !src.done() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	got := logBuf.String()
	mu.Unlock()
	if !strings.Contains(got, `msg=syncing height=3 head=500`) || !strings.Contains(got, `msg="synced: following the head" height=521 blocks_fetched=518`) {
		t.Fatalf("log:\n%s", got)
	}
	if out.Len() != 0 {
		t.Fatalf("drew on a non-terminal: %q", out.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
