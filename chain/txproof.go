package chain

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The transaction root commits to the block's transactions in block order with an RFC 6962
// (Certificate Transparency) Merkle tree over SHA-256, bound to the number of transactions:
//
//	leaf i     = Tx.Hash() of the i-th transaction (32 bytes), leaf hash SHA-256(0x00 ‖ leaf)
//	inner node = SHA-256(0x01 ‖ left ‖ right); the tree of no leaves is SHA-256("")
//	TxRoot     = SHA-256("medledger/tx-root/v1\x00" ‖ uint64 big-endian count ‖ RFC 6962 root)
//
// The count is bound in because an RFC 6962 root alone does not fix the tree size (CT signs the
// size beside the root), and without the size a proof's index is not authenticated either: the
// path for leaf 2 of 3 also verifies as leaf 1 of 2. Headers carry only TxRoot, so it carries both.

// TxProofVersion is the inclusion proof encoding version.
const TxProofVersion = 1

// MaxTxProofBytes bounds an encoded inclusion proof: a path for MaxBlockTxsLimit leaves has at
// most 17 hashes (about 600 bytes encoded).
const MaxTxProofBytes = 1024

// ErrTxProof is returned for every inclusion proof that does not prove its transaction.
var ErrTxProof = errors.New("chain: invalid transaction inclusion proof")

var (
	txHasher = rfc6962.DefaultHasher
	txRanges = &compact.RangeFactory{Hash: txHasher.HashChildren}
)

// TxRoot commits to an ordered list of transactions (see the comment at the top of this file),
// so that TxProof can prove one transaction's place in a block to a client holding only the
// header.
func TxRoot(txs []*Tx) Hash {
	root, err := txTree(txs, nil)
	if err != nil {
		panic(err) // appending leaves from 0 never fails: a bug in this file
	}
	return txRootOf(uint64(len(txs)), root)
}

var txRootDomain = []byte("medledger/tx-root/v1\x00")

// txRootOf binds the tree size to an RFC 6962 root.
func txRootOf(size uint64, merkleRoot []byte) Hash {
	b := append(make([]byte, 0, len(txRootDomain)+8+len(merkleRoot)), txRootDomain...)
	b = binary.BigEndian.AppendUint64(b, size)
	return Sum256(append(b, merkleRoot...))
}

// txTree computes the RFC 6962 root and, if visit is non-nil, reports every node of the tree's
// perfect subtrees to it (what an inclusion proof is assembled from).
func txTree(txs []*Tx, visit compact.VisitFn) ([]byte, error) {
	if len(txs) == 0 {
		return txHasher.EmptyRoot(), nil
	}
	r := txRanges.NewEmptyRange(0)
	for _, tx := range txs {
		h := tx.Hash()
		if err := r.Append(txHasher.HashLeaf(h[:]), visit); err != nil {
			return nil, fmt.Errorf("chain: transaction tree: %w", err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("chain: transaction tree: %w", err)
	}
	return root, nil
}

// TxInclusionProof proves that the transaction at Index of a block with Size transactions is
// under the block's TxRoot: Path is the RFC 6962 audit path, from the leaf's sibling up.
type TxInclusionProof struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Index   uint64
	Size    uint64
	Path    []Hash
}

// TxProof builds the inclusion proof of txs[index] under TxRoot(txs).
func TxProof(txs []*Tx, index int) (*TxInclusionProof, error) {
	if index < 0 || index >= len(txs) {
		return nil, fmt.Errorf("chain: no transaction %d in a list of %d", index, len(txs))
	}
	// Node hashes by level, then by index within the level: only perfect subtrees are visited.
	levels := [][][]byte{}
	visit := func(id compact.NodeID, hash []byte) {
		for uint(len(levels)) <= id.Level {
			levels = append(levels, nil)
		}
		row := levels[id.Level]
		if uint64(len(row)) != id.Index {
			panic(fmt.Sprintf("chain: transaction tree visited node %d/%d out of order", id.Level, id.Index))
		}
		levels[id.Level] = append(row, hash)
	}
	if _, err := txTree(txs, visit); err != nil {
		return nil, err
	}
	size := uint64(len(txs))
	nodes, err := proof.Inclusion(uint64(index), size)
	if err != nil {
		return nil, fmt.Errorf("chain: transaction proof: %w", err)
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		hashes[i] = levels[id.Level][id.Index]
	}
	path, err := nodes.Rehash(hashes, txHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("chain: transaction proof: %w", err)
	}
	p := &TxInclusionProof{Version: TxProofVersion, Index: uint64(index), Size: size, Path: make([]Hash, len(path))}
	for i, h := range path {
		p.Path[i] = Hash(h)
	}
	return p, nil
}

// txProofLen is the exact audit path length for a leaf in a tree of size leaves.
func txProofLen(index, size uint64) (int, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return 0, err
	}
	n := len(nodes.IDs)
	// Rehash folds the nodes of the ephemeral (imperfect) subtree into one hash.
	if _, begin, end := nodes.Ephem(); end > begin {
		n -= end - begin - 1
	}
	return n, nil
}

// Validate checks the proof's form: version, 1 <= Size <= MaxBlockTxsLimit, Index < Size, and a
// path of exactly the length RFC 6962 gives for that index and size.
func (p *TxInclusionProof) Validate() error {
	if err := checkVersion("transaction proof", p.Version, TxProofVersion); err != nil {
		return err
	}
	if p.Size == 0 || p.Size > MaxBlockTxsLimit {
		return fmt.Errorf("%w: tree size %d not in 1..%d", ErrTxProof, p.Size, MaxBlockTxsLimit)
	}
	if p.Index >= p.Size {
		return fmt.Errorf("%w: index %d not below size %d", ErrTxProof, p.Index, p.Size)
	}
	want, err := txProofLen(p.Index, p.Size)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTxProof, err)
	}
	if len(p.Path) != want {
		return fmt.Errorf("%w: path has %d hashes, index %d of %d needs %d", ErrTxProof, len(p.Path), p.Index, p.Size, want)
	}
	return nil
}

// Verify checks that the transaction with hash txHash (Tx.Hash) is at p.Index of the transaction
// list whose root is root (a header's TxRoot). It is pure: no state, no signatures.
func (p *TxInclusionProof) Verify(root Hash, txHash Hash) error {
	if err := p.Validate(); err != nil {
		return err
	}
	path := make([][]byte, len(p.Path))
	for i := range p.Path {
		path[i] = p.Path[i][:]
	}
	merkleRoot, err := proof.RootFromInclusionProof(txHasher, p.Index, p.Size, txHasher.HashLeaf(txHash[:]), path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTxProof, err)
	}
	if txRootOf(p.Size, merkleRoot) != root {
		return fmt.Errorf("%w: transaction %s at %d of %d is not under root %s", ErrTxProof, txHash.Short(), p.Index, p.Size, root.Short())
	}
	return nil
}

// Encode returns the canonical encoding.
func (p *TxInclusionProof) Encode() []byte { return Encode(p) }

// DecodeTxInclusionProof decodes and validates an inclusion proof (check it with Verify). The
// path is always an array, possibly empty: a CBOR null there is not canonical.
func DecodeTxInclusionProof(data []byte) (*TxInclusionProof, error) {
	var p TxInclusionProof
	if err := decodeCanonical("transaction proof", data, MaxTxProofBytes, &p); err != nil {
		return nil, err
	}
	if p.Path == nil {
		return nil, fmt.Errorf("%w: transaction proof path is null, want an array", ErrNonCanonical)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
