package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/badger"
	"github.com/medledger/medledger/node"
)

// The period-boundary part of the billing phase (docs/bench.md, "Billing phase"): invoices are
// derived on read (docs/billing.md), so the block in which every membership enters its second
// month should cost what any block costs, at 10^3 or 10^5 memberships. It runs in process, before
// the network starts, on the node's real state machine and Badger store in a temporary directory.

const (
	boundaryChainID  = "medledger-bench-boundary"
	boundaryPerBlock = 2000 // transactions per building block (the default params.max_block_txs)
	boundaryProbeTxs = 3    // fresh patient registrations in each measured block
	boundaryBefore   = 3    // committed blocks a day before the boundary (the median is reported)
	boundaryExecRuns = 15   // executions of the same block at each time (the median is reported)
	statementSamples = 200  // memberships whose statement read is timed at each size
)

// boundaryPoint is the billing phase's figures at one number of memberships.
type boundaryPoint struct {
	Memberships  int     `json:"memberships"`
	BuildSeconds float64 `json:"build_seconds"` // registrations and enrolments, full execution
	Height       uint64  `json:"height"`        // blocks built before the measured ones

	// The same block (fresh patient registrations) executed on the same state with its time a
	// day before the boundary and just after it (median of 15 ApplyBlock runs each; execution
	// writes nothing, so the runs repeat exactly), with the state keys it read through the view
	// and wrote in its change set; and the commit (store.Commit, fsync as an authority node) of
	// blocks a day before (median of 3) and of the block crossing the boundary.
	BeforeExecMs   float64 `json:"before_exec_ms"`
	BeforeCommitMs float64 `json:"before_commit_ms"`
	BeforeReads    int     `json:"before_state_reads"`
	BeforeWrites   int     `json:"before_state_writes"`
	CrossExecMs    float64 `json:"cross_exec_ms"`
	CrossCommitMs  float64 `json:"cross_commit_ms"`
	CrossReads     int     `json:"cross_state_reads"`
	CrossWrites    int     `json:"cross_state_writes"`
	BlockTxs       int     `json:"block_txs"`

	// StatementUs is the median time to read one membership and derive its statement at the
	// head (after the boundary); InvoicesBefore/After are a sample member's invoice counts a
	// day before and after the boundary, showing the new invoice exists on read.
	StatementUs    float64 `json:"statement_us"`
	InvoicesBefore int     `json:"invoices_before"`
	InvoicesAfter  int     `json:"invoices_after"`
}

// boundarySizes is 10^3, 10^4, … up to max (max itself if below 10^3).
func boundarySizes(max int) []int {
	var s []int
	for n := 1000; n <= max; n *= 10 {
		s = append(s, n)
	}
	if len(s) == 0 && max > 0 {
		s = []int{max}
	}
	return s
}

// monthBoundary is when a monthly membership that starts at startMs enters its second period,
// as chain/state counts periods (calendar months in UTC from the start), and the time a day
// earlier.
func monthBoundary(startMs int64) (boundary, dayBefore int64) {
	b := time.UnixMilli(startMs).UTC().AddDate(0, 1, 0).UnixMilli()
	return b, b - chain.DayMs
}

// boundaryPhase measures a period boundary at each size in sizes, each in a fresh store.
func boundaryPhase(ctx context.Context, progress io.Writer, sizes []int) ([]boundaryPoint, error) {
	var out []boundaryPoint
	for _, n := range sizes {
		fmt.Fprintf(progress, "billing: %d memberships crossing a month boundary (building the state through full execution)...\n", n)
		p, err := measureBoundary(ctx, n)
		if err != nil {
			return out, fmt.Errorf("%d memberships: %w", n, err)
		}
		fmt.Fprintf(progress, "  built in %.0f s (%d blocks); block a day before: exec %.2f ms + commit %.2f ms, %d reads, %d writes; crossing: exec %.2f ms + commit %.2f ms, %d reads, %d writes; statement %.0f µs (invoices %d → %d)\n",
			p.BuildSeconds, p.Height, p.BeforeExecMs, p.BeforeCommitMs, p.BeforeReads, p.BeforeWrites,
			p.CrossExecMs, p.CrossCommitMs, p.CrossReads, p.CrossWrites, p.StatementUs, p.InvoicesBefore, p.InvoicesAfter)
		out = append(out, p)
	}
	return out, nil
}

