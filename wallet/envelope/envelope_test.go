package envelope_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

func TestKeySizesAndRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	pub := k.Public().Bytes()
	if len(pub) != envelope.PublicKeyLen {
		t.Fatalf("public key is %d bytes, want %d", len(pub), envelope.PublicKeyLen)
	}
	if len(pub) > chain.MaxEncryptionKeyLen {
		t.Fatalf("public key (%d bytes) does not fit chain.MaxEncryptionKeyLen (%d)", len(pub), chain.MaxEncryptionKeyLen)
	}
	if got := binary.BigEndian.Uint16(pub); got != uint16(envelope.SuiteMLKEM768X25519) {
		t.Fatalf("public key suite %d", got)
	}
	priv := k.Bytes()
	if len(priv) != envelope.PrivateKeyLen {
		t.Fatalf("private key is %d bytes, want %d", len(priv), envelope.PrivateKeyLen)
	}
	t.Logf("public key %d bytes, private key %d bytes", len(pub), len(priv))

	p, err := envelope.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(k.Public()) || p.Suite() != envelope.SuiteMLKEM768X25519 {
		t.Fatal("parsed public key differs")
	}
	if p.KeyID() != chain.Hash(sha256.Sum256(pub)) || envelope.KeyIDOf(pub) != p.KeyID() {
		t.Fatal("key id is not SHA-256 of the marshalled key")
	}
	k2, err := envelope.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Public().Equal(k.Public()) || !bytes.Equal(k2.Bytes(), priv) {
		t.Fatal("parsed private key differs")
	}

	// The parsed private key opens what was sealed to the original.
	ctx := testContext("r", 1)
	s := seal(t, []byte("hello"), ctx, k)
	if got, err := envelope.Open(k2, s, ctx); err != nil || string(got) != "hello" {
		t.Fatalf("open with parsed key: %q, %v", got, err)
	}
}

func TestGenerateKeyUsesRand(t *testing.T) {
	a, b, c := testKey(t, 7), testKey(t, 7), testKey(t, 8)
	if !a.Public().Equal(b.Public()) {
		t.Fatal("same randomness gave different keys")
	}
	if a.Public().Equal(c.Public()) {
		t.Fatal("different randomness gave the same key")
	}
	if _, err := envelope.GenerateKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatal("short randomness accepted")
	}
	if k, err := envelope.GenerateKey(nil); err != nil || k.Public().IsZero() {
		t.Fatalf("GenerateKey(nil): %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	k := testKey(t, 1)
	pub, priv := k.Public().Bytes(), k.Bytes()
	withSuite := func(b []byte, s uint16) []byte {
		c := bytes.Clone(b)
		binary.BigEndian.PutUint16(c, s)
		return c
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, envelope.ErrInvalidKey},
		{"one byte", []byte{0}, envelope.ErrInvalidKey},
		{"suite only", pub[:2], envelope.ErrInvalidKey},
		{"short", pub[:len(pub)-1], envelope.ErrInvalidKey},
		{"long", append(bytes.Clone(pub), 0), envelope.ErrInvalidKey},
		{"private key as public", priv, envelope.ErrInvalidKey},
		{"suite 0", withSuite(pub, 0), envelope.ErrUnknownSuite},
		{"suite 2", withSuite(pub, 2), envelope.ErrUnknownSuite},
		{"suite 0xffff", withSuite(pub, 0xffff), envelope.ErrUnknownSuite},
		{"hpke kem id as suite", withSuite(pub, 0x647a), envelope.ErrUnknownSuite},
	}
	for _, c := range cases {
		if _, err := envelope.ParsePublicKey(c.in); !errors.Is(err, c.want) {
			t.Errorf("ParsePublicKey(%s): %v, want %v", c.name, err, c.want)
		}
	}
	privCases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, envelope.ErrInvalidKey},
		{"suite only", priv[:2], envelope.ErrInvalidKey},
		{"short", priv[:len(priv)-1], envelope.ErrInvalidKey},
		{"long", append(bytes.Clone(priv), 0), envelope.ErrInvalidKey},
		{"public key as private", pub, envelope.ErrInvalidKey},
		{"suite 0", withSuite(priv, 0), envelope.ErrUnknownSuite},
		{"suite 2", withSuite(priv, 2), envelope.ErrUnknownSuite},
	}
	for _, c := range privCases {
		if _, err := envelope.ParsePrivateKey(c.in); !errors.Is(err, c.want) {
			t.Errorf("ParsePrivateKey(%s): %v, want %v", c.name, err, c.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 3, 10} {
		t.Run(fmt.Sprintf("%d recipients", n), func(t *testing.T) {
			keys := testKeys(t, n, 100)
			ctx := testContext("record", 3)
			body := testBody(4096)
			s := seal(t, body, ctx, keys...)
			if len(s.Envelopes) != n {
				t.Fatalf("%d envelopes, want %d", len(s.Envelopes), n)
			}
			if s.CiphertextHash() != chain.Hash(sha256.Sum256(s.Ciphertext)) {
				t.Fatal("CiphertextHash is not SHA-256 of the ciphertext")
			}
			for i, k := range keys {
				got, err := envelope.Open(k, s, ctx)
				if err != nil {
					t.Fatalf("recipient %d: %v", i, err)
				}
				if !bytes.Equal(got, body) {
					t.Fatalf("recipient %d: wrong plaintext", i)
				}
				// Each envelope stands alone: with only its own envelope left, a recipient
				// still opens.
				alone := &envelope.Sealed{Ciphertext: s.Ciphertext, Envelopes: []envelope.Envelope{s.Envelopes[i]}}
				if _, err := envelope.Open(k, alone, ctx); err != nil {
					t.Fatalf("recipient %d alone: %v", i, err)
				}
			}
			// The encoded form round-trips and still opens.
			d, err := envelope.DecodeSealed(s.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if got, err := envelope.Open(keys[n-1], d, ctx); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("open after decode: %v", err)
			}
		})
	}
}

func TestEmptyPlaintext(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("empty", 1)
	s := seal(t, nil, ctx, k)
	got, err := envelope.Open(k, s, ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("open: %q, %v", got, err)
	}
}

func TestOneMiB(t *testing.T) {
	keys := testKeys(t, 3, 1)
	ctx := testContext("big", 1)
	body := testBody(1 << 20)
	s := seal(t, body, ctx, keys...)
	for _, k := range keys {
		got, err := envelope.Open(k, s, ctx)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("open 1 MiB: %v", err)
		}
	}
	if _, err := envelope.DecodeSealed(s.Encode()); err != nil {
		t.Fatal(err)
	}
}

