package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// Registration of an attested member (a provider, a payer): one command shared by the roles'
// command groups, so that a payer joins exactly as a practice does.

func payerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "payer", Short: "Register this node's organisation as a payer (an insurer or another party that pays claims)"}
	cmd.AddCommand(memberRegisterCmd(chain.RolePayer))
	return cmd
}

// registerAnswer is what register prints with --json.
type registerAnswer struct {
	Role     chain.Role    `json:"role"`
	MemberID chain.Address `json:"member_id"`
	// ProviderID repeats MemberID for a provider (the field callers always read); absent otherwise.
	ProviderID *chain.Address `json:"provider_id,omitempty"`
	Licence    string         `json:"licence"`
	Installed  string         `json:"installed"`
	Height     uint64         `json:"height"`
}

// memberRegisterCmd is "register" for role's command group (provider register, payer register).
func memberRegisterCmd(role chain.Role) *cobra.Command {
	var (
		home, licFile string
		timeout       time.Duration
		asJSON        bool
	)
	issuer := "a licensing authority"
	if role != chain.RoleProvider {
		issuer = "an issuer of " + role.String() + " licences"
	}
	cmd := &cobra.Command{
		Use:   "register [--home HOME] --licence FILE",
		Short: fmt.Sprintf("Install the %s licence in HOME and register the %s on the ledger", role, role),
		Long: fmt.Sprintf(`register checks the licence in FILE (from "medledger licence issue --role %[1]s") against HOME: it
must be for role %[1]s, name this home's provider key (the member's signing key) and node key, be
signed by %[2]s of HOME's genesis and be unexpired. It installs it as HOME's licence file
([records] licence, keys/licence.hex), which the node presents to the network's members as its
ticket to sync and register (a running node picks it up within seconds), then submits the
registration through the node's API as its operator and waits until it commits (syncing a long
chain first may take a while: --timeout). It prints the member id. The node must be running;
run it again once it is, if it was not.`, role, issuer),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if home == "" {
				return usagef("--home is required (or set $%s)", homeEnv)
			}
			if licFile == "" {
				return usagef("--licence is required: the licence file from medledger licence issue")
			}
			lic, err := node.ReadLicenceFile(licFile)
			if err != nil {
				return err
			}
			cfg, err := node.LoadConfig(home)
			if err != nil {
				return err
			}
			g, err := node.LoadGenesis(node.Home(home).GenesisFile())
			if err != nil {
				return err
			}
			keys, err := node.LoadOrCreateProviderKeys(node.Resolve(home, cfg.Records.ProviderKey), node.Resolve(home, cfg.Records.EncryptionKey))
			if err != nil {
				return err
			}
			hk, err := node.ReadHomeKeys(home)
			if err != nil {
				return err
			}
			if err := checkLicence(lic, role, g, hk, time.Now()); err != nil {
				return err
			}
			dst := node.Resolve(home, cfg.Records.Licence)
			if err := installLicence(dst, lic); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ans := registerAnswer{Role: role, MemberID: hk.ProviderID(), Licence: lic.Number, Installed: dst}
			if role == chain.RoleProvider {
				ans.ProviderID = &ans.MemberID
			}
			body := &chain.RegisterMember{Licence: *lic, EncryptionKey: keys.Encryption.Public().Bytes()}
			if ans.Height, err = registerMember(ctx, home, keys.Signing, g.ChainID, body); err != nil {
				return fmt.Errorf("licence installed as %s, but %w", dst, err)
			}
			if asJSON {
				return printJSON(cmd, ans)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s registered (licence %s)\n", role, ans.MemberID, ans.Licence)
			return err
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory")
	cmd.Flags().StringVar(&licFile, "licence", "", "the licence file (from medledger licence issue)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the node to sync and the registration to commit")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// checkLicence checks what the network will check, so that a wrong licence is refused here
// with a reason rather than by silence from the network.
func checkLicence(lic *chain.Licence, role chain.Role, g *chain.Genesis, hk node.HomeKeys, now time.Time) error {
	switch {
	case lic.Role != role:
		return fmt.Errorf("licence %q is for role %s, not %s", lic.Number, lic.Role, role)
	case lic.Subject != hk.ProviderKey:
		return fmt.Errorf("licence %q is for provider key %s; this home's provider key is %s", lic.Number, lic.Subject.Short(), hk.ProviderKey.Short())
	case lic.NodeKey != hk.NodeKey:
		return fmt.Errorf("licence %q names node key %s; this home's node key is %s", lic.Number, lic.NodeKey.Short(), hk.NodeKey.Short())
	case !isIssuerOf(g, role, lic.Issuer):
		return fmt.Errorf("licence %q is signed by %s, %s of chain %s (%s)", lic.Number, lic.Issuer.Short(), notIssuerOf(role), g.ChainID, issuerNames(g))
	case lic.NotAfter <= now.UnixMilli():
		return fmt.Errorf("licence %q expired at %s", lic.Number, node.FormatTime(lic.NotAfter))
	}
	if err := lic.VerifySig(g.ChainID); err != nil {
		return fmt.Errorf("licence %q is not valid for chain %s: %w", lic.Number, g.ChainID, err)
	}
	return nil
}

// installLicence writes lic to dst (hex, mode 0600), replacing an older licence (a renewal)
// atomically; an identical one is left alone.
func installLicence(dst string, lic *chain.Licence) error {
	want := []byte(hex.EncodeToString(chain.Encode(lic)) + "\n")
	if have, err := os.ReadFile(dst); err == nil && bytes.Equal(bytes.TrimSpace(have), bytes.TrimSpace(want)) {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	tmp := dst + ".new"
	_ = os.Remove(tmp)
	if err := node.WriteLicenceFile(tmp, lic); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// registerMember submits the registration through the node's API and waits until the node's
// status shows its member registered in the licence's role. The node registers itself from
// the installed licence too, so a submission refused as a duplicate, or dropped because the
// other one committed, is not an error: the status decides. It returns the node's height once
// registered.
// refusedGrace is how long a registration the ledger refused waits for the node's status to show
// the member registered anyway (by the node's own registration) before the refusal is final.
const refusedGrace = 5 * time.Second

func registerMember(ctx context.Context, home string, key chain.PrivKey, chainID string, body *chain.RegisterMember) (uint64, error) {
	role := body.Licence.Role
	registered := func(st node.StatusJSON) bool { return st.Role != nil && *st.Role == role }
	// A node started a moment ago opens its API after its store and host: wait a little.
	st, err := nodeStatus(ctx, home)
	for wait := time.Now().Add(apiStartWait); err != nil && time.Now().Before(wait) && ctx.Err() == nil; {
		time.Sleep(registerPoll)
		st, err = nodeStatus(ctx, home)
	}
	if err != nil {
		return 0, fmt.Errorf("%w; the node registers itself from the installed licence once it runs: start it (medledger node --home HOME), then run %s register again to wait for the registration", err, role)
	}
	if st.ChainID != chainID {
		return 0, fmt.Errorf("the node at HOME runs chain %s, its genesis.json names %s", st.ChainID, chainID)
	}
	if registered(st) {
		return st.Height, nil
	}
	submitted := false
	var refused error
	var refusedAt time.Time
	for {
		// Not before the node holds a block: until the members let it in, nothing it gossips
		// is relayed, and a lost registration would hold the signer's only valid nonce.
		if !submitted && st.Height > 0 {
			err := submitSigned(ctx, home, key, chainID, chain.TxRegisterMember, body)
			switch {
			case err == nil:
				submitted = true
			case refusedByLedger(err):
				// The node's own registration from the same licence may have committed first
				// ("already registered"): the status, a moment later, decides.
				submitted, refused, refusedAt = true, err, time.Now()
			}
			// Other failures (a duplicate of the node's own registration, a full mempool, a
			// wait cut short while the node syncs): the status below decides; retry later.
		}
		if next, err := nodeStatus(ctx, home); err == nil {
			if st = next; registered(st) {
				return st.Height, nil
			}
		}
		if refused != nil && time.Since(refusedAt) > refusedGrace {
			return 0, fmt.Errorf("the registration was refused: %w", refused)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the registration did not commit in time (the node is at height %d; is it connected? see its log)", st.Height)
		case <-time.After(registerPoll):
		}
	}
}
