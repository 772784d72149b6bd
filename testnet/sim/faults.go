package sim

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
)

// amnesiac is a store that forgets what its authority signed.
type amnesiac struct{ store.Store }

func (amnesiac) SignState() ([]byte, map[chain.Hash][]byte, error) { return nil, nil, nil }

func (w *world) start(n *node) error {
	var st store.Store = n.mem
	if n.behavior == Amnesiac {
		st = amnesiac{n.mem}
	}
	key := n.key
	rep, err := replica.New(replica.Config{Genesis: w.genesis, Key: &key, Mempool: replica.MempoolConfig{TTLBlocks: mempoolTTL}}, st)
	if err != nil {
		return fmt.Errorf("node %d: %w", n.idx, err)
	}
	n.rep, n.up = rep, true
	n.incarnation++
	n.restartHeight = n.mem.Height()
	out, err := rep.Start(w.nodeNow(n))
	w.after(n, out, err)
	return nil
}

// mempoolTTL is the simulated replicas' mempool time to live, in blocks: short enough that a
// run of a few hundred heights sees junk expire.
const mempoolTTL = 40

func (w *world) scheduleFaults() {
	if w.cfg.PartitionEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.PartitionEveryMs), w.partition)
	}
	if w.cfg.WithholdEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.WithholdEveryMs), w.startWithholding)
	}
	if w.cfg.CrashEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.CrashEveryMs), w.crashOne)
	}
	if w.cfg.TxEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.TxEveryMs), w.submitTx)
	}
	if w.cfg.SetChangeEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.SetChangeEveryMs), w.proposeSetChange)
	}
	for _, n := range w.nodes {
		switch n.behavior {
		case Amnesiac:
			w.q.schedule(w.now+w.exp(1500), func() { w.amnesia(n) })
		case Flooder:
			w.q.schedule(w.now+w.exp(100), func() { w.flood(n) })
		}
	}
	if w.cfg.Laggard > 0 {
		w.q.schedule(w.now+1000, w.watchLaggard)
	}
	w.q.schedule(w.now+500, w.auditLoop)
}

func (w *world) auditLoop() {
	w.check.audit()
	w.q.schedule(w.now+500, w.auditLoop)
}

func (w *world) partition() {
	if w.healed {
		return
	}
	w.res.Partitions++
	w.group = make([]int, len(w.nodes))
	for i := range w.group {
		w.group[i] = w.rng.IntN(2)
	}
	w.trace("partition %v", w.group)
	w.q.schedule(w.now+200+w.rng.Int64N(2500), func() { w.group = nil; w.trace("partition healed") })
	w.q.schedule(w.now+w.exp(w.cfg.PartitionEveryMs), w.partition)
}

// withholding cuts one victim off from all but a chosen few senders: an eclipse, one way.
type withholding struct {
	victim int
	allow  map[int]bool
	until  int64
}

func (w *world) startWithholding() {
	if w.healed {
		return
	}
	w.res.Withholds++
	wh := &withholding{victim: w.rng.IntN(len(w.nodes)), allow: map[int]bool{}, until: w.now + 300 + w.rng.Int64N(3000)}
	for i := range w.nodes {
		if i != wh.victim && w.rng.IntN(3) == 0 {
			wh.allow[i] = true
		}
	}
	w.withhold = wh
	w.trace("withholding from node %d, allowing %v", wh.victim, wh.allow)
	w.q.schedule(wh.until, func() {
		if w.withhold == wh {
			w.withhold = nil
		}
	})
	w.q.schedule(w.now+w.exp(w.cfg.WithholdEveryMs), w.startWithholding)
}

// crashOne crashes a random live node in one of several ways: at once (a process kill: every
// completed write survives), with power loss (only synced writes survive), in the middle of its
// next commit (after a random number of store writes), or after it persists its next output and
// before it sends it.
func (w *world) crashOne() {
	if w.healed {
		return
	}
	w.q.schedule(w.now+w.exp(w.cfg.CrashEveryMs), w.crashOne)
	n := w.nodes[w.rng.IntN(len(w.nodes))]
	if !n.up || (w.cfg.Laggard > 0 && n.idx == w.laggard()) {
		return
	}
	restart := func() { w.q.schedule(w.now+100+w.rng.Int64N(3000), func() { w.restart(n, false) }) }
	switch x := w.rng.Float64(); {
	case x < w.cfg.CrashInCommitShare:
		n.crashNext = 1 + w.rng.IntN(12)
		n.mem.FailAfterWrites(n.crashNext)
		w.trace("node %d will crash after %d store writes", n.idx, n.crashNext)
		// If it writes nothing soon, crash it anyway.
		inc := n.incarnation
		w.q.schedule(w.now+2000, func() {
			if n.up && n.incarnation == inc && n.crashNext > 0 && !w.healed {
				n.mem.FailAfterWrites(-1)
				w.crash(n)
				restart()
			}
		})
	case x < w.cfg.CrashInCommitShare+w.cfg.CrashBeforeSend:
		n.crashNext = 0
		w.trace("node %d will crash before sending its next output", n.idx)
	case x < w.cfg.CrashInCommitShare+w.cfg.CrashBeforeSend+w.cfg.PowerLossShare:
		w.crash(n)
		w.res.PowerLoss++
		w.q.schedule(w.now+100+w.rng.Int64N(3000), func() { w.restart(n, true) })
	default:
		w.crash(n)
		restart()
	}
}

