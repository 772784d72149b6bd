package envelope_test

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// testRand is a seeded, reproducible randomness source (never for production keys).
func testRand(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func testKey(tb testing.TB, seed uint64) *envelope.PrivateKey {
	tb.Helper()
	k, err := envelope.GenerateKey(testRand(seed))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func testKeys(tb testing.TB, n int, firstSeed uint64) []*envelope.PrivateKey {
	tb.Helper()
	keys := make([]*envelope.PrivateKey, n)
	for i := range keys {
		keys[i] = testKey(tb, firstSeed+uint64(i))
	}
	return keys
}

func recipients(keys ...*envelope.PrivateKey) []envelope.Recipient {
	rs := make([]envelope.Recipient, len(keys))
	for i, k := range keys {
		rs[i] = envelope.Recipient{Key: k.Public()}
	}
	return rs
}

func testContext(record string, version uint64) envelope.Context {
	return envelope.Context{ChainID: "medledger-test", RecordID: chain.Sum256([]byte(record)), Version: version}
}

func testBody(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(testRand(uint64(n)+1000), b); err != nil {
		panic(err)
	}
	return b
}

func seal(tb testing.TB, plaintext []byte, ctx envelope.Context, keys ...*envelope.PrivateKey) *envelope.Sealed {
	tb.Helper()
	s, err := envelope.Seal(testRand(99), plaintext, ctx, recipients(keys...))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// clone copies s deeply, so a test can tamper with the copy.
func clone(s *envelope.Sealed) *envelope.Sealed {
	c := &envelope.Sealed{Ciphertext: append([]byte(nil), s.Ciphertext...)}
	for _, e := range s.Envelopes {
		e.Wrapped = append([]byte(nil), e.Wrapped...)
		c.Envelopes = append(c.Envelopes, e)
	}
	return c
}
