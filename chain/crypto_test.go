package chain_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/medledger/medledger/chain"
)

var domains = []chain.Domain{chain.DomainTx, chain.DomainVote, chain.DomainProposal, chain.DomainLicence, chain.DomainNodeIdent, chain.DomainEnrolment, chain.DomainKeyRotation}

func TestSignVerify(t *testing.T) {
	key := testKey(t, 1)
	msg := []byte("message")
	for _, d := range domains {
		sig := key.Sign(d, chainA, msg)
		if err := chain.Verify(key.Public(), d, chainA, msg, sig); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if err := chain.Verify(key.Public(), d, chainB, msg, sig); !errors.Is(err, chain.ErrBadSignature) {
			t.Fatalf("%s: verified for another chain: %v", d, err)
		}
		if err := chain.Verify(testKey(t, 2).Public(), d, chainA, msg, sig); !errors.Is(err, chain.ErrBadSignature) {
			t.Fatalf("%s: verified under another key: %v", d, err)
		}
		for _, other := range domains {
			if other != d && chain.Verify(key.Public(), other, chainA, msg, sig) == nil {
				t.Fatalf("signature in %s verified in %s", d, other)
			}
		}
		// The signature is plain Ed25519 over SignBytes, so any Ed25519 verifier can check it.
		if !ed25519.Verify(ed25519.PublicKey(pubBytes(key)), chain.SignBytes(d, chainA, msg), sig[:]) {
			t.Fatalf("%s: stdlib rejects the signature over SignBytes", d)
		}
	}
}

func TestSignBytesLayout(t *testing.T) {
	// Canonical CBOR [domain, chain id, message]: the parts are length-prefixed, so moving bytes
	// between them changes the signed bytes.
	got := chain.SignBytes("d", "c", []byte{0xaa})
	if want, _ := hex.DecodeString("83616461634" + "1aa"); !bytes.Equal(got, want) {
		t.Fatalf("sign bytes %x, want %x", got, want)
	}
	if bytes.Equal(chain.SignBytes("ab", "c", nil), chain.SignBytes("a", "bc", nil)) ||
		bytes.Equal(chain.SignBytes("d", "ab", []byte("c")), chain.SignBytes("d", "a", []byte("bc"))) {
		t.Fatal("sign bytes collide across field boundaries")
	}
}

func pubBytes(k chain.PrivKey) []byte {
	p := k.Public()
	return p[:]
}

// flipEach flips every bit of b in turn and calls check after each flip.
func flipEach(t *testing.T, b []byte, check func(i int)) {
	t.Helper()
	for i := range len(b) * 8 {
		b[i/8] ^= 1 << (i % 8)
		check(i)
		b[i/8] ^= 1 << (i % 8)
	}
}

func TestTxSignature(t *testing.T) {
	key := testKey(t, 1)
	tx := testTx(t, key, chainA, 7)
	if err := tx.VerifySig(chainA); err != nil {
		t.Fatal(err)
	}
	if err := tx.VerifySig(chainB); err == nil {
		t.Fatal("tx for chain A verified as chain B")
	}
	// Relabelled for chain B, the signature (made over chain A) fails.
	relabelled := *tx
	relabelled.ChainID = chainB
	if err := relabelled.VerifySig(chainB); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("relabelled tx: %v", err)
	}
	// Signed in another domain, a tx's own bytes do not verify.
	forged := *tx
	forged.Sig = key.Sign(chain.DomainVote, chainA, tx.SignedBytes())
	if err := forged.VerifySig(chainA); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("tx signed in the vote domain: %v", err)
	}
	// Every bit of every signed field matters, and so does every bit of the signature.
	mutate := []struct {
		name  string
		bytes func(*chain.Tx) []byte
	}{
		{"signer", func(tx *chain.Tx) []byte { return tx.Signer[:] }},
		{"payload", func(tx *chain.Tx) []byte { return tx.Payload }},
		{"signature", func(tx *chain.Tx) []byte { return tx.Sig[:] }},
	}
	for _, m := range mutate {
		c := *tx
		c.Payload = bytes.Clone(tx.Payload)
		flipEach(t, m.bytes(&c), func(i int) {
			if c.VerifySig(chainA) == nil {
				t.Fatalf("%s bit %d flipped: still verifies", m.name, i)
			}
		})
	}
	for _, edit := range []func(*chain.Tx){
		func(tx *chain.Tx) { tx.Nonce++ },
		func(tx *chain.Tx) { tx.Nonce ^= 1 << 63 },
		func(tx *chain.Tx) { tx.Kind = chain.TxRegisterProvider },
		func(tx *chain.Tx) { tx.Version = 2 },
		func(tx *chain.Tx) { tx.Payload = append(bytes.Clone(tx.Payload), 0) },
	} {
		c := *tx
		edit(&c)
		if c.VerifySig(chainA) == nil {
			t.Fatalf("edited tx %+v still verifies", c)
		}
	}
}

