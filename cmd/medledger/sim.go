package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/testnet/sim"
)

func simCmd() *cobra.Command {
	var n, seeds int
	var first uint64
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the deterministic network simulation for a range of seeds and check every invariant",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var sum sim.Result
			failed := 0
			for seed := first; seed < first+uint64(seeds); seed++ {
				res := sim.Run(sim.DefaultConfig(seed, n))
				sum.Add(res)
				if err := res.Err(); err != nil {
					failed++
					fmt.Fprintln(cmd.ErrOrStderr(), err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "n=%d: %d seeds from %d, %d failed: %s\n", n, seeds, first, failed, sum.Summary())
			if failed > 0 {
				return fmt.Errorf("%d of %d seeds broke an invariant", failed, seeds)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "n", 4, "authorities per network")
	cmd.Flags().IntVar(&seeds, "seeds", 100, "number of seeds")
	cmd.Flags().Uint64Var(&first, "first", 1, "first seed")
	return cmd
}
