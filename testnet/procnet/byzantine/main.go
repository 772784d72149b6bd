// Command byzantine is a compromised MedLedger authority for the multi-process tests. It opens
// an authority's home (its real signing key and its libp2p identity), joins the network as that
// node — same peer id, so honest nodes admit it as the member it is — follows the height and
// round from gossip (and, if given, an honest node's API), and misbehaves on command:
//
//	txs gap=N far=N unknown=N reg=N rate=R  publish junk transactions: N of its own with nonces
//	                                        in the window but behind a gap, N far beyond it,
//	                                        N non-registrations and N registrations by fresh keys
//	proposals every=MS                      gossip off-turn proposals of full blocks, and in its
//	                                        own turn proposals whose header names another proposer
//	future mib=M rate=R                     send M-MiB proposals for far-ahead heights directly
//	                                        to every peer, R a second per peer
//	sync mib=M rate=R                       send M-MiB sync answers nobody asked for, likewise
//	equivocate                              sign two prevotes for one height and round and send
//	                                        each to a different honest peer
//	rejoin                                  come back under a fresh libp2p identity
//	stop                                    end the background attacks
//	status                                  position, peers and counters
//
// Commands come one per line on standard input; every command gets exactly one JSON line on
// standard output ({"error": "..."} on failure). The first line out is {"event": "ready", ...}.
// Logs go to standard error. It never participates honestly in consensus: to the honest nodes it
// is an authority that never votes, and misbehaves.
//
// It is test-only: the medledger binary contains none of it. testnet/procnet/procnettest builds
// and drives it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

func main() {
	var (
		home     = flag.String("home", "", "the compromised authority's home directory")
		api      = flag.String("api", "", "an honest node's API address (host:port) to poll for the height and round; optional")
		apiToken = flag.String("api-token-file", "", "that node's api.token")
		level    = flag.String("log-level", "info", "debug, info, warn or error")
	)
	flag.Parse()
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	if *home == "" {
		fatal(fmt.Errorf("--home is required"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := open(ctx, *home, log)
	if err != nil {
		fatal(err)
	}
	defer a.close()
	if *api != "" {
		tok, err := node.ReadToken(*apiToken)
		if err != nil {
			fatal(err)
		}
		go a.tr.pollAPI(ctx, *api, tok, log)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]any{"event": "ready", "peer": a.host().ID(), "authority": a.pub}); err != nil {
		fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines) // the harness went away
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case line, ok := <-lines:
			if !ok {
				return
			}
			reply, err := a.command(ctx, line)
			if err != nil {
				reply = map[string]string{"error": err.Error()}
				log.Warn("byzantine: command failed", "command", line, "err", err)
			}
			if err := out.Encode(reply); err != nil {
				fatal(err)
			}
			if strings.TrimSpace(line) == "quit" {
				return
			}
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "byzantine:", err)
	os.Exit(1)
}

// command runs one command line and returns its reply.
func (a *attacker) command(ctx context.Context, line string) (any, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	args, err := parseArgs(f[1:])
	if err != nil {
		return nil, err
	}
	switch f[0] {
	case "status":
		return a.status(), nil
	case "txs":
		return a.floodTxs(args)
	case "proposals":
		return a.floodProposals(args)
	case "future":
		return a.floodFuture(args)
	case "sync":
		return a.floodSync(args)
	case "equivocate":
		return a.equivocate()
	case "rejoin":
		return a.rejoin(ctx)
	case "stop":
		a.stopJobs()
		return a.status(), nil
	case "quit":
		a.stopJobs()
		return map[string]bool{"ok": true}, nil
	}
	return nil, fmt.Errorf("unknown command %q", f[0])
}

// parseArgs reads key=value arguments as non-negative integers.
func parseArgs(fields []string) (map[string]int, error) {
	args := make(map[string]int, len(fields))
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("argument %q is not key=value", f)
		}
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < 0 {
			return nil, fmt.Errorf("argument %s: want a non-negative integer", f)
		}
		args[k] = n
	}
	return args, nil
}

// status is the reply to the status command.
type status struct {
	Peer     string         `json:"peer"`
	Height   uint64         `json:"height"`
	Round    uint32         `json:"round"`
	Peers    []string       `json:"peers"`
	Member   bool           `json:"member"` // still in the authority set, as far as it knows
	Counters map[string]int `json:"counters"`
}

func (a *attacker) status() status {
	h, r, _ := a.tr.position()
	return status{Peer: a.host().ID(), Height: h, Round: r, Peers: a.host().Peers(), Member: a.tr.member(a.pub), Counters: a.counts.snapshot()}
}

// authorityKey reads the authority signing key a home's config names.
func authorityKey(home string, cfg *node.Config) (chain.PrivKey, error) {
	if cfg.Node.AuthorityKey == "" {
		return chain.PrivKey{}, fmt.Errorf("%s is a full node's home: it has no authority key", home)
	}
	return node.ReadKeyFile(node.Resolve(home, cfg.Node.AuthorityKey))
}
