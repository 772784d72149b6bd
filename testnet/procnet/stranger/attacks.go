package main

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/reactor"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/p2p/frame"
	"github.com/medledger/medledger/records/exchange"
)

// probeWait bounds how long one probe waits for a target's answer.
const probeWait = 3 * time.Second

type stranger struct {
	chainID string
	targets []peer.AddrInfo
	log     *slog.Logger
	h       host.Host

	inbound    atomic.Int64 // streams targets opened to us
	blocksRead atomic.Int64
}

// newHost is a plain libp2p host under a fresh identity, listening on loopback only.
func newHost() (host.Host, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	return libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
}

func newStranger(ctx context.Context, chainID string, targets []peer.AddrInfo, log *slog.Logger) (*stranger, error) {
	h, err := newHost()
	if err != nil {
		return nil, err
	}
	s := &stranger{chainID: chainID, targets: targets, log: log, h: h}
	// Whatever a target sends us on the members' protocols is a leak: count it, and count the
	// blocks in sync answers.
	h.SetStreamHandler(s.direct(), func(st network.Stream) {
		s.inbound.Add(1)
		defer st.Close()
		body, err := frame.Read(st, replica.MaxMessageBytes)
		if err != nil {
			return
		}
		if m, err := replica.DecodeMessage(body); err == nil {
			s.blocksRead.Add(int64(len(m.SyncBlocks)))
		}
	})
	h.SetStreamHandler(exchange.ProtocolID(chainID), func(st network.Stream) {
		s.inbound.Add(1)
		_ = st.Reset()
	})
	for _, t := range targets {
		h.Peerstore().AddAddrs(t.ID, t.Addrs, time.Hour)
	}
	return s, nil
}

func (s *stranger) close() { _ = s.h.Close() }

func (s *stranger) direct() protocol.ID {
	return protocol.ID("/medledger/" + s.chainID + "/direct/1.0.0")
}

// requestBlocks asks every target for committed blocks from height 1 over the direct protocol;
// answers arrive on streams the target opens back (counted by the direct handler).
func (s *stranger) requestBlocks(ctx context.Context, rep *Report) {
	req := (&replica.Message{Version: replica.MessageVersion, SyncFrom: 1}).Encode()
	for _, t := range s.targets {
		func() {
			ctx, cancel := context.WithTimeout(ctx, probeWait)
			defer cancel()
			st, err := s.h.NewStream(ctx, t.ID, s.direct())
			if err != nil {
				return
			}
			_ = st.SetDeadline(time.Now().Add(probeWait))
			if frame.Write(st, req) != nil {
				_ = st.Reset()
				return
			}
			_ = st.Close()
		}()
	}
	sleep(ctx, 2*probeWait)
	rep.BlocksRead = int(s.blocksRead.Load())
}

// publish joins the network's gossip topics and publishes tx (and a vote-shaped copy of it on the
// consensus topics) for a while, then counts the targets that took it as a subscriber.
func (s *stranger) publish(ctx context.Context, txBytes []byte, rep *Report) {
	ps, err := pubsub.NewGossipSub(ctx, s.h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithPeerExchange(false), pubsub.WithFloodPublish(true))
	if err != nil {
		rep.Errors = append(rep.Errors, "gossipsub: "+err.Error())
		return
	}
	msg := (&replica.Message{Version: replica.MessageVersion}).Encode()
	if tx, err := chain.DecodeTx(txBytes); err == nil {
		msg = (&replica.Message{Version: replica.MessageVersion, Tx: tx}).Encode()
	} else {
		rep.Errors = append(rep.Errors, "tx: "+err.Error())
	}
	var topics []*pubsub.Topic
	for _, name := range []string{reactor.TopicTxs, reactor.TopicVotes, reactor.TopicProposals} {
		tp, err := ps.Join(p2p.TopicName(s.chainID, name, reactor.TopicVersion))
		if err != nil {
			rep.Errors = append(rep.Errors, "join "+name+": "+err.Error())
			continue
		}
		topics = append(topics, tp)
		if sub, err := tp.Subscribe(); err == nil {
			defer sub.Cancel()
		}
	}
	for _, t := range s.targets {
		_ = s.h.Connect(ctx, t)
	}
	end := time.Now().Add(10 * time.Second)
	for time.Now().Before(end) && ctx.Err() == nil {
		for _, tp := range topics {
			if tp.Publish(ctx, msg) == nil {
				rep.Published++
			}
		}
		sleep(ctx, time.Second)
	}
	seen := map[peer.ID]bool{}
	for _, tp := range topics {
		for _, p := range tp.ListPeers() {
			seen[p] = true
		}
	}
	rep.GossipPeers = len(seen)
}

