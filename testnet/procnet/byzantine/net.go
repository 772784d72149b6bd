package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/reactor"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
)

// attacker is the compromised authority: its keys, its host on the network, what it knows of
// the chain, and the background attacks it runs.
type attacker struct {
	log     *slog.Logger
	home    string
	cfg     *node.Config
	chainID string
	cid     string // what consensus messages are signed under
	key     chain.PrivKey
	pub     chain.PubKey
	tr      *tracker
	counts  *counters
	cur     atomic.Pointer[p2p.Host]
	tmp     string // fresh identities for rejoin

	mu     sync.Mutex
	cancel context.CancelFunc // of the running attacks
	jobCtx context.Context
	wg     sync.WaitGroup
	fresh  int

	poolOnce sync.Once
	pool     []*chain.Tx // registrations by fresh keys that fill proposed blocks

	enrollerOnce sync.Once
	enrollerKey  chain.PrivKey
}

// open loads the home's genesis, authority key and config and joins the network under the
// home's own libp2p identity.
func open(ctx context.Context, home string, log *slog.Logger) (*attacker, error) {
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	g, err := node.LoadGenesis(node.Home(home).GenesisFile())
	if err != nil {
		return nil, err
	}
	key, err := authorityKey(home, cfg)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "medledger-byzantine-")
	if err != nil {
		return nil, err
	}
	a := &attacker{
		log: log, home: home, cfg: cfg, chainID: g.ChainID, cid: chain.ConsensusID(g.ChainID, g.Hash()),
		key: key, pub: key.Public(), tr: newTracker(g.AuthoritySet()), counts: newCounters(), tmp: tmp,
	}
	h, err := a.join(ctx, node.Resolve(home, cfg.P2P.Identity), cfg.P2P.Listen)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	a.cur.Store(h)
	log.Info("byzantine: joined", "peer", h.ID(), "authority", a.pub.Short(), "chain", a.chainID)
	return a, nil
}

// join starts a host with the identity in file, on the consensus topics and the direct
// protocol. Its validators only watch: they note heights and rounds and never relay or deliver.
func (a *attacker) join(ctx context.Context, identity string, listen []string) (*p2p.Host, error) {
	h, err := p2p.New(ctx, p2p.Config{
		ChainID: a.chainID, ListenAddrs: listen, Bootstrap: a.cfg.P2P.Bootstrap, IdentityFile: identity,
		Logger: a.log, DisableDHT: true, MaxDirectBytes: reactor.MaxDirectBytes,
	})
	if err != nil {
		return nil, err
	}
	watch := func(from peer.ID, data []byte) (p2p.Verdict, any) {
		a.watch(data)
		return p2p.Ignore, nil
	}
	for _, t := range []struct {
		name string
		max  int
	}{
		{reactor.TopicTxs, reactor.MaxGossipTxBytes},
		{reactor.TopicProposals, reactor.MaxGossipProposalBytes},
		{reactor.TopicVotes, reactor.MaxGossipVoteBytes},
	} {
		if err := h.JoinTopic(p2p.TopicConfig{Name: t.name, Version: reactor.TopicVersion, MaxBytes: t.max, Validate: watch}); err != nil {
			_ = h.Close()
			return nil, err
		}
	}
	h.HandleDirect(watch)
	return h, nil
}

// watch notes the height and round of the consensus messages honest nodes send us.
func (a *attacker) watch(data []byte) {
	m, err := replica.DecodeHead(data)
	if err != nil {
		return
	}
	switch {
	case m.Vote != nil:
		var block chain.Hash
		if m.Vote.Type == chain.Precommit {
			block = m.Vote.BlockHash
		}
		a.tr.saw(m.Vote.Height, m.Vote.Round, block)
	case m.Proposal != nil:
		a.tr.saw(m.Proposal.Height, m.Proposal.Round, chain.Hash{})
	}
}

func (a *attacker) host() *p2p.Host { return a.cur.Load() }

// rejoin replaces the host with one under a fresh libp2p identity on a free port: the authority
// key stays the same, so whatever it signs is still the compromised member's.
func (a *attacker) rejoin(ctx context.Context) (any, error) {
	a.mu.Lock()
	a.fresh++
	n := a.fresh
	a.mu.Unlock()
	listen := []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	h, err := a.join(ctx, filepath.Join(a.tmp, fmt.Sprintf("p2p-%d.key", n)), listen)
	if err != nil {
		return nil, err
	}
	old := a.cur.Swap(h)
	if err := old.Close(); err != nil {
		a.log.Warn("byzantine: close old host", "err", err)
	}
	a.log.Info("byzantine: rejoined under a fresh identity", "peer", h.ID(), "was", old.ID())
	return map[string]string{"peer": h.ID(), "was": old.ID()}, nil
}

func (a *attacker) close() {
	a.stopJobs()
	if err := a.host().Close(); err != nil {
		a.log.Warn("byzantine: close host", "err", err)
	}
	os.RemoveAll(a.tmp)
}

// peers are the connected peers' ids, decoded.
func (a *attacker) peers() []peer.ID {
	var out []peer.ID
	for _, s := range a.host().Peers() {
		if p, err := peer.Decode(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// counters count what the attacker sent, by kind.
type counters struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounters() *counters { return &counters{n: make(map[string]int)} }

func (c *counters) add(kind string, n int) {
	c.mu.Lock()
	c.n[kind] += n
	c.mu.Unlock()
}

func (c *counters) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// nowMs is the wall clock in Unix milliseconds, for block times and replies.
func nowMs() int64 { return time.Now().UnixMilli() }
