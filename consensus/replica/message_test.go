package replica

import (
	"errors"
	"reflect"
	"testing"

	"github.com/medledger/medledger/chain"
)

// headSamples are encoded messages of every kind, among them proposals with and without
// transactions.
func headSamples(tb testing.TB) [][]byte {
	k, _ := chain.PrivKeyFromSeed(make([]byte, 32))
	var txs []*chain.Tx
	for i := range 40 {
		txs = append(txs, regTx(tb, k, uint64(i+1), 2+i))
	}
	prop := func(height uint64, txs []*chain.Tx) []byte {
		b := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{Version: chain.HeaderVersion, ChainID: chainID, Height: height, Time: 7, TxRoot: chain.TxRoot(txs), Proposer: k.Public()}, Txs: txs}
		if height > 1 {
			b.Header.PrevHash = chain.Hash{9}
		}
		p := &chain.Proposal{Height: height, Round: 2, POLRound: -1, BlockHash: b.Hash()}
		p.Sign(k, chainID)
		return (&Message{Version: MessageVersion, Proposal: p, Block: b}).Encode()
	}
	v := &chain.Vote{Type: chain.Prevote, Height: 3, BlockHash: chain.Hash{1}}
	v.Sign(k, chainID)
	return [][]byte{
		prop(1, nil), prop(5, txs),
		(&Message{Version: MessageVersion, Vote: v}).Encode(),
		(&Message{Version: MessageVersion, SyncFrom: 4}).Encode(),
		(&Message{Version: MessageVersion, Tx: txs[0]}).Encode(),
	}
}

// checkProposalHead compares DecodeProposalHead on every prefix of data with DecodeHead on the
// whole: a prefix either is too short, or yields exactly the proposal and header of the whole
// message (nothing for another kind); a refusal other than a short head means the whole message
// is refused too.
func checkProposalHead(t *testing.T, data []byte, upto int) {
	t.Helper()
	whole, wholeErr := DecodeHead(data)
	for n := 0; n <= min(len(data), upto); n++ {
		p, h, err := DecodeProposalHead(data[:n])
		switch {
		case errors.Is(err, ErrShortHead):
			if p != nil || h != nil {
				t.Fatalf("prefix %d: a short head returned a proposal", n)
			}
		case err != nil:
			if wholeErr == nil {
				t.Fatalf("prefix %d refused (%v) but the whole message decodes", n, err)
			}
		case wholeErr == nil && (!reflect.DeepEqual(p, whole.Proposal) || (p != nil && !reflect.DeepEqual(h, whole.Header))):
			t.Fatalf("prefix %d: decoded %+v %+v, the whole message has %+v %+v", n, p, h, whole.Proposal, whole.Header)
		case p == nil && h != nil:
			t.Fatalf("prefix %d: a header without a proposal", n)
		}
	}
}

func TestDecodeProposalHead(t *testing.T) {
	for i, data := range headSamples(t) {
		checkProposalHead(t, data, len(data))
		p, h, err := DecodeProposalHead(data)
		if isProposal := i < 2; err != nil || (p != nil) != isProposal || (h != nil) != isProposal {
			t.Errorf("sample %d: proposal %v header %v err %v", i, p != nil, h != nil, err)
		}
	}
	// Not a message, another version, a proposal without its block.
	k, _ := chain.PrivKeyFromSeed(make([]byte, 32))
	p := &chain.Proposal{Height: 1, POLRound: -1, BlockHash: chain.Hash{1}}
	p.Sign(k, chainID)
	noBlock := chain.Encode(&wireHead{Version: MessageVersion, Proposal: p})
	for _, bad := range [][]byte{{0xff}, {0x88, 0x02}, noBlock} {
		if _, _, err := DecodeProposalHead(bad); err == nil || errors.Is(err, ErrShortHead) {
			t.Errorf("%x: %v, want refused", bad, err)
		}
	}
}

func FuzzDecodeProposalHead(f *testing.F) {
	for _, data := range headSamples(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkProposalHead(t, data, 600) })
}
