package chain_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// codec is one wire type: a valid value, its decoder and the decoder's size limit.
type codec struct {
	name      string
	value     any
	decode    func([]byte) (any, error)
	limit     int
	versioned bool // the first array element is the encoding version
}

func codecs(t testing.TB) []codec {
	t.Helper()
	set, keys := testSet(t, 4)
	blk := testBlock(t, 3)
	vote := testVote(t, testKey(t, 1), chain.Prevote, 3, 1, testHash("b"))
	nilVote := testVote(t, testKey(t, 1), chain.Precommit, 3, 1, chain.ZeroHash)
	cs := []codec{
		{"tx", testTx(t, testKey(t, 1), chainA, 1), func(b []byte) (any, error) { return chain.DecodeTx(b) }, chain.MaxTxBytes, true},
		{"vote", &vote, func(b []byte) (any, error) { return chain.DecodeVote(b) }, chain.MaxVoteBytes, true},
		{"nil vote", &nilVote, func(b []byte) (any, error) { return chain.DecodeVote(b) }, chain.MaxVoteBytes, true},
		{"proposal", testProposal(t, testKey(t, 1)), func(b []byte) (any, error) { return chain.DecodeProposal(b) }, chain.MaxProposalBytes, true},
		{"header", testHeader(t, 9), func(b []byte) (any, error) { return chain.DecodeHeader(b) }, chain.MaxHeaderBytes, true},
		{"first header", testHeader(t, 1), func(b []byte) (any, error) { return chain.DecodeHeader(b) }, chain.MaxHeaderBytes, true},
		{"block", blk, func(b []byte) (any, error) { return chain.DecodeBlock(b) }, chain.MaxBlockBytes, true},
		{"empty block", testBlock(t, 0), func(b []byte) (any, error) { return chain.DecodeBlock(b) }, chain.MaxBlockBytes, true},
		{"commit cert", testCert(t, keys, 3, 5, blk.Hash()), func(b []byte) (any, error) { return chain.DecodeCommitCert(b) }, chain.MaxCertBytes, true},
		{"authority set", set, func(b []byte) (any, error) { return chain.DecodeAuthoritySet(b) }, chain.MaxAuthoritySetBytes, false},
	}
	for kind, body := range testPayloads(t) {
		cs = append(cs, codec{"payload " + kind.String(), body, func(b []byte) (any, error) { return chain.DecodePayload(kind, b) }, chain.MaxPayloadSize, false})
	}
	return cs
}

func TestRoundTrip(t *testing.T) {
	for _, c := range codecs(t) {
		t.Run(c.name, func(t *testing.T) {
			enc := chain.Encode(c.value)
			got, err := c.decode(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, c.value) {
				t.Fatalf("decoded value differs:\n got %+v\nwant %+v", got, c.value)
			}
			if again := chain.Encode(got); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, enc)
			}
		})
	}
}

