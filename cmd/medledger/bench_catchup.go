package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
)

// The catch-up phase of `medledger bench`: a fresh full node joins the running network the way
// a licensed practice does (testnet/procnet/join_test.go) and syncs the whole chain from the
// authorities. The issue wants ≥ 20,000 tx/s of history, or a verified state snapshot so that
// catch-up time does not grow with history.

// catchUpReport is the catch-up phase's outcome (the "catch_up" member of --json).
type catchUpReport struct {
	TargetHeight uint64 `json:"target_height"` // node0's height when the full node started
	HistoryTxs   int64  `json:"history_txs"`   // transactions in blocks 1..target_height
	// Times from the process start: its API answers; it reaches target_height; it is at node0's
	// height of that moment (the head moves on while it syncs).
	APISeconds  float64 `json:"api_seconds"`
	Seconds     float64 `json:"seconds"`
	HeadSeconds float64 `json:"head_seconds"`
	// TxPerSec is history_txs ÷ seconds: start-up, admission and sync together.
	TxPerSec float64 `json:"history_tx_per_sec"`
	// SyncTxPerSec is history_txs ÷ (seconds − api_seconds): the sync alone, without the
	// process's start-up.
	SyncTxPerSec float64 `json:"sync_tx_per_sec"`
	BlocksPerSec float64 `json:"blocks_per_sec"`
	CPUSeconds   float64 `json:"node_cpu_seconds"` // the full node's CPU until target_height
	RSSMB        float64 `json:"rss_mb"`           // VmRSS at target_height
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	Registered   bool    `json:"provider_registered"` // its own registration committed
	Note         string  `json:"note,omitempty"`
}

// catchUpPhase starts a fresh full node and times its sync. It returns the node, still running,
// for the caller to stop (nil if it did not start); failures go into the report's note.
func (b *bencher) catchUpPhase(ctx context.Context, o benchOptions) (*catchUpReport, *fullNode) {
	r := &catchUpReport{}
	home := filepath.Join(b.nw.Dir, "full")
	if err := fullNodeHome(b.nw, home); err != nil {
		r.Note = "no full node: " + err.Error()
		return r, nil
	}
	args := profileArgs(o, "full")
	// Let the follower reach the head first, so the history below the target is known.
	r.TargetHeight = b.height(ctx)
	_ = procnet.WaitFor(ctx, time.Minute, 50*time.Millisecond, "follower at the head", func(context.Context) (bool, error) {
		h, _ := b.followed()
		return h >= r.TargetHeight, nil
	})
	r.HistoryTxs, _ = b.txsUpTo(r.TargetHeight)
	fmt.Fprintf(b.progress, "catch-up: a fresh full node syncs %d blocks (%d transactions)...\n", r.TargetHeight, r.HistoryTxs)
	f, err := startFullNode(b.nw.Bin, home, filepath.Join(b.nw.Dir, "full.log"), args)
	if err != nil {
		r.Note = err.Error()
		return r, nil
	}
	// The timeout grows with history: a slow sync is a figure, not a failure.
	timeout := 5*time.Minute + time.Duration(r.HistoryTxs/1000)*time.Second
	apiUp := false
	var last uint64
	err = procnet.WaitFor(ctx, timeout, 50*time.Millisecond, "the full node at the target height", func(ctx context.Context) (bool, error) {
		if f.exited() {
			return false, procnet.Permanent(fmt.Errorf("the full node exited (%v); see %s", f.err, filepath.Join(b.nw.Dir, "full.log")))
		}
		st, err := f.status(ctx)
		if err != nil {
			return false, err
		}
		if !apiUp {
			apiUp, r.APISeconds = true, time.Since(f.start).Seconds()
		}
		last, r.Registered = st.Height, st.ProviderRegistered
		return st.Height >= r.TargetHeight, nil
	})
	r.Seconds = time.Since(f.start).Seconds()
	if u, uerr := procnet.ReadUsage(f.cmd.Process.Pid); uerr == nil {
		r.CPUSeconds, r.RSSMB, r.PeakRSSMB = u.CPU.Seconds(), bytesToMB(u.RSS), bytesToMB(u.PeakRSS)
	}
	if err != nil {
		r.Note = joinNote(r.Note, fmt.Sprintf("%s (reached height %d)", trimLog(err.Error()), last))
		return r, f
	}
	if r.Seconds > 0 {
		r.TxPerSec = float64(r.HistoryTxs) / r.Seconds
		r.BlocksPerSec = float64(r.TargetHeight) / r.Seconds
	}
	if d := r.Seconds - r.APISeconds; d > 0 {
		r.SyncTxPerSec = float64(r.HistoryTxs) / d
	}
	err = procnet.WaitFor(ctx, time.Minute, 50*time.Millisecond, "the full node at the head", func(ctx context.Context) (bool, error) {
		st, err := f.status(ctx)
		if err != nil {
			return false, err
		}
		r.Registered = st.ProviderRegistered
		return st.Height >= b.height(ctx), nil
	})
	r.HeadSeconds = time.Since(f.start).Seconds()
	if err != nil {
		r.Note = joinNote(r.Note, trimLog(err.Error()))
	}
	fmt.Fprintf(b.progress, "  API after %.2f s, height %d after %.2f s (%.0f tx/s of history, %.0f after the API was up; %.1f blocks/s), at the head after %.2f s %s\n",
		r.APISeconds, r.TargetHeight, r.Seconds, r.TxPerSec, r.SyncTxPerSec, r.BlocksPerSec, r.HeadSeconds, r.Note)
	return r, f
}

// fullNodeHome writes a full node's home (no authority key) for a practice that is not in
// genesis: the network's genesis, a fresh provider key, a licence from the testnet's licensing
// authority naming its own libp2p key (its ticket in), and node0 as bootstrap peer. As
// newPracticeHome in testnet/procnet/join_test.go.
func fullNodeHome(nw *procnet.Network, home string) error {
	_, err := memberHome{Name: "bench-full", Role: chain.RoleProvider, IssuerKey: testnet.LicensingKeyFile(nw.Dir), Number: "BENCH-FULL-1"}.write(nw, home)
	return err
}

// fullNode is a node process outside the procnet network (which numbers its authorities only).
type fullNode struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	start  time.Time
	home   string
	api    string
	client *http.Client
}

func startFullNode(bin, home, logPath string, args []string) (*fullNode, error) {
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, append([]string{"node", "--home", home, "--log-level", "warn"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procnet.ChildProcAttr()
	f := &fullNode{cmd: cmd, done: make(chan struct{}), home: home, api: "http://" + cfg.API.Listen,
		client: &http.Client{Timeout: 5 * time.Second}}
	f.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the full node: %w", err)
	}
	go func() {
		f.err = cmd.Wait()
		close(f.done)
	}()
	return f, nil
}

func (f *fullNode) exited() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the node's process group (so a profile is written) and waits; after
// 20 s it kills it.
func (f *fullNode) stop() error {
	if f.exited() {
		return nil
	}
	_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-f.done:
		if f.err != nil {
			return fmt.Errorf("the full node exited after SIGTERM: %w", f.err)
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		<-f.done
		return fmt.Errorf("the full node did not exit within 20 s of SIGTERM; killed")
	}
}

type fullStatus struct {
	Height             uint64 `json:"height"`
	ProviderRegistered bool   `json:"provider_registered"`
}

// status asks the full node's API for its height (the token exists once the node has started).
func (f *fullNode) status(ctx context.Context) (*fullStatus, error) {
	tok, err := os.ReadFile(filepath.Join(f.home, "api.token"))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.api+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("full node /v1/status: %s", resp.Status)
	}
	var st fullStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}
