package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node"
)

func demoCmd() *cobra.Command {
	var (
		authorities int
		dir         string
		duration    time.Duration
		txRate      int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local network of authorities with Badger stores and synthetic providers and patients",
		Long: `demo starts a local MedLedger network in this process: several authorities, each with its own
Badger store, agreeing on blocks by BFT proof-of-authority, while synthetic providers (with
licences from a demo licensing board) and pseudonymous patients register. It prints each node's
height and last block until Ctrl-C or --duration. The nodes talk over an in-process bus; the
libp2p network arrives in the next release.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return runDemo(ctx, cmd.OutOrStdout(), authorities, dir, txRate)
		},
	}
	cmd.Flags().IntVar(&authorities, "authorities", 4, "number of authority nodes")
	cmd.Flags().StringVar(&dir, "dir", "", "data directory (default: a new temporary directory)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: run until Ctrl-C)")
	cmd.Flags().IntVar(&txRate, "tx-rate", 20, "synthetic registrations submitted per second")
	return cmd
}

type demoNode struct {
	name   string
	st     *store.Badger
	runner *node.Runner
	height atomic.Uint64
	last   atomic.Value // chain.Hash
	txs    atomic.Uint64
	// Registrations counted from committed blocks (every transaction in a block succeeded).
	providers, patients atomic.Uint64
}

func runDemo(ctx context.Context, w io.Writer, n int, dir string, txRate int) error {
	if n < 1 {
		return fmt.Errorf("--authorities must be at least 1")
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "medledger-demo-"); err != nil {
			return err
		}
	}
	keys := make([]chain.PrivKey, n)
	var auths []chain.Authority
	for i := range keys {
		k, err := chain.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		keys[i] = k
		auths = append(auths, chain.Authority{Key: k.Public(), Name: "authority-" + strconv.Itoa(i)})
	}
	board, err := chain.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: "medledger-demo", TimeMs: time.Now().UnixMilli(),
		Authorities: auths, LicensingAuthorities: []chain.Authority{{Key: board.Public(), Name: "Demo Medical Board"}},
		Params: chain.DefaultParams(),
	}
	if err := os.WriteFile(filepath.Join(dir, "genesis.json"), g.JSON(), 0o644); err != nil {
		return err
	}
	log := slog.Default()
	bus := node.NewBus(log)
	nodes := make([]*demoNode, n)
	for i := range nodes {
		dn := &demoNode{name: "node" + strconv.Itoa(i)}
		dn.last.Store(chain.Hash{})
		dn.st, err = store.OpenBadger(filepath.Join(dir, dn.name), store.Options{Logger: log})
		if err != nil {
			return err
		}
		defer dn.st.Close()
		key := keys[i]
		rep, err := replica.New(replica.Config{Genesis: g, Key: &key}, dn.st)
		if err != nil {
			return err
		}
		dn.runner = node.NewRunner(rep, bus.Join(replica.PeerID(dn.name)), log, time.Now, func(b *chain.Block) {
			dn.height.Store(b.Header.Height)
			dn.last.Store(b.Hash())
			dn.txs.Add(uint64(len(b.Txs)))
			for _, tx := range b.Txs {
				switch tx.Kind {
				case chain.TxRegisterProvider:
					dn.providers.Add(1)
				case chain.TxRegisterPatient:
					dn.patients.Add(1)
				}
			}
		})
		nodes[i] = dn
	}
	fmt.Fprintf(w, "MedLedger demo: %d authorities on chain %q, data in %s\n", n, g.ChainID, dir)
	fmt.Fprintf(w, "Each node keeps its own Badger store; a block is final once more than 2/3 of authorities precommit it.\n")
	fmt.Fprintf(w, "Synthetic load: %d registrations/s (1 in 5 a licensed provider, the rest pseudonymous patients). Ctrl-C stops.\n\n", txRate)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for _, dn := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dn.runner.Run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", dn.name, err)
				cancel()
			}
		}()
	}
	var submitted, refused atomic.Uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		generateLoad(ctx, g, board, nodes, txRate, &submitted, &refused)
	}()

	start := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			printDemoStatus(ctx, w, nodes, time.Since(start), submitted.Load(), refused.Load())
		}
	}
	wg.Wait()
	close(errs)
	var failures error
	for err := range errs {
		failures = errors.Join(failures, err)
	}
	fmt.Fprintf(w, "\nstopped after %s; final heights:", time.Since(start).Round(time.Second))
	for _, dn := range nodes {
		fmt.Fprintf(w, " %s=%d", dn.name, dn.height.Load())
	}
	fmt.Fprintf(w, "\ndata kept in %s\n", dir)
	return failures
}

func printDemoStatus(ctx context.Context, w io.Writer, nodes []*demoNode, up time.Duration, submitted, refused uint64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "[%s]\tnode\theight\tlast block\ttxs committed\tmempool\tproviders\tpatients\n", up.Round(time.Second))
	for _, dn := range nodes {
		mempool := -1
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = dn.runner.Query(qctx, func(r *replica.Replica) { mempool = r.Mempool().Len() })
		cancel()
		last := dn.last.Load().(chain.Hash)
		fmt.Fprintf(tw, "\t%s\t%d\t%s\t%d\t%d\t%d\t%d\n", dn.name, dn.height.Load(), last.Short(), dn.txs.Load(), mempool, dn.providers.Load(), dn.patients.Load())
	}
	tw.Flush()
	fmt.Fprintf(w, "  submitted %d registrations (%d refused)\n\n", submitted, refused)
}

// generateLoad registers synthetic providers and patients through random nodes.
func generateLoad(ctx context.Context, g *chain.Genesis, board chain.PrivKey, nodes []*demoNode, perSecond int, submitted, refused *atomic.Uint64) {
	if perSecond <= 0 {
		return
	}
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k, err := chain.GenerateKey(rand.Reader)
		if err != nil {
			return
		}
		enc := make([]byte, 32) // stands in for an HPKE public key until records arrive
		_, _ = rand.Read(enc)
		var tx *chain.Tx
		if i%5 == 0 {
			lic := chain.Licence{Subject: k.Public(), Number: fmt.Sprintf("DEMO-%06d", i), Jurisdiction: "DEMO", NotAfter: time.Now().Add(365 * 24 * time.Hour).UnixMilli()}
			lic.Sign(board, g.ChainID)
			tx = chain.NewTx(k, g.ChainID, chain.TxRegisterProvider, 1, &chain.RegisterProvider{Licence: lic, EncryptionKey: enc})
		} else {
			tx = chain.NewTx(k, g.ChainID, chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: enc})
		}
		dn := nodes[i%len(nodes)]
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := dn.runner.Submit(sctx, tx); err != nil {
			refused.Add(1)
		} else {
			submitted.Add(1)
		}
		cancel()
	}
}
