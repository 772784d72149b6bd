// Command medledger is MedLedger's single binary: it runs nodes and local networks, drives the
// deterministic simulation, and manages keys.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "medledger:", err)
		os.Exit(exitCode(err))
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
				return usagef("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
			return nil
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "warn", "log level: debug, info, warn or error")
	root.AddCommand(demoCmd(), simCmd(), keysCmd(), benchCmd())
	root.AddCommand(testnetCmd(), nodeCmd(), statusCmd(), blockCmd())
	root.AddCommand(recordsCmd(), billingCmd(), claimsCmd(), walletCmd(), usersCmd(), loginCmd())
	root.AddCommand(initCmd(), licenceCmd(), providerCmd(), payerCmd(), authorityCmd(), versionCmd())
	finishTree(root, defaultHome(os.Getenv, os.UserHomeDir))
	return root
}

// homeEnv names the environment variable that overrides the default home directory.
const homeEnv = "MEDLEDGER_HOME"

// defaultHome is the home a command uses without --home: $MEDLEDGER_HOME, else ~/.medledger;
// "" when neither can be found (then --home is required).
func defaultHome(getenv func(string) string, userHome func() (string, error)) string {
	if h := getenv(homeEnv); h != "" {
		return h
	}
	dir, err := userHome()
	if err != nil || dir == "" {
		return ""
	}
	return filepath.Join(dir, ".medledger")
}

// finishTree gives every command of the tree the same conventions: flag and argument mistakes
// are usage errors (exit status 2), a command group called without or with an unknown
// subcommand is a usage error rather than a help text and exit 0, and every --home flag
// defaults to home.
func finishTree(cmd *cobra.Command, home string) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q (see %s --help)", args[0], c.CommandPath(), c.CommandPath())
			}
			return nil
		}
		cmd.RunE = func(c *cobra.Command, args []string) error {
			return usagef("%s needs a subcommand (see %s --help)", c.CommandPath(), c.CommandPath())
		}
	} else if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				if errors.As(err, new(usageError)) {
					return err
				}
				return usageError{err}
			}
			return nil
		}
	}
	if f := cmd.Flags().Lookup("home"); f != nil && home != "" && f.DefValue == "" {
		setHomeDefault(f, home)
	}
	for _, c := range cmd.Commands() {
		finishTree(c, home)
	}
}

// setHomeDefault makes home the --home flag's default value, shown in the help.
func setHomeDefault(f *pflag.Flag, home string) {
	if err := f.Value.Set(home); err == nil {
		f.DefValue = home
		f.Changed = false
	}
}
