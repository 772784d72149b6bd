package consensus

import (
	"testing"

	"github.com/medledger/medledger/chain"
)

// soloEngine is node i of a 4-authority set, driven by hand.
func soloEngine(t *testing.T, i int) (*Engine, []chain.PrivKey, *chain.AuthoritySet) {
	t.Helper()
	keys, set := testKeys(4)
	e, err := New(Config{ChainID: testChain, Key: &keys[i], Params: testParams},
		Start{Height: 1, Authorities: set, LastBlockTime: genesisTime})
	if err != nil {
		t.Fatal(err)
	}
	return e, keys, set
}

func signedVote(k chain.PrivKey, typ chain.VoteType, h uint64, r uint32, block chain.Hash) *chain.Vote {
	v := &chain.Vote{Type: typ, Height: h, Round: r, BlockHash: block}
	v.Sign(k, testChain)
	return v
}

func testBlock(h uint64, salt int64) *chain.Block {
	return &chain.Block{Version: chain.BlockVersion, Header: chain.Header{
		Version: chain.HeaderVersion, ChainID: testChain, Height: h, Time: genesisTime + 1 + salt, TxRoot: chain.TxRoot(nil),
	}}
}

func signedProposal(k chain.PrivKey, h uint64, r uint32, pol int32, b *chain.Block) *chain.Proposal {
	p := &chain.Proposal{Height: h, Round: r, POLRound: pol, BlockHash: b.Hash()}
	p.Sign(k, testChain)
	return p
}

// votesIn returns the votes among rd's messages.
func votesIn(rd Ready) []*chain.Vote {
	var out []*chain.Vote
	for _, m := range rd.Messages {
		if m.Vote != nil {
			out = append(out, m.Vote)
		}
	}
	return out
}
