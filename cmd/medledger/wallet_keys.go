package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/medledger/medledger/chain"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/medledger/medledger/chain/keyfile"
	"github.com/medledger/medledger/wallet/keystore"
	"github.com/medledger/medledger/wallet/mnemonic"
	"github.com/medledger/medledger/wallet/recovery"
)

// minPassphraseLen is the shortest passphrase `wallet new` and `wallet restore` accept.
const minPassphraseLen = 8

// maxInputFile bounds passphrase, mnemonic and share files.
const maxInputFile = 8 << 10

// readSmallFile reads a file of at most maxInputFile bytes.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		clear(data)
		return nil, err
	}
	if len(data) > maxInputFile {
		clear(data)
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxInputFile)
	}
	return data, nil
}

// readPassphraseFile returns the first line of a passphrase file, without its line ending.
func readPassphraseFile(path string) ([]byte, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("--passphrase-file: %w", err)
	}
	defer clear(data)
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("--passphrase-file %s: the first line is empty", path)
	}
	return bytes.Clone(line), nil
}

// stdinTerminal reports whether the command reads the process's standard input and it is a
// terminal, so that a passphrase can be asked without echo.
func stdinTerminal(cmd *cobra.Command) bool {
	return cmd.InOrStdin() == os.Stdin && term.IsTerminal(int(os.Stdin.Fd()))
}

// askPassphrase prompts on standard error and reads a line from the terminal without echo.
func askPassphrase(cmd *cobra.Command, prompt string) ([]byte, error) {
	fmt.Fprint(cmd.ErrOrStderr(), prompt)
	p, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	return p, nil
}

// passphrase is the source of an existing wallet's passphrase: --passphrase-file, else the
// terminal; keystore.Open calls it only for an encrypted wallet.
func (f *walletFlags) passphrase(cmd *cobra.Command) keystore.Passphrase {
	return func() ([]byte, error) {
		if f.passFile != "" {
			return readPassphraseFile(f.passFile)
		}
		if !stdinTerminal(cmd) {
			return nil, fmt.Errorf("the wallet in %s is encrypted: give --passphrase-file FILE (its first line is the passphrase), or run on a terminal to be asked", f.dir)
		}
		return askPassphrase(cmd, "Wallet passphrase: ")
	}
}

// newPassphrase gets the passphrase of a wallet being created: --passphrase-file, else asked
// twice on the terminal.
func (f *walletFlags) newPassphrase(cmd *cobra.Command) ([]byte, error) {
	var p []byte
	var err error
	switch {
	case f.passFile != "":
		if p, err = readPassphraseFile(f.passFile); err != nil {
			return nil, err
		}
	case stdinTerminal(cmd):
		if p, err = askPassphrase(cmd, "New wallet passphrase: "); err != nil {
			return nil, err
		}
		again, err := askPassphrase(cmd, "Repeat the passphrase: ")
		if err != nil {
			clear(p)
			return nil, err
		}
		same := bytes.Equal(p, again)
		clear(again)
		if !same {
			clear(p)
			return nil, errors.New("the two passphrases differ")
		}
	default:
		return nil, errors.New("a new wallet needs a passphrase: give --passphrase-file FILE (its first line is the passphrase), or run on a terminal to be asked")
	}
	if len(p) < minPassphraseLen {
		clear(p)
		return nil, fmt.Errorf("the passphrase is shorter than %d characters", minPassphraseLen)
	}
	return p, nil
}

// refuseExisting fails early, before any secret is made or shown, if dir holds a wallet.
func refuseExisting(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, keystore.FileName)); err == nil {
		return fmt.Errorf("%w in %s: refusing to overwrite it (its keys would be lost)", keystore.ErrExists, dir)
	}
	return nil
}

// createWallet writes an encrypted wallet for entropy in f.dir; member is the patient's id on
// the ledger if the keys were rotated to (zero: the keys' own address).
func (f *walletFlags) createWallet(cmd *cobra.Command, entropy []byte, workFactor int, member chain.Address) (*keystore.Wallet, error) {
	pass, err := f.newPassphrase(cmd)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	return keystore.CreateEncryptedFor(f.dir, entropy, pass, workFactor, member)
}

