package chain

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	voied "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Hash is a SHA-256 digest.
type Hash [32]byte

// PubKey is an Ed25519 public key.
type PubKey [ed25519.PublicKeySize]byte

// Signature is an Ed25519 signature.
type Signature [ed25519.SignatureSize]byte

// Address is the short identity derived from a public key: providers and patients are known by
// it on the ledger (a pseudonym: it says nothing about the person).
type Address [20]byte

// ZeroHash is the hash value meaning "none" (for example a nil vote).
var ZeroHash Hash

func (h Hash) String() string    { return hex.EncodeToString(h[:]) }
func (h Hash) IsZero() bool      { return h == ZeroHash }
func (h Hash) Short() string     { return hex.EncodeToString(h[:4]) }
func (k PubKey) String() string  { return hex.EncodeToString(k[:]) }
func (k PubKey) Short() string   { return hex.EncodeToString(k[:4]) }
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// MarshalText lets hashes, keys and addresses appear as hex in JSON and TOML.
func (h Hash) MarshalText() ([]byte, error)    { return []byte(h.String()), nil }
func (k PubKey) MarshalText() ([]byte, error)  { return []byte(k.String()), nil }
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

func (h *Hash) UnmarshalText(b []byte) error    { return decodeHex("hash", b, h[:]) }
func (k *PubKey) UnmarshalText(b []byte) error  { return decodeHex("public key", b, k[:]) }
func (a *Address) UnmarshalText(b []byte) error { return decodeHex("address", b, a[:]) }

func decodeHex(what string, b []byte, dst []byte) error {
	if hex.DecodedLen(len(b)) != len(dst) {
		return fmt.Errorf("chain: %s must be %d hex characters, got %d", what, 2*len(dst), len(b))
	}
	if _, err := hex.Decode(dst, b); err != nil {
		return fmt.Errorf("chain: %s: %w", what, err)
	}
	return nil
}

// ParsePubKey parses a hex-encoded public key.
func ParsePubKey(s string) (PubKey, error) {
	var k PubKey
	return k, k.UnmarshalText([]byte(s))
}

// ParseAddress parses a hex-encoded address.
func ParseAddress(s string) (Address, error) {
	var a Address
	return a, a.UnmarshalText([]byte(s))
}

// ParseHash parses a hex-encoded hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	return h, h.UnmarshalText([]byte(s))
}

// Sum256 hashes data with SHA-256.
func Sum256(data []byte) Hash { return sha256.Sum256(data) }

// Address derives the ledger address of a key. The domain prefix keeps it distinct from any other
// hash of the same key.
func (k PubKey) Address() Address {
	h := sha256.Sum256(append([]byte("medledger/address/v1\x00"), k[:]...))
	var a Address
	copy(a[:], h[:len(a)])
	return a
}

// PrivKey is an Ed25519 signing key.
type PrivKey struct{ key ed25519.PrivateKey }

// GenerateKey makes a new signing key from the given randomness (crypto/rand.Reader in
// production, a seeded reader in simulations).
func GenerateKey(rand io.Reader) (PrivKey, error) {
	_, k, err := ed25519.GenerateKey(rand)
	if err != nil {
		return PrivKey{}, fmt.Errorf("chain: generate key: %w", err)
	}
	return PrivKey{key: k}, nil
}

// PrivKeyFromSeed rebuilds a signing key from its 32-byte seed.
func PrivKeyFromSeed(seed []byte) (PrivKey, error) {
	if len(seed) != ed25519.SeedSize {
		return PrivKey{}, fmt.Errorf("chain: key seed must be %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	return PrivKey{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// Seed returns the 32-byte seed from which the key can be rebuilt. Handle with care.
func (p PrivKey) Seed() []byte { return p.key.Seed() }

// Public returns the key's public half.
func (p PrivKey) Public() PubKey {
	var k PubKey
	copy(k[:], p.key[32:])
	return k
}

// Sign signs msg in the given domain for the given chain.
func (p PrivKey) Sign(d Domain, chainID string, msg []byte) Signature {
	var s Signature
	copy(s[:], ed25519.Sign(p.key, signBytes(d, chainID, msg)))
	return s
}

// Domain names what a signature is for. It is part of the signed bytes, so a signature made for
// one purpose never verifies for another.
type Domain string

// The signing domains. Changing one invalidates every signature made in it.
const (
	DomainTx        Domain = "medledger/tx/v1"
	DomainVote      Domain = "medledger/vote/v1"
	DomainProposal  Domain = "medledger/proposal/v1"
	DomainLicence   Domain = "medledger/licence/v1"
	DomainNodeIdent Domain = "medledger/node-identity/v1"
	// DomainEnrolment: a provider's co-signature enrolling a patient (RegisterPatient).
	DomainEnrolment Domain = "medledger/enrolment/v1"
	// DomainKeyRotation: a new signing key's proof of possession (RotateKeys).
	DomainKeyRotation Domain = "medledger/key-rotation/v1"
)

// signBytes is the exact message signed: the domain, the chain id and the message, each length
// prefixed (canonical CBOR of a 3-element array), so no two (domain, chain, msg) triples collide.
func signBytes(d Domain, chainID string, msg []byte) []byte {
	return Encode([]any{string(d), chainID, msg})
}

// SignBytes exposes the bytes that Sign signs, for batch verification by callers.
func SignBytes(d Domain, chainID string, msg []byte) []byte { return signBytes(d, chainID, msg) }

// ErrBadSignature is returned for every signature that fails to verify.
var ErrBadSignature = errors.New("chain: invalid signature")

// zip215 makes single and batch verification agree on every input (including small-order and
// non-canonical points), so nodes that verify in batches and nodes that verify one by one can
// never disagree on a block's validity.
var zip215 = &voied.Options{Verify: voied.VerifyOptionsZIP_215}

// Verify checks sig over msg in domain d for chain chainID.
func Verify(pub PubKey, d Domain, chainID string, msg []byte, sig Signature) error {
	if !voied.VerifyWithOptions(voied.PublicKey(pub[:]), signBytes(d, chainID, msg), sig[:], zip215) {
		return ErrBadSignature
	}
	return nil
}

// BatchVerifier verifies many signatures at once, about twice as fast as one by one for large
// batches. It is not safe for concurrent use.
type BatchVerifier struct {
	v *voied.BatchVerifier
	n int
}

// NewBatchVerifier returns an empty batch.
func NewBatchVerifier() *BatchVerifier { return &BatchVerifier{v: voied.NewBatchVerifier()} }

// Add queues one signature check.
func (b *BatchVerifier) Add(pub PubKey, d Domain, chainID string, msg []byte, sig Signature) {
	b.v.AddWithOptions(voied.PublicKey(pub[:]), signBytes(d, chainID, msg), sig[:], zip215)
	b.n++
}

// Len is the number of queued checks.
func (b *BatchVerifier) Len() int { return b.n }

// Verify reports whether all queued signatures are valid and, per entry, which are.
func (b *BatchVerifier) Verify() (bool, []bool) {
	if b.n == 0 {
		return true, nil
	}
	return b.v.Verify(nil)
}