// boundaryNet is a one-practice ledger on a Badger store: the practice is a licensed provider,
// the licensing authority is the bench's own.
type boundaryNet struct {
	m        *state.Machine
	s        *badger.Store
	dir      string
	practice chain.PrivKey
	nonce    uint64 // the practice's last nonce
	time     int64  // the last block's time
	seq      uint64 // fresh key counter
}

// seededKey derives key i of a run deterministically: fast, and no entropy needed.
func seededKey(label string, i uint64) chain.PrivKey {
	seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("medledger-bench/"+label+"/"), i))
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		panic(err) // a 32-byte seed is always accepted
	}
	return k
}

func openBoundaryStore(dir string, sync store.SyncPolicy) (*badger.Store, error) {
	return badger.Open(dir, badger.Options{Store: store.Options{Sync: sync, KeepVersions: node.DefaultKeepVersions}, GCInterval: -1})
}

func newBoundaryNet(dir string, genesisMs int64) (*boundaryNet, error) {
	auth, lic := seededKey("authority", 0), seededKey("licensing", 0)
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: boundaryChainID, TimeMs: genesisMs,
		Authorities:          []chain.Authority{{Key: auth.Public(), Name: "bench authority"}},
		LicensingAuthorities: []chain.Authority{{Key: lic.Public(), Name: "bench licensing"}},
		Params:               chain.DefaultParams(),
	}
	g.Params.EnrolmentsPerWindow = benchEnrolmentsPerWindow // as the network phases: the ledger, not the policy
	bn := &boundaryNet{m: state.New(boundaryChainID), dir: dir, practice: seededKey("practice", 0), time: genesisMs}
	cs, err := bn.m.Genesis(g)
	if err != nil {
		return nil, err
	}
	// Building writes 10^5 memberships: no fsync per block there (the measured blocks reopen
	// the store with the authority's every-commit policy).
	if bn.s, err = openBoundaryStore(dir, store.SyncNone); err != nil {
		return nil, err
	}
	if _, err := bn.s.InitGenesis(g, cs); err != nil {
		return nil, err
	}
	l := chain.Licence{Role: chain.RoleProvider, Subject: bn.practice.Public(), NodeKey: seededKey("practice-node", 0).Public(),
		Number: "BENCH-1", Jurisdiction: "VT", NotAfter: genesisMs + 10*365*chain.DayMs}
	l.Sign(lic, boundaryChainID)
	reg := bn.practiceTx(chain.TxRegisterProvider, &chain.RegisterProvider{Licence: l, EncryptionKey: []byte("bench-practice-key")})
	if _, err := bn.block(bn.time+1000, []*chain.Tx{reg}); err != nil {
		return nil, fmt.Errorf("registering the practice: %w", err)
	}
	return bn, nil
}

func (bn *boundaryNet) practiceTx(kind chain.TxKind, body any) *chain.Tx {
	bn.nonce++
	return chain.NewTx(bn.practice, boundaryChainID, kind, bn.nonce, body)
}

// blockTiming is one block's cost.
type blockTiming struct {
	exec, commit  time.Duration
	reads, writes int
}

// countingView counts the state reads of execution.
type countingView struct {
	state.View
	reads int
}

func (v *countingView) Get(k []byte) ([]byte, error) {
	v.reads++
	return v.View.Get(k)
}

// signedHere vouches for the signatures of the transactions the bench signed itself, as a node's
// mempool cache does for the ones it checked on admission: building 10^5 memberships then
// verifies only the co-signatures (the enroller's and the subscriber's) in execution. The
// measured blocks verify everything.
type signedHere struct{}

func (signedHere) Verified(chain.Hash) bool { return true }

// block executes txs at time t on the store's state, trusting their signatures, and commits it.
func (bn *boundaryNet) block(t int64, txs []*chain.Tx) (blockTiming, error) {
	return bn.blockV(t, txs, signedHere{})
}

