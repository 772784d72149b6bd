package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
)

// ChainID is the chain id of generated chains.
const ChainID = "store-test"

// Genesis is a valid genesis derived from seed.
func Genesis(seed uint64) *chain.Genesis {
	r := rand.New(rand.NewPCG(seed, 0))
	var k chain.PubKey
	fillRand(r, k[:])
	return &chain.Genesis{
		Version:     chain.GenesisVersion,
		ChainID:     ChainID,
		Authorities: []chain.Authority{{Key: k, Name: "authority-0"}},
		Params:      chain.DefaultParams(),
	}
}

// GenesisState is the genesis change set for seed.
func GenesisState(seed uint64) state.ChangeSet {
	return state.ChangeSet{Changes: []state.Change{
		{Key: []byte("genesis/a"), Value: []byte(fmt.Sprint("a", seed))},
		{Key: []byte("genesis/b"), Value: []byte("b")},
	}}
}

func fillRand(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// BlockSpec shapes generated blocks.
type BlockSpec struct {
	Txs     int // transactions per block; 0 = a few, random
	TxBytes int // payload bytes per transaction
	BigEach int // every BigEach-th height is a big block (0: never)
}

// CrashSpec is the chain the crash tests write: small blocks with a few KB of state changes, and
// every 29th block ~600 KB with 400 KB of state changes.
var CrashSpec = BlockSpec{TxBytes: 250, BigEach: 29}

// GenBlock derives block h (its transactions, certificate and change set) from seed and h alone,
// given the previous block's hash and the state root before it, so that a crashed writer and the
// checking parent compute the same chain.
func GenBlock(seed, h uint64, prev, stateRoot chain.Hash, spec BlockSpec) (*chain.Block, *chain.CommitCert, state.ChangeSet) {
	r := rand.New(rand.NewPCG(seed, h))
	big := spec.BigEach > 0 && h%uint64(spec.BigEach) == 0
	nTx := spec.Txs
	if nTx == 0 {
		nTx = 1 + r.IntN(8)
		if big {
			nTx = 1500 + r.IntN(1000)
		}
	}
	txs := make([]*chain.Tx, nTx)
	for i := range txs {
		tx := &chain.Tx{Version: chain.TxVersion, ChainID: ChainID, Kind: chain.TxRegisterPatient, Nonce: h<<20 | uint64(i+1), Payload: make([]byte, spec.TxBytes)}
		fillRand(r, tx.Signer[:])
		fillRand(r, tx.Payload)
		fillRand(r, tx.Sig[:])
		txs[i] = tx
	}
	hdr := chain.Header{Version: chain.HeaderVersion, ChainID: ChainID, Height: h, Time: int64(h) * 1000, PrevHash: prev, TxRoot: chain.TxRoot(txs), StateRoot: stateRoot}
	fillRand(r, hdr.Proposer[:])
	b := &chain.Block{Version: chain.BlockVersion, Header: hdr, Txs: txs}
	cert := &chain.CommitCert{Version: chain.CertVersion, Height: h, BlockHash: b.Hash(), Sigs: make([]chain.CommitSig, 3)}
	for i := range cert.Sigs {
		fillRand(r, cert.Sigs[i].Authority[:])
		fillRand(r, cert.Sigs[i].Sig[:])
	}

	// A few KB of changes over a small key space, so keys are overwritten and deleted; big
	// blocks also write a few hundred KB.
	nChanges, valueLen := 5+r.IntN(15), 100+r.IntN(200)
	if big {
		nChanges, valueLen = 400, 1000
	}
	keys := map[int]bool{}
	for range nChanges {
		keys[r.IntN(2000)] = true
	}
	order := make([]int, 0, len(keys))
	for k := range keys {
		order = append(order, k)
	}
	slices.Sort(order)
	var cs state.ChangeSet
	for _, k := range order {
		c := state.Change{Key: fmt.Appendf(nil, "k/%05d", k)}
		if r.IntN(6) == 0 {
			c.Delete = true
		} else {
			c.Value = make([]byte, valueLen)
			fillRand(r, c.Value)
		}
		cs.Changes = append(cs.Changes, c)
	}
	return b, cert, cs
}

// Extend commits n generated blocks on top of s.
func Extend(s store.Store, seed uint64, n int, spec BlockSpec) error {
	for range n {
		prev, err := TipHash(s)
		if err != nil {
			return err
		}
		b, cert, cs := GenBlock(seed, s.Height()+1, prev, s.StateRoot(), spec)
		if _, err := s.Commit(b, cert, cs); err != nil {
			return err
		}
	}
	return nil
}

// TipHash is the hash of s's last block (zero at genesis).
func TipHash(s store.Store) (chain.Hash, error) {
	if s.Height() == 0 {
		return chain.Hash{}, nil
	}
	b, err := s.Block(s.Height())
	if err != nil {
		return chain.Hash{}, err
	}
	return b.Hash(), nil
}

// StateKeys are every key GenesisState, GenBlock and the suite's tiny blocks write.
func StateKeys() [][]byte {
	keys := [][]byte{[]byte("genesis/a"), []byte("genesis/b")}
	for k := range 2000 {
		keys = append(keys, fmt.Appendf(nil, "k/%05d", k))
	}
	for k := range 4 {
		keys = append(keys, fmt.Appendf(nil, "t/%d", k))
	}
	return keys
}

// CheckLatestState compares, for keys, the latest state of s read through State (the store's
// latest-value index) with the state of ref at the same height read from its tree (StateAt), and
// with s's own tree.
func CheckLatestState(ref, s store.Store, keys [][]byte) error {
	h := s.Height()
	own, err := s.StateAt(h)
	if h == 0 && errors.Is(err, store.ErrNotFound) {
		return nil // no genesis yet: nothing to compare
	}
	if err != nil {
		return err
	}
	want, err := ref.StateAt(h)
	if err != nil {
		return err
	}
	got := s.State()
	for _, k := range keys {
		w, err := want.Get(k)
		if err != nil {
			return err
		}
		g, err := got.Get(k)
		if err != nil {
			return err
		}
		o, err := own.Get(k)
		if err != nil {
			return err
		}
		if !bytes.Equal(w, g) || (w == nil) != (g == nil) || !bytes.Equal(o, g) || (o == nil) != (g == nil) {
			return fmt.Errorf("key %q at height %d: latest state has %x, tree %x, reference %x", k, h, g, o, w)
		}
	}
	return nil
}