func TestSizes(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	for _, n := range []int{0, 1, 1000, 1 << 20} {
		s := seal(t, testBody(n), ctx, k)
		overhead := len(s.Ciphertext) - n
		if overhead > 64 {
			t.Fatalf("ciphertext overhead %d bytes for a %d-byte body", overhead, n)
		}
		t.Logf("body %d bytes: ciphertext %d bytes (+%d)", n, len(s.Ciphertext), overhead)
	}
	s := seal(t, []byte("x"), ctx, k)
	e := s.Envelopes[0].Encode()
	if len(e) > envelope.MaxEnvelopeLen {
		t.Fatalf("envelope %d bytes over MaxEnvelopeLen", len(e))
	}
	t.Logf("envelope %d bytes (wrapped %d), public key %d bytes", len(e), len(s.Envelopes[0].Wrapped), len(k.Public().Bytes()))
}

func TestNonRecipientCannotOpen(t *testing.T) {
	keys := testKeys(t, 3, 1)
	outsider := testKey(t, 50)
	ctx := testContext("r", 1)
	s := seal(t, []byte("secret"), ctx, keys...)
	if _, err := envelope.Open(outsider, s, ctx); !errors.Is(err, envelope.ErrNoEnvelope) {
		t.Fatalf("outsider: %v, want ErrNoEnvelope", err)
	}
	if _, err := envelope.WrapFor(outsider, s, ctx, outsider.Public()); !errors.Is(err, envelope.ErrNoEnvelope) {
		t.Fatalf("outsider WrapFor: %v, want ErrNoEnvelope", err)
	}
}

