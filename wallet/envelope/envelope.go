// Package envelope seals records: each record gets a fresh 32-byte data key, its body is
// encrypted with an AEAD (XChaCha20-Poly1305, random 24-byte nonce) bound to the record's Context,
// and the data key is wrapped with HPKE (RFC 9180, the standard library's crypto/hpke) to each
// recipient's public key, one independent envelope per recipient.
//
// The default suite is post-quantum hybrid: the MLKEM768-X25519 KEM with HKDF-SHA256 and
// ChaCha20-Poly1305. Keys and envelopes carry a suite id so the suite can change later.
//
// A Context (chain id, record id, record version) is authenticated by the body AEAD and by every
// envelope, so neither a ciphertext nor an envelope can be moved to another record, version or
// chain. A holder of a key that can open a record can wrap its data key for a new recipient
// without re-encrypting the body (WrapFor), which is how a consent grant gives access to records
// that already exist.
//
// Everything that travels (the ciphertext, an envelope, a sealed record) has one canonical CBOR
// encoding (chain.Encode) with a version field, and its decoder refuses anything else and names
// its size limit.
package envelope

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/medledger/medledger/chain"
)

// Errors returned by this package; test them with errors.Is.
var (
	// ErrNoEnvelope: the sealed record holds no envelope for the key.
	ErrNoEnvelope = errors.New("envelope: no envelope for this key")
	// ErrDecrypt: an envelope or the body failed to authenticate (wrong key, tampered data, or
	// the wrong Context).
	ErrDecrypt = errors.New("envelope: decryption failed")
	// ErrUnknownSuite: a key, envelope or ciphertext names a suite this build does not know.
	ErrUnknownSuite = errors.New("envelope: unknown suite")
	// ErrInvalidKey: a marshalled key has the wrong length or invalid key material.
	ErrInvalidKey = errors.New("envelope: invalid key")
	// ErrMalformed: an encoding or a field is not what this package produces.
	ErrMalformed = errors.New("envelope: malformed")
)

// Encoding versions.
const (
	CiphertextVersion = 1
	EnvelopeVersion   = 1
	SealedVersion     = 1
)

// Size limits, in bytes unless named otherwise. Every decoder checks its input against one of
// them before decoding.
const (
	// DataKeyLen is the per-record data key.
	DataKeyLen = 32
	// MaxPlaintextLen bounds a record body.
	MaxPlaintextLen = 16 << 20
	// ciphertextOverhead bounds what the encoded ciphertext adds to the body: CBOR framing,
	// version, cipher id, nonce and tag (50 bytes for CipherXChaCha20Poly1305).
	ciphertextOverhead = 64
	// MaxCiphertextLen bounds an encoded ciphertext (a blob).
	MaxCiphertextLen = MaxPlaintextLen + ciphertextOverhead
	// MaxEnvelopeLen bounds an encoded envelope (1208 bytes for SuiteMLKEM768X25519; the rest is
	// room for a larger suite later).
	MaxEnvelopeLen = 4096
	// MaxEnvelopes bounds the number of envelopes (recipients) of one sealed record.
	MaxEnvelopes = 1024
	// MaxSealedLen bounds an encoded Sealed.
	MaxSealedLen = MaxCiphertextLen + MaxEnvelopes*MaxEnvelopeLen + 64
)

// Domain strings: they separate this package's AEAD inputs from any other use of the same keys.
const (
	domainBody = "medledger/record-body/v1"
	domainWrap = "medledger/record-key/v1"
)

// Context names the record a ciphertext belongs to. It is authenticated (as its canonical CBOR
// encoding) by the body AEAD and by every envelope, and must be given again to open.
type Context struct {
	_        struct{} `cbor:",toarray"`
	ChainID  string
	RecordID chain.Hash
	Version  uint64 // the record's version (an amendment is a new version)
}

// Bytes returns the canonical encoding of c.
func (c Context) Bytes() []byte { return chain.Encode(&c) }

// Validate checks that c names a record: a chain id of 1..chain.MaxChainIDLen bytes of UTF-8 and
// a non-zero record id.
func (c Context) Validate() error {
	if c.ChainID == "" || len(c.ChainID) > chain.MaxChainIDLen || !utf8.ValidString(c.ChainID) {
		return fmt.Errorf("envelope: context chain id must be 1..%d bytes of UTF-8, got %d bytes", chain.MaxChainIDLen, len(c.ChainID))
	}
	if c.RecordID.IsZero() {
		return errors.New("envelope: context without a record id")
	}
	return nil
}

// Recipient is someone a record's data key is wrapped to.
type Recipient struct {
	Key PublicKey
}

// Envelope is a record's data key wrapped to one recipient.
type Envelope struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	Suite          Suite
	RecipientKeyID chain.Hash // PublicKey.KeyID of the recipient
	Wrapped        []byte     // HPKE encapsulated key followed by the sealed data key
}

// Encode returns the canonical encoding of e.
func (e *Envelope) Encode() []byte { return chain.Encode(e) }

// Validate checks e's form: version, a known suite, a key id, and the wrapped key's length.
func (e *Envelope) Validate() error {
	if e.Version != EnvelopeVersion && e.Version != EnvelopeVersionBatch {
		return fmt.Errorf("%w: envelope version %d (this build understands %d and %d)", chain.ErrUnknownVersion, e.Version, EnvelopeVersion, EnvelopeVersionBatch)
	}
	p, err := params(e.Suite)
	if err != nil {
		return err
	}
	if e.RecipientKeyID.IsZero() {
		return fmt.Errorf("%w: envelope without a recipient key id", ErrMalformed)
	}
	want := p.wrappedLen
	if e.Version == EnvelopeVersionBatch {
		want += batchWrapExtra
	}
	if len(e.Wrapped) != want {
		return fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrMalformed, len(e.Wrapped), want)
	}
	return nil
}

