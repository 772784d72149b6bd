package envelope

import (
	"crypto/hpke"
	"errors"
	"fmt"
	"io"

	"github.com/medledger/medledger/chain"
	"golang.org/x/crypto/chacha20poly1305"
)

// Seal encrypts plaintext for recipients under a fresh data key and binds it to ctx.
//
// The data key and the body nonce are read from rand (crypto/rand.Reader if nil), which must be a
// cryptographically secure source outside tests: a repeated data key and nonce would break the
// body's confidentiality. The HPKE encapsulation inside each envelope always draws its ephemeral
// randomness from crypto/rand (crypto/hpke takes no reader).
//
// Recipients must be 1..MaxEnvelopes distinct keys.
func Seal(rand io.Reader, plaintext []byte, ctx Context, recipients []Recipient) (*Sealed, error) {
	return seal(rand, plaintext, ctx, recipients, wrap)
}

// seal is Seal with wrapKey wrapping the data key to each recipient.
func seal(rand io.Reader, plaintext []byte, ctx Context, recipients []Recipient,
	wrapKey func(key, ctxBytes []byte, to PublicKey) (Envelope, error)) (*Sealed, error) {
	if err := ctx.Validate(); err != nil {
		return nil, err
	}
	if len(plaintext) > MaxPlaintextLen {
		return nil, fmt.Errorf("%w: plaintext is %d bytes, limit %d", chain.ErrTooLarge, len(plaintext), MaxPlaintextLen)
	}
	if len(recipients) == 0 || len(recipients) > MaxEnvelopes {
		return nil, fmt.Errorf("envelope: seal needs 1..%d recipients, got %d", MaxEnvelopes, len(recipients))
	}
	seen := make(map[chain.Hash]bool, len(recipients))
	for i, r := range recipients {
		if r.Key.IsZero() {
			return nil, fmt.Errorf("%w: recipient %d has no key", ErrInvalidKey, i)
		}
		id := r.Key.KeyID()
		if seen[id] {
			return nil, fmt.Errorf("envelope: recipient %d repeats key %s", i, id.Short())
		}
		seen[id] = true
	}

	rand = randOrDefault(rand)
	key := make([]byte, DataKeyLen)
	defer clear(key)
	nonce := make([]byte, xNonceLen)
	if _, err := io.ReadFull(rand, key); err != nil {
		return nil, fmt.Errorf("envelope: data key: %w", err)
	}
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("envelope: nonce: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: body cipher: %w", err)
	}
	ctxBytes := ctx.Bytes()
	c := ciphertext{Version: CiphertextVersion, Cipher: CipherXChaCha20Poly1305, Nonce: nonce}
	c.Body = aead.Seal(nil, nonce, plaintext, bodyAD(c, ctxBytes))

	s := &Sealed{Ciphertext: chain.Encode(&c), Envelopes: make([]Envelope, 0, len(recipients))}
	for _, r := range recipients {
		e, err := wrapKey(key, ctxBytes, r.Key)
		if err != nil {
			return nil, err
		}
		s.Envelopes = append(s.Envelopes, e)
	}
	return s, nil
}

// Open finds priv's envelope in s, unwraps the data key and decrypts and authenticates the body
// under ctx. It fails with ErrNoEnvelope if s has no envelope for priv, ErrDecrypt if an envelope
// or the body does not authenticate (wrong key, tampering, another record's Context),
// ErrUnknownSuite or ErrMalformed for ciphertexts and envelopes it cannot read.
func Open(priv *PrivateKey, s *Sealed, ctx Context) ([]byte, error) {
	key, plaintext, err := open(priv, s, ctx)
	clear(key)
	return plaintext, err
}

// WrapFor makes a new envelope for to, holding the data key of s, without re-encrypting the body.
// priv must be able to open s (it has an envelope there); the body is decrypted and authenticated
// first, so a key that does not open the body is never passed on. Add the result with
// Sealed.AddEnvelope or store it on its own.
func WrapFor(priv *PrivateKey, s *Sealed, ctx Context, to PublicKey) (Envelope, error) {
	if to.IsZero() {
		return Envelope{}, fmt.Errorf("%w: no recipient key", ErrInvalidKey)
	}
	key, _, err := open(priv, s, ctx)
	defer clear(key)
	if err != nil {
		return Envelope{}, err
	}
	return wrap(key, ctx.Bytes(), to)
}

