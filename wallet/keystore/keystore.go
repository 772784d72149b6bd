// Package keystore keeps a patient's keys in one file, wallet.json, in a wallet directory
// (file mode 0600, directory 0700; Open refuses a file that group or others may access, the way
// ssh refuses a private key file).
//
// Version 2 (CreateEncrypted) keeps public metadata in the clear and the root secret encrypted
// with a passphrase:
//
//	{"version":2,"patient":"<address hex>","encryption_key_id":"<hex>","created":"<RFC 3339>",
//	 "secret":"-----BEGIN AGE ENCRYPTED FILE-----\n...\n-----END AGE ENCRYPTED FILE-----\n"}
//
// secret is an armored age file (filippo.io/age) with one scrypt passphrase recipient whose
// plaintext is the 32-byte root secret of package wallet/mnemonic. Both keys are derived from it
// (mnemonic.Derive); Open checks that they match patient and encryption_key_id.
//
// Version 1 (Create) is the first, plaintext wallet, still read and still written for the
// demo's synthetic patients:
//
//	{"version":1,"signing_seed":"<hex>","encryption_key":"<hex>","created":"<RFC 3339>"}
//
// signing_seed is the 32-byte Ed25519 seed of the patient's ledger key (chain.PrivKey), whose
// address is the patient's pseudonymous id; encryption_key is the marshalled
// envelope.PrivateKey (suite id and KEM seed). A version 1 wallet has no mnemonic, so it cannot
// be backed up as words or split into recovery shares. docs/wallet.md describes both formats.
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
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/keyfile"
	"github.com/medledger/medledger/wallet/envelope"
	"github.com/medledger/medledger/wallet/mnemonic"
)

// FileName is the name of the wallet file inside the wallet directory.
const FileName = "wallet.json"

// File format versions.
const (
	// VersionPlain is the first format: both keys in the clear.
	VersionPlain = 1
	// VersionEncrypted holds the root secret encrypted with a passphrase.
	VersionEncrypted = 2
)

// DefaultScryptWorkFactor is the scrypt work factor (log2 N) CreateEncrypted uses when given 0:
// age's own default, about a second and 256 MiB of memory per guess on a laptop.
const DefaultScryptWorkFactor = 18

// MinScryptWorkFactor and MaxScryptWorkFactor bound the work factor CreateEncrypted accepts. The
// minimum is for tests; MaxScryptWorkFactor is also the most Open will spend on a file.
const (
	MinScryptWorkFactor = 10
	MaxScryptWorkFactor = 22
)

// maxFileSize bounds what Open reads: a wallet file is under 1 KiB.
const maxFileSize = 64 << 10

// maxSecretArmor bounds the armored secret: an age header and 32 bytes of payload take ~400.
const maxSecretArmor = 4 << 10

var (
	// ErrExists is returned (wrapped) by Create and CreateEncrypted when the directory already
	// holds a wallet.
	ErrExists = errors.New("keystore: a wallet already exists")
	// ErrWrongPassphrase is returned (wrapped) by Open when the passphrase does not open the
	// wallet.
	ErrWrongPassphrase = errors.New("keystore: wrong passphrase")
	// ErrPassphraseRequired is returned (wrapped) by Open for an encrypted wallet when no
	// passphrase source was given.
	ErrPassphraseRequired = errors.New("keystore: the wallet is encrypted and needs its passphrase")
	// ErrNoMnemonic is returned (wrapped) for operations that need the root secret of a
	// version 1 wallet, which has none.
	ErrNoMnemonic = errors.New("keystore: a version 1 (plaintext) wallet has no mnemonic")
)

// Passphrase supplies the passphrase of an encrypted wallet. Open calls it only when the file
// needs one, after the file's mode and format have been checked. Open clears the returned
// slice after use.
type Passphrase func() ([]byte, error)

// StaticPassphrase returns a Passphrase that always answers p (a copy of it).
func StaticPassphrase(p []byte) Passphrase {
	c := bytes.Clone(p)
	return func() ([]byte, error) { return bytes.Clone(c), nil }
}

// Wallet is a patient's keys. It is immutable and safe for concurrent use.
type Wallet struct {
	file       string
	version    int
	signing    chain.PrivKey
	encryption *envelope.PrivateKey
	entropy    []byte // the root secret; nil in a version 1 wallet
	created    time.Time
	// member is the patient's id on the ledger when it is not the signing key's address: the
	// keys were rotated on the ledger (the id stays the first key's address).
	member chain.Address
}

// plainJSON is the content of a version 1 wallet.json.
type plainJSON struct {
	Version       int    `json:"version"`
	SigningSeed   string `json:"signing_seed"`
	EncryptionKey string `json:"encryption_key"`
	Created       string `json:"created"`
}