// blockV executes txs at time t on the store's state and commits the block, as a node does after
// consensus (the certificate carries no signatures: the store does not check them).
func (bn *boundaryNet) blockV(t int64, txs []*chain.Tx, verified state.VerifiedSet) (blockTiming, error) {
	prev, err := bn.s.Block(bn.s.Height())
	var prevHash chain.Hash
	if err == nil {
		prevHash = prev.Hash()
	} else if bn.s.Height() > 0 {
		return blockTiming{}, err
	}
	h := chain.Header{Version: chain.HeaderVersion, ChainID: boundaryChainID, Height: bn.s.Height() + 1, Time: t, PrevHash: prevHash, TxRoot: chain.TxRoot(txs),
		StateRoot: bn.s.StateRoot()} // recovery checks it against the tree on reopen
	view := &countingView{View: bn.s.State()}
	t0 := time.Now()
	out, err := bn.m.ApplyBlock(view, &h, txs, verified)
	if err != nil {
		return blockTiming{}, err
	}
	t1 := time.Now()
	blk := &chain.Block{Version: chain.BlockVersion, Header: h, Txs: txs}
	cert := &chain.CommitCert{Version: chain.CertVersion, Height: h.Height, BlockHash: blk.Hash()}
	if _, err := bn.s.Commit(blk, cert, out.Changes); err != nil {
		return blockTiming{}, err
	}
	bn.time = t
	return blockTiming{exec: t1.Sub(t0), commit: time.Since(t1), reads: view.reads, writes: len(out.Changes.Changes)}, nil
}

// parallel runs f(i) for i in [0, n) on every core: signing dominates building.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// registrations makes n fresh patients' registrations, co-signed by the practice.
func (bn *boundaryNet) registrations(n int) ([]chain.PrivKey, []*chain.Tx) {
	keys := make([]chain.PrivKey, n)
	txs := make([]*chain.Tx, n)
	base := bn.seq
	bn.seq += uint64(n)
	enroller := bn.practice.Public().Address()
	parallel(n, func(i int) {
		k := seededKey("patient", base+uint64(i))
		enc := k.Public()
		body := chain.NewEnrolment(bn.practice, enroller, boundaryChainID, k.Public(), append([]byte("bench-enc:"), enc[:8]...))
		keys[i], txs[i] = k, chain.NewTx(k, boundaryChainID, chain.TxRegisterPatient, 1, body)
	})
	return keys, txs
}

