// Command medledger is MedLedger's single binary: it runs nodes and local networks, drives the
// deterministic simulation, and manages keys.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "medledger:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	var level string
	root := &cobra.Command{
		Use:           "medledger",
		Short:         "MedLedger: a permissioned ledger for sharing medical records with patient consent",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var l slog.Level
			if err := l.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "warn", "log level: debug, info, warn or error")
	root.AddCommand(demoCmd(), simCmd(), keysCmd(), benchCmd())
	root.AddCommand(testnetCmd(), nodeCmd(), statusCmd(), blockCmd())
	root.AddCommand(recordsCmd(), walletCmd())
	return root
}