func TestForgedKeyIDFails(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	ctx := testContext("r", 1)
	s := seal(t, []byte("secret"), ctx, a)
	// b relabels a's envelope as its own.
	forged := clone(s)
	forged.Envelopes[0].RecipientKeyID = b.Public().KeyID()
	if _, err := envelope.Open(b, forged, ctx); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("wrong key with forged id: %v, want ErrDecrypt", err)
	}
	// A bogus envelope under a's id ahead of the genuine one does not stop a from opening (Open
	// tries every envelope with its key id).
	bogus := clone(s)
	bogus.Envelopes = append([]envelope.Envelope{forged.Envelopes[0]}, bogus.Envelopes...)
	bogus.Envelopes[0].RecipientKeyID = a.Public().KeyID()
	bogus.Envelopes[0].Wrapped = bytes.Clone(bogus.Envelopes[0].Wrapped)
	bogus.Envelopes[0].Wrapped[0] ^= 1
	if got, err := envelope.Open(a, bogus, ctx); err != nil || string(got) != "secret" {
		t.Fatalf("a with a bogus envelope ahead of its own: %v", err)
	}
}

func TestTamperCiphertext(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	body := testBody(100)
	s := seal(t, body, ctx, k)
	for i := range s.Ciphertext {
		for _, mask := range []byte{0x01, 0x80} {
			c := clone(s)
			c.Ciphertext[i] ^= mask
			got, err := envelope.Open(k, c, ctx)
			if err == nil {
				t.Fatalf("ciphertext byte %d ^ %#x: opened (%d bytes)", i, mask, len(got))
			}
		}
	}
	// Truncation and extension.
	for _, ct := range [][]byte{s.Ciphertext[:len(s.Ciphertext)-1], append(bytes.Clone(s.Ciphertext), 0), nil} {
		c := clone(s)
		c.Ciphertext = ct
		if _, err := envelope.Open(k, c, ctx); err == nil {
			t.Fatalf("ciphertext of %d bytes opened", len(ct))
		}
	}
}

// TestTamperNonceAndBody checks that the parts inside a well-formed header fail as ErrDecrypt (not
// as a decoding error): every byte of the nonce and of the body, tag included.
func TestTamperNonceAndBody(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	body := testBody(40)
	s := seal(t, body, ctx, k)
	// Layout: array(4), version, cipher, bytes(24) header (2), nonce, bytes(56) header (2), body.
	nonceAt := 1 + 1 + 1 + 2
	bodyAt := nonceAt + 24 + 2
	if len(s.Ciphertext) != bodyAt+len(body)+16 {
		t.Fatalf("unexpected ciphertext layout: %d bytes", len(s.Ciphertext))
	}
	for i := nonceAt; i < len(s.Ciphertext); i++ {
		if i == nonceAt+24 || i == nonceAt+25 {
			continue // the body's length header
		}
		c := clone(s)
		c.Ciphertext[i] ^= 0x01
		if _, err := envelope.Open(k, c, ctx); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("byte %d: %v, want ErrDecrypt", i, err)
		}
	}
}

func TestTamperEnvelope(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	s := seal(t, []byte("secret"), ctx, k)
	// Every byte of the wrapped key (KEM ciphertext, sealed data key, tag).
	for i := range s.Envelopes[0].Wrapped {
		c := clone(s)
		c.Envelopes[0].Wrapped[i] ^= 0x01
		if _, err := envelope.Open(k, c, ctx); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("wrapped byte %d: %v, want ErrDecrypt", i, err)
		}
	}
	// Every byte of the encoded envelope: it either no longer decodes or no longer opens.
	enc := s.Envelopes[0].Encode()
	for i := range enc {
		b := bytes.Clone(enc)
		b[i] ^= 0x01
		e, err := envelope.DecodeEnvelope(b)
		if err != nil {
			continue
		}
		c := &envelope.Sealed{Ciphertext: s.Ciphertext, Envelopes: []envelope.Envelope{*e}}
		if _, err := envelope.Open(k, c, ctx); err == nil {
			t.Fatalf("encoded envelope byte %d: still opens", i)
		}
	}
	// Wrong version or suite in an otherwise intact envelope.
	c := clone(s)
	c.Envelopes[0].Version = 3
	if _, err := envelope.Open(k, c, ctx); !errors.Is(err, chain.ErrUnknownVersion) {
		t.Fatalf("envelope version 3: %v", err)
	}
	c = clone(s)
	c.Envelopes[0].Version = envelope.EnvelopeVersionBatch
	if _, err := envelope.Open(k, c, ctx); !errors.Is(err, envelope.ErrMalformed) {
		t.Fatalf("a single envelope called a batch one: %v", err)
	}
	c = clone(s)
	c.Envelopes[0].Suite = 2
	if _, err := envelope.Open(k, c, ctx); !errors.Is(err, envelope.ErrUnknownSuite) {
		t.Fatalf("envelope suite 2: %v", err)
	}
}

