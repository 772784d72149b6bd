package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func blockCmd() *cobra.Command {
	var home string
	cmd := &cobra.Command{
		Use:   "block --home HOME HEIGHT",
		Short: "Print the finalized block at HEIGHT as JSON (header fields, hash, transactions, commit signers)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || h == 0 {
				return fmt.Errorf("HEIGHT %q: want a positive integer", args[0])
			}
			return printAPI(cmd, home, "/v1/blocks/"+strconv.FormatUint(h, 10))
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory (its API address and token are read from it)")
	return cmd
}
