package envelope_test

import (
	"bytes"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// Decoder property: never panic, and whatever is accepted re-encodes to exactly the input.

func FuzzDecodeEnvelope(f *testing.F) {
	k := testKey(f, 1)
	s := seal(f, []byte("seed"), testContext("r", 1), k)
	e := s.Envelopes[0].Encode()
	f.Add(e)
	f.Add(e[:len(e)-1])
	f.Add(append(bytes.Clone(e), 0))
	f.Add([]byte{})
	f.Add([]byte{0x84, 0x01, 0x01, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := envelope.DecodeEnvelope(data)
		if err != nil {
			if e != nil {
				t.Fatalf("value returned with error %v", err)
			}
			return
		}
		if again := e.Encode(); !bytes.Equal(again, data) {
			t.Fatalf("accepted input re-encodes differently:\n in  %x\n out %x", data, again)
		}
	})
}

func FuzzDecodeSealed(f *testing.F) {
	keys := testKeys(f, 2, 1)
	s := seal(f, []byte("seed"), testContext("r", 1), keys...)
	b := s.Encode()
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := envelope.DecodeSealed(data)
		if err != nil {
			if s != nil {
				t.Fatalf("value returned with error %v", err)
			}
			return
		}
		if again := s.Encode(); !bytes.Equal(again, data) {
			t.Fatalf("accepted input re-encodes differently:\n in  %x\n out %x", data, again)
		}
	})
}

// FuzzOpen builds a sealed record from a fuzzed ciphertext and a fuzzed envelope addressed to the
// key (bypassing DecodeSealed, so Open's own checks are exercised). Open must never panic, and may
// only succeed with the original plaintext.
func FuzzOpen(f *testing.F) {
	k := testKey(f, 1)
	ctx := testContext("r", 1)
	body := []byte("the original record body")
	s := seal(f, body, ctx, k)
	e := s.Envelopes[0]
	f.Add(s.Ciphertext, e.Version, uint16(e.Suite), e.Wrapped)
	f.Add(s.Ciphertext[:len(s.Ciphertext)-1], e.Version, uint16(e.Suite), e.Wrapped)
	f.Add(s.Ciphertext, e.Version, uint16(e.Suite), e.Wrapped[:len(e.Wrapped)-1])
	f.Add([]byte{}, uint8(1), uint16(1), []byte{})
	id := k.Public().KeyID()
	f.Fuzz(func(t *testing.T, ct []byte, version uint8, suite uint16, wrapped []byte) {
		fs := &envelope.Sealed{
			Ciphertext: ct,
			Envelopes:  []envelope.Envelope{{Version: version, Suite: envelope.Suite(suite), RecipientKeyID: id, Wrapped: wrapped}},
		}
		got, err := envelope.Open(k, fs, ctx)
		if err != nil {
			if got != nil {
				t.Fatalf("plaintext returned with error %v", err)
			}
			return
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("opened to a different plaintext %q", got)
		}
		if chain.Sum256(ct) != s.CiphertextHash() {
			t.Fatal("a different ciphertext opened")
		}
	})
}