func TestWrongContextFails(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("record-a", 2)
	s := seal(t, []byte("secret"), ctx, k)
	others := map[string]envelope.Context{
		"other record":  testContext("record-b", 2),
		"other version": testContext("record-a", 3),
		"other chain":   {ChainID: "other-chain", RecordID: ctx.RecordID, Version: ctx.Version},
	}
	for name, o := range others {
		if _, err := envelope.Open(k, s, o); !errors.Is(err, envelope.ErrDecrypt) {
			t.Errorf("%s: %v, want ErrDecrypt", name, err)
		}
		if _, err := envelope.WrapFor(k, s, o, k.Public()); !errors.Is(err, envelope.ErrDecrypt) {
			t.Errorf("WrapFor, %s: %v, want ErrDecrypt", name, err)
		}
	}
	if _, err := envelope.Open(k, s, envelope.Context{ChainID: "c"}); err == nil {
		t.Error("context without a record id accepted")
	}
	if _, err := envelope.Open(k, s, envelope.Context{RecordID: ctx.RecordID}); err == nil {
		t.Error("context without a chain id accepted")
	}
}

// TestMoveCiphertext moves a body to another record. Neither the old envelopes under the new
// record's context, nor the new record's (valid) envelopes with the old body, open it.
func TestMoveCiphertext(t *testing.T) {
	k := testKey(t, 1)
	ctxA, ctxB := testContext("record-a", 1), testContext("record-b", 1)
	a := seal(t, []byte("record a"), ctxA, k)
	b := seal(t, []byte("record b"), ctxB, k)
	moved := &envelope.Sealed{Ciphertext: a.Ciphertext, Envelopes: a.Envelopes}
	if _, err := envelope.Open(k, moved, ctxB); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("a's ciphertext and envelopes as record b: %v", err)
	}
	mixed := &envelope.Sealed{Ciphertext: a.Ciphertext, Envelopes: b.Envelopes}
	for _, ctx := range []envelope.Context{ctxA, ctxB} {
		if _, err := envelope.Open(k, mixed, ctx); !errors.Is(err, envelope.ErrDecrypt) {
			t.Fatalf("a's ciphertext with b's envelopes under %x: %v", ctx.RecordID[:4], err)
		}
	}
}

func TestWrapFor(t *testing.T) {
	patient, author, grantee, outsider := testKey(t, 1), testKey(t, 2), testKey(t, 3), testKey(t, 4)
	ctx := testContext("r", 1)
	body := testBody(5000)
	s := seal(t, body, ctx, patient, author)
	hash := s.CiphertextHash()
	if _, err := envelope.Open(grantee, s, ctx); !errors.Is(err, envelope.ErrNoEnvelope) {
		t.Fatalf("grantee before grant: %v", err)
	}
	e, err := envelope.WrapFor(patient, s, ctx, grantee.Public())
	if err != nil {
		t.Fatal(err)
	}
	if e.RecipientKeyID != grantee.Public().KeyID() || e.Suite != envelope.SuiteMLKEM768X25519 {
		t.Fatal("WrapFor envelope is not addressed to the grantee")
	}
	// The envelope travels on its own (encoded), then joins the record.
	d, err := envelope.DecodeEnvelope(e.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddEnvelope(*d); err != nil {
		t.Fatal(err)
	}
	if s.CiphertextHash() != hash {
		t.Fatal("WrapFor changed the ciphertext")
	}
	got, err := envelope.Open(grantee, s, ctx)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("grantee after grant: %v", err)
	}
	if _, err := envelope.Open(outsider, s, ctx); !errors.Is(err, envelope.ErrNoEnvelope) {
		t.Fatalf("outsider after grant: %v", err)
	}
	// A grantee can pass it on too (the ledger's consent rules decide whether it may).
	e2, err := envelope.WrapFor(grantee, s, ctx, author.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddEnvelope(e2); err != nil || len(s.Envelopes) != 3 {
		t.Fatalf("replace author's envelope: %v, %d envelopes", err, len(s.Envelopes))
	}
	if got, err := envelope.Open(author, s, ctx); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("author with replaced envelope: %v", err)
	}
	if _, err := envelope.DecodeSealed(s.Encode()); err != nil {
		t.Fatal(err)
	}
	// WrapFor refuses to pass on a key that does not open the body.
	c := clone(s)
	c.Ciphertext[len(c.Ciphertext)-1] ^= 1
	if _, err := envelope.WrapFor(patient, c, ctx, outsider.Public()); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("WrapFor with a tampered body: %v", err)
	}
	if _, err := envelope.WrapFor(patient, s, ctx, envelope.PublicKey{}); !errors.Is(err, envelope.ErrInvalidKey) {
		t.Fatalf("WrapFor to no key: %v", err)
	}
}

