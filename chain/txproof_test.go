package chain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

const maxProofTxs = 70

// proofTxs returns n distinct transactions; prefixes of one list are the blocks of every size.
func proofTxs(t testing.TB, n int) []*chain.Tx {
	t.Helper()
	txs := make([]*chain.Tx, n)
	for i := range txs {
		txs[i] = testTx(t, testKey(t, i%5), chainA, uint64(i+1))
	}
	return txs
}

// boundRoot is the documented TxRoot over an RFC 6962 root, written out independently.
func boundRoot(size int, merkleRoot []byte) chain.Hash {
	b := []byte("medledger/tx-root/v1\x00")
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	return sha256.Sum256(append(b, merkleRoot...))
}

// TestTxRootDefinition pins the leaf, node and root definitions with plain SHA-256, without the
// Merkle library.
func TestTxRootDefinition(t *testing.T) {
	txs := proofTxs(t, 3)
	leaf := func(i int) []byte {
		h := txs[i].Hash()
		s := sha256.Sum256(append([]byte{0}, h[:]...))
		return s[:]
	}
	node := func(l, r []byte) []byte {
		s := sha256.Sum256(append(append([]byte{1}, l...), r...))
		return s[:]
	}
	empty := sha256.Sum256(nil)
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, empty[:]},
		{1, leaf(0)},
		{2, node(leaf(0), leaf(1))},
		{3, node(node(leaf(0), leaf(1)), leaf(2))},
	} {
		if got := chain.TxRoot(txs[:tc.n]); got != boundRoot(tc.n, tc.want) {
			t.Errorf("TxRoot of %d transactions %s, want %s", tc.n, got.Short(), boundRoot(tc.n, tc.want).Short())
		}
	}
	if chain.TxRoot(nil) != chain.TxRoot([]*chain.Tx{}) {
		t.Fatal("nil and empty lists have different roots")
	}
}

// TestTxProofEveryIndex builds a proof for every index of every size 0..70, verifies it, and
// cross-checks root and path with the library's reference tree and its verifier.
func TestTxProofEveryIndex(t *testing.T) {
	all := proofTxs(t, maxProofTxs)
	for n := 0; n <= maxProofTxs; n++ {
		txs := all[:n]
		root := chain.TxRoot(txs)
		ref := testonly.New(rfc6962.DefaultHasher)
		for _, tx := range txs {
			h := tx.Hash()
			ref.AppendData(h[:])
		}
		if want := boundRoot(n, ref.Hash()); root != want {
			t.Fatalf("size %d: root %s, reference %s", n, root.Short(), want.Short())
		}
		for _, bad := range []int{-1, n} {
			if p, err := chain.TxProof(txs, bad); err == nil || p != nil {
				t.Fatalf("size %d: proof for index %d: %v", n, bad, err)
			}
		}
		for i := range n {
			p, err := chain.TxProof(txs, i)
			if err != nil {
				t.Fatalf("size %d index %d: %v", n, i, err)
			}
			if p.Version != chain.TxProofVersion || p.Index != uint64(i) || p.Size != uint64(n) {
				t.Fatalf("size %d index %d: proof %+v", n, i, p)
			}
			h := txs[i].Hash()
			if err := p.Verify(root, h); err != nil {
				t.Fatalf("size %d index %d: %v", n, i, err)
			}
			refPath, err := ref.InclusionProof(uint64(i), uint64(n))
			if err != nil {
				t.Fatal(err)
			}
			path := make([][]byte, len(p.Path))
			for j := range p.Path {
				path[j] = p.Path[j][:]
			}
			if len(refPath) != len(path) {
				t.Fatalf("size %d index %d: path of %d, reference %d", n, i, len(path), len(refPath))
			}
			for j := range path {
				if !bytes.Equal(path[j], refPath[j]) {
					t.Fatalf("size %d index %d: path[%d] differs from the reference", n, i, j)
				}
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(n), rfc6962.DefaultHasher.HashLeaf(h[:]), path, ref.Hash()); err != nil {
				t.Fatalf("size %d index %d: library verifier: %v", n, i, err)
			}
			dec, err := chain.DecodeTxInclusionProof(p.Encode())
			if err != nil || dec.Verify(root, h) != nil {
				t.Fatalf("size %d index %d: round trip: %v", n, i, err)
			}
			if other := all[(i+1)%maxProofTxs].Hash(); p.Verify(root, other) == nil {
				t.Fatalf("size %d index %d: proof verifies another transaction", n, i)
			}
		}
	}
}

