package envelope_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medledger/medledger/wallet/envelope"
)

var update = flag.Bool("update", false, "rewrite testdata/sealed-v1.hex")

// TestGoldenSealedV1 opens a sealed record stored by an earlier build: records on disk and
// envelopes on the ledger must stay openable, so the body AD, the HPKE info and every encoding
// are pinned. Regenerate (only for a deliberate format change, with a new version) with -update.
func TestGoldenSealedV1(t *testing.T) {
	const body = "golden record body, format v1"
	k := testKey(t, 4242)
	ctx := testContext("golden", 7)
	path := filepath.Join("testdata", "sealed-v1.hex")
	if *update {
		s := seal(t, []byte(body), ctx, k)
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(s.Encode())+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.DecodeSealed(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := envelope.Open(k, s, ctx)
	if err != nil || string(got) != body {
		t.Fatalf("golden record: %q, %v", got, err)
	}
	// The ciphertext is a function of the seeded randomness alone, so a fresh seal reproduces it
	// byte for byte (the envelope does not: HPKE draws from crypto/rand).
	if fresh := seal(t, []byte(body), ctx, k); !bytes.Equal(fresh.Ciphertext, s.Ciphertext) {
		t.Fatal("the ciphertext format changed")
	}
}
