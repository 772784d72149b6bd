package main

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

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
		o        testnet.Options
		d        testnet.DockerOptions
		docker   bool
	)
	initCmd := &cobra.Command{
		Use:   "init --authorities N --dir DIR [--base-port P] [--full-nodes F] [--starting-ip IP | --hostname-prefix NAME] [--docker]",
		Short: "Write an N-authority testnet: DIR/node0 ... DIR/node<N-1>, each a node home on 127.0.0.1",
		Long: `init writes DIR/node0 ... DIR/node<N-1>, each a node home directory (config.toml, genesis.json,
keys/authority.key, keys/p2p.key) sharing one genesis with all N authorities, a licensing
authority whose key is DIR/licensing.key and a payers' registry (the issuer of payer licences)
whose key is DIR/payers.key. Node i listens for libp2p on 127.0.0.1 port P+10*i (TCP
and QUIC) and serves its API on port P+10*i+1; every node bootstraps from all the others. DIR must
be empty or absent. Start each node with "medledger node --home DIR/node<i>".

--full-nodes F adds F practice full nodes (node<N> …): licensed providers registered by genesis
that hold no authority key. --starting-ip IP gives node i the address IP+i (it listens and is
reached there) and --hostname-prefix NAME the name NAME<i> instead of 127.0.0.1, for containers.
--docker also writes DIR/docker-compose.yml and DIR/Dockerfile (a FROM scratch image of a static
binary DIR/medledger, which you build with CGO_ENABLED=0; see "make testnet-docker").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			o.Authorities, o.BasePort = n, basePort
			if docker && o.TestClock {
				return usagef("--test-clock is for testnets on this machine: not with --docker")
			}
			if docker && o.StartingIP == "" && o.HostnamePrefix == "" {
				return fmt.Errorf("--docker needs --starting-ip or --hostname-prefix (each container has its own 127.0.0.1)")
			}
			if err := testnet.InitWith(dir, o); err != nil {
				return err
			}
			if docker {
				if err := testnet.WriteDocker(dir, o, d); err != nil {
					return err
				}
			}
			total := n + o.FullNodes
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			abs, _ := filepath.Abs(dir)
			fmt.Fprintf(w, "testnet of %d authorities and %d full nodes in %s\n", n, o.FullNodes, abs)
			fmt.Fprintf(w, "node\trole\thome\tp2p (tcp+quic)\tapi (its own loopback)\n")
			for i := range total {
				p, a := testnet.Ports(basePort, i)
				host, err := o.Host(i)
				if err != nil {
					return err
				}
				role := "authority"
				if i >= n {
					role = "full node"
				}
				fmt.Fprintf(w, "node%d\t%s\t%s\t%s:%d\t127.0.0.1:%d\n", i, role, testnet.NodeDir(abs, i), host, p, a)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if docker {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "docker: %s and %s written; put a static binary at %s, then: docker build -t %s %s && docker-compose -f %s up -d\n",
					testnet.ComposeFile, testnet.DockerfileName, filepath.Join(abs, testnet.ImageBinary), d.Image, abs, filepath.Join(abs, testnet.ComposeFile))
				if err != nil {
					return err
				}
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "start a node: medledger node --home %s\n"+
				"licensing authority key: %s (it signs practices' licences: medledger licence issue --key %s --for-node HOME --out FILE)\n"+
				"payers' registry key: %s (it signs payers' licences: medledger licence issue --role payer --key %s --for-node HOME --out FILE)\n",
				testnet.NodeDir(abs, 0), testnet.LicensingKeyFile(abs), testnet.LicensingKeyFile(abs), testnet.PayersKeyFile(abs), testnet.PayersKeyFile(abs))
			return err
		},
	}
	initCmd.Flags().IntVar(&n, "authorities", 4, "number of authority nodes")
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to create the testnet in (must be empty or absent)")
	initCmd.Flags().IntVar(&basePort, "base-port", node.DefaultP2PPort, "first port; node i uses P+10*i (p2p) and P+10*i+1 (API)")
	initCmd.Flags().IntVar(&o.FullNodes, "full-nodes", 0, "number of practice full nodes (registered providers without an authority key) after the authorities")
	initCmd.Flags().StringVar(&o.StartingIP, "starting-ip", "", "IPv4 address of node0; node i gets the i-th next address (instead of 127.0.0.1)")
	initCmd.Flags().StringVar(&o.HostnamePrefix, "hostname-prefix", "", "name node i NAME<i> and listen on every interface (instead of 127.0.0.1)")
	initCmd.Flags().BoolVar(&o.TestClock, "test-clock", false, "let \"medledger testnet clock\" drive block time forward (DIR/clock-offset; for tests of billing periods)")
	initCmd.Flags().BoolVar(&docker, "docker", false, "also write docker-compose.yml and a FROM scratch Dockerfile")
	initCmd.Flags().StringVar(&d.Image, "image", "medledger-testnet:local", "with --docker: the image the compose services run")
	initCmd.Flags().StringVar(&d.Subnet, "subnet", "", "with --docker and --starting-ip: the network's subnet (default: the starting IP's /24)")
	initCmd.Flags().StringVar(&d.User, "docker-user", "", "with --docker: run the nodes as UID:GID (default root), so their files in DIR are yours")
	cmd.AddCommand(initCmd, testnetClockCmd())
	return cmd
}

// testnetClockCmd moves a --test-clock testnet's block time forward.
func testnetClockCmd() *cobra.Command {
	var (
		dir     string
		advance time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "clock --dir DIR [--advance DURATION]",
		Short: "Show or drive forward the block time of a testnet made with --test-clock",
		Long: `clock prints how far the testnet in DIR runs ahead of the wall clock (DIR/clock-offset), and with
--advance moves it further: every node re-reads the file within 100 ms and proposes and accepts
block times that far ahead, so a test can run months of memberships and invoices in minutes.
The offset only grows. Only chains made by "testnet init" accept a clock offset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			if advance < 0 {
				return usagef("--advance %s: the clock only moves forward", advance)
			}
			file := testnet.ClockFile(dir)
			if _, err := os.Stat(file); err != nil {
				return fmt.Errorf("%s: not a testnet made with --test-clock (%w)", dir, err)
			}
			d, err := node.ReadClockOffset(file)
			if err != nil {
				return err
			}
			if advance > 0 {
				d += advance
				if err := node.WriteClockOffset(file, d); err != nil {
					return err
				}
			}
			if asJSON {
				return printJSON(cmd, map[string]any{"offset": d.String(), "offset_ms": d.Milliseconds(), "block_time_now": time.Now().Add(d).UTC().Format(time.RFC3339)})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "testnet clock runs %s ahead: block time now about %s\n", d, time.Now().Add(d).UTC().Format(time.RFC3339))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the testnet directory (from testnet init --test-clock)")
	cmd.Flags().DurationVar(&advance, "advance", 0, "move the clock forward by this much (such as 720h)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}
