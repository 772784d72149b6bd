package envelope

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/medledger/medledger/chain"
)

// Suite identifies a key-wrapping ciphersuite: an HPKE (RFC 9180) KEM, KDF and AEAD. It leads
// every marshalled key and is carried in every envelope, so the suite can change later without
// ambiguity. The zero value is never a valid suite.
type Suite uint16

// SuiteMLKEM768X25519 is the post-quantum hybrid suite: the MLKEM768-X25519 ("X-Wing") KEM of
// draft-ietf-hpke-pq, HKDF-SHA256 and ChaCha20-Poly1305, all from the standard library's
// crypto/hpke.
const SuiteMLKEM768X25519 Suite = 1

// Sizes for SuiteMLKEM768X25519, in bytes.
const (
	// PublicKeyLen is a marshalled public key: suite id, ML-KEM-768 encapsulation key (1184) and
	// X25519 point (32).
	PublicKeyLen = 2 + 1184 + 32
	// PrivateKeyLen is a marshalled private key: suite id and the 32-byte KEM seed from which
	// both halves are derived.
	PrivateKeyLen = 2 + 32
	// kemEncLen is the KEM ciphertext: ML-KEM-768 ciphertext (1088) and an X25519 point (32).
	kemEncLen = 1088 + 32
	// hpkeTagLen is the ChaCha20-Poly1305 tag on the wrapped data key.
	hpkeTagLen = 16
	// seedLen is the KEM private key: a 32-byte seed.
	seedLen = 32
)

func (s Suite) String() string {
	if s == SuiteMLKEM768X25519 {
		return "MLKEM768-X25519/HKDF-SHA256/ChaCha20-Poly1305"
	}
	return fmt.Sprintf("suite-%d", uint16(s))
}

// suiteParams are the HPKE components and sizes of a known suite.
type suiteParams struct {
	kem        hpke.KEM
	kdf        hpke.KDF
	aead       hpke.AEAD
	publicLen  int // KEM public key, without the suite id
	wrappedLen int // KEM ciphertext + wrapped data key + tag
}

func params(s Suite) (suiteParams, error) {
	if s == SuiteMLKEM768X25519 {
		return suiteParams{
			kem:        hpke.MLKEM768X25519(),
			kdf:        hpke.HKDFSHA256(),
			aead:       hpke.ChaCha20Poly1305(),
			publicLen:  PublicKeyLen - 2,
			wrappedLen: kemEncLen + DataKeyLen + hpkeTagLen,
		}, nil
	}
	return suiteParams{}, fmt.Errorf("%w: %d", ErrUnknownSuite, uint16(s))
}

// PublicKey is a recipient's encryption key: what a patient or provider registers on the ledger
// as its EncryptionKey. The zero value is not a valid key.
type PublicKey struct {
	suite Suite
	raw   []byte // the marshalled form, suite id included
	key   hpke.PublicKey
}

// PrivateKey is the secret half of an encryption key.
type PrivateKey struct {
	suite Suite
	key   hpke.PrivateKey
	pub   PublicKey
}

// GenerateKey makes a new key of suite SuiteMLKEM768X25519. The 32-byte KEM seed is read from
// rand (crypto/rand.Reader if nil), which must be a cryptographically secure source outside
// tests.
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	seed := make([]byte, seedLen)
	if _, err := io.ReadFull(randOrDefault(rand), seed); err != nil {
		return nil, fmt.Errorf("envelope: generate key: %w", err)
	}
	defer clear(seed)
	return newPrivateKey(SuiteMLKEM768X25519, seed)
}

func newPrivateKey(s Suite, seed []byte) (*PrivateKey, error) {
	p, err := params(s)
	if err != nil {
		return nil, err
	}
	k, err := p.kem.NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	pub, err := newPublicKey(s, k.PublicKey())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{suite: s, key: k, pub: pub}, nil
}