// TestTxProofTampered: any change to path, index, size or root is refused with ErrTxProof.
func TestTxProofTampered(t *testing.T) {
	all := proofTxs(t, maxProofTxs)
	for _, n := range []int{1, 2, 3, 5, 8, 13, 31, 32, 33, 70} {
		txs := all[:n]
		root := chain.TxRoot(txs)
		for i := range n {
			good, err := chain.TxProof(txs, i)
			if err != nil {
				t.Fatal(err)
			}
			h := txs[i].Hash()
			refuse := func(what string, p *chain.TxInclusionProof, root chain.Hash) {
				t.Helper()
				if err := p.Verify(root, h); !errors.Is(err, chain.ErrTxProof) && !errors.Is(err, chain.ErrUnknownVersion) {
					t.Fatalf("size %d index %d: %s: %v", n, i, what, err)
				}
			}
			clone := func() *chain.TxInclusionProof {
				c := *good
				c.Path = append([]chain.Hash{}, good.Path...)
				return &c
			}
			for j := range good.Path {
				for _, bit := range []int{0, 100, 255} {
					p := clone()
					p.Path[j][bit/8] ^= 1 << (bit % 8)
					refuse("flipped path bit", p, root)
				}
			}
			if len(good.Path) > 1 {
				p := clone()
				p.Path[0], p.Path[1] = p.Path[1], p.Path[0]
				refuse("swapped path", p, root)
			}
			p := clone()
			p.Path = append(p.Path, root)
			refuse("longer path", p, root)
			if len(good.Path) > 0 {
				p := clone()
				p.Path = p.Path[:len(p.Path)-1]
				refuse("shorter path", p, root)
			}
			for j := range n + 2 {
				if j != i {
					p := clone()
					p.Index = uint64(j)
					refuse("index", p, root)
				}
			}
			// Every other size, including the ones whose RFC 6962 path would be the same.
			for m := 0; m <= maxProofTxs+1; m++ {
				if m != n {
					p := clone()
					p.Size = uint64(m)
					refuse("size", p, root)
				}
			}
			refuse("root", good, chain.TxRoot(all[:n-1]))
			refuse("zero root", good, chain.Hash{})
			p = clone()
			p.Version = 2
			refuse("version", p, root)
		}
	}
}

func TestDecodeTxInclusionProof(t *testing.T) {
	txs := proofTxs(t, 5)
	p, err := chain.TxProof(txs, 3)
	if err != nil {
		t.Fatal(err)
	}
	enc := p.Encode()
	one, err := chain.TxProof(txs[:1], 0)
	if err != nil || one.Path == nil || len(one.Path) != 0 {
		t.Fatalf("single-transaction proof %+v %v", one, err)
	}
	nullPath := chain.Encode(&chain.TxInclusionProof{Version: chain.TxProofVersion, Index: 0, Size: 1})
	long := &chain.TxInclusionProof{Version: chain.TxProofVersion, Index: 0, Size: 1, Path: make([]chain.Hash, 40)}
	huge := &chain.TxInclusionProof{Version: chain.TxProofVersion, Index: 0, Size: chain.MaxBlockTxsLimit + 1, Path: make([]chain.Hash, 17)}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"trailing byte", append(bytes.Clone(enc), 0), chain.ErrNonCanonical},
		{"null path", nullPath, chain.ErrNonCanonical},
		{"too long", long.Encode(), chain.ErrTooLarge},
		{"size above the block limit", huge.Encode(), chain.ErrTxProof},
		{"wrong version", func() []byte { q := *p; q.Version = 9; return q.Encode() }(), chain.ErrUnknownVersion},
		{"path of the wrong length", func() []byte { q := *p; q.Path = q.Path[1:]; return q.Encode() }(), chain.ErrTxProof},
		{"index beyond size", func() []byte { q := *p; q.Index = 5; return q.Encode() }(), chain.ErrTxProof},
		{"size zero", chain.Encode(&chain.TxInclusionProof{Version: chain.TxProofVersion, Path: []chain.Hash{}}), chain.ErrTxProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chain.DecodeTxInclusionProof(tc.data)
			if got != nil || !errors.Is(err, tc.want) {
				t.Fatalf("got %+v, %v; want %v", got, err, tc.want)
			}
		})
	}
	got, err := chain.DecodeTxInclusionProof(chain.Encode(one))
	if err != nil || got.Verify(chain.TxRoot(txs[:1]), txs[0].Hash()) != nil {
		t.Fatalf("single-transaction proof round trip: %v", err)
	}
}
