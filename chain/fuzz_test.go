package chain_test

import (
	"bytes"
	"testing"

	"github.com/medledger/medledger/chain"
)

// Each decoder's fuzz property: it never panics, and whatever it accepts re-encodes to exactly the
// input (one value, one encoding). Seeds are valid encodings plus a few near misses.

func fuzzDecoder[T any](f *testing.F, seeds [][]byte, decode func([]byte) (*T, error)) {
	for _, s := range seeds {
		f.Add(s)
		f.Add(append(bytes.Clone(s), 0))
		if len(s) > 1 {
			f.Add(s[:len(s)-1])
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x9f, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decode(data)
		if err != nil {
			if v != nil {
				t.Fatalf("value returned with error %v", err)
			}
			return
		}
		if again := chain.Encode(v); !bytes.Equal(again, data) {
			t.Fatalf("accepted input re-encodes differently:\n in  %x\n out %x", data, again)
		}
	})
}

func FuzzDecodeTx(f *testing.F) {
	// Seeds stay small: the fuzzer minimizes every new interesting input, at a cost that grows
	// quickly with its length.
	body := &chain.RegisterProvider{Licence: testLicence(f, chainA), EncryptionKey: make([]byte, 32)}
	big := chain.NewTx(testKey(f, 2), chainA, chain.TxRegisterProvider, 1<<40, body)
	fuzzDecoder(f, [][]byte{testTx(f, testKey(f, 1), chainA, 1).Encode(), big.Encode()}, chain.DecodeTx)
}

func FuzzDecodeVote(f *testing.F) {
	a := testVote(f, testKey(f, 1), chain.Prevote, 1, 0, testHash("b"))
	b := testVote(f, testKey(f, 2), chain.Precommit, 1<<33, 1<<20, chain.ZeroHash)
	fuzzDecoder(f, [][]byte{chain.Encode(&a), chain.Encode(&b)}, chain.DecodeVote)
}

func FuzzDecodeProposal(f *testing.F) {
	p := testProposal(f, testKey(f, 1))
	q := &chain.Proposal{Height: 1, POLRound: -1, BlockHash: testHash("q")}
	q.Sign(testKey(f, 2), chainB)
	fuzzDecoder(f, [][]byte{chain.Encode(p), chain.Encode(q)}, chain.DecodeProposal)
}

func FuzzDecodeHeader(f *testing.F) {
	fuzzDecoder(f, [][]byte{chain.Encode(testHeader(f, 1)), chain.Encode(testHeader(f, 1<<50))}, chain.DecodeHeader)
}

func FuzzDecodeBlock(f *testing.F) {
	fuzzDecoder(f, [][]byte{testBlock(f, 0).Encode(), testBlock(f, 1).Encode(), testBlock(f, 3).Encode()}, chain.DecodeBlock)
}

func FuzzDecodeCommitCert(f *testing.F) {
	_, keys := testSet(f, 4)
	fuzzDecoder(f, [][]byte{testCert(f, keys, 3, 5, testHash("b")).Encode(), testCert(f, keys, 0, 1, chain.ZeroHash).Encode()}, chain.DecodeCommitCert)
}

func FuzzDecodeAuthoritySet(f *testing.F) {
	one, _ := testSet(f, 1)
	four, _ := testSet(f, 4)
	fuzzDecoder(f, [][]byte{chain.Encode(one), chain.Encode(four)}, chain.DecodeAuthoritySet)
}

// FuzzDecodePayload takes the kind from the input's first two bytes (big-endian) and the payload
// from the rest.
func FuzzDecodePayload(f *testing.F) {
	for kind, body := range testPayloads(f) {
		enc := chain.Encode(body)
		f.Add(append([]byte{byte(kind >> 8), byte(kind)}, enc...))
		f.Add(append([]byte{0, byte(kind%5) + 1}, enc...))                // a body under the wrong kind
		f.Add(append([]byte{0, byte(kind%chain.TxEraseAck) + 1}, enc...)) // and under the next one
	}
	f.Add([]byte{0xff, 0xff, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		kind := chain.TxKind(data[0])<<8 | chain.TxKind(data[1])
		payload := data[2:]
		v, err := chain.DecodePayload(kind, payload)
		if err != nil {
			if v != nil {
				t.Fatalf("value returned with error %v", err)
			}
			return
		}
		if again := chain.Encode(v); !bytes.Equal(again, payload) {
			t.Fatalf("accepted %s payload re-encodes differently:\n in  %x\n out %x", kind, payload, again)
		}
	})
}

func FuzzDecodeAccessRequest(f *testing.F) {
	q := testAccessRequest(f, testKey(f, 1), chainA, 1)
	em := chain.AccessRequest{Role: "clinician", Record: testHash("r"), RequesterNode: testKey(f, 3).Public(), Holder: testKey(f, 4).Public(),
		Purpose: "ETREAT", Emergency: true, IssuedMs: -5, Nonce: 1 << 40}
	em.Sign(testKey(f, 2), chainB)
	fuzzDecoder(f, [][]byte{chain.Encode(&q), chain.Encode(&em)}, chain.DecodeAccessRequest)
}

func FuzzDecodeTxInclusionProof(f *testing.F) {
	txs := make([]*chain.Tx, 11)
	for i := range txs {
		txs[i] = testTx(f, testKey(f, 1), chainA, uint64(i+1))
	}
	var seeds [][]byte
	for _, c := range []struct{ n, i int }{{1, 0}, {2, 1}, {11, 6}} {
		p, err := chain.TxProof(txs[:c.n], c.i)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, p.Encode())
	}
	fuzzDecoder(f, seeds, chain.DecodeTxInclusionProof)
}
