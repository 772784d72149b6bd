package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/wallet/keystore"
)

// The wallet as a light client: it dials member nodes over libp2p with the patient's own key
// (the wallet protocol), verifies headers and certificates from genesis and every answer by
// its state proof. It never reads a node's API token.

// ledgerFlags say where the ledger is: --peer (any member node's multiaddr, repeatable; a
// second one is used to cross-check) with --genesis, or --home, which reads only the node's
// published addresses (HOME/p2p.addrs) and its genesis.
type ledgerFlags struct {
	peers   []string
	genesis string
	trust   string // --trust-header HEIGHT:HASH
	// walletDir keeps the newest verified header (wallet_trust.go); empty keeps none.
	walletDir string
}

func (lf *ledgerFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&lf.peers, "peer", nil, "a member node's libp2p multiaddr ending in /p2p/<peer id> (repeat to cross-check with a second node)")
	cmd.Flags().StringVar(&lf.genesis, "genesis", "", "the network's genesis.json (with --peer)")
	cmd.Flags().StringVar(&lf.trust, "trust-header", "", "HEIGHT:HASH of a recent header you confirmed: verify from it rather than from genesis or the header this wallet verified last")
}

// startVerifier is where c's verification starts: the --trust-header header (fetched from c,
// its hash checked), else the header the wallet verified last, else genesis.
func (lf *ledgerFlags) startVerifier(ctx context.Context, g *chain.Genesis, c *light.Client) (*light.Verifier, error) {
	if lf.trust != "" {
		height, hash, err := parseTrustHeader(lf.trust)
		if err != nil {
			return nil, err
		}
		return c.TrustHeader(ctx, g, height, hash)
	}
	v, err := loadTrusted(lf.walletDir, g)
	if err != nil || v != nil {
		return v, err
	}
	return light.NewVerifier(g)
}

// walletConnectTimeout bounds dialling one node.
const walletConnectTimeout = 10 * time.Second

// maxHeaderAge: a newest verified block older than this is reported as a possibly stale view
// (the idle chain still makes a block every few seconds).
const maxHeaderAge = 60 * time.Second

// targets resolves the flags to a genesis and the nodes to ask.
func (lf *ledgerFlags) targets(home string) (*chain.Genesis, []peer.AddrInfo, error) {
	gfile, addrs := lf.genesis, lf.peers
	if home != "" {
		if gfile == "" {
			gfile = node.Home(home).GenesisFile()
		}
		if len(addrs) == 0 {
			read, err := readAddrs(node.Home(home).AddrsFile())
			if err != nil {
				return nil, nil, fmt.Errorf("%w (the node writes it when it starts; is it running?)", err)
			}
			addrs = read
		}
	}
	if gfile == "" || len(addrs) == 0 {
		return nil, nil, fmt.Errorf("say which network: --home HOME, or --peer MULTIADDR with --genesis FILE")
	}
	g, err := node.LoadGenesis(gfile)
	if err != nil {
		return nil, nil, err
	}
	var infos []peer.AddrInfo
	for _, a := range addrs {
		ma, err := multiaddr.NewMultiaddr(strings.TrimSpace(a))
		if err != nil {
			return nil, nil, fmt.Errorf("--peer %q: %w", a, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(ma)
		if err != nil {
			return nil, nil, fmt.Errorf("--peer %q: want a multiaddr ending in /p2p/<peer id>: %w", a, err)
		}
		if i := slices.IndexFunc(infos, func(x peer.AddrInfo) bool { return x.ID == ai.ID }); i >= 0 {
			infos[i].Addrs = append(infos[i].Addrs, ai.Addrs...)
			continue
		}
		infos = append(infos, *ai)
	}
	return g, infos, nil
}

// readAddrs reads a node's p2p.addrs, loopback addresses first (the wallet usually runs on
// the practice's machine when it names the node's home).
func readAddrs(path string) ([]string, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the node's addresses: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int {
		la, lb := strings.Contains(a, "/127.0.0.1/"), strings.Contains(b, "/127.0.0.1/")
		switch {
		case la && !lb:
			return -1
		case lb && !la:
			return 1
		}
		return 0
	})
	return out, nil
}

