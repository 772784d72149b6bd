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
	"github.com/medledger/medledger/testnet/procnet"
)

// startBenchNetwork starts the bench's network like startNetwork; with replicas ≥ 0 it first
// sets the genesis params.replicas of every node's genesis.json (the records phase's
// --record-replicas: the network decides how many nodes hold a record, not each node). With
// --cpuprofile DIR each node i writes a CPU profile to DIR/node<i>.pprof until it stops.
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
	if o.cpuProfileDir != "" {
		if err := os.MkdirAll(o.cpuProfileDir, 0o755); err != nil {
			return nil, err
		}
		nw.Args = map[int][]string{}
	}
	for i := range o.n {
		if o.recordReplicas >= 0 {
			if err := setReplicas(filepath.Join(nw.Home(i), "genesis.json"), o.recordReplicas); err != nil {
				return nil, err
			}
		}
		if o.cpuProfileDir != "" {
			nw.Args[i] = []string{"--cpuprofile", filepath.Join(o.cpuProfileDir, fmt.Sprintf("node%d.pprof", i))}
		}
		if err := nw.Start(i); err != nil {
			return nw, err
		}
	}
	replicas := "the genesis default"
	if o.recordReplicas >= 0 {
		replicas = fmt.Sprint(o.recordReplicas)
	}
	fmt.Fprintf(w, "started %d node processes in %s with genesis params.replicas = %s (logs: %s)\n", o.n, dir, replicas, filepath.Join(dir, "node<i>.log"))
	for i := range o.n {
		if _, err := nw.WaitHeight(ctx, i, 1, 2*time.Minute); err != nil {
			return nw, err
		}
	}
	return nw, nil
}

// setReplicas sets params.replicas in a node's genesis.json (every node gets the same file).
func setReplicas(path string, n int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	g, err := chain.ParseGenesisJSON(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	g.Params.Replicas = uint32(n)
	return os.WriteFile(path, g.JSON(), 0o644)
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
