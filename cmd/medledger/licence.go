package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

func licenceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "licence", Short: "Issue members' licences (for a network's licensing authority or another issuer its genesis names)"}
	cmd.AddCommand(licenceIssueCmd())
	return cmd
}

// licenceAnswer is what licence issue prints with --json.
type licenceAnswer struct {
	Out          string        `json:"out"`
	Role         chain.Role    `json:"role"`
	MemberID     chain.Address `json:"member_id"`
	Number       string        `json:"number"`
	Jurisdiction string        `json:"jurisdiction"`
	// ProviderKey and ProviderID name the subject (the home's provider key, whatever the role).
	ProviderKey chain.PubKey  `json:"provider_key"`
	ProviderID  chain.Address `json:"provider_id"`
	NodeKey     chain.PubKey  `json:"node_key"`
	Issuer      chain.PubKey  `json:"issuer"`
	NotAfter    string        `json:"not_after"`
	ChainID     string        `json:"chain_id"`
}

func licenceIssueCmd() *cobra.Command {
	var (
		keyFile, forNode, out, genesis, number, jurisdiction, validFor, roleName string
		asJSON                                                                   bool
	)
	cmd := &cobra.Command{
		Use:   "issue [--role provider|payer|...] --key FILE --for-node HOME_OR_REQUEST --out FILE",
		Short: "Sign a member's licence binding its signing key to its node key",
		Long: `issue signs, with the licensing-authority key in FILE (a hex Ed25519 seed: "medledger testnet
init" writes the testnet's as DIR/licensing.key), a provider licence for a practice: its
subject is the practice's provider key and its node key the practice node's libp2p identity.
--for-node is the practice's node home, or the licence request "PROVIDER_KEY:NODE_KEY" that
"medledger init" printed (then --genesis names the network's genesis.json, for its chain id).
The licence is written to --out (hex, mode 0600; it must not exist) for the practice's
"medledger provider register --licence FILE". The key must be a licensing authority that the
network's genesis names, or the network refuses the licence.

--role names the member's role (default provider). A payer (an insurer or another party that
pays claims) and the other attested roles are licensed by the issuers genesis names for that
role (attestation_issuers): "testnet init" writes the testnet payers' registry's key as
DIR/payers.key. The subject is still the home's keys/provider.key (the member's signing key),
and the payer registers with "medledger payer register --licence FILE".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case keyFile == "":
				return usagef("--key is required: the licensing authority's key file")
			case forNode == "":
				return usagef("--for-node is required: the practice's home or its licence request")
			case out == "":
				return usagef("--out is required: where to write the licence")
			}
			role, err := chain.ParseRole(roleName)
			if err != nil || !role.Attested() {
				return usagef("--role %q: want one of %s", roleName, attestedRoleNames())
			}
			valid, err := parseExpiry(validFor)
			if err != nil {
				return usagef("--valid-for %q: want a positive duration such as 365d or 12h", validFor)
			}
			issuer, err := node.ReadKeyFile(keyFile)
			if err != nil {
				return err
			}
			provider, nodeKey, chainGenesis, err := licenceSubject(forNode, genesis)
			if err != nil {
				return err
			}
			g, err := node.LoadGenesis(chainGenesis)
			if err != nil {
				return err
			}
			if !isIssuerOf(g, role, issuer.Public()) {
				return fmt.Errorf("the key in %s (%s) is %s of chain %s: its genesis names %s", keyFile, issuer.Public().Short(), notIssuerOf(role), g.ChainID, issuerNames(g))
			}
			if number == "" {
				number = "LIC-" + strings.ToUpper(provider.Address().String()[:12])
			}
			lic := chain.Licence{
				Role: role, Subject: provider, NodeKey: nodeKey, Number: number, Jurisdiction: jurisdiction,
				NotAfter: time.Now().Add(valid).UnixMilli(),
			}
			lic.Sign(issuer, g.ChainID)
			if err := lic.Validate(); err != nil {
				return err
			}
			if err := node.WriteLicenceFile(out, &lic); err != nil {
				return err
			}
			ans := licenceAnswer{
				Out: out, Role: role, MemberID: provider.Address(), Number: lic.Number, Jurisdiction: lic.Jurisdiction, ProviderKey: provider, ProviderID: provider.Address(),
				NodeKey: nodeKey, Issuer: lic.Issuer, NotAfter: node.FormatTime(lic.NotAfter), ChainID: g.ChainID,
			}
			if asJSON {
				return printJSON(cmd, ans)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "licence %s for %s %s (node key %s), valid until %s, written to %s\n",
				ans.Number, role, ans.MemberID, nodeKey.Short(), ans.NotAfter, out)
			return err
		},
	}
	cmd.Flags().StringVar(&roleName, "role", chain.RoleProvider.String(), "the member's role: "+attestedRoleNames())
	cmd.Flags().StringVar(&keyFile, "key", "", "the issuer's key file (hex Ed25519 seed): a licensing authority for providers")
	cmd.Flags().StringVar(&forNode, "for-node", "", "the practice's node home, or its licence request PROVIDER_KEY:NODE_KEY")
	cmd.Flags().StringVar(&out, "out", "", "the licence file to write (must not exist)")
	cmd.Flags().StringVar(&genesis, "genesis", "", "the network's genesis.json (default: the one in the --for-node home)")
	cmd.Flags().StringVar(&number, "number", "", "the licence number (default LIC- and the provider id's first 12 hex digits)")
	cmd.Flags().StringVar(&jurisdiction, "jurisdiction", "", "the jurisdiction that licensed the practice")
	cmd.Flags().StringVar(&validFor, "valid-for", "365d", "how long the licence is valid, such as 365d or 12h")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// licenceSubject resolves --for-node (a home, or a licence request) and the genesis file that
// names the chain.
func licenceSubject(forNode, genesis string) (provider, nodeKey chain.PubKey, genesisFile string, err error) {
	if fi, statErr := os.Stat(forNode); statErr == nil && fi.IsDir() {
		if _, err := os.Stat(node.Home(forNode).ConfigFile()); err != nil {
			return provider, nodeKey, "", fmt.Errorf("--for-node %s: not a node home: %w", forNode, err)
		}
		keys, err := node.ReadHomeKeys(forNode)
		if err != nil {
			return provider, nodeKey, "", err
		}
		if genesis == "" {
			genesis = node.Home(forNode).GenesisFile()
		}
		return keys.ProviderKey, keys.NodeKey, genesis, nil
	} else if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return provider, nodeKey, "", statErr
	}
	if provider, nodeKey, err = parseLicenceRequest(forNode); err != nil {
		return provider, nodeKey, "", usageError{fmt.Errorf("--for-node: %w", err)}
	}
	if genesis == "" {
		return provider, nodeKey, "", usagef("--genesis is required with a licence request: the network's genesis.json, for its chain id")
	}
	return provider, nodeKey, genesis, nil
}

// isIssuerOf reports whether genesis names k as an issuer of role's licences: the licensing
// authorities for providers, Genesis.Issuers for the other attested roles (as the ledger and
// the members' admission check).
func isIssuerOf(g *chain.Genesis, role chain.Role, k chain.PubKey) bool {
	for _, a := range issuersOf(g, role) {
		if a.Key == k {
			return true
		}
	}
	return false
}

// issuersOf lists genesis's issuers of role's licences.
func issuersOf(g *chain.Genesis, role chain.Role) []chain.Issuer {
	if role == chain.RoleProvider {
		out := make([]chain.Issuer, 0, len(g.LicensingAuthorities))
		for _, a := range g.LicensingAuthorities {
			out = append(out, chain.Issuer{Role: chain.RoleProvider, Key: a.Key, Name: a.Name})
		}
		return out
	}
	var out []chain.Issuer
	for _, x := range g.Issuers {
		if x.Role == role {
			out = append(out, x)
		}
	}
	return out
}

// notIssuerOf says what a key failed to be, in the words the provider path always used.
func notIssuerOf(role chain.Role) string {
	if role == chain.RoleProvider {
		return "not a licensing authority"
	}
	return "not an issuer of " + role.String() + " licences"
}

// issuerNames lists every issuer genesis names, by role, so that a refused key's owner sees
// which key was meant.
func issuerNames(g *chain.Genesis) string {
	var parts []string
	for r := chain.RolePatient; r.Valid(); r++ {
		if !r.Attested() {
			continue
		}
		var names []string
		for _, a := range issuersOf(g, r) {
			names = append(names, fmt.Sprintf("%q (%s)", a.Name, a.Key.Short()))
		}
		if len(names) > 0 {
			parts = append(parts, "for "+r.String()+" "+strings.Join(names, ", "))
		}
	}
	if len(parts) == 0 {
		return "no issuers"
	}
	return strings.Join(parts, "; ")
}

// attestedRoleNames lists the roles a licence may carry.
func attestedRoleNames() string {
	var names []string
	for r := chain.RolePatient; r.Valid(); r++ {
		if r.Attested() {
			names = append(names, r.String())
		}
	}
	return strings.Join(names, ", ")
}