// printMnemonic shows the 24 words once, with what they are for.
func printMnemonic(cmd *cobra.Command, words string) {
	out := cmd.OutOrStdout()
	fmt.Fprintln(out, "WRITE DOWN THESE 24 WORDS, in order, and keep them somewhere safe and offline.")
	fmt.Fprintln(out, "They are shown only this once. Anyone who has them has your keys; without them")
	fmt.Fprintln(out, "(or recovery shares) a lost wallet file or passphrase cannot be recovered.")
	fmt.Fprintln(out)
	for i, word := range strings.Fields(words) {
		fmt.Fprintf(out, "%3d. %-10s", i+1, word)
		if (i+1)%4 == 0 {
			fmt.Fprintln(out)
		}
	}
}

func walletNewCmd() *cobra.Command {
	var f walletFlags
	var workFactor int
	cmd := &cobra.Command{
		Use:   "new --dir WALLET [--passphrase-file FILE]",
		Short: "Create a patient wallet from a fresh 24-word mnemonic, encrypted with a passphrase",
		Long: "Create a patient wallet: a fresh 24-word BIP-39 mnemonic from which the signing key (the patient id)\n" +
			"and the ML-KEM-768+X25519 encryption key are derived, stored in WALLET/wallet.json encrypted with a\n" +
			"passphrase (asked twice on the terminal, or the first line of --passphrase-file). The mnemonic is\n" +
			"printed once: write it down; with it `medledger wallet restore` recreates the wallet. See docs/wallet.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.dir == "" {
				return usagef("--dir is required")
			}
			if err := refuseExisting(f.dir); err != nil {
				return err
			}
			entropy, err := mnemonic.NewEntropy(rand.Reader)
			if err != nil {
				return err
			}
			defer clear(entropy)
			w, err := f.createWallet(cmd, entropy, workFactor, chain.Address{})
			if err != nil {
				return err
			}
			words, err := mnemonic.Encode(entropy)
			if err != nil {
				return err
			}
			keyID := w.EncryptionKey().Public().KeyID().String()
			if f.asJSON {
				return writeJSONOut(cmd, map[string]string{"patient": w.PatientID().String(), "encryption_key_id": keyID, "mnemonic": words, "file": w.File()})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wallet %s\npatient id %s\nencryption key id %s\n\n", w.File(), w.PatientID(), keyID)
			printMnemonic(cmd, words)
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().IntVar(&workFactor, "scrypt-work-factor", 0, "scrypt work factor (log2 N) of the passphrase encryption; 0 means the default")
	_ = cmd.Flags().MarkHidden("scrypt-work-factor")
	return cmd
}

func walletRestoreCmd() *cobra.Command {
	var f walletFlags
	var workFactor int
	var mnemonicFile, sharesList, patient string
	cmd := &cobra.Command{
		Use:   "restore --dir WALLET (--mnemonic-file FILE | --shares FILE1,FILE2,...) [--passphrase-file FILE]",
		Short: "Recreate a wallet from its 24-word mnemonic or from k of its recovery shares, under a new passphrase",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.dir == "" {
				return usagef("--dir is required")
			}
			if (mnemonicFile == "") == (sharesList == "") {
				return fmt.Errorf("give exactly one of --mnemonic-file FILE or --shares FILE1,FILE2,...")
			}
			if err := refuseExisting(f.dir); err != nil {
				return err
			}
			var entropy []byte
			if mnemonicFile != "" {
				data, err := readSmallFile(mnemonicFile)
				if err != nil {
					return fmt.Errorf("--mnemonic-file: %w", err)
				}
				entropy, err = mnemonic.Decode(string(data))
				clear(data)
				if err != nil {
					return fmt.Errorf("--mnemonic-file %s: %w", mnemonicFile, err)
				}
			} else {
				var shares []recovery.Share
				for _, path := range strings.Split(sharesList, ",") {
					if path = strings.TrimSpace(path); path == "" {
						continue
					}
					data, err := readSmallFile(path)
					if err != nil {
						return fmt.Errorf("--shares: %w", err)
					}
					s, err := recovery.Parse(data)
					clear(data)
					if err != nil {
						return fmt.Errorf("--shares %s: %w", path, err)
					}
					shares = append(shares, s)
				}
				var err error
				if entropy, err = recovery.Combine(shares); err != nil {
					return err
				}
			}
			defer clear(entropy)
			var member chain.Address
			if patient != "" {
				var err error
				if member, err = chain.ParseAddress(patient); err != nil {
					return fmt.Errorf("--patient %q: want a patient id of 40 hex digits", patient)
				}
			}
			w, err := f.createWallet(cmd, entropy, workFactor, member)
			if err != nil {
				return err
			}
			keyID := w.EncryptionKey().Public().KeyID().String()
			if f.asJSON {
				return writeJSONOut(cmd, map[string]string{"patient": w.PatientID().String(), "encryption_key_id": keyID, "file": w.File()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wallet %s restored\npatient id %s\nencryption key id %s\n", w.File(), w.PatientID(), keyID)
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&mnemonicFile, "mnemonic-file", "", "a file holding the 24 words")
	cmd.Flags().StringVar(&sharesList, "shares", "", "recovery share files, comma-separated (at least k of them)")
	cmd.Flags().StringVar(&patient, "patient", "", "your patient id, if these keys replaced your first ones (wallet rotate); default: the keys' own address")
	cmd.Flags().IntVar(&workFactor, "scrypt-work-factor", 0, "scrypt work factor (log2 N) of the passphrase encryption; 0 means the default")
	_ = cmd.Flags().MarkHidden("scrypt-work-factor")
	return cmd
}

func walletSharesCmd() *cobra.Command {
	var f walletFlags
	var k, n int
	var out string
	cmd := &cobra.Command{
		Use:   "shares --dir WALLET --k K --n N --out DIR [--passphrase-file FILE]",
		Short: "Split the wallet's secret into N recovery shares, any K of which restore it (SLIP-39)",
		Long: "Split the wallet's root secret into N recovery share files, DIR/share-<i>-of-<N>.txt (mode 0600),\n" +
			"any K of which restore the wallet with `medledger wallet restore --shares`. Fewer than K reveal\n" +
			"nothing. Give each share to a different person or place. See docs/wallet.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if k < recovery.MinThreshold || k > n || n > recovery.MaxShares {
				return fmt.Errorf("--k %d --n %d: want 2 <= K <= N <= %d", k, n, recovery.MaxShares)
			}
			if out == "" {
				return usagef("--out is required")
			}
			for i := 1; i <= n; i++ {
				if _, err := os.Lstat(filepath.Join(out, recovery.FileName(i, n))); err == nil {
					return fmt.Errorf("%s already exists: refusing to overwrite shares", filepath.Join(out, recovery.FileName(i, n)))
				}
			}
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			entropy, err := w.Entropy()
			if errors.Is(err, keystore.ErrNoMnemonic) {
				return fmt.Errorf("%w: this wallet's keys were not made from a mnemonic and cannot be split into shares (back up %s itself)", err, w.File())
			}
			if err != nil {
				return err
			}
			defer clear(entropy)
			shares, err := recovery.Split(entropy, k, n)
			if err != nil {
				return err
			}
			var files []string
			for _, s := range shares {
				path := filepath.Join(out, recovery.FileName(s.Index, s.Count))
				data := s.Marshal()
				err := keyfile.WriteNew(path, data)
				clear(data)
				if err != nil {
					return fmt.Errorf("writing share %d: %w", s.Index, err)
				}
				files = append(files, path)
			}
			if f.asJSON {
				return writeJSONOut(cmd, map[string]any{"patient": w.PatientID().String(), "threshold": k, "shares": n, "files": files})
			}
			o := bufio.NewWriter(cmd.OutOrStdout())
			fmt.Fprintf(o, "%d recovery shares of patient %s; any %d of them restore the wallet:\n", n, w.PatientID(), k)
			for _, p := range files {
				fmt.Fprintf(o, "  %s\n", p)
			}
			fmt.Fprintln(o, "Give each share to a different person or place, then delete these files from this machine.")
			return o.Flush()
		},
	}
	f.add(cmd, false)
	cmd.Flags().IntVar(&k, "k", 0, "how many shares restore the wallet (at least 2)")
	cmd.Flags().IntVar(&n, "n", 0, "how many shares to make (at most 16)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the share files to")
	return cmd
}
