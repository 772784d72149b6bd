package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/keystore"
	"github.com/medledger/medledger/wallet/mnemonic"
)

// walletRotateCmd moves the patient to new keys on the ledger: for a device that was lost or may
// be compromised, after restoring the old wallet from its words or shares.
func walletRotateCmd() *cobra.Command {
	var f walletFlags
	var newDir, newPassFile string
	var workFactor int
	cmd := &cobra.Command{
		Use:   "rotate --dir OLD_WALLET --new-dir NEW_WALLET (--home HOME | --peer MULTIADDR --genesis FILE)",
		Short: "Move your patient id to new keys (a new 24-word mnemonic): the old keys can no longer grant, and new records are sealed to the new key",
		Long: `rotate creates a new wallet in NEW_WALLET from a fresh 24-word mnemonic (shown once) and moves your
patient id to its keys on the ledger, with a transaction the old key signs and the new key proves it
holds. Once it commits, the old signing key is retired (nothing it signs is accepted, and it no
longer opens the wallet protocol) and new records are sealed to the new encryption key; records
sealed before stay readable through their author's node, which wraps them to the new key when you
read them. Your patient id does not change. The new wallet is written before anything is sent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if newDir == "" {
				return usagef("--new-dir is required")
			}
			if newDir == f.dir {
				return fmt.Errorf("--new-dir must differ from --dir: the old wallet stays until the rotation commits")
			}
			if err := refuseExisting(newDir); err != nil {
				return err
			}
			old, err := f.open(cmd)
			if err != nil {
				return err
			}
			s, err := f.session(cmd, old)
			if err != nil {
				return err
			}
			chainID := s.g.ChainID
			entropy, err := mnemonic.NewEntropy(rand.Reader)
			if err != nil {
				s.close()
				return err
			}
			defer clear(entropy)
			nf := walletFlags{dir: newDir, passFile: newPassFile}
			nw, err := nf.createWallet(cmd, entropy, workFactor, old.PatientID())
			if err != nil {
				s.close()
				return err
			}
			body := chain.NewSigningKeyRotation(old.SigningKey().Public(), nw.SigningKey(), chainID)
			body.EncryptionKey = nw.EncryptionKey().Public().Bytes()
			if _, err := s.submitOnly(cmd.Context(), old, chain.TxRotateKeys, body); err != nil {
				s.close()
				return fmt.Errorf("%w (the new wallet in %s is not in use yet; delete it before trying again)", err, newDir)
			}
			s.close()
			// The old key stops being a wallet the moment the rotation commits, so the commit is
			// checked with the new one: the proved member record names the new keys.
			height, err := waitRotated(cmd, &f, nw)
			if err != nil {
				return err
			}
			words, err := mnemonic.Encode(entropy)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"patient": nw.PatientID().String(), "encryption_key_id": nw.EncryptionKey().Public().KeyID().String(),
					"mnemonic": words, "file": nw.File(), "height": height})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "patient %s now uses the keys of %s (proved at height %d); the old wallet in %s is retired.\n\n", nw.PatientID(), nw.File(), height, f.dir)
			printMnemonic(cmd, words)
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&newDir, "new-dir", "", "the new wallet's directory (must not hold a wallet)")
	cmd.Flags().StringVar(&newPassFile, "new-passphrase-file", "", "the new wallet's passphrase, first line (default: ask twice on the terminal)")
	cmd.Flags().IntVar(&workFactor, "scrypt-work-factor", 0, "scrypt work factor (log2 N) of the passphrase encryption; 0 means the default")
	_ = cmd.Flags().MarkHidden("scrypt-work-factor")
	return cmd
}

// waitRotated connects with the new wallet until the ledger's proved state names its keys.
func waitRotated(cmd *cobra.Command, f *walletFlags, nw *keystore.Wallet) (uint64, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), walletTxTimeout)
	defer cancel()
	var last error
	for {
		if s, err := openLedger(ctx, nw, &f.ledger, f.home); err != nil {
			last = err
		} else {
			ps, err := s.patientState(ctx, nw)
			s.close()
			switch {
			case err != nil:
				last = err
			case ps.Member.Key == nw.SigningKey().Public() && string(ps.Member.EncryptionKey) == string(nw.EncryptionKey().Public().Bytes()):
				return ps.Header.Height - 1, nil
			default:
				last = errors.New("the ledger does not name the new keys yet")
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the rotation did not show on the ledger: %w", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
