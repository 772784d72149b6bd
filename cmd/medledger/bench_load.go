package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/testnet/procnet"
)

// The load of `medledger bench`: presigned patient registrations offered at a rate to every
// node's batch API, a follower of node0's chain, and one load step's measurements.

// bencher drives load at a network and follows node0's chain.
type bencher struct {
	nw       *procnet.Network
	g        *chain.Genesis
	progress io.Writer
	step     time.Duration
	keyLen   int
	// enrollers are the nodes' provider keys, which co-sign the patient registrations.
	enrollers []chain.PrivKey

	accepted  atomic.Int64 // transactions accepted by any node, ever
	committed atomic.Int64 // transactions in blocks committed on node0, as seen by follow
	blocks    atomic.Int64

	mu    sync.Mutex
	watch map[string]time.Time // tx hash → submit time, while measuring latency
	lat   *latencies
	// cum[h] is the number of transactions in node0's blocks 1..h that follow has seen, so a
	// catch-up knows how much history lies below a height. newBencher sets cum[0] = 0.
	cum []int64
}

// followed returns the height follow has reached on node0 and the transactions up to it.
func (b *bencher) followed() (height uint64, txs int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return uint64(len(b.cum) - 1), b.cum[len(b.cum)-1]
}

// txsUpTo returns the transactions in node0's blocks 1..h, if follow has seen them.
func (b *bencher) txsUpTo(h uint64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h >= uint64(len(b.cum)) {
		return 0, false
	}
	return b.cum[h], true
}

func newBencher(nw *procnet.Network, g *chain.Genesis, progress io.Writer, step time.Duration) *bencher {
	return &bencher{nw: nw, g: g, progress: progress, step: step, cum: []int64{0}}
}

type signedTx struct {
	enc  []byte
	hash string
}

// presign makes n unique signed patient registrations, on every core.
func (b *bencher) presign(n int) []signedTx {
	out := make([]signedTx, n)
	workers := runtime.NumCPU()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				k, err := chain.GenerateKey(rand.Reader)
				if err != nil {
					panic(err)
				}
				enc := make([]byte, b.keyLen)
				_, _ = rand.Read(enc)
				e := b.enrollers[i%len(b.enrollers)]
				tx := chain.NewTx(k, b.g.ChainID, chain.TxRegisterPatient, 1, chain.NewEnrolment(e, e.Public().Address(), b.g.ChainID, k.Public(), enc))
				raw := tx.Encode()
				out[i] = signedTx{enc: raw, hash: chain.Sum256(raw).String()}
			}
		}()
	}
	wg.Wait()
	return out
}

// follow polls node0 and counts every committed block and transaction; while a latency step
// runs it records, for each watched transaction, the time it was first seen final.
func (b *bencher) follow(ctx context.Context) {
	var next uint64 = 1
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := b.nw.Status(qctx, 0)
		for err == nil && next <= st.Height {
			var blk *procnet.Block
			if blk, err = b.nw.Block(qctx, 0, next); err != nil {
				break
			}
			now := time.Now()
			b.mu.Lock()
			if b.lat != nil {
				for _, h := range blk.Txs {
					if t0, ok := b.watch[h]; ok {
						b.lat.add(now.Sub(t0))
						delete(b.watch, h)
					}
				}
			}
			b.cum = append(b.cum, b.cum[len(b.cum)-1]+int64(blk.TxCount))
			b.mu.Unlock()
			b.committed.Add(int64(blk.TxCount))
			b.blocks.Add(1)
			next++
		}
		cancel()
	}
}

// mempools returns the largest mempool among the nodes now.
func (b *bencher) mempools(ctx context.Context) int {
	m := 0
	for i := range b.nw.N {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if st, err := b.nw.Status(qctx, i); err == nil {
			if n, ok := st.MempoolTxs(); ok {
				m = max(m, n)
			}
		}
		cancel()
	}
	return m
}

func (b *bencher) cpu() (time.Duration, error) {
	var sum time.Duration
	for i := range b.nw.N {
		u, err := b.nw.Usage(i)
		if err != nil {
			return 0, err
		}
		sum += u.CPU
	}
	return sum, nil
}

// rss returns each running node's current resident memory (VmRSS) in MB (0 for a node that
// does not run).
func (b *bencher) rss() []float64 {
	out := make([]float64, b.nw.N)
	for i := range b.nw.N {
		if u, err := b.nw.Usage(i); err == nil {
			out[i] = bytesToMB(u.RSS)
		}
	}
	return out
}