// ledgerSession is a wallet's verified connection: the node that served the highest verified
// head (primary), the other verified nodes, and what could not be checked.
type ledgerSession struct {
	host     host.Host
	g        *chain.Genesis
	primary  *light.Client
	verifier *light.Verifier
	// others are the other verified nodes, highest head first: patientState asks them too.
	others   []verifiedNode
	checked  []string // nodes whose verified heads agreed
	warnings []string
}

// verifiedNode is a node whose chain the wallet verified, and the verifier at its head.
type verifiedNode struct {
	c *light.Client
	v *light.Verifier
}

// openLedger dials the nodes with the wallet's key, verifies each one's chain from genesis and
// keeps the highest; a second node cross-checks the first.
func openLedger(ctx context.Context, w *keystore.Wallet, lf *ledgerFlags, home string) (*ledgerSession, error) {
	g, targets, err := lf.targets(home)
	if err != nil {
		return nil, err
	}
	seed := w.SigningKey().Seed()
	priv, err := p2pcrypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(libp2p.Identity(priv), libp2p.NoListenAddrs, libp2p.DisableRelay())
	if err != nil {
		return nil, fmt.Errorf("wallet: start libp2p: %w", err)
	}
	s := &ledgerSession{host: h, g: g}
	var ok []verifiedNode
	var failures []string
	for _, t := range targets {
		cctx, cancel := context.WithTimeout(ctx, walletConnectTimeout)
		err := h.Connect(cctx, t)
		cancel()
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", t.ID, err))
			continue
		}
		c := light.NewClient(h, g.ChainID, t.ID)
		v, err := lf.startVerifier(ctx, g, c)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", t.ID, err))
			continue
		}
		if _, err := c.Sync(ctx, v); err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", t.ID, err))
			continue
		}
		ok = append(ok, verifiedNode{c, v})
	}
	if len(ok) == 0 {
		_ = h.Close()
		return nil, fmt.Errorf("wallet: no node could be verified (a node lets in only a registered patient's current key: is this patient registered, and are these its newest keys?): %s", strings.Join(failures, "; "))
	}
	for _, f := range failures {
		s.warnings = append(s.warnings, "not verified: "+f)
	}
	slices.SortStableFunc(ok, func(a, b verifiedNode) int { return int(b.v.Height()) - int(a.v.Height()) })
	s.primary, s.verifier, s.others = ok[0].c, ok[0].v, ok[1:]
	s.checked = append(s.checked, ok[0].c.Peer().String())
	for _, o := range ok[1:] {
		behind := s.verifier.Height() - o.v.Height()
		s.checked = append(s.checked, o.c.Peer().String())
		switch {
		case behind == 0 && o.v.Header().Hash() != s.verifier.Header().Hash():
			// Both certified by the authority set: more than a third of it signed two chains.
			s.warnings = append(s.warnings, fmt.Sprintf("FORK: nodes %s and %s serve different certified blocks at height %d (more than a third of the authorities signed both)", s.primary.Peer(), o.c.Peer(), o.v.Height()))
		case behind > 5:
			s.warnings = append(s.warnings, fmt.Sprintf("node %s serves a view %d blocks behind node %s (stale, or withholding blocks)", o.c.Peer(), behind, s.primary.Peer()))
		}
	}
	if err := saveTrusted(lf.walletDir, g, s.verifier); err != nil {
		s.warnings = append(s.warnings, "could not keep the verified header: "+err.Error())
	}
	if len(ok) == 1 {
		s.warnings = append(s.warnings, "one node only: answers are proved, but a node can withhold its newest blocks; give a second --peer to cross-check")
	}
	if age := time.Since(time.UnixMilli(s.verifier.Header().Time)); age > maxHeaderAge {
		s.warnings = append(s.warnings, fmt.Sprintf("the newest verified block is %s old: the node may serve a stale view", age.Round(time.Second)))
	}
	return s, nil
}

func (s *ledgerSession) close() { _ = s.host.Close() }

// verification is what --json adds about how an answer was checked.
type verification struct {
	Height   uint64     `json:"height"` // the state the answers were proved in
	Header   chain.Hash `json:"header"` // the verified header whose state root proves them
	Nodes    []string   `json:"nodes"`
	Warnings []string   `json:"warnings"`
}

func (s *ledgerSession) verification() verification {
	at, _ := s.verifier.ProofHeight()
	w := s.warnings
	if w == nil {
		w = []string{}
	}
	return verification{Height: at, Header: s.verifier.Header().Hash(), Nodes: s.checked, Warnings: w}
}