func TestVoteSignature(t *testing.T) {
	key := testKey(t, 1)
	v := testVote(t, key, chain.Precommit, 9, 2, testHash("b"))
	if v.Version != chain.VoteVersion || v.Authority != key.Public() {
		t.Fatal("Sign did not fill in version and authority")
	}
	if err := v.VerifySig(chainA); err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySig(chainB); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("vote for chain A verified as chain B: %v", err)
	}
	for _, edit := range []func(*chain.Vote){
		func(v *chain.Vote) { v.Type = chain.Prevote },
		func(v *chain.Vote) { v.Height++ },
		func(v *chain.Vote) { v.Round++ },
		func(v *chain.Vote) { v.BlockHash = chain.ZeroHash },
		func(v *chain.Vote) { v.Authority = testKey(t, 2).Public() },
	} {
		c := v
		edit(&c)
		if c.VerifySig(chainA) == nil {
			t.Fatalf("edited vote %+v still verifies", c)
		}
	}
	for _, b := range [][]byte{v.BlockHash[:], v.Authority[:], v.Sig[:]} {
		flipEach(t, b, func(i int) {
			if v.VerifySig(chainA) == nil {
				t.Fatalf("bit %d flipped: still verifies", i)
			}
		})
	}
	// A prevote signature is not a precommit signature, and a vote is not a proposal.
	p := chain.Proposal{Version: chain.ProposalVersion, Height: 9, Round: 2, POLRound: -1, BlockHash: v.BlockHash, Proposer: key.Public(), Sig: v.Sig}
	if p.VerifySig(chainA) == nil {
		t.Fatal("vote signature verified as a proposal")
	}
}

func TestProposalSignature(t *testing.T) {
	key := testKey(t, 1)
	p := testProposal(t, key)
	if err := p.VerifySig(chainA); err != nil {
		t.Fatal(err)
	}
	if err := p.VerifySig(chainB); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("proposal for chain A verified as chain B: %v", err)
	}
	for _, edit := range []func(*chain.Proposal){
		func(p *chain.Proposal) { p.Height++ },
		func(p *chain.Proposal) { p.Round++ },
		func(p *chain.Proposal) { p.POLRound = -1 },
		func(p *chain.Proposal) { p.Version = 2 },
		func(p *chain.Proposal) { p.Proposer = testKey(t, 2).Public() },
	} {
		c := *p
		edit(&c)
		if c.VerifySig(chainA) == nil {
			t.Fatalf("edited proposal %+v still verifies", c)
		}
	}
	for _, b := range [][]byte{p.BlockHash[:], p.Sig[:]} {
		flipEach(t, b, func(i int) {
			if p.VerifySig(chainA) == nil {
				t.Fatalf("bit %d flipped: still verifies", i)
			}
		})
	}
}

func TestLicenceSignature(t *testing.T) {
	l := testLicence(t, chainA)
	if l.Issuer != testKey(t, 11).Public() || l.Version != chain.LicenceVersion {
		t.Fatal("Sign did not fill in issuer and version")
	}
	if err := l.VerifySig(chainA); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifySig(chainB); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("licence for chain A verified as chain B: %v", err)
	}
	for _, edit := range []func(*chain.Licence){
		func(l *chain.Licence) { l.Number += "0" },
		func(l *chain.Licence) { l.Jurisdiction = "NL-NH" },
		func(l *chain.Licence) { l.NotAfter++ },
		func(l *chain.Licence) { l.Subject = testKey(t, 12).Public() },
		func(l *chain.Licence) { l.Issuer = testKey(t, 12).Public() },
	} {
		c := l
		edit(&c)
		if c.VerifySig(chainA) == nil {
			t.Fatalf("edited licence %+v still verifies", c)
		}
	}
	flipEach(t, l.Sig[:], func(i int) {
		if l.VerifySig(chainA) == nil {
			t.Fatalf("signature bit %d flipped: still verifies", i)
		}
	})
}

