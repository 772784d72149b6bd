package p2p

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
)

const testChain = "medledger-p2p-test"

// wait is the generous deadline for conditions in multi-host tests.
const wait = 20 * time.Second

func testKey(t testing.TB, i int) chain.PrivKey {
	t.Helper()
	seed := sha256.Sum256(fmt.Appendf(nil, "p2p-test-key-%d", i))
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func txMsg(t testing.TB, nonce uint64) *replica.Message {
	t.Helper()
	tx := chain.NewTx(testKey(t, 1), testChain, chain.TxRegisterPatient, nonce, &chain.RegisterPatient{EncryptionKey: []byte("patient-encryption-key")})
	return &replica.Message{Version: replica.MessageVersion, Tx: tx}
}

func voteMsg(t testing.TB, height uint64) *replica.Message {
	t.Helper()
	v := &chain.Vote{Type: chain.Prevote, Height: height, Round: 0, BlockHash: chain.Sum256([]byte("block"))}
	v.Sign(testKey(t, 2), testChain)
	return &replica.Message{Version: replica.MessageVersion, Vote: v}
}

// proposalMsg builds a signed proposal whose block holds ntx transactions of payloadBytes each.
func proposalMsg(t testing.TB, ntx, payloadBytes int) *replica.Message {
	t.Helper()
	key := testKey(t, 3)
	b := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{
		Version: chain.HeaderVersion, ChainID: testChain, Height: 1, Time: 1_700_000_000_000,
		StateRoot: chain.Sum256([]byte("state")), AuthoritiesHash: chain.Sum256([]byte("set")),
		NextAuthoritiesHash: chain.Sum256([]byte("set")), Proposer: key.Public(),
	}}
	for i := range ntx {
		body := &chain.RegisterPatient{EncryptionKey: make([]byte, payloadBytes)}
		b.Txs = append(b.Txs, chain.NewTx(testKey(t, 10+i), testChain, chain.TxRegisterPatient, 1, body))
	}
	b.Header.TxRoot = chain.TxRoot(b.Txs)
	p := &chain.Proposal{Height: 1, Round: 0, POLRound: -1, BlockHash: b.Hash()}
	p.Sign(key, testChain)
	return &replica.Message{Version: replica.MessageVersion, Proposal: p, Block: b}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newTestHost starts a host on 127.0.0.1 (TCP and QUIC, port 0) and closes it when the test ends.
func newTestHost(t testing.TB, bootstrap ...*Host) *Host {
	t.Helper()
	return startHost(t, testConfig(t, bootstrap...))
}

// newStaticTestHost is newTestHost without the DHT: the host connects to its bootstrap peers
// and nobody else, for tests that need a fixed topology.
func newStaticTestHost(t testing.TB, bootstrap ...*Host) *Host {
	t.Helper()
	cfg := testConfig(t, bootstrap...)
	cfg.DisableDHT = true
	return startHost(t, cfg)
}

func testConfig(t testing.TB, bootstrap ...*Host) Config {
	var boot []string
	for _, b := range bootstrap {
		boot = append(boot, b.Addrs()...)
	}
	return Config{
		ChainID:      testChain,
		ListenAddrs:  []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Bootstrap:    boot,
		IdentityFile: filepath.Join(t.TempDir(), "p2p.key"),
		Logger:       testLogger(t),
	}
}

func startHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(context.Background(), cfg)
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

// waitMesh waits until h has each of neighbours in its gossipsub mesh on every topic.
func waitMesh(t testing.TB, h *Host, neighbours ...*Host) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to mesh with its neighbours on every topic", h.ID()), func() bool {
		for k := range numTopics {
			ps := h.mesh.peers(topicName(h.chainID, k))
			for _, n := range neighbours {
				if !slices.Contains(ps, n.self) {
					return false
				}
			}
		}
		return true
	})
}

// waitTopicPeers waits until h sees each of neighbours subscribed to every topic.
func waitTopicPeers(t testing.TB, h *Host, neighbours ...*Host) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to see its neighbours on every topic", h.ID()), func() bool {
		for k := range numTopics {
			ps := h.topics[k].ListPeers()
			for _, n := range neighbours {
				if !slices.Contains(ps, n.self) {
					return false
				}
			}
		}
		return true
	})
}

// receive reads one message from h's inbox or fails after the deadline.
func receive(t testing.TB, h *Host) replica.Inbound {
	t.Helper()
	select {
	case in := <-h.Inbox():
		return in
	case <-time.After(wait):
		t.Fatalf("%s: nothing received in %v", h.ID(), wait)
	}
	return replica.Inbound{}
}

// assertEmpty fails if h's inbox holds anything now.
func assertEmpty(t testing.TB, h *Host) {
	t.Helper()
	select {
	case in := <-h.Inbox():
		t.Fatalf("%s: unexpected %s from %s", h.ID(), in.Msg.Kind(), in.From)
	default:
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}