func (w *world) crash(n *node) {
	w.res.Crashes++
	w.trace("node %d crashed at height %d", n.idx, n.mem.Height())
	n.up = false
	n.incarnation++
	n.lastCrash = w.now
	n.rep = nil
	w.check.forget(n)
	n.crashNext = -1
}

// restart brings n back on what its store kept: everything written (a process crash) or, after
// a power loss, what was durable; a node that is not durable may come back up to its last few
// commits behind, with its latest sign state.
func (w *world) restart(n *node, powerLoss bool) {
	if n.up {
		return
	}
	switch {
	case powerLoss && !n.durable && len(n.snaps) > 0:
		k := w.rng.IntN(len(n.snaps) + 1)
		if k == 0 {
			n.mem = n.mem.PowerLossClone(nil)
			break
		}
		old := n.snaps[len(n.snaps)-k].CrashClone()
		if err := keepSignState(n.mem, old); err != nil {
			w.violate("node %d: power loss: %v", n.idx, err)
			return
		}
		w.trace("node %d loses its last %d commits", n.idx, k)
		n.mem = old
	case powerLoss:
		n.mem = n.mem.PowerLossClone(nil)
	default:
		n.mem = n.mem.CrashClone()
	}
	n.snaps = nil
	w.trace("node %d restarts at height %d (power loss %v)", n.idx, n.mem.Height(), powerLoss)
	if err := w.start(n); err != nil {
		w.violate("restart: %v", err)
	}
}

func (w *world) amnesia(n *node) {
	if n.up {
		w.crash(n)
		w.restart(n, false)
	}
	w.q.schedule(w.now+w.exp(1500), func() { w.amnesia(n) })
}

func (w *world) heal() {
	w.healed = true
	w.group = nil
	w.withhold = nil
	w.dropRate = 0
	for _, n := range w.nodes {
		if n.up && n.crashNext >= 0 {
			n.crashNext = -1
			n.mem.FailAfterWrites(-1)
		}
		if !n.up {
			w.restart(n, false)
		}
	}
	w.check.healed()
}

// after handles what a replica call returned: a failure of its own halts an honest node (a
// violation unless the failure is a crash the simulation injected); a planned crash between
// persisting and sending drops the output.
func (w *world) after(n *node, out replica.Output, err error) {
	if err != nil {
		if errors.Is(err, replica.ErrInvalid) {
			return // the sender's fault; scored by a real node
		}
		if errors.Is(err, store.ErrCrashed) {
			w.res.InCommit++
			w.crash(n)
			w.q.schedule(w.now+100+w.rng.Int64N(3000), func() { w.restart(n, false) })
			return
		}
		if w.honest(n) {
			w.violate("node %d halted: %v", n.idx, err)
		}
		w.crash(n)
		return
	}
	if n.crashNext == 0 && hasSends(out) {
		w.res.BeforeSend++
		w.crash(n)
		w.q.schedule(w.now+100+w.rng.Int64N(3000), func() { w.restart(n, false) })
		return
	}
	w.handleOutput(n, out)
}

func hasSends(out replica.Output) bool {
	return len(out.Broadcast)+len(out.Resend)+len(out.Unicast) > 0
}

// laggard is the node kept down in a laggard run: the first honest authority.
func (w *world) laggard() int {
	for i := 0; i < w.cfg.N; i++ {
		if w.cfg.Byzantine[i] == Honest {
			return i
		}
	}
	return 0
}

// watchLaggard starts the laggard once the others are far enough ahead.
func (w *world) watchLaggard() {
	n := w.nodes[w.laggard()]
	if n.up {
		return
	}
	if w.maxHonestHeight() >= w.cfg.Laggard {
		w.trace("laggard node %d starts at height %d, the network is at %d", n.idx, n.mem.Height(), w.maxHonestHeight())
		if err := w.start(n); err != nil {
			w.violate("laggard start: %v", err)
		}
		return
	}
	w.q.schedule(w.now+500, w.watchLaggard)
}

// laggardDone reports whether the laggard is up and within a few heights of the others.
func (w *world) laggardDone() bool {
	n := w.nodes[w.laggard()]
	return n.up && n.mem.Height()+3 >= w.cfg.Laggard && n.mem.Height()+3 >= w.maxHonestHeight()
}

// keepSignState copies the sign state of from into to: the store lost commits, not what its
// authority signed.
func keepSignState(from, to *store.Memory) error {
	rec, blocks, err := from.SignState()
	if err != nil || rec == nil {
		return err
	}
	var list []store.SignBlock
	for h, enc := range blocks {
		list = append(list, store.SignBlock{Hash: h, Encode: func() []byte { return enc }})
	}
	slices.SortFunc(list, func(a, b store.SignBlock) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	return to.SaveSignState(rec, list)
}

// snapshot keeps a non-durable node's store as of its latest commit, for power losses.
func (w *world) snapshot(n *node) {
	if n.durable || !n.up {
		return
	}
	n.snaps = append(n.snaps, n.mem.CrashClone())
	if len(n.snaps) > 3 {
		n.snaps = n.snaps[1:]
	}
}