func TestKeys(t *testing.T) {
	k := testKey(t, 1)
	again, err := chain.PrivKeyFromSeed(k.Seed())
	if err != nil || again.Public() != k.Public() {
		t.Fatalf("seed round trip: %v", err)
	}
	if _, err := chain.PrivKeyFromSeed(make([]byte, 31)); err == nil {
		t.Fatal("short seed accepted")
	}
	r := rand.NewChaCha8([32]byte{1})
	g1, err := chain.GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := chain.GenerateKey(rand.NewChaCha8([32]byte{1}))
	if g1.Public() != g2.Public() {
		t.Fatal("GenerateKey is not a function of its randomness")
	}
	// Hex forms round trip.
	pub, err := chain.ParsePubKey(k.Public().String())
	if err != nil || pub != k.Public() {
		t.Fatalf("ParsePubKey: %v", err)
	}
	addr := k.Public().Address()
	if a, err := chain.ParseAddress(addr.String()); err != nil || a != addr {
		t.Fatalf("ParseAddress: %v", err)
	}
	h := testHash("x")
	if p, err := chain.ParseHash(h.String()); err != nil || p != h {
		t.Fatalf("ParseHash: %v", err)
	}
	for _, bad := range []string{"", "00", h.String()[1:], h.String() + "0", h.String()[2:] + "zz"} {
		if _, err := chain.ParseHash(bad); err == nil {
			t.Fatalf("ParseHash(%q) accepted", bad)
		}
	}
	// The address is a domain-separated hash of the key, not a plain prefix of its SHA-256.
	plain := chain.Sum256(pubBytes(k))
	if bytes.Equal(addr[:], plain[:20]) {
		t.Fatal("address is the undomained key hash")
	}
	want := chain.Sum256(append([]byte("medledger/address/v1\x00"), pubBytes(k)...))
	if !bytes.Equal(addr[:], want[:20]) {
		t.Fatal("address derivation changed")
	}
}

// entry is one signature check for the batch-versus-single comparison.
type entry struct {
	pub chain.PubKey
	msg []byte
	sig chain.Signature
}

func TestBatchVerifierAgreesWithVerify(t *testing.T) {
	seed := uint64(20240601)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	empty := chain.NewBatchVerifier()
	if ok, valid := empty.Verify(); !ok || valid != nil || empty.Len() != 0 {
		t.Fatal("empty batch")
	}
	for trial := range 20 {
		n := 1 + rng.IntN(40)
		var es []entry
		for i := range n {
			key := testKey(t, rng.IntN(8))
			msg := []byte{byte(trial), byte(i)}
			e := entry{key.Public(), msg, key.Sign(chain.DomainTx, chainA, msg)}
			switch rng.IntN(6) {
			case 0:
				e.sig[rng.IntN(64)] ^= 1 << rng.IntN(8)
			case 1:
				e.msg = append(e.msg, 0)
			case 2:
				e.pub = testKey(t, 99).Public()
			}
			es = append(es, e)
		}
		checkBatch(t, es)
	}
}

func checkBatch(t *testing.T, es []entry) {
	t.Helper()
	bv := chain.NewBatchVerifier()
	allOK := true
	want := make([]bool, len(es))
	for i, e := range es {
		bv.Add(e.pub, chain.DomainTx, chainA, e.msg, e.sig)
		want[i] = chain.Verify(e.pub, chain.DomainTx, chainA, e.msg, e.sig) == nil
		allOK = allOK && want[i]
	}
	if bv.Len() != len(es) {
		t.Fatalf("Len %d, want %d", bv.Len(), len(es))
	}
	ok, valid := bv.Verify()
	if ok != allOK {
		t.Fatalf("batch says %v, single verification says %v", ok, allOK)
	}
	if !ok {
		for i := range es {
			if valid[i] != want[i] {
				t.Fatalf("entry %d: batch says %v, single says %v", i, valid[i], want[i])
			}
		}
	}
}

