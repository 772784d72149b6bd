// Command liar is a member node that lies to wallets, for the multi-process tests. It opens a
// stopped node's home (its chain store, frozen at the height the node reached, and its libp2p
// identity), listens on that node's p2p addresses and serves the wallet protocol from the store
// through a lighttest.Liar: honestly but from an old view (--lie none), or with proofs from
// older blocks (stale-proofs: how it would hide an access entry or show a revoked consent as
// active), altered values or a forged header. It serves every peer and relays nothing.
//
// The first line on standard output is {"event":"ready","peer":...,"height":...}; it runs
// until SIGTERM or SIGINT. Logs go to standard error.
//
// It is test-only: the medledger binary contains none of it. testnet/procnet/procnettest builds
// and starts it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/libp2p/go-libp2p"

	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/badger"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/sync/light/lighttest"
)

func main() {
	home := flag.String("home", "", "a stopped node's home directory")
	lieName := flag.String("lie", string(lighttest.StaleProofs), fmt.Sprintf("what to lie about: %v", lighttest.Lies))
	forkAt := flag.Uint64("fork-at", 2, "the height whose header forked-header forges")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*home, *lieName, *forkAt, log); err != nil {
		log.Error("liar", "err", err)
		os.Exit(1)
	}
}

func run(home, lieName string, forkAt uint64, log *slog.Logger) error {
	if home == "" {
		return fmt.Errorf("--home is required")
	}
	lie, err := lighttest.ParseLie(lieName)
	if err != nil {
		return err
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return err
	}
	h := node.Home(home)
	g, err := node.LoadGenesis(h.GenesisFile())
	if err != nil {
		return err
	}
	st, err := badger.Open(h.DataDir(), badger.Options{Store: store.Options{KeepVersions: cfg.Store.KeepVersions}, Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	key, err := p2p.LoadOrCreateIdentity(node.Resolve(home, cfg.P2P.Identity))
	if err != nil {
		return err
	}
	host, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings(cfg.P2P.Listen...), libp2p.DisableRelay())
	if err != nil {
		return err
	}
	defer host.Close()
	stop := light.Serve(host, g.ChainID, &lighttest.Liar{Source: st, Lie: lie, ForkAt: forkAt}, light.Options{Log: log})
	defer stop()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var addrs []string
	for _, a := range host.Addrs() {
		addrs = append(addrs, a.String()+"/p2p/"+host.ID().String())
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"event": "ready", "peer": host.ID(), "addrs": addrs, "height": st.Height(), "lie": lie}); err != nil {
		return err
	}
	log.Info("liar: serving", "peer", host.ID(), "height", st.Height(), "lie", lie)
	<-ctx.Done()
	return nil
}
