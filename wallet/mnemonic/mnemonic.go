// Package mnemonic turns a patient's root secret into words a person can write down and back,
// and derives the patient's keys from it.
//
// The root secret is 32 bytes of entropy. Its BIP-39 mnemonic (English wordlist) is 24 words,
// the last of which carries an 8-bit checksum. Both of the patient's keys follow from it
// deterministically (docs/wallet.md states the derivation so that another implementation can
// reproduce it):
//
//	mnemonic  = BIP-39 words of the entropy, joined by single spaces
//	seed      = PBKDF2-HMAC-SHA512(mnemonic, "mnemonic", 2048 rounds, 64 bytes)   (BIP-39, empty passphrase)
//	signing   = HKDF-SHA256(ikm = seed, salt = empty, info = "medledger/v1/signing",    32 bytes)
//	kem seed  = HKDF-SHA256(ikm = seed, salt = empty, info = "medledger/v1/encryption", 32 bytes)
//
// signing is the Ed25519 seed of chain.PrivKey (its address is the patient id); kem seed is the
// seed of an envelope.PrivateKey of suite SuiteMLKEM768X25519. The info strings are versioned:
// a future derivation gets new strings, never a changed meaning for these.
//
// The word encoding and the BIP-39 seed come from github.com/tyler-smith/go-bip39 (which uses
// golang.org/x/crypto/pbkdf2); HKDF is the standard library's crypto/hkdf.
package mnemonic

import (
	"crypto/hkdf"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tyler-smith/go-bip39"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// EntropyLen is the size of a root secret in bytes (256 bits).
const EntropyLen = 32

// Words is the number of words in a mnemonic of EntropyLen bytes.
const Words = 24

// Info strings of the HKDF derivations, version 1.
const (
	InfoSigning    = "medledger/v1/signing"
	InfoEncryption = "medledger/v1/encryption"
)

// ErrInvalid is returned (wrapped) for a mnemonic that is not 24 words of the English BIP-39
// list with a correct checksum.
var ErrInvalid = errors.New("mnemonic: invalid mnemonic")

// NewEntropy reads a fresh root secret from rand (crypto/rand.Reader if nil; it must be a
// cryptographically secure source outside tests).
func NewEntropy(rand io.Reader) ([]byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	e := make([]byte, EntropyLen)
	if _, err := io.ReadFull(rand, e); err != nil {
		return nil, fmt.Errorf("mnemonic: new entropy: %w", err)
	}
	return e, nil
}

// Encode returns the 24-word mnemonic of a root secret.
func Encode(entropy []byte) (string, error) {
	if len(entropy) != EntropyLen {
		return "", fmt.Errorf("mnemonic: entropy is %d bytes, want %d", len(entropy), EntropyLen)
	}
	m, err := bip39.NewMnemonic(entropy)
	if err != nil {
		return "", fmt.Errorf("mnemonic: %w", err)
	}
	return m, nil
}

// Normalize lower-cases a typed mnemonic and joins its words by single spaces, so that line
// breaks, capitals and extra spaces in what a person typed do not matter.
func Normalize(s string) string {
	return strings.Join(strings.Fields(strings.ToLower(s)), " ")
}

// Decode returns the root secret of a mnemonic (normalized first). It accepts only 24 words of
// the English list whose checksum is right, and names the first unknown word.
func Decode(s string) ([]byte, error) {
	words := strings.Fields(Normalize(s))
	if len(words) != Words {
		return nil, fmt.Errorf("%w: %d words, want %d", ErrInvalid, len(words), Words)
	}
	for i, w := range words {
		if _, ok := bip39.GetWordIndex(w); !ok {
			return nil, fmt.Errorf("%w: word %d (%q) is not in the BIP-39 English list", ErrInvalid, i+1, w)
		}
	}
	e, err := bip39.EntropyFromMnemonic(strings.Join(words, " "))
	if err != nil {
		if errors.Is(err, bip39.ErrChecksumIncorrect) {
			return nil, fmt.Errorf("%w: the checksum does not match (a word is wrong or out of order)", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(e) != EntropyLen {
		clear(e)
		return nil, fmt.Errorf("%w: %d bytes of entropy", ErrInvalid, len(e))
	}
	return e, nil
}

// Seed is the BIP-39 seed of a mnemonic with a BIP-39 passphrase (MedLedger wallets use an
// empty one): PBKDF2-HMAC-SHA512 of the mnemonic with salt "mnemonic"+passphrase, 2048 rounds,
// 64 bytes. The mnemonic must be valid (Decode accepts it); it is used as given, so pass the
// normalized form.
func Seed(mnemonic, passphrase string) ([]byte, error) {
	s, err := bip39.NewSeedWithErrorChecking(mnemonic, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s, nil
}

// Keys are the keys derived from a root secret.
type Keys struct {
	Signing    chain.PrivKey
	Encryption *envelope.PrivateKey
}

// PatientID is the address of the signing key: the patient's id on the ledger.
func (k Keys) PatientID() chain.Address { return k.Signing.Public().Address() }

// EncryptionKeyID is the key id (SHA-256 of the marshalled public key) of the encryption key.
func (k Keys) EncryptionKeyID() chain.Hash { return k.Encryption.Public().KeyID() }

// Derive derives the patient's keys from a root secret as the package comment states.
func Derive(entropy []byte) (Keys, error) {
	m, err := Encode(entropy)
	if err != nil {
		return Keys{}, err
	}
	seed, err := Seed(m, "")
	if err != nil {
		return Keys{}, err
	}
	defer clear(seed)
	sig, err := hkdf.Key(sha256.New, seed, nil, InfoSigning, 32)
	if err != nil {
		return Keys{}, fmt.Errorf("mnemonic: derive: %w", err)
	}
	defer clear(sig)
	signing, err := chain.PrivKeyFromSeed(sig)
	if err != nil {
		return Keys{}, fmt.Errorf("mnemonic: derive signing key: %w", err)
	}
	kem, err := hkdf.Key(sha256.New, seed, nil, InfoEncryption, 32)
	if err != nil {
		return Keys{}, fmt.Errorf("mnemonic: derive: %w", err)
	}
	raw := make([]byte, 2, envelope.PrivateKeyLen)
	binary.BigEndian.PutUint16(raw, uint16(envelope.SuiteMLKEM768X25519))
	raw = append(raw, kem...)
	clear(kem)
	defer clear(raw)
	encryption, err := envelope.ParsePrivateKey(raw)
	if err != nil {
		return Keys{}, fmt.Errorf("mnemonic: derive encryption key: %w", err)
	}
	return Keys{Signing: signing, Encryption: encryption}, nil
}
