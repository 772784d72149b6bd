package billing

import (
	"bytes"
	"errors"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func addr(b byte) chain.Address {
	var a chain.Address
	for i := range a {
		a[i] = b
	}
	return a
}

func TestNewKey(t *testing.T) {
	a, b := testKey(t), testKey(t)
	if len(a) != KeyLen || bytes.Equal(a, b) {
		t.Fatalf("keys %x %x", a, b)
	}
}

func TestCodeFingerprint(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, KeyLen)
	k2 := bytes.Repeat([]byte{2}, KeyLen)
	f := CodeFingerprint(k1, "99213")
	if f != CodeFingerprint(k1, "99213") {
		t.Fatal("fingerprint not stable")
	}
	if f != CodeFingerprint(k1, "  99213 ") {
		t.Fatal("spaces around the code change the fingerprint")
	}
	if f == CodeFingerprint(k2, "99213") {
		t.Fatal("fingerprint does not depend on the key")
	}
	if f == CodeFingerprint(k1, "99214") {
		t.Fatal("two codes, one fingerprint")
	}
	if CodeFingerprint(k1, "g0438") == CodeFingerprint(k1, "G0438") {
		t.Fatal("codes are case-sensitive")
	}
	// Pinned (checked with Python's hmac module): the fingerprint is part of the ledger format
	// and must never drift.
	const want = "1399bf37337c54b5739731c3a533dd3ff9de347ee631c92ec4e2f68ec9f27a00"
	if got := f.String(); got != want {
		t.Fatalf("CodeFingerprint(0x01…, 99213) = %s, want %s", got, want)
	}
}

func TestDupPrint(t *testing.T) {
	k := testKey(t)
	p := addr(7)
	base := DupPrint(k, p, 19000, []string{"99213", "36415"})
	if base != DupPrint(k, p, 19000, []string{"36415", "99213"}) {
		t.Fatal("order changes the print")
	}
	if base != DupPrint(k, p, 19000, []string{"36415", "99213", "99213", " 36415"}) {
		t.Fatal("repeats change the print")
	}
	for name, other := range map[string]chain.Hash{
		"day":     DupPrint(k, p, 19001, []string{"99213", "36415"}),
		"patient": DupPrint(k, addr(8), 19000, []string{"99213", "36415"}),
		"codes":   DupPrint(k, p, 19000, []string{"99213"}),
		"key":     DupPrint(testKey(t), p, 19000, []string{"99213", "36415"}),
		// length-prefixed: "99" + "213" is not "99213"
		"split": DupPrint(k, p, 19000, []string{"99", "213", "36415"}),
	} {
		if other == base {
			t.Errorf("changing the %s keeps the print", name)
		}
	}
}

func TestSealOpenKey(t *testing.T) {
	priv, err := envelope.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	kc := KeyContext{ChainID: "medledger-test", Payer: addr(1), Provider: addr(2)}
	env, err := SealKey(key, priv.Public().Bytes(), kc)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) > chain.MaxKeyEnvelopeLen {
		t.Fatalf("envelope %d bytes", len(env))
	}
	got, err := OpenKey(env, priv, kc, KeyCommit(key))
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("open: %v", err)
	}
	s := &chain.PayerSchedule{Provider: kc.Provider, KeyCommit: KeyCommit(key), KeyEnvelope: env}
	if got, err := OpenScheduleKey(s, kc.ChainID, kc.Payer, priv); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("open schedule key: %v", err)
	}

	if _, err := OpenKey(env, priv, kc, KeyCommit(testKey(t))); !errors.Is(err, ErrKeyCommit) {
		t.Fatalf("wrong commitment: %v", err)
	}
	other, _ := envelope.GenerateKey(nil)
	if _, err := OpenKey(env, other, kc, chain.Hash{}); err == nil {
		t.Fatal("another key opened the envelope")
	}
	moved := kc
	moved.Provider = addr(3)
	if _, err := OpenKey(env, priv, moved, chain.Hash{}); err == nil {
		t.Fatal("envelope opened for another pair")
	}
	if _, err := SealKey(key[:5], priv.Public().Bytes(), kc); err == nil {
		t.Fatal("short key sealed")
	}
	if _, err := SealKey(key, []byte{0, 1, 2}, kc); err == nil {
		t.Fatal("sealed to a malformed public key")
	}
	if _, err := OpenKey([]byte("junk"), priv, kc, chain.Hash{}); err == nil {
		t.Fatal("opened junk")
	}
}

// The duplicate print is part of the ledger format (chain.ClaimDupPrint): a change would let a
// claim filed after an upgrade escape the duplicate rule against one filed before. Pinned, and
// checked with Python's hashlib over the CBOR written by hand: 84, text(22) domain, bytes(20)
// patient, uint16 day, array(2) of bytes(32) HMAC-SHA256 code fingerprints, sorted.
func TestDupPrintPinned(t *testing.T) {
	got := DupPrint(bytes.Repeat([]byte{1}, KeyLen), addr(7), 19000, []string{"99213", "36415"}).String()
	const want = "b4c569ce0f5c0c6f9a3d4b613e33bbb2ca340af9eff4e100307736d09ab8b4f6"
	if got != want {
		t.Fatalf("DupPrint = %s, want %s", got, want)
	}
}
