package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
)

func keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create and show Ed25519 signing keys"}
	var out string
	newCmd := &cobra.Command{
		Use:   "new --out FILE",
		Short: "Create a signing key and write its seed (hex, mode 0600) to FILE",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			k, err := chain.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(f, hex.EncodeToString(k.Seed())); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return printKey(cmd, k.Public())
		},
	}
	newCmd.Flags().StringVar(&out, "out", "", "file to write the key to (must not exist)")
	showCmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print the public key and ledger address of the key in FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := loadKey(args[0])
			if err != nil {
				return err
			}
			return printKey(cmd, k.Public())
		},
	}
	cmd.AddCommand(newCmd, showCmd)
	return cmd
}

func loadKey(path string) (chain.PrivKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return chain.PrivKey{}, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return chain.PrivKey{}, fmt.Errorf("%s: not a hex key seed: %w", path, err)
	}
	return chain.PrivKeyFromSeed(seed)
}

func printKey(cmd *cobra.Command, pub chain.PubKey) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]string{"public_key": pub.String(), "address": pub.Address().String()})
}
