package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
)

func testnetCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "testnet", Short: "Create local test networks"}
	var (
		n        int
		dir      string
		basePort int
	)
	initCmd := &cobra.Command{
		Use:   "init --authorities N --dir DIR [--base-port P]",
		Short: "Write an N-authority testnet: DIR/node0 ... DIR/node<N-1>, each a node home on 127.0.0.1",
		Long: `init writes DIR/node0 ... DIR/node<N-1>, each a node home directory (config.toml, genesis.json,
keys/authority.key, keys/p2p.key) sharing one genesis with all N authorities and a licensing
authority whose key is DIR/licensing.key. Node i listens for libp2p on 127.0.0.1 port P+10*i (TCP
and QUIC) and serves its API on port P+10*i+1; every node bootstraps from all the others. DIR must
be empty or absent. Start each node with "medledger node --home DIR/node<i>".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return fmt.Errorf("--dir is required")
			}
			if err := testnet.Init(dir, n, basePort); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(w, "testnet of %d authorities in %s\n", n, abs)
			fmt.Fprintf(w, "node\thome\tp2p (tcp+quic)\tapi\n")
			for i := range n {
				p, a := testnet.Ports(basePort, i)
				fmt.Fprintf(w, "node%d\t%s\t127.0.0.1:%d\t127.0.0.1:%d\n", i, testnet.NodeDir(abs, i), p, a)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "start a node: medledger node --home %s\n", testnet.NodeDir(abs, 0))
			return err
		},
	}
	initCmd.Flags().IntVar(&n, "authorities", 4, "number of authority nodes")
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to create the testnet in (must be empty or absent)")
	initCmd.Flags().IntVar(&basePort, "base-port", node.DefaultP2PPort, "first port; node i uses P+10*i (p2p) and P+10*i+1 (API)")
	cmd.AddCommand(initCmd)
	return cmd
}
