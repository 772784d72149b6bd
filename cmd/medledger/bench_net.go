package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet/procnet"
)

// The bench's load is patient enrolments (fresh keys, nonce 1), far more than a network admits
// by default: a provider enrols at most 500 patients a day (params.enrolments_per_window), and a
// node keeps at most 256 pending registrations by signers the ledger does not know yet. The
// bench network lifts both, in its own genesis and node configs, so that the load measures the
// ledger rather than those policies.
const (
	benchEnrolmentsPerWindow = 1 << 30
	benchMaxRegistrations    = 20_000
)

// startBenchNetwork initialises the bench's network, tunes it (the enrolment limits above; with
// --record-replicas ≥ 1 the genesis params.replicas: the network decides how many nodes hold a
// record, not each node), starts every node and waits for the first block.
func startBenchNetwork(ctx context.Context, w io.Writer, o benchOptions) (*procnet.Network, error) {
	if o.n < 1 {
		return nil, fmt.Errorf("--authorities must be at least 1")
	}
	if o.recordReplicas >= 0 && (o.recordReplicas < 1 || o.recordReplicas > chain.MaxReplicas) {
		return nil, fmt.Errorf("--record-replicas must be 1..%d (or -1 for the genesis default %d)", chain.MaxReplicas, chain.DefaultReplicas)
	}
	bin, err := selfBinary()
	if err != nil {
		return nil, err
	}
	dir, basePort := o.dir, o.basePort
	if dir == "" {
		if dir, err = os.MkdirTemp("", "medledger-net-"); err != nil {
			return nil, err
		}
	}
	if basePort == 0 {
		if basePort, err = procnet.FreeBasePort(o.n); err != nil {
			return nil, err
		}
	}
	nw, err := procnet.Init(ctx, bin, dir, o.n, basePort)
	if err != nil {
		return nil, err
	}
	nw.LogLevel = "warn"
	if nw.Args, err = benchNodeArgs(o); err != nil {
		return nw, err
	}
	for i := range o.n {
		if err := tuneBenchHome(nw.Home(i), o.recordReplicas); err != nil {
			return nil, err
		}
		if err := nw.Start(i); err != nil {
			return nw, err
		}
	}
	replicas := "default"
	if o.recordReplicas >= 0 {
		replicas = fmt.Sprint(o.recordReplicas)
	}
	fmt.Fprintf(w, "started %d node processes in %s (genesis params.replicas %s; logs: %s)\n", o.n, dir, replicas, filepath.Join(dir, "node<i>.log"))
	for i := range o.n {
		if _, err := nw.WaitHeight(ctx, i, 1, 2*time.Minute); err != nil {
			return nw, err
		}
	}
	return nw, nil
}

// tuneBenchHome edits a node home before its first start: the genesis enrolment limit and
// replicas (every node gets the same genesis), and the node's registration quota.
func tuneBenchHome(home string, replicas int) error {
	path := filepath.Join(home, "genesis.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	g, err := chain.ParseGenesisJSON(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	g.Params.EnrolmentsPerWindow = benchEnrolmentsPerWindow
	if replicas >= 0 {
		g.Params.Replicas = uint32(replicas)
	}
	if err := os.WriteFile(path, g.JSON(), 0o644); err != nil {
		return err
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return err
	}
	cfg.Mempool.MaxRegistrations = benchMaxRegistrations
	return os.WriteFile(filepath.Join(home, "config.toml"), node.FormatConfig(*cfg), 0o644)
}

// replicationWait bounds the wait for the import's replicas.
const replicationWait = 10 * time.Minute

// replicaBlobs counts the ciphertext files on every node but node0.
func (rb *recBench) replicaBlobs() int {
	total := 0
	for i := 1; i < rb.nw.N; i++ {
		d, err := os.Open(filepath.Join(rb.nw.Home(i), "blobs", "blobs"))
		if err != nil {
			continue
		}
		names, _ := d.Readdirnames(-1)
		_ = d.Close()
		for _, name := range names {
			if !strings.HasPrefix(name, ".") {
				total++
			}
		}
	}
	return total
}
