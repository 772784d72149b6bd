package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// maxGenesisFileBytes bounds the genesis file init copies.
const maxGenesisFileBytes = 16 << 20

// initAnswer is what init prints with --json.
type initAnswer struct {
	Home        string        `json:"home"`
	ChainID     string        `json:"chain_id"`
	PeerID      string        `json:"peer_id"`
	NodeKey     chain.PubKey  `json:"node_key"`
	ProviderKey chain.PubKey  `json:"provider_key"`
	ProviderID  chain.Address `json:"provider_id"`
	// LicenceRequest is what the licensing authority passes to licence issue --for-node.
	LicenceRequest string `json:"licence_request"`
	API            string `json:"api"`
}

func initCmd() *cobra.Command {
	var (
		home, genesis, name, api string
		bootstrap, listen        []string
		asJSON                   bool
	)
	cmd := &cobra.Command{
		Use:   "init [--home HOME] --genesis FILE --bootstrap MULTIADDR[,...]",
		Short: "Create a full (non-authority) node's home that joins an existing network",
		Long: `init writes a new node home for a practice joining a network: config.toml (a full node, no
authority key, the bootstrap peers), a copy of the network's genesis.json, keys/p2p.key (the
node's libp2p identity), keys/provider.key and keys/encryption.key (the practice's provider
signing and HPKE keys) and api.token. HOME must be empty or absent.

It prints the licence request: the provider key and the node key, which the network's
licensing authority signs with "medledger licence issue --for-node REQUEST". With the licence,
"medledger provider register --home HOME --licence FILE" installs it; "medledger node --home
HOME" then syncs the chain and the practice registers. A payer's node starts the same way: its
licence comes from "medledger licence issue --role payer" and "medledger payer register" installs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				return usagef("--home is required (or set $%s)", homeEnv)
			}
			if genesis == "" {
				return usagef("--genesis is required: the network's genesis.json")
			}
			if len(bootstrap) == 0 {
				return usagef("--bootstrap is required: at least one peer of the network, /ip4/ADDR/tcp/PORT/p2p/PEER_ID")
			}
			for _, b := range bootstrap {
				if err := checkBootstrap(b); err != nil {
					return usageError{err}
				}
			}
			g, err := node.ReadLimited(genesis, maxGenesisFileBytes)
			if err != nil {
				return fmt.Errorf("--genesis: %w", err)
			}
			c := node.DefaultConfig()
			c.Node.Name, c.Node.AuthorityKey = name, ""
			c.P2P.Bootstrap = bootstrap
			if len(listen) > 0 {
				c.P2P.Listen = listen
			}
			c.API.Listen = api
			keys, err := node.CreateHome(home, c, g)
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(home)
			if err != nil {
				abs = home
			}
			ans := initAnswer{
				Home: abs, ChainID: keys.ChainID, PeerID: keys.PeerID, NodeKey: keys.NodeKey,
				ProviderKey: keys.ProviderKey, ProviderID: keys.ProviderID(), LicenceRequest: licenceRequest(keys), API: api,
			}
			if asJSON {
				return printJSON(cmd, ans)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "full node home %s for chain %s\n", ans.Home, ans.ChainID)
			fmt.Fprintf(out, "peer id      %s\nprovider id  %s\napi          http://%s\n", ans.PeerID, ans.ProviderID, ans.API)
			fmt.Fprintf(out, "licence request (give it to the network's licensing authority):\n  %s\n", ans.LicenceRequest)
			fmt.Fprintf(out, "next: medledger licence issue --key LICENSING_KEY --for-node %s --out practice.licence   (licensing authority)\n", ans.LicenceRequest)
			fmt.Fprintf(out, "      medledger provider register --home %s --licence practice.licence\n", ans.Home)
			_, err = fmt.Fprintf(out, "      medledger node --home %s\n", ans.Home)
			return err
		},
	}
	def := node.DefaultConfig()
	cmd.Flags().StringVar(&home, "home", "", "the new home directory (must be empty or absent)")
	cmd.Flags().StringVar(&genesis, "genesis", "", "the network's genesis.json")
	cmd.Flags().StringSliceVar(&bootstrap, "bootstrap", nil, "peers of the network to dial, comma-separated multiaddrs ending in /p2p/PEER_ID")
	cmd.Flags().StringSliceVar(&listen, "listen", nil, fmt.Sprintf("libp2p listen multiaddrs, comma-separated (default %s)", strings.Join(def.P2P.Listen, ",")))
	cmd.Flags().StringVar(&api, "api", def.API.Listen, "the API's loopback address")
	cmd.Flags().StringVar(&name, "name", "practice", "the node's name in logs")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// checkBootstrap checks that s is a multiaddr naming a peer.
func checkBootstrap(s string) error {
	ma, err := multiaddr.NewMultiaddr(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("--bootstrap %q: %w", s, err)
	}
	if _, err := peer.AddrInfoFromP2pAddr(ma); err != nil {
		return fmt.Errorf("--bootstrap %q: want a multiaddr ending in /p2p/PEER_ID: %w", s, err)
	}
	return nil
}

// licenceRequest is the compact form of a home's keys that licence issue --for-node takes:
// PROVIDER_KEY:NODE_KEY in hex. Both are public.
func licenceRequest(k node.HomeKeys) string {
	return k.ProviderKey.String() + ":" + k.NodeKey.String()
}

// parseLicenceRequest reads PROVIDER_KEY:NODE_KEY.
func parseLicenceRequest(s string) (provider, nodeKey chain.PubKey, err error) {
	p, n, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return provider, nodeKey, fmt.Errorf("%q is neither a node home nor a licence request PROVIDER_KEY:NODE_KEY (hex, as medledger init prints it)", s)
	}
	if provider, err = chain.ParsePubKey(p); err != nil {
		return provider, nodeKey, fmt.Errorf("licence request: provider key: %w", err)
	}
	if nodeKey, err = chain.ParsePubKey(n); err != nil {
		return provider, nodeKey, fmt.Errorf("licence request: node key: %w", err)
	}
	return provider, nodeKey, nil
}

// printJSON prints v as one indented JSON document.
func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
