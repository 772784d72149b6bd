package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/medledger/medledger/node"
)

// Sync reporting: how often the node's height is compared with its peers', how often a
// non-terminal log gets a line while behind, and how far behind counts as syncing (a node
// one block behind is merely following).
const (
	syncPoll     = 500 * time.Millisecond
	syncLogEvery = 10 * time.Second
	syncBehind   = 2
)

// syncSource is what reportSync watches (node.Node).
type syncSource interface {
	SyncProgress(ctx context.Context) (node.SyncProgress, error)
}

// reportSync shows the node's catch-up to the head its peers show: a progress bar when w is a
// terminal, else a log line every syncLogEvery, and a line when it reaches the head. It runs
// until ctx ends; a node that falls behind again (after a sleep) is reported again.
func reportSync(ctx context.Context, src syncSource, w io.Writer, log *slog.Logger) {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	t := time.NewTicker(syncPoll)
	defer t.Stop()
	var (
		bar     *progressbar.ProgressBar
		syncing bool
		start   uint64
		lastLog time.Time
	)
	for {
		select {
		case <-ctx.Done():
			if bar != nil {
				_ = bar.Exit()
			}
			return
		case <-t.C:
		}
		p, err := src.SyncProgress(ctx)
		if err != nil {
			continue
		}
		switch {
		case !syncing && p.Behind() >= syncBehind:
			syncing, start, lastLog = true, p.Height, time.Now()
			log.Info("syncing", "height", p.Height, "head", p.Target, "peers", p.Peers)
			if tty {
				bar = newSyncBar(w, p)
			}
		case syncing && p.Behind() < syncBehind:
			syncing = false
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(w)
				bar = nil
			}
			log.Info("synced: following the head", "height", p.Height, "blocks_fetched", p.Height-start)
		case syncing:
			if bar != nil {
				bar.ChangeMax64(int64(p.Target))
				_ = bar.Set64(int64(p.Height))
			} else if time.Since(lastLog) >= syncLogEvery {
				lastLog = time.Now()
				log.Info("syncing", "height", p.Height, "head", p.Target, "behind", p.Behind(), "peers", p.Peers)
			}
		}
	}
}

func newSyncBar(w io.Writer, p node.SyncProgress) *progressbar.ProgressBar {
	bar := progressbar.NewOptions64(int64(p.Target),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("syncing blocks"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("blocks"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(30),
	)
	_ = bar.Set64(int64(p.Height))
	return bar
}
