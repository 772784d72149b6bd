package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet/procnet"
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
  7. patient 1's audit trail on the ledger shows the refused attempt and the served read;
  8. patient 1's wallet, a light client, proves all of it and reads a record itself;
  9. money: the practice publishes a family membership plan, patients 2 and 3 enrol (patient 2
     signs the agreement in their wallet) and pay; an insurer joins as a payer (a full node
     DIR/payer with a payer licence from DIR/payers.key) and publishes its fee schedule; the
     practice files a claim for patient 1's visit (adjudicated by the schedule), the same claim
     again (refused: duplicate) and one for member-covered care (refused); patient 1 disputes
     the claim from their wallet.

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
	payer, err := tellStory(ctx, w, nw, g, o.records)
	if payer != nil {
		// Stopped before the authorities (deferred calls run last first).
		defer func() { err = errors.Join(err, stopPayer(w, payer)) }()
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(w, "\nstopping: interrupted during the story\n")
			return nil
		}
		return fmt.Errorf("demo story: %w", err)
	}
	fmt.Fprintf(w, "Load: %d registrations/s through the nodes' HTTP APIs (1 in 5 a provider licensed by the testnet's board, the rest pseudonymous patients). Ctrl-C stops.\n", o.txRate)
	fmt.Fprintf(w, "Try: medledger status --home %s\n", nw.Home(0))
	if addr, err := nw.APIAddr(0); err == nil {
		// The practice's web page is served on the node's own API address (node/webui).
		fmt.Fprintf(w, "Practice web page: http://%s/ui/ (sign in as a staff user: medledger users add --home %s --name YOU --role clinician)\n", addr, nw.Home(0))
	}
	fmt.Fprintln(w)

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