func newPublicKey(s Suite, k hpke.PublicKey) (PublicKey, error) {
	kb := k.Bytes()
	raw := make([]byte, 2, 2+len(kb))
	binary.BigEndian.PutUint16(raw, uint16(s))
	raw = append(raw, kb...)
	if len(raw) > chain.MaxEncryptionKeyLen {
		return PublicKey{}, fmt.Errorf("%w: %d bytes, the ledger holds at most %d", ErrInvalidKey, len(raw), chain.MaxEncryptionKeyLen)
	}
	return PublicKey{suite: s, raw: raw, key: k}, nil
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// Public returns the key's public half.
func (k *PrivateKey) Public() PublicKey { return k.pub }

// Suite returns the key's suite.
func (k *PrivateKey) Suite() Suite { return k.suite }

// Bytes returns the marshalled private key: the suite id (uint16, big-endian) and the KEM seed.
// Handle with care.
func (k *PrivateKey) Bytes() []byte {
	seed, err := k.key.Bytes()
	if err != nil {
		// Every PrivateKey is built from a seed, so the seed is always available.
		panic(fmt.Sprintf("envelope: private key without seed: %v", err))
	}
	out := make([]byte, 2, 2+len(seed))
	binary.BigEndian.PutUint16(out, uint16(k.suite))
	return append(out, seed...)
}

// ParsePrivateKey parses the output of PrivateKey.Bytes. It rejects unknown suites
// (ErrUnknownSuite) and wrong lengths (ErrInvalidKey).
func ParsePrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: private key is %d bytes", ErrInvalidKey, len(b))
	}
	s := Suite(binary.BigEndian.Uint16(b))
	if _, err := params(s); err != nil {
		return nil, err
	}
	if len(b) != PrivateKeyLen {
		return nil, fmt.Errorf("%w: private key is %d bytes, want %d", ErrInvalidKey, len(b), PrivateKeyLen)
	}
	return newPrivateKey(s, b[2:])
}

// ParsePublicKey parses a marshalled public key (PublicKey.Bytes, a ledger EncryptionKey). It
// rejects unknown suites (ErrUnknownSuite), wrong lengths and invalid key material
// (ErrInvalidKey).
func ParsePublicKey(b []byte) (PublicKey, error) {
	if len(b) < 2 {
		return PublicKey{}, fmt.Errorf("%w: public key is %d bytes", ErrInvalidKey, len(b))
	}
	s := Suite(binary.BigEndian.Uint16(b))
	p, err := params(s)
	if err != nil {
		return PublicKey{}, err
	}
	if len(b) != 2+p.publicLen {
		return PublicKey{}, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(b), 2+p.publicLen)
	}
	k, err := p.kem.NewPublicKey(b[2:])
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	pub, err := newPublicKey(s, k)
	if err != nil {
		return PublicKey{}, err
	}
	if !bytes.Equal(pub.raw, b) {
		// The KEM re-serialises what it parsed; anything else would give one key two ids.
		return PublicKey{}, fmt.Errorf("%w: public key does not re-encode to its input", ErrInvalidKey)
	}
	return pub, nil
}

// Bytes returns the marshalled public key: the suite id (uint16, big-endian) and the KEM public
// key. The caller must not modify the result.
func (k PublicKey) Bytes() []byte { return k.raw }

// Suite returns the key's suite.
func (k PublicKey) Suite() Suite { return k.suite }

// IsZero reports whether k is the zero value (no key).
func (k PublicKey) IsZero() bool { return k.key == nil }

// Equal reports whether two keys are the same key.
func (k PublicKey) Equal(o PublicKey) bool { return bytes.Equal(k.raw, o.raw) }

// KeyID returns the key's id as used in envelopes: SHA-256 of the marshalled key.
func (k PublicKey) KeyID() chain.Hash { return KeyIDOf(k.raw) }

// KeyIDOf returns the key id of a marshalled public key (for example a ledger EncryptionKey)
// without parsing it: SHA-256 of the bytes.
func KeyIDOf(marshalled []byte) chain.Hash { return chain.Sum256(marshalled) }
