package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

func authorityCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "authority", Short: "Propose and vote on changes to the authority set (for an authority's node)"}
	cmd.AddCommand(authorityProposeCmd(), authorityVoteCmd())
	return cmd
}

// proposalAnswer is what authority propose and vote print with --json.
type proposalAnswer struct {
	// Proposal is the proposal id (the proposing transaction's hash), which the other
	// authorities vote for.
	Proposal chain.Hash   `json:"proposal"`
	Action   string       `json:"action"`
	Subject  chain.PubKey `json:"subject"`
	Tx       chain.Hash   `json:"tx"`
	Height   uint64       `json:"height"`
}

// authorityKey reads the home's authority signing key.
func authorityKey(home string) (chain.PrivKey, string, error) {
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return chain.PrivKey{}, "", err
	}
	if cfg.Node.AuthorityKey == "" {
		return chain.PrivKey{}, "", fmt.Errorf("%s is a full node's home (no [node] authority_key): only an authority proposes and votes", home)
	}
	k, err := node.ReadKeyFile(node.Resolve(home, cfg.Node.AuthorityKey))
	if err != nil {
		return chain.PrivKey{}, "", err
	}
	g, err := node.LoadGenesis(node.Home(home).GenesisFile())
	if err != nil {
		return chain.PrivKey{}, "", err
	}
	return k, g.ChainID, nil
}

func authorityProposeCmd() *cobra.Command {
	var (
		home, add, remove, name string
		asJSON                  bool
	)
	cmd := &cobra.Command{
		Use:   "propose [--home HOME] (--add PROVIDER_ID | --remove KEY_OR_PROVIDER_ID) [--name NAME]",
		Short: "Propose adding a registered provider to the authority set, or removing an authority",
		Long: `propose submits, signed with HOME's authority key, a proposal to add the registered provider
PROVIDER_ID as an authority (its provider signing key becomes its authority key) or to remove an
authority, and waits for it to commit. It prints the proposal id: the other authorities vote for
it with "medledger authority vote PROPOSAL_ID"; the proposal counts as its proposer's vote and
passes with more than two thirds of the current authorities. The new authority's node then
signs with its provider key: set [node] authority_key = "keys/provider.key" in its config.toml
(and [store] sync = "every-commit") and restart it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				return usagef("--home is required (or set $%s)", homeEnv)
			}
			if (add == "") == (remove == "") {
				return usagef("give exactly one of --add PROVIDER_ID and --remove KEY_OR_PROVIDER_ID")
			}
			key, chainID, err := authorityKey(home)
			if err != nil {
				return err
			}
			body := &chain.AuthorityPropose{Action: chain.AuthorityAdd}
			target := add
			if remove != "" {
				body.Action, target = chain.AuthorityRemove, remove
			}
			if body.Subject.Key, err = resolveMemberKey(cmd, home, target, remove != ""); err != nil {
				return err
			}
			body.Subject.Name = name
			if err := body.Validate(); err != nil {
				return usageError{err}
			}
			out, err := submitSignedTx(cmd.Context(), home, key, chainID, chain.TxAuthorityPropose, body)
			if err != nil {
				return err
			}
			action := "add"
			if body.Action == chain.AuthorityRemove {
				action = "remove"
			}
			ans := proposalAnswer{Proposal: out.Hash, Action: action, Subject: body.Subject.Key, Tx: out.Hash, Height: out.Height}
			if asJSON {
				return printJSON(cmd, ans)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "proposal %s to %s authority %s committed at height %d\nthe other authorities vote: medledger authority vote --home THEIR_HOME %s\n",
				ans.Proposal, action, ans.Subject, ans.Height, ans.Proposal)
			return err
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "an authority node's home directory")
	cmd.Flags().StringVar(&add, "add", "", "the provider id of a registered provider to add")
	cmd.Flags().StringVar(&remove, "remove", "", "the authority to remove: its public key, or its provider id")
	cmd.Flags().StringVar(&name, "name", "", "the authority's name in the set (shown by medledger status)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// resolveMemberKey turns a provider id into the provider's signing key through the node's
// API; with keyOK, a 64-hex-digit public key is taken as it is.
func resolveMemberKey(cmd *cobra.Command, home, s string, keyOK bool) (chain.PubKey, error) {
	if keyOK {
		if k, err := chain.ParsePubKey(s); err == nil {
			return k, nil
		}
	}
	addr, err := chain.ParseAddress(s)
	if err != nil {
		return chain.PubKey{}, usagef("%q is not a provider id (40 hex digits)", s)
	}
	data, err := apiGet(cmd.Context(), home, "/v1/accounts/"+addr.String())
	if err != nil {
		return chain.PubKey{}, err
	}
	var acct node.AccountJSON
	if err := json.Unmarshal(data, &acct); err != nil {
		return chain.PubKey{}, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	if !acct.Provider || acct.Key == nil {
		return chain.PubKey{}, fmt.Errorf("%s is not a registered provider on this node's ledger (has its registration committed? medledger provider register)", addr)
	}
	return *acct.Key, nil
}

func authorityVoteCmd() *cobra.Command {
	var (
		home   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "vote [--home HOME] PROPOSAL_ID",
		Short: "Vote, with HOME's authority key, for an open authority-set proposal",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				return usagef("--home is required (or set $%s)", homeEnv)
			}
			id, err := chain.ParseHash(args[0])
			if err != nil {
				return usagef("proposal id %q: want 64 hex digits (what authority propose printed)", args[0])
			}
			key, chainID, err := authorityKey(home)
			if err != nil {
				return err
			}
			out, err := submitSignedTx(cmd.Context(), home, key, chainID, chain.TxAuthorityVote, &chain.AuthorityVote{Proposal: id})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, map[string]any{"proposal": id, "tx": out.Hash, "height": out.Height})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "vote for proposal %s committed at height %d\n", id, out.Height)
			return err
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "an authority node's home directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}
