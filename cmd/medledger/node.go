package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/node"
)

func nodeCmd() *cobra.Command {
	var home, cpuProfile, memProfile string
	cmd := &cobra.Command{
		Use:   "node --home HOME",
		Short: "Run a node in the foreground until SIGINT or SIGTERM",
		Long: `node runs the MedLedger node whose home directory is HOME (config.toml, genesis.json, keys/,
data/, api.token; see "medledger init" and "medledger testnet init"). A node behind its peers
syncs to their head first, with a progress bar when standard error is a terminal and a log
line every 10 s otherwise, then follows the chain. It logs with the [log] settings of config.toml
(--log-level overrides the level), serves the HTTP API on [api] listen, and on SIGINT or SIGTERM
stops the API, the replica, the libp2p host and the store in that order and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				return usagef("--home is required (or set $%s)", homeEnv)
			}
			cfg, err := node.LoadConfig(home)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("log-level") {
				cfg.Log.Level = cmd.Flag("log-level").Value.String()
			}
			h, err := cfg.Log.Handler(os.Stderr)
			if err != nil {
				return err
			}
			log := slog.New(h)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := node.Open(home, log)
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer func() {
					pprof.StopCPUProfile()
					if err := f.Close(); err != nil {
						log.Error("cpu profile", "err", err)
					}
				}()
			}
			runCtx := ctx
			if memProfile != "" {
				// The profile is taken when the signal arrives, before the node closes its
				// stores and caches, so that it shows what a running node holds.
				var cancel context.CancelFunc
				runCtx, cancel = context.WithCancel(context.Background())
				defer cancel()
				go func() {
					<-ctx.Done()
					if err := writeHeapProfile(memProfile); err != nil {
						log.Error("heap profile", "err", err)
					}
					cancel()
				}()
			}
			repCtx, stopReport := context.WithCancel(ctx)
			defer stopReport()
			go reportSync(repCtx, n, os.Stderr, log)
			return n.Run(runCtx)
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to this file until the node stops (diagnostics)")
	cmd.Flags().StringVar(&memProfile, "memprofile", "", "write a heap profile (live objects, after a GC) to this file when the node is told to stop, before it closes anything (diagnostics)")
	return cmd
}

// writeHeapProfile writes the live heap (after a collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