// open returns the data key and the plaintext of s for priv.
func open(priv *PrivateKey, s *Sealed, ctx Context) (key, plaintext []byte, err error) {
	return openCached(priv, s, ctx, nil)
}

// openCached is open, taking batch keys already opened from (and adding new ones to) opened
// when it is not nil.
func openCached(priv *PrivateKey, s *Sealed, ctx Context, opened *openedKeys) (key, plaintext []byte, err error) {
	if priv == nil || s == nil {
		return nil, nil, errors.New("envelope: open needs a key and a sealed record")
	}
	if err := ctx.Validate(); err != nil {
		return nil, nil, err
	}
	c, err := decodeCiphertext(s.Ciphertext)
	if err != nil {
		return nil, nil, err
	}
	ctxBytes := ctx.Bytes()
	ad := bodyAD(*c, ctxBytes)
	id := priv.pub.KeyID()
	found := false
	err = ErrNoEnvelope
	for i := range s.Envelopes {
		e := &s.Envelopes[i]
		if e.RecipientKeyID != id {
			continue
		}
		found = true
		key, uerr := unwrap(priv, e, ctx, ctxBytes, opened)
		if uerr != nil {
			err = uerr
			continue
		}
		aead, aerr := chacha20poly1305.NewX(key)
		if aerr != nil {
			clear(key)
			return nil, nil, fmt.Errorf("envelope: body cipher: %w", aerr)
		}
		plaintext, oerr := aead.Open(nil, c.Nonce, c.Body, ad)
		if oerr != nil {
			clear(key)
			err = fmt.Errorf("%w: body does not authenticate", ErrDecrypt)
			continue
		}
		return key, plaintext, nil
	}
	if !found {
		return nil, nil, fmt.Errorf("%w (key %s)", ErrNoEnvelope, id.Short())
	}
	return nil, nil, err
}

// wrap seals the data key to one recipient.
func wrap(key, ctxBytes []byte, to PublicKey) (Envelope, error) {
	p, err := params(to.suite)
	if err != nil {
		return Envelope{}, err
	}
	id := to.KeyID()
	w, err := hpke.Seal(to.key, p.kdf, p.aead, wrapInfoBytes(to.suite, id, ctxBytes), key)
	if err != nil {
		return Envelope{}, fmt.Errorf("envelope: wrap data key: %w", err)
	}
	if len(w) != p.wrappedLen {
		// The suite's sizes are constants of this package; a mismatch is a programmer error.
		panic(fmt.Sprintf("envelope: wrapped key is %d bytes, suite %v expects %d", len(w), to.suite, p.wrappedLen))
	}
	return Envelope{Version: EnvelopeVersion, Suite: to.suite, RecipientKeyID: id, Wrapped: w}, nil
}

// unwrap opens one envelope addressed to priv: a single one (EnvelopeVersion) or a batch one
// (EnvelopeVersionBatch).
func unwrap(priv *PrivateKey, e *Envelope, ctx Context, ctxBytes []byte, opened *openedKeys) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.Suite != priv.suite {
		return nil, fmt.Errorf("%w: envelope suite %v, key suite %v", ErrDecrypt, e.Suite, priv.suite)
	}
	p, err := params(e.Suite)
	if err != nil {
		return nil, err
	}
	if e.Version == EnvelopeVersionBatch {
		key, err := unwrapBatch(priv, e, ctx, ctxBytes, p, opened)
		if err != nil {
			return nil, err
		}
		if len(key) != DataKeyLen {
			clear(key)
			return nil, fmt.Errorf("%w: data key is %d bytes", ErrMalformed, len(key))
		}
		return key, nil
	}
	key, err := hpke.Open(priv.key, p.kdf, p.aead, wrapInfoBytes(e.Suite, e.RecipientKeyID, ctxBytes), e.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope does not authenticate", ErrDecrypt)
	}
	if len(key) != DataKeyLen {
		clear(key)
		return nil, fmt.Errorf("%w: data key is %d bytes", ErrMalformed, len(key))
	}
	return key, nil
}

func bodyAD(c ciphertext, ctxBytes []byte) []byte {
	return chain.Encode(&bodyADWire{Domain: domainBody, Version: c.Version, Cipher: c.Cipher, Context: ctxBytes})
}

func wrapInfoBytes(s Suite, keyID chain.Hash, ctxBytes []byte) []byte {
	return chain.Encode(&wrapInfo{Domain: domainWrap, Suite: s, RecipientKeyID: keyID, Context: ctxBytes})
}
