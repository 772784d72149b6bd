// Package keystore keeps a patient's keys in one file: a first, simple
// wallet.
//
// A wallet directory holds wallet.json (mode 0600, directory 0700):
//
//	{"version":1,"signing_seed":"<hex>","encryption_key":"<hex>","created":"<RFC 3339>"}
//
// signing_seed is the 32-byte Ed25519 seed of the patient's ledger key
// (chain.PrivKey), whose address is the patient's pseudonymous id;
// encryption_key is the marshalled envelope.PrivateKey (suite id and KEM
// seed) that opens the patient's records. The keys are stored in the clear:
// the file's protection is its mode, which Open checks the way ssh checks a
// private key file. Passphrase encryption, mnemonic backup and recovery
// shares are still to come.
package keystore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/keyfile"
	"github.com/medledger/medledger/wallet/envelope"
)

// FileName is the name of the wallet file inside the wallet directory.
const FileName = "wallet.json"

// Version is the file format version Create writes and Open accepts.
const Version = 1

// maxFileSize bounds what Open reads: a wallet file is about 250 bytes.
const maxFileSize = 64 << 10

// ErrExists is returned (wrapped) by Create when the directory already holds
// a wallet.
var ErrExists = errors.New("keystore: a wallet already exists")

// Wallet is a patient's keys. It is immutable and safe for concurrent use.
type Wallet struct {
	file       string
	signing    chain.PrivKey
	encryption *envelope.PrivateKey
	created    time.Time
}

// fileJSON is the content of wallet.json.
type fileJSON struct {
	Version       int    `json:"version"`
	SigningSeed   string `json:"signing_seed"`
	EncryptionKey string `json:"encryption_key"`
	Created       string `json:"created"`
}

// Create makes a new wallet in dir: a signing key and an encryption key from
// rand (crypto/rand.Reader if nil; it must be a cryptographically secure
// source outside tests), written to dir/wallet.json with mode 0600. dir is
// created with mode 0700 if needed. Create never overwrites a wallet: if
// dir/wallet.json exists it fails with an error wrapping ErrExists. The file
// is written to a temporary name, synced and then linked into place, so a
// crash leaves either no wallet or a whole one.
func Create(dir string, rand io.Reader) (*Wallet, error) {
	signing, err := chain.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	encryption, err := envelope.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	w := &Wallet{
		file:       filepath.Join(dir, FileName),
		signing:    signing,
		encryption: encryption,
		created:    time.Now().UTC().Truncate(time.Second),
	}
	data, err := json.Marshal(fileJSON{
		Version:       Version,
		SigningSeed:   hex.EncodeToString(signing.Seed()),
		EncryptionKey: hex.EncodeToString(encryption.Bytes()),
		Created:       w.created.Format(time.RFC3339),
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	data = append(data, '\n')
	defer clear(data)
	if err := keyfile.WriteNew(w.file, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w in %s: refusing to overwrite it (its keys would be lost)", ErrExists, dir)
		}
		return nil, fmt.Errorf("keystore: create %s: %w", w.file, err)
	}
	return w, nil
}

// Open reads the wallet in dir. It refuses a wallet file that group or
// others may read or write (chmod 600 it), one that is not a regular file,
// and one whose content is not a valid version 1 wallet.
func Open(dir string) (*Wallet, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: open wallet: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore: open wallet: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keystore: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("keystore: permissions %04o for %s are too open: the wallet's private keys must not be accessible by others (chmod 600 %s)", perm, path, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: read %s: %w", path, err)
	}
	defer clear(data)
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("keystore: %s is larger than %d bytes: not a wallet file", path, maxFileSize)
	}
	w, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	w.file = path
	return w, nil
}

// parse decodes and checks the content of a wallet file.
func parse(data []byte) (*Wallet, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fj fileJSON
	if err := dec.Decode(&fj); err != nil {
		return nil, fmt.Errorf("not a wallet file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a wallet file: data after the JSON object")
	}
	if fj.Version == 0 {
		return nil, errors.New("version is missing")
	}
	if fj.Version != Version {
		return nil, fmt.Errorf("wallet version %d, this program reads version %d", fj.Version, Version)
	}
	seed, err := hexField("signing_seed", fj.SigningSeed, 32)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	signing, err := chain.PrivKeyFromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("signing_seed: %w", err)
	}
	raw, err := hexField("encryption_key", fj.EncryptionKey, envelope.PrivateKeyLen)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	encryption, err := envelope.ParsePrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("encryption_key: %w", err)
	}
	if fj.Created == "" {
		return nil, errors.New("created is missing")
	}
	created, err := time.Parse(time.RFC3339, fj.Created)
	if err != nil {
		return nil, fmt.Errorf("created: %w", err)
	}
	return &Wallet{signing: signing, encryption: encryption, created: created}, nil
}

func hexField(name, s string, n int) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is missing", name)
	}
	if len(s) != 2*n {
		return nil, fmt.Errorf("%s is %d hex characters, want %d", name, len(s), 2*n)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not hex: %w", name, err)
	}
	return b, nil
}

// SigningKey is the patient's ledger signing key (Ed25519).
func (w *Wallet) SigningKey() chain.PrivKey { return w.signing }

// EncryptionKey is the key that opens the patient's records.
func (w *Wallet) EncryptionKey() *envelope.PrivateKey { return w.encryption }

// PatientID is the patient's pseudonymous id on the ledger: the address of
// the signing key.
func (w *Wallet) PatientID() chain.Address { return w.signing.Public().Address() }

// File is the path of the wallet file.
func (w *Wallet) File() string { return w.file }

// Created is when the wallet was created (UTC, to the second).
func (w *Wallet) Created() time.Time { return w.created }