// encryptedJSON is the content of a version 2 wallet.json.
type encryptedJSON struct {
	Version         int    `json:"version"`
	Patient         string `json:"patient"`
	EncryptionKeyID string `json:"encryption_key_id"`
	Created         string `json:"created"`
	Secret          string `json:"secret"`
	// Member is the patient's id on the ledger after a key rotation (omitted before one:
	// the id is then Patient, the signing key's address).
	Member string `json:"member,omitempty"`
}

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// Create makes a new version 1 (plaintext) wallet in dir: a signing key and an encryption key
// from rand (crypto/rand.Reader if nil; it must be a cryptographically secure source outside
// tests), written to dir/wallet.json with mode 0600. dir is created with mode 0700 if needed.
// Its keys have no mnemonic; patients get CreateEncrypted, Create remains for synthetic
// wallets (the demo) and for tests.
//
// Create never overwrites a wallet: if dir/wallet.json exists it fails with an error wrapping
// ErrExists. The file is written to a temporary name, synced and then linked into place, so a
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
		version:    VersionPlain,
		signing:    signing,
		encryption: encryption,
		created:    now(),
	}
	seed, key := signing.Seed(), encryption.Bytes()
	data, err := json.Marshal(plainJSON{
		Version:       VersionPlain,
		SigningSeed:   hex.EncodeToString(seed),
		EncryptionKey: hex.EncodeToString(key),
		Created:       w.created.Format(time.RFC3339),
	})
	clear(seed)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if err := writeNew(w.file, dir, data); err != nil {
		return nil, err
	}
	return w, nil
}

// CreateEncrypted makes a new version 2 wallet in dir from a root secret (mnemonic.EntropyLen
// bytes, from mnemonic.NewEntropy, a mnemonic or recovery shares), encrypted under passphrase
// with age's scrypt recipient at work factor workFactor (DefaultScryptWorkFactor if 0; between
// MinScryptWorkFactor and MaxScryptWorkFactor otherwise). Like Create it never overwrites a
// wallet and leaves no partial file. The caller keeps ownership of entropy and passphrase.
func CreateEncrypted(dir string, entropy, passphrase []byte, workFactor int) (*Wallet, error) {
	return CreateEncryptedFor(dir, entropy, passphrase, workFactor, chain.Address{})
}