// TestZIP215 checks the edge cases where Ed25519 verifiers disagree: under ZIP-215 both single and
// batch verification accept small-order keys and non-canonical point encodings, and crucially
// they agree. The stdlib (RFC 8032 strict, cofactorless) rejects some of them, which is why nodes
// must never mix verifiers.
func TestZIP215(t *testing.T) {
	hexPoint := func(s string) (p [32]byte) {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("bad point %q", s)
		}
		return [32]byte(b)
	}
	identity := hexPoint("0100000000000000000000000000000000000000000000000000000000000000")
	// y = p+1 = 2^255-18: a non-canonical encoding of the identity.
	identityNonCanonical := hexPoint("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	order8 := hexPoint("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")

	sig := func(r [32]byte) (s chain.Signature) { copy(s[:], r[:]); return s } // S = 0
	cases := []struct {
		name string
		pub  [32]byte
		sig  chain.Signature
	}{
		// [8]([0]B - R - kA) is the identity for any message when A and R have small order.
		{"small-order key, identity R", order8, sig(identity)},
		{"identity key, non-canonical R", identity, sig(identityNonCanonical)},
		{"non-canonical key", identityNonCanonical, sig(identity)},
	}
	stdlibRejects := 0
	var es []entry
	for _, c := range cases {
		for m := range 16 {
			msg := []byte{byte(m)}
			e := entry{chain.PubKey(c.pub), msg, c.sig}
			if err := chain.Verify(e.pub, chain.DomainTx, chainA, msg, e.sig); err != nil {
				t.Fatalf("%s, message %d: ZIP-215 must accept: %v", c.name, m, err)
			}
			if !ed25519.Verify(c.pub[:], chain.SignBytes(chain.DomainTx, chainA, msg), e.sig[:]) {
				stdlibRejects++
			}
			es = append(es, e)
		}
	}
	if stdlibRejects == 0 {
		t.Fatal("expected the stdlib verifier to reject some ZIP-215 edge cases")
	}
	checkBatch(t, es)
	// S >= L is rejected by both (ZIP-215 keeps the canonical-S check, so signatures stay
	// non-malleable).
	key := testKey(t, 1)
	good := key.Sign(chain.DomainTx, chainA, []byte("m"))
	bad := addL(good)
	if chain.Verify(key.Public(), chain.DomainTx, chainA, []byte("m"), bad) == nil {
		t.Fatal("S + L accepted")
	}
	checkBatch(t, append(es, entry{key.Public(), []byte("m"), bad}, entry{key.Public(), []byte("m"), good}))
}

// addL returns the signature with L (the group order) added to S: the same point equation, a
// different encoding.
func addL(sig chain.Signature) chain.Signature {
	l := [32]byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	var carry uint16
	for i := range 32 {
		s := uint16(sig[32+i]) + uint16(l[i]) + carry
		sig[32+i] = byte(s)
		carry = s >> 8
	}
	return sig
}

// VerifyTxSigs finds exactly the bad signatures of a batch, and agrees with VerifySig.
func TestVerifyTxSigs(t *testing.T) {
	const chainID = "medledger-test"
	var txs []*chain.Tx
	for i := range 10 {
		k, err := chain.PrivKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, chain.NewTx(k, chainID, chain.TxConsentRevoke, uint64(i+1), &chain.ConsentRevoke{Consent: chain.Hash{1}}))
	}
	for i, err := range chain.VerifyTxSigs(chainID, txs) {
		if err != nil {
			t.Fatalf("valid tx %d: %v", i, err)
		}
	}
	txs[3].Sig[0] ^= 1
	txs[7].Nonce++
	for i, err := range chain.VerifyTxSigs(chainID, txs) {
		if bad := i == 3 || i == 7; bad != (err != nil) {
			t.Fatalf("tx %d: err %v", i, err)
		}
	}
	if errs := chain.VerifyTxSigs("other-chain", txs[:2]); errs[0] == nil || errs[1] == nil {
		t.Fatal("another chain's transactions verified")
	}
}