// printWarnings tells a person what could not be verified.
func (s *ledgerSession) printWarnings(cmd *cobra.Command) {
	at, _ := s.verifier.ProofHeight()
	fmt.Fprintf(cmd.OutOrStdout(), "verified against block %d (header %s) from %s\n", at+1, s.verifier.Header().Hash().Short(), strings.Join(s.checked, ", "))
	for _, w := range s.warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
}

// patientState proves the wallet's patient's whole state at the session's header.
func (s *ledgerSession) patientState(ctx context.Context, w *keystore.Wallet) (*light.PatientState, error) {
	if s.verifier.Height() < 2 {
		return nil, fmt.Errorf("wallet: the chain has no certified state yet (height %d)", s.verifier.Height())
	}
	// Every verified node is asked (a cross-check: a node whose answer fails its proofs lied or
	// broke, and is named); the answer used is the highest verified node's that holds up.
	nodes := append([]verifiedNode{{s.primary, s.verifier}}, s.others...)
	var ps *light.PatientState
	var failed []string
	for _, n := range nodes {
		got, err := n.c.Patient(ctx, n.v, w.PatientID())
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			msg := fmt.Sprintf("node %s did not answer: %v", n.c.Peer(), err)
			if errors.Is(err, light.ErrUnverified) {
				msg = fmt.Sprintf("node %s answered with what its proofs do not back (a lying or broken node), so it is not used: %v", n.c.Peer(), err)
			}
			failed = append(failed, msg)
			s.warnings = append(s.warnings, msg)
			s.checked = slices.DeleteFunc(s.checked, func(p string) bool { return p == n.c.Peer().String() })
			continue
		}
		if ps == nil {
			ps, s.primary, s.verifier = got, n.c, n.v
		}
	}
	if ps == nil {
		return nil, fmt.Errorf("wallet: no node's answer could be verified: %s", strings.Join(failed, "; "))
	}
	if ps.Member == nil {
		return nil, fmt.Errorf("wallet: patient %s is not registered on this network (proved at height %d)", w.PatientID(), ps.Header.Height-1)
	}
	return ps, nil
}

// submitOnly signs body under the wallet key's next proved nonce and hands it to the node; it
// returns the transaction and its nonce without waiting.
func (s *ledgerSession) submitOnly(ctx context.Context, w *keystore.Wallet, kind chain.TxKind, body any) (*chain.Tx, error) {
	key := w.SigningKey()
	n, err := s.primary.Nonce(ctx, s.verifier, key.Public())
	if err != nil {
		return nil, err
	}
	tx := chain.NewTx(key, s.g.ChainID, kind, n+1, body)
	if _, err := s.primary.Submit(ctx, tx); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return tx, nil
}

// submit signs body under the wallet key's next proved nonce, hands it to the node and waits
// until the ledger's proved state shows it took effect.
func (s *ledgerSession) submit(ctx context.Context, w *keystore.Wallet, kind chain.TxKind, body any) (node.TxAccepted, error) {
	key := w.SigningKey()
	tx, err := s.submitOnly(ctx, w, kind, body)
	if err != nil {
		return node.TxAccepted{}, err
	}
	hash, n := tx.Hash(), tx.Nonce-1
	wctx, cancel := context.WithTimeout(ctx, walletTxTimeout)
	defer cancel()
	if err := s.primary.WaitNonce(wctx, s.verifier, key.Public(), n+1); err != nil {
		return node.TxAccepted{}, fmt.Errorf("%s %s: %w", kind, hash.Short(), err)
	}
	at, _ := s.verifier.ProofHeight()
	return node.TxAccepted{Hash: hash, Height: at}, nil
}

// proved opens the wallet and its verified connection, and proves the patient's state: what
// every reading wallet command starts with. The caller closes the session.
func (f *walletFlags) proved(cmd *cobra.Command) (*keystore.Wallet, *ledgerSession, *light.PatientState, error) {
	w, err := f.open(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := f.session(cmd, w)
	if err != nil {
		return nil, nil, nil, err
	}
	ps, err := s.patientState(cmd.Context(), w)
	if err != nil {
		s.close()
		return nil, nil, nil, err
	}
	return w, s, ps, nil
}
