package mnemonic

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// bip39Vectors are the official BIP-39 test vectors of 256-bit entropy (trezor/python-mnemonic
// vectors.json, English, passphrase "TREZOR").
var bip39Vectors = []struct{ entropy, mnemonic, seed string }{
	{"0000000000000000000000000000000000000000000000000000000000000000",
		"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
		"bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8"},
	{"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
		"legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title",
		"bc09fca1804f7e69da93c2f2028eb238c227f2e9dda30cd63699232578480a4021b146ad717fbb7e451ce9eb835f43620bf5c514db0f8add49f5d121449d3e87"},
	{"8080808080808080808080808080808080808080808080808080808080808080",
		"letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless",
		"c0c519bd0e91a2ed54357d9d1ebef6f5af218a153624cf4f2da911a0ed8f7a09e2ef61af0aca007096df430022f7a2b6fb91661a9589097069720d015e4e982f"},
	{"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote",
		"dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad"},
	{"3e141609b97933b66a060dcddc71fad1d91677db872031e85f4c015c5e7e8982",
		"dignity pass list indicate nasty swamp pool script soccer toe leaf photo multiply desk host tomato cradle drill spread actor shine dismiss champion exotic",
		"ff7f3184df8696d8bef94b6c03114dbee0ef89ff938712301d27ed8336ca89ef9635da20af07d4175f2bf5f3de130f39c9d9e8dd0472489c19b1a020a940da67"},
	{"2c85efc7f24ee4573d2b81a6ec66cee209b2dcbd09d8eddc51e0215b0b68e416",
		"clutch control vehicle tonight unusual clog visa ice plunge glimpse recipe series open hour vintage deposit universe tip job dress radar refuse motion taste",
		"fe908f96f46668b2d5b37d82f558c77ed0d69dd0e7e043a5b0511c48c2f1064694a956f86360c93dd04052a8899497ce9e985ebe0c8c52b955e6ae86d4ff4449"},
	{"4fa1a8bc3e6d80ee1316050e862c1812031493212b7ec3f3bb1b08f168cabeef",
		"exile ask congress lamp submit jacket era scheme attend cousin alcohol catch course end lucky hurt sentence oven short ball bird grab wing top",
		"095ee6f817b4c2cb30a5a797360a81a40ab0f9a4e25ecd672a3f58a0b5ba0687c096a6b14d2c0deb3bdefce4f61d01ae07417d502429352e27695163f7447a8c"},
	{"15da872c95a13dd738fbf50e427583ad61f18fd99f628c417a61cf8343c90419",
		"beyond stage sleep clip because twist token leaf atom beauty genius food business side grid unable middle armed observe pair crouch tonight away coconut",
		"b15509eaa2d09d3efd3e006ef42151b30367dc6e3aa5e44caba3fe4d3e352e65101fbdb86a96776b91946ff06f8eac594dc6ee1d3e82a42dfe1b40fef6bcc3fd"},
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBIP39Vectors(t *testing.T) {
	for _, v := range bip39Vectors {
		m, err := Encode(unhex(t, v.entropy))
		if err != nil || m != v.mnemonic {
			t.Errorf("Encode(%s) = %q, %v; want %q", v.entropy, m, err, v.mnemonic)
		}
		e, err := Decode(v.mnemonic)
		if err != nil || hex.EncodeToString(e) != v.entropy {
			t.Errorf("Decode(%q) = %x, %v; want %s", v.mnemonic, e, err, v.entropy)
		}
		seed, err := Seed(v.mnemonic, "TREZOR")
		if err != nil || hex.EncodeToString(seed) != v.seed {
			t.Errorf("Seed(%q) = %x, %v; want %s", v.mnemonic, seed, err, v.seed)
		}
	}
}

// TestGoldenDerivation pins the derivation of docs/wallet.md. The expected values were computed
// once and checked with an independent implementation (Python hashlib PBKDF2 and a hand-written
// RFC 5869 HKDF, Ed25519 from pyca/cryptography); a change here breaks every patient's backup.
func TestGoldenDerivation(t *testing.T) {
	for _, g := range []struct {
		entropy, signingSeed, kemSeed, patient, keyID string
	}{
		{"0000000000000000000000000000000000000000000000000000000000000000",
			"de5da56a0fc9a02d148c4c869a6776a44db83a66e0b97e17c0ee12b6166b55b7",
			"35ee2e0c326598ad244734890a8ab37d22b5cab4c96d66a0c3f602f5fabb2249",
			"cdbb7811b7516a79c41cf490a96c4bde44b43228",
			"941a6e5b9ec2d0ac223815c072e69718895dbaa4bbdc0316c10bd10dee7c1e27"},
		{"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
			"f9fbf4e575f592d8c7ac10169d4086cbfa466424e5e4e25bbcd9c8f4885fb804",
			"6910060fead46caf61ef978bacd089824494b9f53eca1c1f9facbd0585aa0f72",
			"0655f97f12bfe7e7e6119f48c258c1c5c5f4e978",
			"5b9c50b3f0c90e6466678f2b7738d02ad0a454bc1db78f3cc8fac1c85c90abf5"},
	} {
		k, err := Derive(unhex(t, g.entropy))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(k.Signing.Seed()); got != g.signingSeed {
			t.Errorf("%s: signing seed %s, want %s", g.entropy, got, g.signingSeed)
		}
		if got := hex.EncodeToString(k.Encryption.Bytes()); got != "0001"+g.kemSeed {
			t.Errorf("%s: encryption key %s, want 0001%s", g.entropy, got, g.kemSeed)
		}
		if got := k.PatientID().String(); got != g.patient {
			t.Errorf("%s: patient %s, want %s", g.entropy, got, g.patient)
		}
		if got := k.EncryptionKeyID().String(); got != g.keyID {
			t.Errorf("%s: encryption key id %s, want %s", g.entropy, got, g.keyID)
		}
	}
}

func TestDeriveDistinct(t *testing.T) {
	a, err := Derive(make([]byte, EntropyLen))
	if err != nil {
		t.Fatal(err)
	}
	e := make([]byte, EntropyLen)
	e[31] = 1
	b, err := Derive(e)
	if err != nil {
		t.Fatal(err)
	}
	if a.PatientID() == b.PatientID() || a.EncryptionKeyID() == b.EncryptionKeyID() {
		t.Error("two secrets derive the same keys")
	}
	// The two keys of one secret are independent: the KEM seed is not the signing seed.
	if bytes.Equal(a.Signing.Seed(), a.Encryption.Bytes()[2:]) {
		t.Error("signing seed equals the KEM seed")
	}
	if _, err := Derive(make([]byte, 16)); err == nil {
		t.Error("derived keys from 16 bytes")
	}
}

func TestNewEntropyRoundTrip(t *testing.T) {
	e, err := NewEntropy(nil)
	if err != nil || len(e) != EntropyLen {
		t.Fatalf("NewEntropy: %d bytes, %v", len(e), err)
	}
	m, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(m)); n != Words {
		t.Errorf("%d words", n)
	}
	typed := "  " + strings.ToUpper(strings.ReplaceAll(m, " ", "\n  ")) + "\n"
	back, err := Decode(typed)
	if err != nil || !bytes.Equal(back, e) {
		t.Errorf("Decode(typed) = %x, %v; want %x", back, err, e)
	}
	if _, err := NewEntropy(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("NewEntropy from 31 bytes")
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := bip39Vectors[4].mnemonic
	words := strings.Fields(good)
	swapped := append([]string{}, words...)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	wrongLast := append([]string{}, words...)
	wrongLast[23] = "zoo"
	for _, tc := range []struct{ name, in, msg string }{
		{"empty", "", "0 words"},
		{"12 words", strings.Repeat("abandon ", 11) + "about", "12 words"},
		{"25 words", good + " zoo", "25 words"},
		{"unknown word", strings.Replace(good, "swamp", "swampy", 1), `word 6 ("swampy")`},
		{"swapped words", strings.Join(swapped, " "), "checksum"},
		{"wrong last word", strings.Join(wrongLast, " "), "checksum"},
	} {
		_, err := Decode(tc.in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrInvalid with %q", tc.name, err, tc.msg)
		}
	}
}
