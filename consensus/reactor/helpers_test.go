package reactor

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p"
)

const testChain = "medledger-reactor-test"

// wait is the generous deadline for conditions in multi-host tests.
const wait = 20 * time.Second

func testKey(t testing.TB, i int) chain.PrivKey {
	t.Helper()
	seed := sha256.Sum256(fmt.Appendf(nil, "reactor-test-key-%d", i))
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testNet is a genesis of four authorities (keys 0..3) and what the tests build from it.
type testNet struct {
	genesis *chain.Genesis
	keys    []chain.PrivKey
	cid     string // chain.ConsensusID: what votes and proposals are signed under
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	n := &testNet{}
	var auths []chain.Authority
	for i := range 4 {
		k := testKey(t, i)
		n.keys = append(n.keys, k)
		auths = append(auths, chain.Authority{Key: k.Public(), Name: fmt.Sprintf("a%d", i)})
	}
	n.genesis = &chain.Genesis{Version: chain.GenesisVersion, ChainID: testChain, TimeMs: 1_700_000_000_000, Authorities: auths, Params: chain.DefaultParams()}
	n.cid = chain.ConsensusID(testChain, n.genesis.Hash())
	return n
}

// replica opens a full node's replica (no key) on a fresh in-memory store: at height 0,
// deciding height 1.
func (n *testNet) replica(t testing.TB) *replica.Replica {
	t.Helper()
	rep, err := replica.New(replica.Config{Genesis: n.genesis}, store.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// key returns the authority key that proposes (height, round), or, with offTurn, another one.
func (n *testNet) key(t testing.TB, height uint64, round uint32, offTurn bool) chain.PrivKey {
	t.Helper()
	want := n.genesis.AuthoritySet().Proposer(height, round)
	for _, k := range n.keys {
		if (k.Public() == want) != offTurn {
			return k
		}
	}
	t.Fatal("no such key")
	return chain.PrivKey{}
}

func (n *testNet) vote(t testing.TB, signer int, height uint64) *replica.Message {
	t.Helper()
	v := &chain.Vote{Type: chain.Prevote, Height: height, Round: 0, BlockHash: chain.Sum256([]byte("block"))}
	v.Sign(n.keys[signer], n.cid)
	return &replica.Message{Version: replica.MessageVersion, Vote: v}
}

// header is a block header for height proposed by key; its transactions are the caller's.
func header(height uint64, key chain.PrivKey, txRoot chain.Hash) chain.Header {
	h := chain.Header{
		Version: chain.HeaderVersion, ChainID: testChain, Height: height, Time: 1_700_000_001_000,
		TxRoot: txRoot, StateRoot: chain.Sum256([]byte("state")), AuthoritiesHash: chain.Sum256([]byte("set")),
		NextAuthoritiesHash: chain.Sum256([]byte("set")), Proposer: key.Public(),
	}
	if height > 1 {
		h.PrevHash = chain.Sum256([]byte("previous"))
	}
	return h
}

// proposal builds a signed proposal for height/0 by key whose block holds ntx registrations of
// payloadBytes each.
func (n *testNet) proposal(t testing.TB, key chain.PrivKey, height uint64, ntx, payloadBytes int) *replica.Message {
	t.Helper()
	b := &chain.Block{Version: chain.BlockVersion}
	for i := range ntx {
		body := &chain.RegisterPatient{EncryptionKey: make([]byte, payloadBytes)}
		b.Txs = append(b.Txs, chain.NewTx(testKey(t, 100+i), testChain, chain.TxRegisterPatient, 1, body))
	}
	b.Header = header(height, key, chain.TxRoot(b.Txs))
	p := &chain.Proposal{Height: height, Round: 0, POLRound: -1, BlockHash: b.Hash()}
	p.Sign(key, n.cid)
	return &replica.Message{Version: replica.MessageVersion, Proposal: p, Block: b}
}

// rawBlock and rawMessage mirror the wire form of a proposal message with transactions of any
// shape, to build blocks whose header is well formed and whose transactions are garbage.
type rawBlock struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Header  chain.Header
	Txs     []any
}

type rawMessage struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Proposal   *chain.Proposal
	Block      *rawBlock
	Vote       *chain.Vote
	Tx         *chain.Tx
	SyncFrom   uint64
	SyncBlocks []any
	SyncCerts  []any
	Status     uint64
	Txs        []any
}

// garbageProposal is a proposal signed by key for height/0 whose signed header is well formed
// and whose block's transactions are junkBytes of byte string, not transactions.
func (n *testNet) garbageProposal(t testing.TB, key chain.PrivKey, height uint64, junkBytes int) []byte {
	t.Helper()
	b := &rawBlock{Version: chain.BlockVersion, Header: header(height, key, chain.Sum256([]byte("no such root"))), Txs: []any{make([]byte, junkBytes)}}
	p := &chain.Proposal{Height: height, Round: 0, POLRound: -1, BlockHash: b.Header.Hash()}
	p.Sign(key, n.cid)
	data := chain.Encode(&rawMessage{Version: replica.MessageVersion, Proposal: p, Block: b})
	if _, err := replica.DecodeHead(data); err != nil {
		t.Fatalf("the garbage proposal's head does not decode: %v", err)
	}
	if _, err := replica.DecodeMessage(data); err == nil {
		t.Fatal("the garbage proposal decodes in full")
	}
	return data
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newHost starts a host on 127.0.0.1 (TCP, port 0) without the DHT, so it talks to its
// bootstrap peers and those that dial it and nobody else; NAT port mapping and mDNS are off in
// p2p. It closes when the test ends.
func newHost(t testing.TB, bootstrap ...*p2p.Host) *p2p.Host {
	t.Helper()
	var boot []string
	for _, b := range bootstrap {
		boot = append(boot, b.Addrs()...)
	}
	h, err := p2p.New(context.Background(), p2p.Config{
		ChainID: testChain, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: boot,
		IdentityFile: filepath.Join(t.TempDir(), "p2p.key"), Logger: testLogger(t),
		DisableDHT: true, MaxDirectBytes: MaxDirectBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close %s: %v", h.ID(), err)
		}
	})
	return h
}

func newReactor(t testing.TB, h *p2p.Host, rep *replica.Replica) *Reactor {
	t.Helper()
	r, err := New(h, rep.Gate(), Config{Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close) // before the host's cleanup, which was registered earlier
	return r
}

// acceptAll is a raw peer's validator: it takes every payload as it is.
func acceptAll(peer.ID, []byte) (p2p.Verdict, any) { return p2p.Accept, nil }

// rawPeer makes h a peer that speaks the reactor's topics and direct protocol without judging
// anything: it publishes what a test wants and shows what it is sent.
func rawPeer(t testing.TB, h *p2p.Host, topics ...string) *p2p.Host {
	t.Helper()
	for _, name := range topics {
		if err := h.JoinTopic(p2p.TopicConfig{Name: name, Version: TopicVersion, MaxBytes: p2p.MaxGossipBytes, Validate: acceptAll}); err != nil {
			t.Fatal(err)
		}
	}
	h.HandleDirect(acceptAll)
	return h
}

var allTopics = []string{TopicTxs, TopicProposals, TopicVotes}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", wait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitConnected waits until a and b are connected.
func waitConnected(t testing.TB, a, b *p2p.Host) {
	t.Helper()
	waitFor(t, a.ID()+" and "+b.ID()+" to connect", func() bool {
		return slices.Contains(a.Peers(), b.ID()) && slices.Contains(b.Peers(), a.ID())
	})
}

// waitMesh waits until h has at least n peers in its mesh of topic.
func waitMesh(t testing.TB, h *p2p.Host, topic string, n int) {
	t.Helper()
	name := p2p.TopicName(testChain, topic, TopicVersion)
	waitFor(t, fmt.Sprintf("%s to mesh with %d peers on %s", h.ID(), n, topic), func() bool { return h.MeshPeers()[name] >= n })
}

// receive reads one message from r's inbox or fails after the deadline.
func receive(t testing.TB, r *Reactor) replica.Inbound {
	t.Helper()
	select {
	case in := <-r.Inbox():
		return in
	case <-time.After(wait):
		t.Fatalf("nothing received in %v", wait)
	}
	return replica.Inbound{}
}

// receiveRaw reads one delivery from a raw peer's inbox or fails after the deadline.
func receiveRaw(t testing.TB, h *p2p.Host) p2p.Delivery {
	t.Helper()
	select {
	case d := <-h.Inbox():
		return d
	case <-time.After(wait):
		t.Fatalf("%s: nothing received in %v", h.ID(), wait)
	}
	return p2p.Delivery{}
}

func assertEmpty(t testing.TB, r *Reactor) {
	t.Helper()
	select {
	case in := <-r.Inbox():
		t.Fatalf("unexpected %s from %s", in.Msg.Kind(), in.From)
	default:
	}
}

func assertEmptyRaw(t testing.TB, h *p2p.Host) {
	t.Helper()
	select {
	case d := <-h.Inbox():
		t.Fatalf("%s: unexpected %d bytes on %q from %s", h.ID(), len(d.Data), d.Topic, d.From)
	default:
	}
}
