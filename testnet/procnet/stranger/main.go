// Command stranger plays a libp2p peer whose key is not a member of the network against a running
// network, and reports what it achieved as JSON on stdout. The procnet test TestStranger runs it
// and checks that every attack failed while the chain kept committing.
//
// It does not use the p2p package (a stranger does not follow the network's rules): it runs a
// plain libp2p host, its own gossipsub and its own Kademlia DHT client, and speaks the members'
// protocols directly.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/medledger/medledger/chain"
)

// Report is what the stranger achieved. Every count is zero, and every list empty, when the
// network held.
type Report struct {
	// BlocksRead counts committed blocks any target sent in answer to sync requests.
	BlocksRead int `json:"blocks_read"`
	// InboundStreams counts streams targets opened to the stranger (consensus traffic, answers).
	InboundStreams int `json:"inbound_streams"`
	// GossipPeers counts targets that took the stranger as a subscriber of a network topic.
	GossipPeers int `json:"gossip_peers"`
	// Published counts messages the stranger's gossipsub accepted for sending.
	Published int `json:"published"`
	// DHTAnswers counts DHT queries a target answered; DHTProvided whether a provider record
	// the stranger announced was found afterwards through a target.
	DHTAnswers  int  `json:"dht_answers"`
	DHTProvided bool `json:"dht_provided"`
	// Replayed counts fetch answers to a request copied from the ledger that carried a
	// ciphertext; ReplayAnswers any answer at all.
	Replayed      int `json:"replayed"`
	ReplayAnswers int `json:"replay_answers"`
	// Sybil is the flood's outcome.
	Sybil SybilReport `json:"sybil"`
	// Errors are attack steps that could not run at all (not defences).
	Errors []string `json:"errors,omitempty"`
}

// SybilReport is what a flood of fresh identities achieved.
type SybilReport struct {
	Identities int `json:"identities"`
	// Used counts the fresh identities the flood actually ran (one host each).
	Used  int `json:"used"`
	Dials int `json:"dials"`
	// Connected counts dials whose connection was still up a grace period later.
	Connected int `json:"connected"`
	// ConnectedTo counts those connections by target peer id.
	ConnectedTo map[string]int `json:"connected_to,omitempty"`
	// Streams counts member-protocol streams a target accepted from a sybil.
	Streams int `json:"streams"`
	// Pushes counts replica pushes targets made to a sybil.
	Pushes int `json:"pushes"`
}

func main() {
	var (
		chainID   = flag.String("chain", "", "chain id of the network")
		targets   = flag.String("targets", "", "comma-separated multiaddrs of member nodes, each ending in /p2p/<id>")
		txHex     = flag.String("tx", "", "hex of a valid transaction to publish over gossip (would commit if relayed)")
		reqHex    = flag.String("request", "", "hex of an access request copied from the ledger, replayed to every target")
		recordHex = flag.String("record", "", "hex id of a record to announce as its holder in the DHT")
		sybils    = flag.Int("sybils", 250, "fresh identities the flood should use at least (it runs until the duration ends)")
		flood     = flag.Duration("flood", 20*time.Second, "how long the flood lasts")
		grace     = flag.Duration("grace", 15*time.Second, "how long after its dial a sybil checks whether it is still connected")
		timeout   = flag.Duration("timeout", 3*time.Minute, "bound on the whole run")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if *chainID == "" || *targets == "" {
		fmt.Fprintln(os.Stderr, "usage: stranger --chain ID --targets MULTIADDR[,…] [--tx HEX] [--request HEX] [--record HEX]")
		os.Exit(2)
	}
	ais, err := parseTargets(*targets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stranger:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	s, err := newStranger(ctx, *chainID, ais, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stranger:", err)
		os.Exit(1)
	}
	defer s.close()

	rep := &Report{}
	s.requestBlocks(ctx, rep)
	if tx := decodeHexFlag("tx", *txHex, rep); tx != nil {
		s.publish(ctx, tx, rep)
	}
	if id := decodeHexFlag("record", *recordHex, rep); id != nil {
		s.dht(ctx, chain.Hash(id), rep)
	}
	if req := decodeHexFlag("request", *reqHex, rep); req != nil {
		s.replay(ctx, req, rep)
	}
	// Say the flood is starting, so the test can connect an honest member in the middle of it.
	log.Info("stranger: flood starting", "identities", *sybils, "for", *flood)
	s.sybilFlood(ctx, *sybils, *flood, *grace, rep)
	rep.InboundStreams = int(s.inbound.Load())
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
}

func parseTargets(list string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("target %q: %w", s, err)
		}
		out = append(out, *ai)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no targets")
	}
	return out, nil
}

func decodeHexFlag(name, v string, rep *Report) []byte {
	if v == "" {
		return nil
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("--%s: %v", name, err))
		return nil
	}
	if name == "record" && len(b) != len(chain.Hash{}) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("--record: %d bytes, want %d", len(b), len(chain.Hash{})))
		return nil
	}
	return b
}