func TestSealRejects(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	if _, err := envelope.Seal(testRand(1), nil, ctx, nil); err == nil {
		t.Error("no recipients accepted")
	}
	if _, err := envelope.Seal(testRand(1), nil, ctx, recipients(k, k)); err == nil {
		t.Error("duplicate recipient accepted")
	}
	if _, err := envelope.Seal(testRand(1), nil, ctx, []envelope.Recipient{{}}); !errors.Is(err, envelope.ErrInvalidKey) {
		t.Errorf("zero key: %v", err)
	}
	if _, err := envelope.Seal(testRand(1), nil, envelope.Context{ChainID: "c"}, recipients(k)); err == nil {
		t.Error("context without record id accepted")
	}
	long := envelope.Context{ChainID: string(make([]byte, chain.MaxChainIDLen+1)), RecordID: ctx.RecordID}
	if _, err := envelope.Seal(testRand(1), nil, long, recipients(k)); err == nil {
		t.Error("over-long chain id accepted")
	}
	if _, err := envelope.Seal(testRand(1), make([]byte, envelope.MaxPlaintextLen+1), ctx, recipients(k)); !errors.Is(err, chain.ErrTooLarge) {
		t.Errorf("over-long plaintext: %v", err)
	}
	if _, err := envelope.Seal(bytes.NewReader(make([]byte, 40)), nil, ctx, recipients(k)); err == nil {
		t.Error("short randomness accepted")
	}
	many := make([]envelope.Recipient, envelope.MaxEnvelopes+1)
	for i := range many {
		many[i] = envelope.Recipient{Key: k.Public()}
	}
	if _, err := envelope.Seal(testRand(1), nil, ctx, many); err == nil {
		t.Error("too many recipients accepted")
	}
}

func TestFreshDataKeyPerSeal(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	body := []byte("same body")
	a, err := envelope.Seal(nil, body, ctx, recipients(k))
	if err != nil {
		t.Fatal(err)
	}
	b, err := envelope.Seal(nil, body, ctx, recipients(k))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Ciphertext, b.Ciphertext) || bytes.Equal(a.Envelopes[0].Wrapped, b.Envelopes[0].Wrapped) {
		t.Fatal("two seals of the same body are identical")
	}
	// An envelope from one seal does not open the other's body.
	mixed := &envelope.Sealed{Ciphertext: a.Ciphertext, Envelopes: b.Envelopes}
	if _, err := envelope.Open(k, mixed, ctx); !errors.Is(err, envelope.ErrDecrypt) {
		t.Fatalf("envelope of another seal: %v", err)
	}
}