// CreateEncryptedFor is CreateEncrypted for the keys of a patient whose id on the ledger is
// member (their first key's address) after a key rotation; zero member: the keys' own address.
func CreateEncryptedFor(dir string, entropy, passphrase []byte, workFactor int, member chain.Address) (*Wallet, error) {
	if workFactor == 0 {
		workFactor = DefaultScryptWorkFactor
	}
	if workFactor < MinScryptWorkFactor || workFactor > MaxScryptWorkFactor {
		return nil, fmt.Errorf("keystore: scrypt work factor %d, want %d to %d", workFactor, MinScryptWorkFactor, MaxScryptWorkFactor)
	}
	if len(passphrase) == 0 {
		return nil, errors.New("keystore: the passphrase is empty")
	}
	keys, err := mnemonic.Derive(entropy)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	w := &Wallet{
		file:       filepath.Join(dir, FileName),
		version:    VersionEncrypted,
		signing:    keys.Signing,
		encryption: keys.Encryption,
		entropy:    bytes.Clone(entropy),
		created:    now(),
	}
	if member != keys.PatientID() {
		w.member = member
	}
	r, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	r.SetWorkFactor(workFactor)
	var armored bytes.Buffer
	aw := armor.NewWriter(&armored)
	ew, err := age.Encrypt(aw, r)
	if err != nil {
		return nil, fmt.Errorf("keystore: encrypt: %w", err)
	}
	if _, err := ew.Write(entropy); err != nil {
		return nil, fmt.Errorf("keystore: encrypt: %w", err)
	}
	if err := ew.Close(); err != nil {
		return nil, fmt.Errorf("keystore: encrypt: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("keystore: encrypt: %w", err)
	}
	data, err := json.MarshalIndent(encryptedJSON{
		Version:         VersionEncrypted,
		Patient:         keys.PatientID().String(),
		EncryptionKeyID: keys.EncryptionKeyID().String(),
		Created:         w.created.Format(time.RFC3339),
		Secret:          armored.String(),
		Member:          memberField(w.member),
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if err := writeNew(w.file, dir, data); err != nil {
		return nil, err
	}
	return w, nil
}

func writeNew(path, dir string, data []byte) error {
	data = append(data, '\n')
	defer clear(data)
	if err := keyfile.WriteNew(path, data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w in %s: refusing to overwrite it (its keys would be lost)", ErrExists, dir)
		}
		return fmt.Errorf("keystore: create %s: %w", path, err)
	}
	return nil
}

// Info is what a wallet file tells without its passphrase.
type Info struct {
	Version         int
	Patient         chain.Address
	EncryptionKeyID chain.Hash
	Created         time.Time
}

// Encrypted reports whether opening the wallet needs a passphrase.
func (i Info) Encrypted() bool { return i.Version == VersionEncrypted }

// Inspect reads the public part of the wallet in dir without a passphrase, with the same checks
// of the file as Open. For an encrypted wallet the metadata is as written and only Open checks
// it against the secret.
func Inspect(dir string) (Info, error) {
	path, data, err := readFile(dir)
	if err != nil {
		return Info{}, err
	}
	defer clear(data)
	version, err := peekVersion(data)
	if err != nil {
		return Info{}, fmt.Errorf("keystore: %s: %w", path, err)
	}
	if version == VersionEncrypted {
		ej, err := decodeEncrypted(data)
		if err != nil {
			return Info{}, fmt.Errorf("keystore: %s: %w", path, err)
		}
		patient := ej.patient
		if ej.member != (chain.Address{}) {
			patient = ej.member
		}
		return Info{Version: version, Patient: patient, EncryptionKeyID: ej.keyID, Created: ej.created}, nil
	}
	w, err := parsePlain(data)
	if err != nil {
		return Info{}, fmt.Errorf("keystore: %s: %w", path, err)
	}
	return w.Info(), nil
}

// Open reads the wallet in dir. It refuses a wallet file that group or others may read or write
// (chmod 600 it), one that is not a regular file, and one whose content is not a valid wallet.
// For an encrypted (version 2) wallet it asks pass for the passphrase; with pass nil it fails
// with ErrPassphraseRequired, and with a passphrase that does not open it, with
// ErrWrongPassphrase. A version 1 wallet never calls pass.
func Open(dir string, pass Passphrase) (*Wallet, error) {
	path, data, err := readFile(dir)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	version, err := peekVersion(data)
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	var w *Wallet
	if version == VersionEncrypted {
		w, err = openEncrypted(data, pass)
	} else {
		w, err = parsePlain(data)
	}
	if err != nil {
		if errors.Is(err, ErrWrongPassphrase) || errors.Is(err, ErrPassphraseRequired) {
			return nil, fmt.Errorf("%w for %s", err, path)
		}
		return nil, fmt.Errorf("keystore: %s: %w", path, err)
	}
	w.file = path
	return w, nil
}

// readFile reads dir/wallet.json after checking that it is a regular file only its owner may
// access.
func readFile(dir string) (string, []byte, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if err != nil {
		return path, nil, fmt.Errorf("keystore: open wallet: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return path, nil, fmt.Errorf("keystore: open wallet: %w", err)
	}
	if !st.Mode().IsRegular() {
		return path, nil, fmt.Errorf("keystore: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return path, nil, fmt.Errorf("keystore: permissions %04o for %s are too open: the wallet's private keys must not be accessible by others (chmod 600 %s)", perm, path, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		clear(data)
		return path, nil, fmt.Errorf("keystore: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		clear(data)
		return path, nil, fmt.Errorf("keystore: %s is larger than %d bytes: not a wallet file", path, maxFileSize)
	}
	return path, data, nil
}

// peekVersion reads the version field of a wallet file.
func peekVersion(data []byte) (int, error) {
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&v); err != nil {
		return 0, fmt.Errorf("not a wallet file: %w", err)
	}
	switch {
	case v.Version == nil || *v.Version == 0:
		return 0, errors.New("version is missing")
	case *v.Version != VersionPlain && *v.Version != VersionEncrypted:
		return 0, fmt.Errorf("wallet version %d, this program reads versions %d and %d", *v.Version, VersionPlain, VersionEncrypted)
	}
	return *v.Version, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a wallet file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not a wallet file: data after the JSON object")
	}
	return nil
}

// parsePlain decodes and checks the content of a version 1 wallet file.
func parsePlain(data []byte) (*Wallet, error) {
	var fj plainJSON
	if err := decodeStrict(data, &fj); err != nil {
		return nil, err
	}
	if fj.Version != VersionPlain {
		return nil, fmt.Errorf("version %d, want %d", fj.Version, VersionPlain)
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
	created, err := createdField(fj.Created)
	if err != nil {
		return nil, err
	}
	return &Wallet{version: VersionPlain, signing: signing, encryption: encryption, created: created}, nil
}

// encryptedFile is a decoded version 2 file before its secret is opened.
type encryptedFile struct {
	patient chain.Address
	member  chain.Address
	keyID   chain.Hash
	created time.Time
	secret  string
}

func decodeEncrypted(data []byte) (encryptedFile, error) {
	var fj encryptedJSON
	if err := decodeStrict(data, &fj); err != nil {
		return encryptedFile{}, err
	}
	if fj.Version != VersionEncrypted {
		return encryptedFile{}, fmt.Errorf("version %d, want %d", fj.Version, VersionEncrypted)
	}
	var out encryptedFile
	if fj.Patient == "" {
		return out, errors.New("patient is missing")
	}
	p, err := chain.ParseAddress(fj.Patient)
	if err != nil {
		return out, fmt.Errorf("patient: %w", err)
	}
	if fj.EncryptionKeyID == "" {
		return out, errors.New("encryption_key_id is missing")
	}
	id, err := chain.ParseHash(fj.EncryptionKeyID)
	if err != nil {
		return out, fmt.Errorf("encryption_key_id: %w", err)
	}
	created, err := createdField(fj.Created)
	if err != nil {
		return out, err
	}
	if fj.Secret == "" {
		return out, errors.New("secret is missing")
	}
	if len(fj.Secret) > maxSecretArmor {
		return out, fmt.Errorf("secret is %d bytes, at most %d", len(fj.Secret), maxSecretArmor)
	}
	if !strings.HasPrefix(fj.Secret, armor.Header) {
		return out, errors.New("secret is not an armored age file")
	}
	var member chain.Address
	if fj.Member != "" {
		if member, err = chain.ParseAddress(fj.Member); err != nil {
			return out, fmt.Errorf("member: %w", err)
		}
	}
	return encryptedFile{patient: p, member: member, keyID: id, created: created, secret: fj.Secret}, nil
}

// openEncrypted decodes a version 2 file, asks for the passphrase, decrypts the root secret,
// derives the keys and checks them against the file's metadata.
func openEncrypted(data []byte, pass Passphrase) (*Wallet, error) {
	ef, err := decodeEncrypted(data)
	if err != nil {
		return nil, err
	}
	if pass == nil {
		return nil, ErrPassphraseRequired
	}
	p, err := pass()
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	defer clear(p)
	if len(p) == 0 {
		return nil, fmt.Errorf("%w (it is empty)", ErrWrongPassphrase)
	}
	id, err := age.NewScryptIdentity(string(p))
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	id.SetMaxWorkFactor(MaxScryptWorkFactor)
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(ef.secret)), id)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("secret: %w", err)
	}
	entropy, err := io.ReadAll(io.LimitReader(r, mnemonic.EntropyLen+1))
	if err != nil {
		clear(entropy)
		return nil, fmt.Errorf("secret: %w", err)
	}
	if len(entropy) != mnemonic.EntropyLen {
		clear(entropy)
		return nil, fmt.Errorf("secret: %d bytes, want %d", len(entropy), mnemonic.EntropyLen)
	}
	keys, err := mnemonic.Derive(entropy)
	if err != nil {
		clear(entropy)
		return nil, fmt.Errorf("secret: %w", err)
	}
	if keys.PatientID() != ef.patient || keys.EncryptionKeyID() != ef.keyID {
		clear(entropy)
		return nil, fmt.Errorf("the secret derives patient %s and encryption key %s, the file says %s and %s: the file was altered",
			keys.PatientID(), keys.EncryptionKeyID(), ef.patient, ef.keyID)
	}
	return &Wallet{version: VersionEncrypted, signing: keys.Signing, encryption: keys.Encryption, entropy: entropy, created: ef.created, member: ef.member}, nil
}

func createdField(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("created is missing")
	}
	created, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("created: %w", err)
	}
	return created, nil
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

