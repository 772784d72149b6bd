package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/synth"
	"github.com/medledger/medledger/wallet/keystore"
)

func demoCmd() *cobra.Command {
	var (
		authorities int
		dir         string
		duration    time.Duration
		txRate      int
		basePort    int
		records     int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local network of authority node processes with synthetic providers and patients",
		Long: `demo creates a local MedLedger testnet (medledger testnet init), starts each authority as its own
'medledger node' process on 127.0.0.1 and tells a short story through the nodes' HTTP APIs:

  1. the authority nodes start and register as providers: node0 is "the practice", node2 "the
     specialist" (node1 with two authorities);
  2. three synthetic patients get wallets (DIR/wallets/patient<k>) and register on the ledger;
  3. the practice imports each patient's synthetic FHIR R4 Bundle (--records resources plus the
     Patient), sealed so that only the patient and the practice can read it;
  4. the specialist tries to read one of patient 1's records without consent and is refused;
  5. patient 1 consents: the specialist may read all records for treatment (TREAT), for 30 days;
  6. the specialist reads the record, from whichever holder serves it;
  7. patient 1's audit trail on the ledger shows the refused attempt and the served read.

The story prints identifiers, record types, heights and outcomes, never names or clinical content.
Then it keeps submitting synthetic registrations (--tx-rate) and every 2 s prints each node's
process, ports, height, last block and peers, and how far finality has come. Ctrl-C (or
--duration) stops every node process and waits for each. Node logs are in DIR/node<i>.log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return runDemo(ctx, cmd.OutOrStdout(), demoOptions{n: authorities, dir: dir, txRate: txRate, basePort: basePort, records: records})
		},
	}
	cmd.Flags().IntVar(&authorities, "authorities", 4, "number of authority nodes (processes)")
	cmd.Flags().StringVar(&dir, "dir", "", "network directory (default: a new temporary directory)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default 0: run until Ctrl-C)")
	cmd.Flags().IntVar(&txRate, "tx-rate", 20, "synthetic registrations submitted per second")
	cmd.Flags().IntVar(&records, "records", 12, "synthetic FHIR resources the practice imports per patient, besides the Patient resource (0: skip the story)")
	cmd.Flags().IntVar(&basePort, "base-port", 0, "first node's p2p port; node i uses base+10i (p2p) and base+10i+1 (API) (default 0: pick free ports)")
	return cmd
}

type demoOptions struct {
	n, txRate, basePort, records int
	dir                          string
}

// selfBinary is the executable of this process: the demo and the benchmark run their nodes as
// children of the same medledger binary.
func selfBinary() (string, error) {
	bin, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating the medledger executable: %w", err)
	}
	return bin, nil
}

// startNetwork creates a testnet in dir (a new temporary directory if empty) on basePort (free
// ports if 0), starts every node as a child process and waits until each serves its API. The
// caller must call shutdownNetwork, also on error (the network is returned when it exists).
func startNetwork(ctx context.Context, w io.Writer, n int, dir string, basePort int, logLevel string) (*procnet.Network, error) {
	if n < 1 {
		return nil, fmt.Errorf("--authorities must be at least 1")
	}
	bin, err := selfBinary()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "medledger-net-"); err != nil {
			return nil, err
		}
	}
	if basePort == 0 {
		if basePort, err = procnet.FreeBasePort(n); err != nil {
			return nil, err
		}
	}
	nw, err := procnet.Init(ctx, bin, dir, n, basePort)
	if err != nil {
		return nil, err
	}
	nw.LogLevel = logLevel
	for i := range n {
		if err := nw.Start(i); err != nil {
			return nw, err
		}
	}
	fmt.Fprintf(w, "started %d node processes in %s (logs: %s)\n", n, dir, filepath.Join(dir, "node<i>.log"))
	for i := range n {
		if _, err := nw.WaitHeight(ctx, i, 1, 2*time.Minute); err != nil {
			return nw, err
		}
	}
	return nw, nil
}

// shutdownNetwork stops every node with SIGTERM, waits for each, kills any that does not exit in
// time, and reports how they ended.
func shutdownNetwork(w io.Writer, nw *procnet.Network) error {
	if nw == nil {
		return nil
	}
	pids := make([]int, nw.N)
	for i := range nw.N {
		pids[i] = nw.PID(i)
	}
	nw.StopTimeout = 20 * time.Second
	err := nw.StopAll()
	nw.Close()
	var running []string
	for i, pid := range pids {
		if pid != 0 && syscall.Kill(pid, 0) == nil {
			running = append(running, fmt.Sprintf("node%d (pid %d)", i, pid))
		}
	}
	if len(running) > 0 {
		err = errors.Join(err, fmt.Errorf("still running after stop: %s", strings.Join(running, ", ")))
	}
	if err == nil {
		fmt.Fprintf(w, "all %d node processes stopped cleanly\n", nw.N)
	}
	return err
}

func runDemo(ctx context.Context, w io.Writer, o demoOptions) (err error) {
	// The nodes must be stopped even when ctx is already cancelled: shutdown has its own bounds.
	nw, err := startNetwork(ctx, w, o.n, o.dir, o.basePort, "info")
	defer func() { err = errors.Join(err, shutdownNetwork(w, nw)) }()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	g, err := nw.Genesis()
	if err != nil {
		return err
	}
	board, err := nw.LicensingKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "MedLedger demo: %d authorities on chain %q; a block is final once more than 2/3 of them precommit it.\n\n", o.n, g.ChainID)
	if err := tellStory(ctx, w, nw, g, o.records); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(w, "\nstopping: interrupted during the story\n")
			return nil
		}
		return fmt.Errorf("demo story: %w", err)
	}
	fmt.Fprintf(w, "Load: %d registrations/s through the nodes' HTTP APIs (1 in 5 a provider licensed by the testnet's board, the rest pseudonymous patients). Ctrl-C stops.\n", o.txRate)
	fmt.Fprintf(w, "Try: medledger status --home %s\n\n", nw.Home(0))

	view := newDemoView(nw)
	view.skipCommitted(ctx) // count only the load's transactions, not the story's
	var stats demoLoad
	var wg sync.WaitGroup
	loadCtx, cancelLoad := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		stats.run(loadCtx, nw, g, board, o.txRate)
	}()
	defer func() { cancelLoad(); wg.Wait() }()

	start := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(w, "\nstopping after %s: SIGTERM to every node, waiting for each\n", time.Since(start).Round(time.Second))
			fmt.Fprintf(w, "network kept in %s\n", nw.Dir)
			return nil
		case <-tick.C:
			view.refresh(ctx)
			view.print(w, time.Since(start), &stats)
		}
	}
}

// demoLoad submits synthetic registrations and counts the outcome.
type demoLoad struct {
	providers, patients, refused atomic.Uint64
	lastErr                      atomic.Value // string
}

func (d *demoLoad) run(ctx context.Context, nw *procnet.Network, g *chain.Genesis, board chain.PrivKey, perSecond int) {
	if perSecond <= 0 {
		return
	}
	const ticksPerSecond = 10
	tick := time.NewTicker(time.Second / ticksPerSecond)
	defer tick.Stop()
	// Patients are enrolled by the nodes' own providers (each registered itself at start); a
	// testnet's genesis lets a provider enrol in bulk (testnet.EnrolmentsPerWindow).
	enrollers := make([]chain.PrivKey, nw.N)
	for i := range enrollers {
		k, err := node.ReadKeyFile(node.Resolve(nw.Home(i), node.DefaultConfig().Records.ProviderKey))
		if err != nil {
			d.lastErr.Store(err.Error())
			return
		}
		enrollers[i] = k
	}
	var sent, owed float64
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		owed += float64(perSecond) / ticksPerSecond
		var txs []*chain.Tx
		kinds := []bool{}
		for ; owed >= 1; owed-- {
			key, err := chain.GenerateKey(rand.Reader)
			if err != nil {
				return
			}
			enc := make([]byte, 32) // stands in for an HPKE public key until records arrive
			_, _ = rand.Read(enc)
			provider := int(sent)%5 == 0
			if provider {
				var nodeKey chain.PubKey // stands in for the new practice's libp2p identity
				_, _ = rand.Read(nodeKey[:])
				lic := chain.Licence{Role: chain.RoleProvider, Subject: key.Public(), NodeKey: nodeKey, Number: fmt.Sprintf("DEMO-%07d", int(sent)),
					Jurisdiction: "DEMO", NotAfter: time.Now().Add(365 * 24 * time.Hour).UnixMilli()}
				lic.Sign(board, g.ChainID)
				txs = append(txs, chain.NewTx(key, g.ChainID, chain.TxRegisterMember, 1, &chain.RegisterMember{Licence: lic, EncryptionKey: enc}))
			} else {
				e := enrollers[int(sent)%len(enrollers)]
				txs = append(txs, chain.NewTx(key, g.ChainID, chain.TxRegisterPatient, 1, chain.NewEnrolment(e, e.Public().Address(), g.ChainID, key.Public(), enc)))
			}
			kinds = append(kinds, provider)
			sent++
		}
		if len(txs) == 0 {
			continue
		}
		i := k % nw.N
		if !nw.Running(i) {
			d.refused.Add(uint64(len(txs)))
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := nw.Submit(sctx, i, txs)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.refused.Add(uint64(len(txs)))
			d.lastErr.Store(err.Error())
			continue
		}
		refused := map[int]bool{}
		for _, e := range res.Errors {
			var be struct {
				Index int    `json:"index"`
				Error string `json:"error"`
			}
			if decodeLoose(e, &be) {
				refused[be.Index] = true
				d.lastErr.Store(be.Error)
			}
		}
		for j, provider := range kinds {
			switch {
			case refused[j]:
				d.refused.Add(1)
			case provider:
				d.providers.Add(1)
			default:
				d.patients.Add(1)
			}
		}
	}
}

// demoView follows each node's chain through its API.
type demoView struct {
	nw    *procnet.Network
	nodes []demoNodeView
	// final is the highest height every running node has reached; finalAt when it last grew.
	final, prevFinal uint64
	prevAt           time.Time
	rate             float64 // blocks/s over the last interval
}

type demoNodeView struct {
	status  *procnet.Status
	err     error
	scanned uint64 // blocks counted into txs
	txs     int
}

func newDemoView(nw *procnet.Network) *demoView {
	return &demoView{nw: nw, nodes: make([]demoNodeView, nw.N), prevAt: time.Now()}
}

// skipCommitted makes the transaction counts start after each node's current height, and the
// finality rate from the lowest of them.
func (v *demoView) skipCommitted(ctx context.Context) {
	first := true
	for i := range v.nodes {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if st, err := v.nw.Status(qctx, i); err == nil {
			v.nodes[i].scanned = st.Height
			if first || st.Height < v.final {
				v.final = st.Height
			}
			first = false
		}
		cancel()
	}
	v.prevAt = time.Now()
}

func (v *demoView) refresh(ctx context.Context) {
	var low uint64
	first := true
	for i := range v.nodes {
		nv := &v.nodes[i]
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		nv.status, nv.err = v.nw.Status(qctx, i)
		for nv.err == nil && nv.scanned < nv.status.Height {
			b, err := v.nw.Block(qctx, i, nv.scanned+1)
			if err != nil {
				break
			}
			nv.txs += b.TxCount
			nv.scanned++
		}
		cancel()
		if nv.err == nil {
			if first || nv.status.Height < low {
				low = nv.status.Height
			}
			first = false
		}
	}
	now := time.Now()
	v.prevFinal, v.final = v.final, low
	if dt := now.Sub(v.prevAt).Seconds(); dt > 0 && v.final >= v.prevFinal {
		v.rate = float64(v.final-v.prevFinal) / dt
	}
	v.prevAt = now
}

func (v *demoView) print(w io.Writer, up time.Duration, load *demoLoad) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "[%s]\tnode\tpid\tp2p port\tAPI\theight\tlast block\tpeers\ttxs committed\tmempool\n", up.Round(time.Second))
	for i, nv := range v.nodes {
		addr, _ := v.nw.APIAddr(i)
		pid := "-"
		if p := v.nw.PID(i); p != 0 {
			pid = fmt.Sprint(p)
		}
		if nv.err != nil {
			fmt.Fprintf(tw, "\tnode%d\t%s\t%d\t%s\t?\t(%s)\t\t\t\n", i, pid, v.nw.P2PPort(i), addr, shortErr(nv.err))
			continue
		}
		last := nv.status.LastBlockHash
		if len(last) > 12 {
			last = last[:12]
		}
		mp := "-"
		if n, ok := nv.status.MempoolTxs(); ok {
			mp = fmt.Sprint(n)
		}
		fmt.Fprintf(tw, "\tnode%d\t%s\t%d\t%s\t%d\t%s\t%d\t%d\t%s\n", i, pid, v.nw.P2PPort(i), addr, nv.status.Height, last, len(nv.status.Peers), nv.txs, mp)
	}
	_ = tw.Flush()
	submitted := load.providers.Load() + load.patients.Load()
	committed := 0
	for _, nv := range v.nodes {
		committed = max(committed, nv.txs)
	}
	fmt.Fprintf(w, "  finality: height %d final on every node (%.1f blocks/s); %d of %d accepted registrations final (%d providers, %d patients submitted; %d refused)\n",
		v.final, v.rate, committed, submitted, load.providers.Load(), load.patients.Load(), load.refused.Load())
	if e, ok := load.lastErr.Load().(string); ok && load.refused.Load() > 0 {
		fmt.Fprintf(w, "  last refusal: %s\n", e)
	}
	fmt.Fprintln(w)
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// decodeLoose decodes raw into v and reports whether it could.
func decodeLoose(raw json.RawMessage, v any) bool { return json.Unmarshal(raw, v) == nil }

// The story's bounds keep a stuck network from hanging the demo; none is a performance claim.
const (
	storyStep     = 2 * time.Minute  // waiting for registrations, heights, the audit trail
	storyRequest  = 90 * time.Second // one API request (an import waits for its anchors to commit)
	storyPatients = 3
	storySeed     = 20240301 // the synthetic people are the same on every run
	storyConsent  = 30 * 24 * time.Hour
)

// storyPeople makes up the story's n synthetic patients (1 to n) from storySeed, the same on
// every run, and returns them with the random source positioned after them, from which the
// story draws their Bundles. Tests regenerate the demo's people with it.
func storyPeople(n int) ([]*synth.Person, *mrand.Rand) {
	rnd := mrand.New(mrand.NewPCG(storySeed, storySeed))
	people := make([]*synth.Person, n)
	for k := range people {
		people[k] = synth.Patient(rnd, k+1)
	}
	return people, rnd
}

// story walks through consent-gated record sharing on a running network, printing numbered
// lines. It prints identifiers, record types, heights and outcomes, never a name or any
// clinical content.
type story struct {
	w    io.Writer
	nw   *procnet.Network
	g    *chain.Genesis
	step int
	// provider and peer are each node's provider id and libp2p peer id.
	provider []chain.Address
	peer     []string
	// practice and specialist are node indexes.
	practice, specialist int
}

// storyPatient is one synthetic patient of the story.
type storyPatient struct {
	person  *synth.Person
	wallet  *keystore.Wallet
	records []records.ImportedRecord
}

func (s *story) say(format string, args ...any) {
	s.step++
	fmt.Fprintf(s.w, "%d. "+format+"\n", append([]any{s.step}, args...)...)
}

func (s *story) detail(format string, args ...any) { fmt.Fprintf(s.w, "   "+format+"\n", args...) }

// role names node i for the reader.
func (s *story) role(i int) string {
	switch i {
	case s.practice:
		return fmt.Sprintf("node%d (the practice)", i)
	case s.specialist:
		return fmt.Sprintf("node%d (the specialist)", i)
	}
	return fmt.Sprintf("node%d", i)
}

// providerRole names a provider id by its node, or by the id.
func (s *story) providerRole(a chain.Address) string {
	for i, p := range s.provider {
		if p == a {
			return s.role(i)
		}
	}
	return "provider " + short(a.String())
}

// holderRole names the X-MedLedger-Holder of a read: "local" or a peer id.
func (s *story) holderRole(reader int, h string) string {
	if h == "local" {
		return s.role(reader) + " itself (its own replica)"
	}
	for i, p := range s.peer {
		if p == h {
			return s.role(i) + " (peer " + shortPeer(h) + ")"
		}
	}
	return "peer " + shortPeer(h)
}

// article is "an" before a vowel, else "a".
func article(word string) string {
	if word != "" && strings.ContainsRune("AEIOUaeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func shortPeer(p string) string {
	if len(p) > 12 {
		return "…" + p[len(p)-8:]
	}
	return p
}

// call sends one request to node i's API and returns the status, headers and body; a non-2xx
// answer is not an error here.
func (s *story) call(ctx context.Context, i int, method, path string, body []byte, ctype string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storyRequest)
	defer cancel()
	code, h, data, err := s.nw.Request(ctx, i, method, path, ctype, body)
	if err != nil {
		return code, h, nil, fmt.Errorf("node%d: %s %s: %w", i, method, routeOf(path), err)
	}
	return code, h, data, nil
}

// callJSON is call for a JSON answer: anything but 2xx is an error carrying the node's reason.
func (s *story) callJSON(ctx context.Context, i int, method, path string, body []byte, ctype string, out any) error {
	code, _, data, err := s.call(ctx, i, method, path, body, ctype)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("node%d: %s %s answered %d: %s", i, method, routeOf(path), code, apiReason(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("node%d: %s %s: malformed JSON answer: %w", i, method, routeOf(path), err)
	}
	return nil
}

// routeOf drops the query of a path, for messages.
func routeOf(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// apiReason is the one-line "error" of an API error answer.
func apiReason(data []byte) string {
	var e node.ErrorJSON
	msg := string(data)
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if r := []rune(msg); len(r) > 240 {
		msg = string(r[:240]) + "…"
	}
	return msg
}

// submit signs body with key under the account's next nonce, posts it to node i and waits
// until it commits.
func (s *story) submit(ctx context.Context, i int, key chain.PrivKey, kind chain.TxKind, body any) (node.TxAccepted, error) {
	var acct node.AccountJSON
	if err := s.callJSON(ctx, i, http.MethodGet, "/v1/accounts/"+key.Public().Address().String(), nil, "", &acct); err != nil {
		return node.TxAccepted{}, err
	}
	tx := chain.NewTx(key, s.g.ChainID, kind, acct.NextNonce, body)
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	var out node.TxAccepted
	if err := s.callJSON(ctx, i, http.MethodPost, "/v1/txs?wait=commit", req, "application/json", &out); err != nil {
		return out, fmt.Errorf("%s: %w", kind, err)
	}
	return out, nil
}

// waitAll waits until every node has committed height h.
func (s *story) waitAll(ctx context.Context, h uint64) error {
	for i := range s.nw.N {
		if _, err := s.nw.WaitHeight(ctx, i, h, storyStep); err != nil {
			return err
		}
	}
	return nil
}

// tellStory runs the demo's story on a started network; nRecords is the resources per patient
// (0 skips the story).
func tellStory(ctx context.Context, w io.Writer, nw *procnet.Network, g *chain.Genesis, nRecords int) error {
	if nRecords <= 0 {
		return nil
	}
	if nw.N < 2 {
		fmt.Fprintf(w, "(no story with a single node: it needs a practice and a specialist on different nodes)\n\n")
		return nil
	}
	s := &story{
		w: w, nw: nw, g: g,
		provider: make([]chain.Address, nw.N), peer: make([]string, nw.N),
		practice: 0, specialist: min(2, nw.N-1),
	}

	// 1. The nodes are up and register themselves as providers from their licences.
	for i := range nw.N {
		err := procnet.WaitFor(ctx, storyStep, 250*time.Millisecond, fmt.Sprintf("node%d registered as a provider", i), func(ctx context.Context) (bool, error) {
			if exitErr, ok := nw.Exited(i); ok {
				return false, procnet.Permanent(fmt.Errorf("node%d exited (%v); log tail:\n%s", i, exitErr, nw.LogTail(i, 2000)))
			}
			var st node.StatusJSON
			if err := s.callJSON(ctx, i, http.MethodGet, "/v1/status", nil, "", &st); err != nil {
				return false, err
			}
			if st.ProviderID == nil {
				return false, procnet.Permanent(fmt.Errorf("node%d reports no provider id: it has no provider keys", i))
			}
			s.provider[i], s.peer[i] = *st.ProviderID, st.NodeID
			return st.ProviderRegistered, nil
		})
		if err != nil {
			return err
		}
	}
	s.say("%d authority nodes are running, and each is a licensed provider registered on the ledger by genesis (its licence binds its signing key to its node's libp2p key: the nodes admit only members).", nw.N)
	s.detail("node%d is the practice:   provider id %s", s.practice, s.provider[s.practice])
	s.detail("node%d is the specialist: provider id %s", s.specialist, s.provider[s.specialist])

	// 2. Synthetic patients get wallets and register.
	people, rnd := storyPeople(storyPatients)
	patients := make([]*storyPatient, storyPatients)
	walletDir := filepath.Join(nw.Dir, "wallets")
	s.say("%d synthetic patients get wallets (keys only, in %s) and register on the ledger under pseudonymous ids:", storyPatients, walletDir)
	for k := range patients {
		p := &storyPatient{person: people[k]}
		dir := filepath.Join(walletDir, fmt.Sprintf("patient%d", k+1))
		var err error
		if p.wallet, err = keystore.Create(dir, rand.Reader); errors.Is(err, keystore.ErrExists) {
			p.wallet, err = keystore.Open(dir)
		}
		if err != nil {
			return fmt.Errorf("patient %d wallet: %w", k+1, err)
		}
		// The practice enrols the patient (co-signs its registration); the wallet submits it.
		enc := p.wallet.EncryptionKey().Public().Bytes()
		req, _ := json.Marshal(node.EnrolRequest{PatientKey: p.wallet.SigningKey().Public(), EncryptionKey: hex.EncodeToString(enc)})
		var en node.EnrolmentJSON
		if err := s.callJSON(ctx, s.practice, http.MethodPost, "/v1/enrolments", req, "application/json", &en); err != nil {
			return fmt.Errorf("enrolling patient %d: %w", k+1, err)
		}
		body := &chain.RegisterPatient{EncryptionKey: enc, Enroller: en.Enroller}
		if sig, err := hex.DecodeString(en.EnrollerSig); err != nil || len(sig) != len(body.EnrollerSig) {
			return fmt.Errorf("enrolling patient %d: malformed co-signature", k+1)
		} else {
			copy(body.EnrollerSig[:], sig)
		}
		out, err := s.submit(ctx, s.practice, p.wallet.SigningKey(), chain.TxRegisterPatient, body)
		if err != nil {
			return fmt.Errorf("registering patient %d: %w", k+1, err)
		}
		s.detail("patient %d: id %s, registered at height %d", k+1, p.wallet.PatientID(), out.Height)
		patients[k] = p
	}

	// 3. The practice imports each patient's Bundle.
	s.say("The practice (node%d) imports each patient's synthetic FHIR R4 Bundle: each resource is validated, sealed to the patient and the practice, stored off-chain and anchored on the ledger.", s.practice)
	var anchored uint64
	for k, p := range patients {
		bundle := p.person.Bundle(rnd, nRecords)
		var out struct {
			Records []records.ImportedRecord `json:"records"`
		}
		if err := s.callJSON(ctx, s.practice, http.MethodPost, "/v1/patients/"+p.wallet.PatientID().String()+"/records", bundle, "application/fhir+json", &out); err != nil {
			return fmt.Errorf("importing patient %d's records: %w", k+1, err)
		}
		p.records = out.Records
		counts := map[string]int{}
		var top uint64
		for _, r := range out.Records {
			counts[r.ResourceType]++
			top = max(top, r.Height)
		}
		anchored = max(anchored, top)
		types := make([]string, 0, len(counts))
		for t, n := range counts {
			types = append(types, fmt.Sprintf("%d %s", n, t))
		}
		slices.Sort(types)
		s.detail("patient %d: %d records anchored by height %d (%s)", k+1, len(out.Records), top, strings.Join(types, ", "))
	}

	// 4. The specialist tries to read without consent.
	p1 := patients[0]
	target := p1.records[0]
	for _, r := range p1.records {
		if r.ResourceType == "Observation" {
			target = r
			break
		}
	}
	if err := s.waitAll(ctx, anchored); err != nil {
		return err
	}
	readPath := "/v1/records/" + target.ID.String() + "?purpose=" + node.DefaultPurpose
	code, _, data, err := s.call(ctx, s.specialist, http.MethodGet, readPath, nil, "")
	if err != nil {
		return err
	}
	switch {
	case code == http.StatusForbidden:
		s.say("The specialist (node%d) asks for one of patient 1's records (%s %s, record %s) for %s, without consent: refused (HTTP %d).",
			s.specialist, article(target.ResourceType), target.ResourceType, short(target.ID.String()), node.DefaultPurpose, code)
		s.detail("reason: %s", apiReason(data))
	case code/100 == 2:
		return fmt.Errorf("the specialist read record %s without consent (HTTP %d): the consent check did not refuse it", short(target.ID.String()), code)
	default:
		return fmt.Errorf("the specialist's read without consent: want a refusal (403), node%d answered %d: %s", s.specialist, code, apiReason(data))
	}

	// 5. Patient 1 consents.
	grant := &chain.ConsentGrant{Grantee: s.provider[s.specialist], Purpose: node.DefaultPurpose, Scope: chain.ConsentScope{Kind: chain.ScopeAll},
		ExpiresMs: time.Now().Add(storyConsent).UnixMilli()}
	if err := grant.Validate(); err != nil {
		return err
	}
	gout, err := s.submit(ctx, s.practice, p1.wallet.SigningKey(), chain.TxConsentGrant, grant)
	if err != nil {
		return fmt.Errorf("patient 1's consent: %w", err)
	}
	s.say("Patient 1 signs a consent with their wallet: the specialist may read all their records for %s until %s (consent %s, height %d).",
		node.DefaultPurpose, time.UnixMilli(grant.ExpiresMs).UTC().Format(time.DateOnly), short(gout.Hash.String()), gout.Height)

	// 6. The specialist reads the record. A holder may still be pushing the new key envelope:
	// retry what is not a refusal for a while.
	if err := s.waitAll(ctx, gout.Height); err != nil {
		return err
	}
	var header http.Header
	err = procnet.WaitFor(ctx, storyStep, time.Second, "the specialist's read with consent", func(ctx context.Context) (bool, error) {
		var err error
		code, header, data, err = s.call(ctx, s.specialist, http.MethodGet, readPath, nil, "")
		switch {
		case err != nil:
			return false, err
		case code == http.StatusOK:
			return true, nil
		case code == http.StatusForbidden:
			return false, procnet.Permanent(fmt.Errorf("refused with consent (HTTP %d): %s", code, apiReason(data)))
		}
		return false, fmt.Errorf("HTTP %d: %s", code, apiReason(data))
	})
	if err != nil {
		return err
	}
	var got struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		return fmt.Errorf("the record read is not JSON: %w", err)
	}
	s.say("The specialist asks again: served. node%d decrypted a FHIR %s of %d bytes (content not shown), served by %s.",
		s.specialist, got.ResourceType, len(data), s.holderRole(s.specialist, header.Get("X-MedLedger-Holder")))

	// 7. Patient 1's audit trail shows both attempts.
	spec := s.provider[s.specialist]
	var accesses []records.AccessJSON
	auditPath := "/v1/patients/" + p1.wallet.PatientID().String() + "/accesses"
	err = procnet.WaitFor(ctx, storyStep, 500*time.Millisecond, "the refused and the served access in patient 1's audit trail", func(ctx context.Context) (bool, error) {
		var out struct {
			Accesses []records.AccessJSON `json:"accesses"`
		}
		if err := s.callJSON(ctx, s.practice, http.MethodGet, auditPath, nil, "", &out); err != nil {
			return false, err
		}
		accesses = out.Accesses
		refused, served := false, false
		for _, a := range accesses {
			if a.Accessor == spec && a.Record == target.ID {
				refused = refused || a.Outcome == chain.AccessRefused.String()
				served = served || a.Outcome == chain.AccessServed.String()
			}
		}
		return refused && served, nil
	})
	if err != nil {
		return err
	}
	s.say("Patient 1's audit trail on the ledger (GET %s on node%d) shows both:", routeOf(auditPath), s.practice)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "   \taccessor\trecord\theight\tlogged by\toutcome\n")
	for _, a := range accesses {
		outcome := a.Outcome
		if a.Reason != "" {
			outcome += ": " + apiReason([]byte(a.Reason))
		}
		fmt.Fprintf(tw, "   \t%s\t%s\t%d\t%s\t%s\n", s.providerRole(a.Accessor), short(a.Record.String()), a.Height, s.providerRole(a.Holder), outcome)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "   Try: medledger wallet audit --dir %s --home %s\n\n", filepath.Dir(p1.wallet.File()), nw.Home(s.practice))
	return nil
}