func TestDecodeStrict(t *testing.T) {
	keys := testKeys(t, 2, 1)
	ctx := testContext("r", 1)
	s := seal(t, []byte("secret"), ctx, keys...)
	env := s.Envelopes[0].Encode()
	sealed := s.Encode()

	if _, err := envelope.DecodeEnvelope(append(bytes.Clone(env), 0)); !errors.Is(err, chain.ErrNonCanonical) {
		t.Errorf("envelope with a trailing byte: %v", err)
	}
	if _, err := envelope.DecodeEnvelope(make([]byte, envelope.MaxEnvelopeLen+1)); !errors.Is(err, chain.ErrTooLarge) {
		t.Errorf("over-long envelope: %v", err)
	}
	if _, err := envelope.DecodeSealed(append(bytes.Clone(sealed), 0)); !errors.Is(err, chain.ErrNonCanonical) {
		t.Errorf("sealed with a trailing byte: %v", err)
	}
	// A non-canonical integer (version 1 as a two-byte uint8 encoding).
	nc := append([]byte{env[0], 0x18, 0x01}, env[2:]...)
	if _, err := envelope.DecodeEnvelope(nc); !errors.Is(err, chain.ErrNonCanonical) {
		t.Errorf("non-canonical envelope: %v", err)
	}

	mod := func(f func(e *envelope.Envelope)) []byte {
		e := s.Envelopes[0]
		e.Wrapped = bytes.Clone(e.Wrapped)
		f(&e)
		return chain.Encode(&e)
	}
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"version 0", mod(func(e *envelope.Envelope) { e.Version = 0 }), chain.ErrUnknownVersion},
		{"version 3", mod(func(e *envelope.Envelope) { e.Version = 3 }), chain.ErrUnknownVersion},
		{"version 2 of a single envelope's length", mod(func(e *envelope.Envelope) { e.Version = envelope.EnvelopeVersionBatch }), envelope.ErrMalformed},
		{"suite 0", mod(func(e *envelope.Envelope) { e.Suite = 0 }), envelope.ErrUnknownSuite},
		{"suite 9", mod(func(e *envelope.Envelope) { e.Suite = 9 }), envelope.ErrUnknownSuite},
		{"zero key id", mod(func(e *envelope.Envelope) { e.RecipientKeyID = chain.ZeroHash }), envelope.ErrMalformed},
		{"short wrapped", mod(func(e *envelope.Envelope) { e.Wrapped = e.Wrapped[1:] }), envelope.ErrMalformed},
		{"long wrapped", mod(func(e *envelope.Envelope) { e.Wrapped = append(e.Wrapped, 0) }), envelope.ErrMalformed},
	}
	for _, c := range cases {
		if _, err := envelope.DecodeEnvelope(c.in); !errors.Is(err, c.want) {
			t.Errorf("DecodeEnvelope(%s): %v, want %v", c.name, err, c.want)
		}
	}

	sealedCases := []struct {
		name string
		s    envelope.Sealed
		want error
	}{
		{"no envelopes", envelope.Sealed{Ciphertext: s.Ciphertext}, envelope.ErrMalformed},
		{"duplicate recipient", envelope.Sealed{Ciphertext: s.Ciphertext, Envelopes: []envelope.Envelope{s.Envelopes[0], s.Envelopes[0]}}, envelope.ErrMalformed},
		{"bad ciphertext", envelope.Sealed{Ciphertext: []byte{0x80}, Envelopes: s.Envelopes}, envelope.ErrMalformed},
		{"bad envelope", envelope.Sealed{Ciphertext: s.Ciphertext, Envelopes: []envelope.Envelope{{Version: 1, Suite: 1}}}, envelope.ErrMalformed},
	}
	for _, c := range sealedCases {
		if _, err := envelope.DecodeSealed(c.s.Encode()); !errors.Is(err, c.want) {
			t.Errorf("DecodeSealed(%s): %v, want %v", c.name, err, c.want)
		}
	}
}

func TestAddEnvelopeLimits(t *testing.T) {
	k := testKey(t, 1)
	ctx := testContext("r", 1)
	s := seal(t, []byte("x"), ctx, k)
	if err := s.AddEnvelope(envelope.Envelope{Version: 1, Suite: 1}); err == nil {
		t.Fatal("invalid envelope added")
	}
	e := s.Envelopes[0]
	for i := len(s.Envelopes); i < envelope.MaxEnvelopes; i++ {
		e.RecipientKeyID = chain.Sum256(fmt.Appendf(nil, "k%d", i))
		if err := s.AddEnvelope(e); err != nil {
			t.Fatal(err)
		}
	}
	e.RecipientKeyID = chain.Sum256([]byte("one too many"))
	if err := s.AddEnvelope(e); !errors.Is(err, chain.ErrTooLarge) {
		t.Fatalf("envelope %d: %v", envelope.MaxEnvelopes+1, err)
	}
	if _, err := envelope.DecodeSealed(s.Encode()); err != nil {
		t.Fatalf("a sealed record with MaxEnvelopes envelopes must decode: %v", err)
	}
}