// stepTally counts how a step's submissions were answered.
type stepTally struct {
	mu                  sync.Mutex
	load, other, failed int
	accepted, offered   int
	answers             []time.Duration // batch request → answer (or failure)
	lastRefusal         string
	rssMax              []float64
}

func (t *stepTally) refuse(kind refusalKind, n int, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch kind {
	case refusedLoad:
		t.load += n
	case refusedOther:
		t.other += n
	default:
		t.failed += n
	}
	t.lastRefusal = why
}

// runStep offers rate tx/s for dur, spread evenly over the nodes' batch APIs, and measures the
// steady part of it (after a warm-up of a quarter of the step, at most 3 s). With lat set, it
// records submit-to-final latency of every accepted transaction too.
func (b *bencher) runStep(ctx context.Context, rate float64, dur time.Duration, lat *latencies) (*benchStep, error) {
	s := &benchStep{Target: rate, Seconds: dur.Seconds(), BacklogStart: int(b.accepted.Load() - b.committed.Load())}
	total := int(rate*dur.Seconds()) + b.nw.N
	fmt.Fprintf(b.progress, "step: %.0f tx/s for %s (signing %d transactions)...\n", rate, dur, total)
	txs := b.presign(total)
	if lat != nil {
		b.mu.Lock()
		b.lat, b.watch = lat, make(map[string]time.Time, total)
		b.mu.Unlock()
	}
	warmup := min(dur/4, 3*time.Second)
	tally := &stepTally{rssMax: make([]float64, b.nw.N)}
	stepCtx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	// Resident memory of every node, sampled through the whole step: its peak is the step's
	// "RSS under load".
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			r := b.rss()
			tally.mu.Lock()
			for i, m := range r {
				tally.rssMax[i] = max(tally.rssMax[i], m)
			}
			tally.mu.Unlock()
			select {
			case <-stepCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	per := rate / float64(b.nw.N)
	for i := range b.nw.N {
		mine := txs[i*len(txs)/b.nw.N : (i+1)*len(txs)/b.nw.N]
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			sent := 0
			for sent < len(mine) {
				select {
				case <-stepCtx.Done():
					return
				case <-tick.C:
				}
				due := min(len(mine), int(per*time.Since(start).Seconds()))
				if due <= sent {
					continue
				}
				batch := mine[sent:min(due, sent+5000)]
				b.submitBatch(ctx, i, batch, lat, tally, time.Since(start) >= warmup)
				sent += len(batch)
			}
		}()
	}
	// Measure the steady window.
	select {
	case <-ctx.Done():
		wg.Wait()
		return s, nil
	case <-time.After(warmup):
	}
	c0, blk0, w0 := b.committed.Load(), b.blocks.Load(), time.Now()
	cpu0, err := b.cpu()
	if err != nil {
		cancel()
		wg.Wait()
		return nil, err
	}
	poll := time.NewTicker(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-stepCtx.Done():
			done = true
		case <-poll.C:
			s.MaxMempool = max(s.MaxMempool, b.mempools(ctx))
		}
	}
	poll.Stop()
	c1, blk1, window := b.committed.Load(), b.blocks.Load(), time.Since(w0).Seconds()
	cpu1, err := b.cpu()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	s.Offered = float64(tally.offered) / window
	s.committedIn = int(c1 - c0)
	s.Committed = float64(c1-c0) / window
	s.Blocks = float64(blk1-blk0) / window
	if s.committedIn > 0 {
		s.CPUPerTxMs = float64(cpu1-cpu0) / float64(time.Millisecond) / float64(s.committedIn)
	}
	s.Accepted, s.RefusedLoad, s.RefusedOther, s.Failed = tally.accepted, tally.load, tally.other, tally.failed
	s.Refused = tally.load + tally.other + tally.failed
	s.AnswerP50Ms, s.AnswerP99Ms = percentile(tally.answers, 0.50), percentile(tally.answers, 0.99)
	s.RSSMaxMB = tally.rssMax
	s.BacklogEnd = int(b.accepted.Load() - b.committed.Load())
	// Sustained: every transaction accepted, the APIs took the offered rate, and what waits
	// (accepted, not yet committed) at the step's end is at most maxBacklog seconds of load. A
	// backlog that grows without bound exceeds that within a step; the committed rate over a
	// few seconds is too coarse (whole blocks) to decide alone.
	// Commits must also keep up: with the mempool bounded, a backlog cannot outgrow the cap, so
	// an overloaded network can pass the backlog test while committing far less than offered.
	// 85% leaves room for whole-block granularity.
	keepsUp := s.Committed >= 0.85*s.Offered
	s.Sustained = s.Refused == 0 && s.Offered >= 0.95*rate && keepsUp && float64(s.BacklogEnd) <= maxBacklog*max(s.Offered, rate)
	switch {
	case s.Refused > 0:
		s.Note = fmt.Sprintf("%d refused (%d for load, %d other, %d unanswered; last: %s)", s.Refused, s.RefusedLoad, s.RefusedOther, s.Failed, tally.lastRefusal)
	case s.Offered < 0.95*rate:
		s.Note = "the APIs did not take the load"
	case !keepsUp:
		s.Note = "commits fall behind the load"
	case !s.Sustained:
		s.Note = "backlog grows"
	}
	if s.BacklogStart > 0 {
		s.Note += fmt.Sprintf(" (started with %d from the previous step)", s.BacklogStart)
	}
	fmt.Fprintf(b.progress, "  offered %.0f tx/s, committed %.0f tx/s, %.2f blocks/s, %.3f ms CPU/tx, backlog %d, mempool max %d, RSS max %s MB, sustained=%v %s\n",
		s.Offered, s.Committed, s.Blocks, s.CPUPerTxMs, s.BacklogEnd, s.MaxMempool, fmtMBs(s.RSSMaxMB), s.Sustained, s.Note)

	// Let the backlog drain before the next step, so steps do not overlap.
	drain := max(2*time.Minute, 4*dur)
	d0 := time.Now()
	err = procnet.WaitFor(ctx, drain, 100*time.Millisecond, "backlog drained", func(context.Context) (bool, error) {
		if lat != nil {
			b.mu.Lock()
			n := len(b.watch)
			b.mu.Unlock()
			return n == 0, nil
		}
		return b.committed.Load() >= b.accepted.Load(), nil
	})
	s.DrainSeconds = time.Since(d0).Seconds()
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(b.progress, "  %v (continuing)\n", err)
		s.Note += "; backlog not drained"
	}
	if lat != nil {
		b.mu.Lock()
		lat.missing = len(b.watch)
		b.lat, b.watch = nil, nil
		b.mu.Unlock()
	}
	return s, nil
}