// PatientID is the patient's pseudonymous id on the ledger: the address of the signing key,
// or of the first one after a key rotation.
func (w *Wallet) PatientID() chain.Address {
	if w.member != (chain.Address{}) {
		return w.member
	}
	return w.signing.Public().Address()
}

// memberField is the file's member field: empty when the id is the keys' own address.
func memberField(a chain.Address) string {
	if a == (chain.Address{}) {
		return ""
	}
	return a.String()
}

// File is the path of the wallet file.
func (w *Wallet) File() string { return w.file }

// Created is when the wallet was created (UTC, to the second).
func (w *Wallet) Created() time.Time { return w.created }

// Version is the wallet's file format version.
func (w *Wallet) Version() int { return w.version }

// Info is the wallet's public description.
func (w *Wallet) Info() Info {
	return Info{Version: w.version, Patient: w.PatientID(), EncryptionKeyID: w.encryption.Public().KeyID(), Created: w.created}
}

// Entropy returns a copy of the wallet's root secret, from which its mnemonic and recovery
// shares are made; the caller should clear it after use. A version 1 wallet has none
// (ErrNoMnemonic).
func (w *Wallet) Entropy() ([]byte, error) {
	if w.entropy == nil {
		return nil, ErrNoMnemonic
	}
	return bytes.Clone(w.entropy), nil
}