// DecodeEnvelope decodes and validates an envelope (at most MaxEnvelopeLen bytes, canonical).
func DecodeEnvelope(data []byte) (*Envelope, error) {
	var e Envelope
	if err := chain.DecodeCanonical("envelope", data, MaxEnvelopeLen, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Body ciphers: the AEAD that encrypts a record body under its data key.
const (
	// CipherXChaCha20Poly1305 is XChaCha20-Poly1305 with a random 24-byte nonce
	// (golang.org/x/crypto/chacha20poly1305.NewX).
	CipherXChaCha20Poly1305 uint16 = 1
)

const (
	xNonceLen = 24
	xTagLen   = 16
)

// ciphertext is the encoded form of Sealed.Ciphertext: a header (version, cipher, nonce) and the
// AEAD output.
type ciphertext struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Cipher  uint16
	Nonce   []byte
	Body    []byte
}

func decodeCiphertext(data []byte) (*ciphertext, error) {
	var c ciphertext
	if err := chain.DecodeCanonical("ciphertext", data, MaxCiphertextLen, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if c.Version != CiphertextVersion {
		return nil, fmt.Errorf("%w: ciphertext version %d (this build understands %d)", chain.ErrUnknownVersion, c.Version, CiphertextVersion)
	}
	if c.Cipher != CipherXChaCha20Poly1305 {
		return nil, fmt.Errorf("%w: body cipher %d", ErrUnknownSuite, c.Cipher)
	}
	if len(c.Nonce) != xNonceLen || len(c.Body) < xTagLen {
		return nil, fmt.Errorf("%w: nonce %d bytes (want %d), body %d bytes (at least %d)", ErrMalformed, len(c.Nonce), xNonceLen, len(c.Body), xTagLen)
	}
	return &c, nil
}

// bodyADWire is the additional data of the body AEAD: the domain, the header and the Context.
type bodyADWire struct {
	_       struct{} `cbor:",toarray"`
	Domain  string
	Version uint8
	Cipher  uint16
	Context []byte
}

// wrapInfo is the HPKE info of an envelope: the domain, the suite, the recipient's key id and the
// Context.
type wrapInfo struct {
	_              struct{} `cbor:",toarray"`
	Domain         string
	Suite          Suite
	RecipientKeyID chain.Hash
	Context        []byte
}

// Sealed is a sealed record: the ciphertext (a content-addressed blob) and one envelope per
// recipient.
type Sealed struct {
	Ciphertext []byte
	Envelopes  []Envelope
}

// CiphertextHash returns SHA-256 of the ciphertext: its content address.
func (s *Sealed) CiphertextHash() chain.Hash { return chain.Sum256(s.Ciphertext) }

// Envelope returns the envelope for a key id, if there is one.
func (s *Sealed) Envelope(keyID chain.Hash) (Envelope, bool) {
	for _, e := range s.Envelopes {
		if e.RecipientKeyID == keyID {
			return e, true
		}
	}
	return Envelope{}, false
}

// AddEnvelope adds e (for example from WrapFor), replacing an envelope for the same recipient.
func (s *Sealed) AddEnvelope(e Envelope) error {
	if err := e.Validate(); err != nil {
		return err
	}
	for i := range s.Envelopes {
		if s.Envelopes[i].RecipientKeyID == e.RecipientKeyID {
			s.Envelopes[i] = e
			return nil
		}
	}
	if len(s.Envelopes) >= MaxEnvelopes {
		return fmt.Errorf("%w: more than %d envelopes", chain.ErrTooLarge, MaxEnvelopes)
	}
	s.Envelopes = append(s.Envelopes, e)
	return nil
}

// sealedWire is the encoded form of Sealed.
type sealedWire struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Ciphertext []byte
	Envelopes  []Envelope
}

// Encode returns the canonical encoding of s.
func (s *Sealed) Encode() []byte {
	return chain.Encode(&sealedWire{Version: SealedVersion, Ciphertext: s.Ciphertext, Envelopes: s.Envelopes})
}

// DecodeSealed decodes and validates a sealed record (at most MaxSealedLen bytes, canonical): a
// well-formed ciphertext header and 1..MaxEnvelopes valid envelopes with distinct recipients.
func DecodeSealed(data []byte) (*Sealed, error) {
	var w sealedWire
	if err := chain.DecodeCanonical("sealed record", data, MaxSealedLen, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if w.Version != SealedVersion {
		return nil, fmt.Errorf("%w: sealed record version %d (this build understands %d)", chain.ErrUnknownVersion, w.Version, SealedVersion)
	}
	if _, err := decodeCiphertext(w.Ciphertext); err != nil {
		return nil, err
	}
	if len(w.Envelopes) == 0 || len(w.Envelopes) > MaxEnvelopes {
		return nil, fmt.Errorf("%w: %d envelopes, want 1..%d", ErrMalformed, len(w.Envelopes), MaxEnvelopes)
	}
	seen := make(map[chain.Hash]bool, len(w.Envelopes))
	for i := range w.Envelopes {
		e := &w.Envelopes[i]
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("envelope %d: %w", i, err)
		}
		if seen[e.RecipientKeyID] {
			return nil, fmt.Errorf("%w: two envelopes for recipient %s", ErrMalformed, e.RecipientKeyID.Short())
		}
		seen[e.RecipientKeyID] = true
	}
	return &Sealed{Ciphertext: w.Ciphertext, Envelopes: w.Envelopes}, nil
}