// submitBatch posts one batch to node i and tallies how it was answered; inWindow counts it as
// offered in the measured window.
func (b *bencher) submitBatch(ctx context.Context, i int, batch []signedTx, lat *latencies, tally *stepTally, inWindow bool) {
	enc := make([][]byte, len(batch))
	for k, t := range batch {
		enc[k] = t.enc
	}
	t0 := time.Now()
	if lat != nil {
		b.mu.Lock()
		for _, t := range batch {
			b.watch[t.hash] = t0
		}
		b.mu.Unlock()
	}
	unwatch := func(hashes ...string) {
		if lat == nil {
			return
		}
		b.mu.Lock()
		for _, h := range hashes {
			delete(b.watch, h)
		}
		b.mu.Unlock()
	}
	// The request outlives the step if it must: a batch cut off at the step's end would count
	// as refused.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	res, err := b.nw.SubmitEncoded(rctx, i, enc)
	rcancel()
	answered := time.Since(t0)
	tally.mu.Lock()
	tally.answers = append(tally.answers, answered)
	if inWindow {
		tally.offered += len(batch)
	}
	tally.mu.Unlock()
	if err != nil {
		code := 0
		var ae *procnet.APIError
		if errors.As(err, &ae) {
			code = ae.Code
		}
		tally.refuse(classifyStatus(code), len(batch), err.Error())
		for _, t := range batch {
			unwatch(t.hash)
		}
		return
	}
	b.accepted.Add(int64(res.Accepted))
	tally.mu.Lock()
	tally.accepted += res.Accepted
	tally.mu.Unlock()
	for _, e := range res.Errors {
		var be struct {
			Index int    `json:"index"`
			Error string `json:"error"`
		}
		decodeLoose(e, &be)
		tally.refuse(classifyBatchError(be.Error), 1, be.Error)
		if be.Index >= 0 && be.Index < len(batch) {
			unwatch(batch[be.Index].hash)
		}
	}
}

// maxBacklog is the most accepted-but-uncommitted load, in seconds of the offered rate, at the
// end of a sustained step: about three block intervals.
const maxBacklog = 3.0

// latencies collects submit-to-final times.
type latencies struct {
	mu      sync.Mutex
	d       []time.Duration
	missing int
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) summary() (p50, p99 float64, n, missing int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return percentile(l.d, 0.50), percentile(l.d, 0.99), len(l.d), l.missing
}

func fmtMBs(v []float64) string {
	s := ""
	for i, m := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.0f", m)
	}
	return s
}