func measureBoundary(ctx context.Context, n int) (p boundaryPoint, err error) {
	p.Memberships = n
	dir, err := os.MkdirTemp("", "medledger-boundary-")
	if err != nil {
		return p, err
	}
	defer os.RemoveAll(dir)
	genesisMs := time.Date(2026, time.January, 10, 9, 0, 0, 0, time.UTC).UnixMilli()
	t0 := time.Now()
	bn, err := newBoundaryNet(dir, genesisMs)
	if err != nil {
		return p, err
	}
	defer func() {
		if bn.s != nil {
			err = joinErr(err, bn.s.Close())
		}
	}()
	plan := chain.Plan{ID: chain.Sum256([]byte("bench/plan")), Label: "Adult monthly", Currency: "USD", Period: chain.PeriodMonthly,
		MaxMembers: 1, Tiers: []chain.PlanTier{{Label: "adult", PriceCents: 9900}}, Covered: []string{"99213"}, GraceDays: 10}
	if _, err := bn.block(bn.time+1000, []*chain.Tx{bn.practiceTx(chain.TxPlanPublish, &chain.PlanPublish{Plan: plan})}); err != nil {
		return p, fmt.Errorf("publishing the plan: %w", err)
	}
	// Every membership starts at the same instant, so every one of them crosses its first
	// boundary in the same block (the agreement may start up to a day before its block).
	startMs := bn.time + 1000
	ids := make([]chain.Hash, 0, n)
	for from := 0; from < n; from += boundaryPerBlock {
		if err := ctx.Err(); err != nil {
			return p, err // interrupted: building 10^5 takes minutes
		}
		keys, regs := bn.registrations(min(boundaryPerBlock, n-from))
		if _, err := bn.block(bn.time+1000, regs); err != nil {
			return p, fmt.Errorf("registering patients: %w", err)
		}
		enrols := make([]*chain.Tx, len(keys))
		nonce := bn.nonce
		bn.nonce += uint64(len(keys))
		idx := len(ids)
		ids = ids[:idx+len(keys)]
		parallel(len(keys), func(i int) {
			k := keys[i]
			a := chain.MembershipAgreement{ID: chain.Sum256(fmt.Appendf(nil, "bench/membership/%d", from+i)), Plan: plan.ID,
				Subscriber: k.Public().Address(), Members: []chain.MemberTier{{Patient: k.Public().Address()}}, StartMs: startMs,
				Contract: chain.Sum256(fmt.Appendf(nil, "bench/contract/%d", from+i))}
			sig := k.Sign(chain.DomainMembership, boundaryChainID, a.AgreementBytes())
			ids[idx+i] = a.ID
			enrols[i] = chain.NewTx(bn.practice, boundaryChainID, chain.TxMembershipEnrol, nonce+uint64(i)+1, &chain.MembershipEnrol{Agreement: a, SubscriberSig: sig})
		})
		if _, err := bn.block(bn.time+1000, enrols); err != nil {
			return p, fmt.Errorf("enrolling memberships: %w", err)
		}
	}
	p.BuildSeconds = time.Since(t0).Seconds()
	p.Height = bn.s.Height()

	// Measure on the store as an authority node runs it: reopened, fsync at every commit.
	if err := bn.s.Close(); err != nil {
		return p, err
	}
	if bn.s, err = openBoundaryStore(dir, store.SyncEveryCommit); err != nil {
		return p, err
	}
	boundary, dayBefore := monthBoundary(startMs)
	var before []blockTiming
	for i := range boundaryBefore {
		_, regs := bn.registrations(boundaryProbeTxs)
		bt, err := bn.blockV(dayBefore+int64(i)*1000, regs, nil)
		if err != nil {
			return p, fmt.Errorf("block a day before the boundary: %w", err)
		}
		before = append(before, bt)
	}
	sample := ids[len(ids)/2]
	if p.InvoicesBefore, err = bn.invoices(sample, bn.time); err != nil {
		return p, err
	}
	_, regs := bn.registrations(boundaryProbeTxs)
	eb, err := bn.execMedian(bn.time+1000, regs)
	if err != nil {
		return p, fmt.Errorf("block a day before the boundary: %w", err)
	}
	ec, err := bn.execMedian(boundary+500, regs)
	if err != nil {
		return p, fmt.Errorf("block crossing the boundary: %w", err)
	}
	cross, err := bn.blockV(boundary+500, regs, nil)
	if err != nil {
		return p, fmt.Errorf("block crossing the boundary: %w", err)
	}
	if p.InvoicesAfter, err = bn.invoices(sample, bn.time); err != nil {
		return p, err
	}
	slices.SortFunc(before, func(a, b blockTiming) int { return int(a.commit - b.commit) })
	p.BlockTxs = boundaryProbeTxs
	p.BeforeExecMs, p.BeforeCommitMs, p.BeforeReads, p.BeforeWrites = ms(eb.exec), ms(before[len(before)/2].commit), eb.reads, eb.writes
	p.CrossExecMs, p.CrossCommitMs, p.CrossReads, p.CrossWrites = ms(ec.exec), ms(cross.commit), ec.reads, ec.writes
	p.StatementUs, err = bn.statementTime(ids)
	return p, err
}