// TestRoundTripUnexported covers the types that travel only inside others (and genesis, whose CBOR
// encoding is hashed but never decoded).
func TestRoundTripInner(t *testing.T) {
	for name, v := range map[string]any{
		"licence":   ptr(testLicence(t, chainA)),
		"authority": &chain.Authority{Key: testKey(t, 3).Public(), Name: "clinic"},
		"params":    ptr(chain.DefaultParams()),
		"genesis":   testGenesis(t),
	} {
		t.Run(name, func(t *testing.T) {
			enc := chain.Encode(v)
			got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := chain.DecodeCanonical(name, enc, len(enc), got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Fatalf("got %+v, want %+v", got, v)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestDecodeStrictness mutates every valid encoding into near misses that every decoder must refuse.
func TestDecodeStrictness(t *testing.T) {
	for _, c := range codecs(t) {
		t.Run(c.name, func(t *testing.T) {
			enc := chain.Encode(c.value)
			if enc[0] < 0x80 || enc[0] > 0x97 { // 0x80: a body with no fields (chain.Leave)
				t.Fatalf("expected a short array header, got %#x", enc[0])
			}
			reject := func(what string, data []byte, want error) {
				t.Helper()
				v, err := c.decode(data)
				if err == nil {
					t.Fatalf("%s: accepted", what)
				}
				if want != nil && !errors.Is(err, want) {
					t.Fatalf("%s: error %q is not %v", what, err, want)
				}
				if rv := reflect.ValueOf(v); rv.IsValid() && !rv.IsNil() {
					t.Fatalf("%s: decoder returned a value (%T) with its error", what, v)
				}
			}
			cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

			reject("trailing byte", cat(enc, []byte{0x00}), chain.ErrNonCanonical)
			reject("trailing copy", cat(enc, enc), nil) // ErrNonCanonical, or ErrTooLarge for small limits
			reject("truncated", enc[:len(enc)-1], nil)
			reject("empty", nil, nil)
			reject("array length in long form", cat([]byte{0x98, enc[0] & 0x1f}, enc[1:]), chain.ErrNonCanonical)
			reject("indefinite-length array", cat([]byte{0x9f}, enc[1:], []byte{0xff}), chain.ErrNonCanonical)
			reject("tagged", cat([]byte{0xd8, 0x18}, enc), nil)
			if enc[0] > 0x80 {
				reject("one element short", cat([]byte{enc[0] - 1}, enc[1:]), nil)
			}
			reject("one element too many", cat([]byte{enc[0] + 1}, enc[1:], []byte{0x00}), nil)
			reject("oversized", make([]byte, c.limit+1), chain.ErrTooLarge)
			if c.versioned {
				if enc[1] != 0x01 {
					t.Fatalf("expected version 1 first, got %#x", enc[1])
				}
				reject("version in long form", cat(enc[:1], []byte{0x18, 0x01}, enc[2:]), chain.ErrNonCanonical)
				reject("version 2", cat(enc[:1], []byte{0x02}, enc[2:]), chain.ErrUnknownVersion)
				reject("version 0", cat(enc[:1], []byte{0x00}, enc[2:]), chain.ErrUnknownVersion)
				reject("version 257", cat(enc[:1], []byte{0x19, 0x01, 0x01}, enc[2:]), nil)
			}
		})
	}
}

func TestDecodeCanonicalRules(t *testing.T) {
	var m map[string]int
	if err := chain.DecodeCanonical("map", []byte{0xa2, 0x61, 'a', 0x02, 0x61, 'b', 0x01}, 64, &m); err != nil {
		t.Fatalf("sorted map: %v", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		into any
		want error
	}{
		{"unsorted map keys", []byte{0xa2, 0x61, 'b', 0x01, 0x61, 'a', 0x02}, &m, chain.ErrNonCanonical},
		{"duplicate map keys", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}, &m, nil},
		{"indefinite map", []byte{0xbf, 0x61, 'a', 0x01, 0xff}, &m, chain.ErrNonCanonical},
		{"uint in 2 bytes", []byte{0x18, 0x17}, new(uint64), chain.ErrNonCanonical},
		{"uint in 3 bytes", []byte{0x19, 0x00, 0xff}, new(uint64), chain.ErrNonCanonical},
		{"uint in 9 bytes", []byte{0x1b, 0, 0, 0, 0, 0, 0, 0, 1}, new(uint64), chain.ErrNonCanonical},
		{"negative in 2 bytes", []byte{0x38, 0x00}, new(int64), chain.ErrNonCanonical},
		{"string length in long form", []byte{0x78, 0x01, 'a'}, new(string), chain.ErrNonCanonical},
		{"indefinite string", []byte{0x7f, 0x61, 'a', 0xff}, new(string), chain.ErrNonCanonical},
		{"indefinite bytes", []byte{0x5f, 0x41, 'a', 0xff}, new([]byte), chain.ErrNonCanonical},
		{"invalid UTF-8", []byte{0x61, 0xff}, new(string), nil},
		{"byte string for text", []byte{0x41, 'a'}, new(string), nil},
		{"float for int", []byte{0xf9, 0x3c, 0x00}, new(uint64), nil},
		{"tag", []byte{0xc1, 0x01}, new(uint64), nil},
		{"trailing", []byte{0x01, 0x01}, new(uint64), chain.ErrNonCanonical},
		{"over limit", make([]byte, 65), new([]byte), chain.ErrTooLarge},
		{"nested too deep", append(bytes.Repeat([]byte{0x81}, 40), 0x01), new(any), chain.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := chain.DecodeCanonical(tc.name, tc.data, 64, tc.into)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q is not %v", err, tc.want)
			}
		})
	}
}

func TestTxValidation(t *testing.T) {
	key := testKey(t, 1)
	mk := func(edit func(*chain.Tx)) []byte {
		tx := testTx(t, key, chainA, 1)
		edit(tx)
		return tx.Encode()
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"payload over limit", mk(func(tx *chain.Tx) { tx.Payload = make([]byte, chain.MaxPayloadSize+1) }), chain.ErrTooLarge},
		{"chain id too long", mk(func(tx *chain.Tx) { tx.ChainID = strings.Repeat("c", chain.MaxChainIDLen+1) }), nil},
		{"empty chain id", mk(func(tx *chain.Tx) { tx.ChainID = "" }), nil},
		{"nonce zero", mk(func(tx *chain.Tx) { tx.Nonce = 0 }), nil},
		{"evidence with a nonce", mk(func(tx *chain.Tx) { tx.Kind = chain.TxEvidence }), nil},
		{"whole tx over limit", append([]byte{0x87, 0x01}, make([]byte, chain.MaxTxBytes)...), chain.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := chain.DecodeTx(tc.data)
			if err == nil || tx != nil {
				t.Fatalf("accepted: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q is not %v", err, tc.want)
			}
		})
	}
	// The limits themselves are accepted.
	ok := mk(func(tx *chain.Tx) {
		tx.Payload = make([]byte, chain.MaxPayloadSize)
		tx.ChainID = strings.Repeat("c", chain.MaxChainIDLen)
		tx.Nonce = ^uint64(0)
	})
	if _, err := chain.DecodeTx(ok); err != nil {
		t.Fatalf("largest transaction rejected: %v", err)
	}
}

func TestTxHash(t *testing.T) {
	key := testKey(t, 1)
	a, b := testTx(t, key, chainA, 1), testTx(t, key, chainA, 2)
	if a.Hash() == b.Hash() {
		t.Fatal("hash does not change with the nonce")
	}
	if a.Hash() != testTx(t, key, chainA, 1).Hash() {
		t.Fatal("hash is not deterministic")
	}
	if a.Hash() == testTx(t, key, chainB, 1).Hash() {
		t.Fatal("hash does not change with the chain")
	}
	if a.Hash() != chain.Sum256(a.Encode()) {
		t.Fatal("tx hash is not the hash of its encoding")
	}
	if chain.TxRoot([]*chain.Tx{a, b}) == chain.TxRoot([]*chain.Tx{b, a}) {
		t.Fatal("tx root ignores order")
	}
	if chain.TxRoot(nil) != chain.TxRoot([]*chain.Tx{}) {
		t.Fatal("tx root of no transactions depends on nil vs empty")
	}
}

func TestHeaderValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*chain.Header)
	}{
		{"height zero", func(h *chain.Header) { h.Height = 0; h.PrevHash = chain.ZeroHash }},
		{"first block with parent", func(h *chain.Header) { h.Height = 1 }},
		{"later block without parent", func(h *chain.Header) { h.PrevHash = chain.ZeroHash }},
		{"long chain id", func(h *chain.Header) { h.ChainID = strings.Repeat("x", chain.MaxChainIDLen+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHeader(t, 9)
			tc.edit(h)
			if got, err := chain.DecodeHeader(chain.Encode(h)); err == nil || got != nil {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
	b := testBlock(t, 0)
	if b.Hash() != b.Header.Hash() || b.Hash() != chain.Sum256(chain.Encode(&b.Header)) {
		t.Fatal("block hash is not the header hash")
	}
}

func TestBlockValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*chain.Block)
	}{
		{"wrong tx root", func(b *chain.Block) { b.Header.TxRoot = testHash("other") }},
		{"tx for another chain", func(b *chain.Block) {
			b.Txs[1] = testTx(t, testKey(t, 1), chainB, 2)
			b.Header.TxRoot = chain.TxRoot(b.Txs)
		}},
		{"nil tx", func(b *chain.Block) { b.Txs[1] = nil }},
		{"invalid tx", func(b *chain.Block) {
			b.Txs[1].Nonce = 0
			b.Header.TxRoot = chain.TxRoot(b.Txs)
		}},
		{"invalid header", func(b *chain.Block) { b.Header.Height = 0 }},
		{"header version", func(b *chain.Block) { b.Header.Version = 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testBlock(t, 3)
			tc.edit(b)
			if got, err := chain.DecodeBlock(b.Encode()); err == nil || got != nil {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
}

// TestBlockTxCount checks that the CBOR decoder's element limit does not undercut
// MaxBlockTxsLimit: every block the rules allow must decode, and one more transaction is
// ErrTooLarge.
func TestBlockTxCount(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a block of MaxBlockTxsLimit transactions")
	}
	// The smallest transaction, so that MaxBlockTxsLimit of them fit the block byte limit.
	tx := chain.NewTx(testKey(t, 1), chainA, chain.TxLeave, 1, &chain.Leave{})
	txEnc := tx.Encode()
	hdr := testHeader(t, 5)
	build := func(n int) []byte {
		hdr.TxRoot = chain.TxRoot(nil) // not checked when the count is refused
		if n <= chain.MaxBlockTxsLimit {
			txs := make([]*chain.Tx, n)
			for i := range txs {
				txs[i] = tx
			}
			hdr.TxRoot = chain.TxRoot(txs)
		}
		var buf bytes.Buffer
		buf.Write([]byte{0x83, 0x01})
		buf.Write(chain.Encode(hdr))
		buf.Write([]byte{0x9a, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		for range n {
			buf.Write(txEnc)
		}
		return buf.Bytes()
	}
	b, err := chain.DecodeBlock(build(chain.MaxBlockTxsLimit))
	if err != nil {
		t.Fatalf("block of MaxBlockTxsLimit transactions: %v", err)
	}
	if len(b.Txs) != chain.MaxBlockTxsLimit {
		t.Fatalf("decoded %d transactions", len(b.Txs))
	}
	if _, err := chain.DecodeBlock(build(chain.MaxBlockTxsLimit + 1)); !errors.Is(err, chain.ErrTooLarge) {
		t.Fatalf("block over MaxBlockTxsLimit: %v, want ErrTooLarge", err)
	}
}

func TestVoteAndProposalValidation(t *testing.T) {
	key := testKey(t, 1)
	for _, tc := range []struct {
		name string
		edit func(*chain.Vote)
	}{
		{"type 0", func(v *chain.Vote) { v.Type = 0 }},
		{"type 3", func(v *chain.Vote) { v.Type = 3 }},
		{"height 0", func(v *chain.Vote) { v.Height = 0 }},
	} {
		t.Run("vote "+tc.name, func(t *testing.T) {
			v := testVote(t, key, chain.Prevote, 3, 0, testHash("b"))
			tc.edit(&v)
			if got, err := chain.DecodeVote(chain.Encode(&v)); err == nil || got != nil {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		edit func(*chain.Proposal)
		ok   bool
	}{
		{"no POL", func(p *chain.Proposal) { p.POLRound = -1 }, true},
		{"POL round 0 in round 0", func(p *chain.Proposal) { p.Round, p.POLRound = 0, 0 }, false},
		{"POL round = round", func(p *chain.Proposal) { p.POLRound = int32(p.Round) }, false},
		{"POL round -2", func(p *chain.Proposal) { p.POLRound = -2 }, false},
		{"height 0", func(p *chain.Proposal) { p.Height = 0 }, false},
		{"nil block", func(p *chain.Proposal) { p.BlockHash = chain.ZeroHash }, false},
	} {
		t.Run("proposal "+tc.name, func(t *testing.T) {
			p := testProposal(t, key)
			tc.edit(p)
			got, err := chain.DecodeProposal(chain.Encode(p))
			if (err == nil) != tc.ok || (got == nil) == tc.ok {
				t.Fatalf("ok=%v, want %v: %v", err == nil, tc.ok, err)
			}
		})
	}
}

func TestPayloadValidation(t *testing.T) {
	lic := testLicence(t, chainA)
	a := testVote(t, testKey(t, 100), chain.Precommit, 9, 0, testHash("x"))
	b := testVote(t, testKey(t, 100), chain.Precommit, 9, 0, testHash("y"))
	if bytes.Compare(a.BlockHash[:], b.BlockHash[:]) > 0 {
		a, b = b, a
	}
	other := testVote(t, testKey(t, 101), chain.Precommit, 9, 0, testHash("y"))
	for _, tc := range []struct {
		name string
		kind chain.TxKind
		body any
		want error
	}{
		{"unknown kind", 99, &chain.RegisterPatient{EncryptionKey: []byte{1}}, nil},
		{"kind 0", 0, &chain.RegisterPatient{EncryptionKey: []byte{1}}, nil},
		{"body of another kind", chain.TxRegisterProvider, &chain.RegisterPatient{EncryptionKey: []byte{1}}, nil},
		{"empty encryption key", chain.TxRegisterPatient, &chain.RegisterPatient{}, nil},
		{"encryption key too long", chain.TxRegisterPatient, &chain.RegisterPatient{EncryptionKey: make([]byte, chain.MaxEncryptionKeyLen+1)}, nil},
		{"provider without key", chain.TxRegisterProvider, &chain.RegisterProvider{Licence: lic}, nil},
		{"licence without number", chain.TxRegisterProvider, &chain.RegisterProvider{Licence: func() chain.Licence { l := lic; l.Number = ""; return l }(), EncryptionKey: []byte{1}}, nil},
		{"licence number too long", chain.TxRegisterProvider, &chain.RegisterProvider{Licence: func() chain.Licence { l := lic; l.Number = strings.Repeat("1", chain.MaxLicenceFieldLen+1); return l }(), EncryptionKey: []byte{1}}, nil},
		{"licence jurisdiction too long", chain.TxRegisterProvider, &chain.RegisterProvider{Licence: func() chain.Licence {
			l := lic
			l.Jurisdiction = strings.Repeat("j", chain.MaxLicenceFieldLen+1)
			return l
		}(), EncryptionKey: []byte{1}}, nil},
		{"licence version", chain.TxRegisterProvider, &chain.RegisterProvider{Licence: func() chain.Licence { l := lic; l.Version = 9; return l }(), EncryptionKey: []byte{1}}, chain.ErrUnknownVersion},
		{"authority action 0", chain.TxAuthorityPropose, &chain.AuthorityPropose{Subject: chain.Authority{Name: "x"}}, nil},
		{"authority action 3", chain.TxAuthorityPropose, &chain.AuthorityPropose{Action: 3}, nil},
		{"authority name too long", chain.TxAuthorityPropose, &chain.AuthorityPropose{Action: chain.AuthorityRemove, Subject: chain.Authority{Name: strings.Repeat("n", chain.MaxNameLen+1)}}, nil},
		{"authority vote for nothing", chain.TxAuthorityVote, &chain.AuthorityVote{}, nil},
		{"evidence out of order", chain.TxEvidence, &chain.Evidence{A: b, B: a}, nil},
		{"evidence same vote twice", chain.TxEvidence, &chain.Evidence{A: a, B: a}, nil},
		{"evidence from two authorities", chain.TxEvidence, chain.NewEvidence(a, other), nil},
		{"evidence at two heights", chain.TxEvidence, chain.NewEvidence(a, testVote(t, testKey(t, 100), chain.Precommit, 10, 0, testHash("y"))), nil},
		{"evidence of two steps", chain.TxEvidence, chain.NewEvidence(a, testVote(t, testKey(t, 100), chain.Prevote, 9, 0, testHash("y"))), nil},
		{"evidence with invalid vote", chain.TxEvidence, chain.NewEvidence(a, func() chain.Vote { v := b; v.Type = 7; return v }()), nil},
		{"payload over limit", chain.TxRegisterPatient, &chain.RegisterPatient{EncryptionKey: make([]byte, chain.MaxPayloadSize)}, chain.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chain.DecodePayload(tc.kind, chain.Encode(tc.body))
			if err == nil || got != nil {
				t.Fatalf("accepted: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q is not %v", err, tc.want)
			}
		})
	}
}

func TestEvidence(t *testing.T) {
	key := testKey(t, 100)
	a := testVote(t, key, chain.Precommit, 9, 1, testHash("x"))
	b := testVote(t, key, chain.Precommit, 9, 1, testHash("y"))
	e1, e2 := chain.NewEvidence(a, b), chain.NewEvidence(b, a)
	if !reflect.DeepEqual(e1, e2) {
		t.Fatal("NewEvidence depends on argument order")
	}
	if err := e1.Validate(); err != nil {
		t.Fatal(err)
	}
	if bytes.Compare(e1.A.BlockHash[:], e1.B.BlockHash[:]) >= 0 {
		t.Fatal("evidence not ordered by block hash")
	}
	if err := (&chain.Evidence{A: e1.B, B: e1.A}).Validate(); err == nil {
		t.Fatal("reversed evidence accepted")
	}
	if err := e1.VerifySig(chainA); err != nil {
		t.Fatal(err)
	}
	if err := e1.VerifySig(chainB); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("evidence verified for another chain: %v", err)
	}
	// A nil vote against a block vote is an equivocation too.
	n := testVote(t, key, chain.Precommit, 9, 1, chain.ZeroHash)
	if err := chain.NewEvidence(a, n).Validate(); err != nil {
		t.Fatalf("nil vote vs block vote: %v", err)
	}
	// Every pair proving one offence has one key; another round is another offence.
	c := testVote(t, key, chain.Precommit, 9, 1, testHash("z"))
	if chain.NewEvidence(a, c).Key() != e1.Key() {
		t.Fatal("evidence key depends on the blocks")
	}
	d := testVote(t, key, chain.Precommit, 9, 2, testHash("x"))
	e := testVote(t, key, chain.Precommit, 9, 2, testHash("y"))
	if chain.NewEvidence(d, e).Key() == e1.Key() {
		t.Fatal("evidence key ignores the round")
	}
}

// TestEvidenceNonce: evidence carries nonce 0 and no other kind may; EvidenceKeyOf names the
// offence of an evidence transaction, the same for every reporter, and nothing else.
func TestEvidenceNonce(t *testing.T) {
	ev := testPayloads(t)[chain.TxEvidence].(*chain.Evidence)
	for kind := chain.TxRegisterProvider; kind <= chain.TxEraseAck; kind++ {
		if kind.UsesNonce() == (kind == chain.TxEvidence) {
			t.Fatalf("%s: UsesNonce %v", kind, kind.UsesNonce())
		}
		if kind.IsRegistration() != (kind == chain.TxRegisterProvider || kind == chain.TxRegisterPatient) {
			t.Fatalf("%s: IsRegistration %v", kind, kind.IsRegistration())
		}
	}
	a := chain.NewTx(testKey(t, 1), chainA, chain.TxEvidence, 0, ev)
	b := chain.NewTx(testKey(t, 2), chainA, chain.TxEvidence, 0, ev)
	for _, tx := range []*chain.Tx{a, b} {
		dec, err := chain.DecodeTx(tx.Encode())
		if err != nil {
			t.Fatalf("evidence with nonce 0: %v", err)
		}
		if k, ok := chain.EvidenceKeyOf(dec); !ok || k != ev.Key() {
			t.Fatalf("EvidenceKeyOf %s %v, want %s", k.Short(), ok, ev.Key().Short())
		}
	}
	if a.Hash() == b.Hash() {
		t.Fatal("two reporters' transactions are one")
	}
	if err := chain.NewTx(testKey(t, 1), chainA, chain.TxEvidence, 1, ev).Validate(); err == nil || !strings.Contains(err.Error(), "must be 0") {
		t.Fatalf("evidence with nonce 1: %v", err)
	}
	bad := *a
	bad.Payload = []byte{0x80}
	for _, tx := range []*chain.Tx{nil, testTx(t, testKey(t, 1), chainA, 1), &bad} {
		if k, ok := chain.EvidenceKeyOf(tx); ok || !k.IsZero() {
			t.Fatalf("EvidenceKeyOf of a non-evidence transaction: %s", k.Short())
		}
	}
}

// DecodeFirst decodes one item from the front and hands back the rest; a cut item reports
// io.ErrUnexpectedEOF, and a non-canonical item is refused like a whole non-canonical value.
func TestDecodeFirst(t *testing.T) {
	v := chain.Vote{Version: chain.VoteVersion, Type: chain.Prevote, Height: 5}
	enc := chain.Encode(&v)
	var got chain.Vote
	rest, err := chain.DecodeFirst("vote", append(slices.Clone(enc), 0x01, 0x02), &got)
	if err != nil || !bytes.Equal(rest, []byte{0x01, 0x02}) || got != v {
		t.Fatalf("DecodeFirst = %+v, rest %x, %v", got, rest, err)
	}
	if _, err := chain.DecodeFirst("vote", enc[:len(enc)-1], &got); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut item: %v, want io.ErrUnexpectedEOF", err)
	}
	var n uint64
	if _, err := chain.DecodeFirst("number", []byte{0x18, 0x05, 0x00}, &n); !errors.Is(err, chain.ErrNonCanonical) {
		t.Errorf("5 in two bytes: %v, want ErrNonCanonical", err)
	}
}