// dht runs a DHT client in the network's namespace, asks targets for peers and announces the
// stranger as a holder of record id, then looks the record up again through a fresh identity.
func (s *stranger) dht(ctx context.Context, id chain.Hash, rep *Report) {
	prefix := kaddht.ProtocolPrefix(protocol.ID("/medledger/" + s.chainID))
	d, err := kaddht.New(s.h, kaddht.Mode(kaddht.ModeServer), prefix, kaddht.BootstrapPeers(s.targets...))
	if err != nil {
		rep.Errors = append(rep.Errors, "dht: "+err.Error())
		return
	}
	defer d.Close()
	for _, t := range s.targets {
		_ = s.h.Connect(ctx, t)
	}
	_ = d.Bootstrap(ctx)
	sleep(ctx, 2*time.Second)
	for _, t := range s.targets {
		qctx, cancel := context.WithTimeout(ctx, probeWait)
		if ps, err := d.GetClosestPeers(qctx, string(t.ID)); err == nil && len(ps) > 0 {
			rep.DHTAnswers++
		}
		cancel()
	}
	c := p2p.HashCID(id)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_ = d.Provide(pctx, c, true)
	cancel()

	// A second stranger asks the targets who holds the record.
	h2, err := newHost()
	if err != nil {
		return
	}
	defer h2.Close()
	d2, err := kaddht.New(h2, kaddht.Mode(kaddht.ModeClient), prefix, kaddht.BootstrapPeers(s.targets...))
	if err != nil {
		return
	}
	defer d2.Close()
	for _, t := range s.targets {
		_ = h2.Connect(ctx, t)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for ai := range d2.FindProvidersAsync(fctx, c, 10) {
		if ai.ID == s.h.ID() {
			rep.DHTProvided = true
		}
	}
}

// replay sends an access request copied from the ledger to every target.
func (s *stranger) replay(ctx context.Context, reqBytes []byte, rep *Report) {
	req, err := chain.DecodeAccessRequest(reqBytes)
	if err != nil {
		rep.Errors = append(rep.Errors, "request: "+err.Error())
		return
	}
	for _, t := range s.targets {
		resp, err := exchange.Fetch(ctx, s.h, s.chainID, t.ID, req)
		if err != nil {
			continue
		}
		rep.ReplayAnswers++
		if len(resp.Ciphertext) > 0 {
			rep.Replayed++
		}
	}
}

// sybilFlood connects fresh identities to every target over and over for the flood's duration;
// each tries the member protocols and listens for replica pushes.
func (s *stranger) sybilFlood(ctx context.Context, identities int, d, grace time.Duration, rep *Report) {
	floodCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
		// Identities in flight: each stays for the grace, so many at once are needed to use
		// every identity within the flood.
		sem = make(chan struct{}, 128)
	)
	rep.Sybil.Identities = identities
	junk := junkRequest(s.chainID)
	add := func(f func(r *SybilReport)) { mu.Lock(); f(&rep.Sybil); mu.Unlock() }
	for floodCtx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-floodCtx.Done():
		}
		if floodCtx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h, err := newHost()
			if err != nil {
				return
			}
			defer h.Close()
			add(func(r *SybilReport) { r.Used++ })
			var pushes atomic.Int64
			h.SetStreamHandler(exchange.ProtocolID(s.chainID), func(st network.Stream) { pushes.Add(1); _ = st.Reset() })
			for _, t := range s.targets {
				add(func(r *SybilReport) { r.Dials++ })
				if err := h.Connect(floodCtx, t); err != nil {
					continue
				}
				// Any answer to a fetch, even a refusal, means the blob protocol served it.
				if _, err := exchange.Fetch(floodCtx, h, s.chainID, t.ID, junk); err == nil {
					add(func(r *SybilReport) { r.Streams++ })
				}
			}
			// Past the grace a stranger gets to present a licence, no connection may remain.
			sleep(ctx, grace)
			for _, t := range s.targets {
				if h.Network().Connectedness(t.ID) == network.Connected {
					add(func(r *SybilReport) {
						r.Connected++
						if r.ConnectedTo == nil {
							r.ConnectedTo = map[string]int{}
						}
						r.ConnectedTo[t.ID.String()]++
					})
				}
			}
			add(func(r *SybilReport) { r.Pushes += int(pushes.Load()) })
		}()
	}
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// junkRequest is a well-formed access request for a random record, signed by a fresh key.
func junkRequest(chainID string) *chain.AccessRequest {
	key, err := chain.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	var id chain.Hash
	_, _ = rand.Read(id[:])
	req := &chain.AccessRequest{Role: "clinician", Record: id, RequesterNode: chain.PubKey{1}, Holder: chain.PubKey{2}, Purpose: "treatment", IssuedMs: time.Now().UnixMilli()}
	req.Sign(key, chainID)
	return req
}