// execMedian executes txs at time t on the head state boundaryExecRuns times, verifying every
// signature, without committing, and returns the median time with the keys read and written.
func (bn *boundaryNet) execMedian(t int64, txs []*chain.Tx) (blockTiming, error) {
	prev, err := bn.s.Block(bn.s.Height())
	if err != nil {
		return blockTiming{}, err
	}
	h := chain.Header{Version: chain.HeaderVersion, ChainID: boundaryChainID, Height: bn.s.Height() + 1, Time: t, PrevHash: prev.Hash(),
		TxRoot: chain.TxRoot(txs), StateRoot: bn.s.StateRoot()}
	var runs []time.Duration
	var bt blockTiming
	for range boundaryExecRuns {
		view := &countingView{View: bn.s.State()}
		t0 := time.Now()
		out, err := bn.m.ApplyBlock(view, &h, txs, nil)
		if err != nil {
			return bt, err
		}
		runs = append(runs, time.Since(t0))
		bt.reads, bt.writes = view.reads, len(out.Changes.Changes)
	}
	slices.Sort(runs)
	bt.exec = runs[len(runs)/2]
	return bt, nil
}

// invoices is membership id's invoice count at atMs.
func (bn *boundaryNet) invoices(id chain.Hash, atMs int64) (int, error) {
	m, err := state.Membership(bn.s.State(), id)
	if err != nil || m == nil {
		return 0, fmt.Errorf("membership %s: %v", id.Short(), err)
	}
	return len(m.Statement(atMs).Invoices), nil
}

// statementTime is the median time to read a membership from the store and derive its statement
// at the head, over memberships spread across the set.
func (bn *boundaryNet) statementTime(ids []chain.Hash) (float64, error) {
	view := bn.s.State()
	var d []time.Duration
	step := max(1, len(ids)/statementSamples)
	for i := 0; i < len(ids); i += step {
		t0 := time.Now()
		m, err := state.Membership(view, ids[i])
		if err != nil || m == nil {
			return 0, fmt.Errorf("membership %s: %v", ids[i].Short(), err)
		}
		st := m.Statement(bn.time)
		d = append(d, time.Since(t0))
		if len(st.Invoices) == 0 {
			return 0, fmt.Errorf("membership %s: no invoice", ids[i].Short())
		}
	}
	slices.Sort(d)
	return float64(d[len(d)/2].Nanoseconds()) / 1000, nil
}

// boundaryFlat says whether the crossing block read and wrote the same state keys as the block
// a day before, and the same at every size: nothing per membership at the boundary.
func boundaryFlat(ps []boundaryPoint) bool {
	for _, p := range ps {
		if p.CrossReads != p.BeforeReads || p.CrossWrites != p.BeforeWrites ||
			p.CrossReads != ps[0].CrossReads || p.CrossWrites != ps[0].CrossWrites {
			return false
		}
	}
	return len(ps) > 0
}

// boundarySummary is the period boundary's one-line figure for the main table.
func boundarySummary(ps []boundaryPoint) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s: %.1f ms crossing vs %.1f ms a day before, %d/%d keys read/written vs %d/%d",
			countLabel(p.Memberships), p.CrossExecMs+p.CrossCommitMs, p.BeforeExecMs+p.BeforeCommitMs, p.CrossReads, p.CrossWrites, p.BeforeReads, p.BeforeWrites))
	}
	return strings.Join(parts, "; ")
}

// countLabel writes 1000 as 1k and 100000 as 100k.
func countLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// printBoundary is the period boundary's detail table.
func printBoundary(w io.Writer, ps []boundaryPoint) {
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(w, "\nBilling: a month boundary crossed by every membership in one block (%d fresh registrations per measured block; fsync per commit)\n\n", ps[0].BlockTxs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "memberships\tbuilt (s)\tday before: exec+commit ms\treads/writes\tcrossing: exec+commit ms\treads/writes\tstatement µs\tinvoices before→after\t\n")
	for _, p := range ps {
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f+%.2f\t%d/%d\t%.2f+%.2f\t%d/%d\t%.1f\t%d→%d\t\n", p.Memberships, p.BuildSeconds,
			p.BeforeExecMs, p.BeforeCommitMs, p.BeforeReads, p.BeforeWrites, p.CrossExecMs, p.CrossCommitMs, p.CrossReads, p.CrossWrites,
			p.StatementUs, p.InvoicesBefore, p.InvoicesAfter)
	}
	_ = tw.Flush()
}
