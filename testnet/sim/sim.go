package sim

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
)

// Behavior is how a simulated authority acts.
type Behavior uint8

// Behaviours. Everything but Honest is Byzantine.
const (
	Honest Behavior = iota
	// Equivocator sends one version of its proposals and votes to half of the honest authorities
	// and a conflicting version to the other half (a fork attempt); with LeakEquivocation it also
	// shows both versions to some honest authority, which must then produce evidence.
	Equivocator
	// Amnesiac restarts often and forgets what it signed before each restart.
	Amnesiac
	// InvalidProposer proposes blocks that do not execute.
	InvalidProposer
	// Withholder sends nothing at all.
	Withholder
	// Flooder is a compromised member with real keys: it votes, but also floods off-turn
	// proposals (valid blocks, and headers that lie about their proposer), messages for future
	// heights, junk and gap-nonce transactions, and answers sync requests with forged blocks
	// whose certificates repeat its own signature.
	Flooder
	numBehaviors
)

func (b Behavior) String() string {
	return [...]string{"honest", "equivocator", "amnesiac", "invalid-proposer", "withholder", "flooder"}[b]
}

// Config describes one simulated run. Times are simulated milliseconds.
type Config struct {
	Seed      uint64
	N         int
	Spares    int              // extra honest nodes outside the genesis set, candidates for adds
	Byzantine map[int]Behavior // by node index; absent means honest

	FaultMs     int64   // length of the faulty phase
	HealMs      int64   // length of the healed phase, in which liveness is required
	MinProgress uint64  // heights every honest authority must gain after healing
	DropRate    float64 // during the faulty phase
	DupRate     float64
	MinDelayMs  int64
	MaxDelayMs  int64
	// SlowRate is the share of messages delayed by SlowMinMs..SlowMaxMs instead (longer than
	// the timeouts, so messages of old rounds and heights arrive late), in the faulty phase.
	SlowRate         float64
	SlowMinMs        int64
	SlowMaxMs        int64
	MaxSkewMs        int64 // each node's clock is off by up to this much, either way
	PartitionEveryMs int64 // mean time between partitions in the faulty phase; 0: none
	WithholdEveryMs  int64 // mean time between targeted withholdings (one victim hears from few)
	CrashEveryMs     int64 // mean time between crashes in the faulty phase; 0: none
	TxEveryMs        int64 // mean time between submitted transactions; 0: none
	SetChangeEveryMs int64 // mean time between authority-set change proposals; 0: none
	PowerLossShare   float64
	// DurableShare is the share of nodes whose stores keep every commit through a power loss;
	// the others may come back up to three commits behind their sign state.
	DurableShare       float64
	CrashInCommitShare float64 // share of crashes placed between two store writes
	CrashBeforeSend    float64 // share of crashes after persisting, before sending

	// Laggard, if > 0, keeps one honest authority down from the start until the others have
	// committed this many heights, then starts it: it must catch up by block sync, with the
	// Flooder's forged sync answers among those it hears.
	Laggard uint64

	LeakEquivocation bool
	// FloodFarRounds makes a Flooder's votes for future heights name rounds nobody reaches, so
	// they never become an equivocation that gets it removed (a laggard run needs its vote).
	FloodFarRounds bool

	// Trace, if set, receives a line per notable event (crash, restart, commit, partition):
	// replaying one seed with it set shows what happened.
	Trace func(string)
}

// DefaultConfig is the fault mix `make test` runs: f Byzantine authorities of behaviours chosen
// by the seed, a spare honest node the authorities may vote in, 5% loss, 5% duplication, 1–60 ms
// delays with 2% of messages held 1–4 s (past every timeout, so they arrive rounds or heights
// late), clocks off by up to 300 ms, a partition about every 2.5 s, a targeted withholding about
// every 3 s, a crash about every 3 s (a third of them power losses on nodes whose stores do not
// sync every commit, a third in the middle of a commit, some between persisting and sending), a
// set-change proposal about every 4 s, during the 10 s faulty phase; then 10 s healed in which
// every honest authority must gain at least 3 heights.
func DefaultConfig(seed uint64, n int) Config {
	c := Config{
		Seed: seed, N: n, Spares: 1, Byzantine: map[int]Behavior{},
		FaultMs: 10_000, HealMs: 10_000, MinProgress: 3,
		DropRate: 0.05, DupRate: 0.05, MinDelayMs: 1, MaxDelayMs: 60,
		SlowRate: 0.02, SlowMinMs: 1000, SlowMaxMs: 4000, MaxSkewMs: 300,
		PartitionEveryMs: 2500, WithholdEveryMs: 3000, CrashEveryMs: 3000, TxEveryMs: 150,
		SetChangeEveryMs: 4000, PowerLossShare: 0.35, CrashInCommitShare: 0.3, CrashBeforeSend: 0.15, DurableShare: 0.5,
		LeakEquivocation: true,
	}
	f := (n - 1) / 3
	r := rand.New(rand.NewPCG(seed, 0xb42))
	for i := 0; i < f; i++ {
		c.Byzantine[r.IntN(n)] = Behavior(1 + r.IntN(int(numBehaviors)-1))
	}
	return c
}

// LaggardConfig is a run in which one honest authority misses the first heights heights and
// catches up by block sync while a Flooder forges sync answers; little else goes wrong.
func LaggardConfig(seed uint64, n int, heights uint64) Config {
	c := DefaultConfig(seed, n)
	c.Byzantine = map[int]Behavior{0: Flooder}
	for i := 1; i < (n-1)/3; i++ {
		c.Byzantine[i] = Behavior(1 + int(seed+uint64(i))%(int(numBehaviors)-1))
	}
	c.Laggard = heights
	c.FloodFarRounds = true
	c.FaultMs, c.HealMs = 4_000, 15_000
	c.PartitionEveryMs, c.WithholdEveryMs, c.CrashEveryMs, c.SetChangeEveryMs = 0, 0, 0, 0
	c.SlowRate, c.DropRate = 0, 0.01
	return c
}

// Params are the genesis parameters of simulated networks: short timeouts keep runs small.
func Params() chain.Params {
	p := chain.DefaultParams()
	p.TimeoutProposeMs, p.TimeoutVoteMs, p.TimeoutDeltaMs, p.BlockIntervalMs = 300, 150, 100, 50
	p.MaxBlockTxs = 500
	p.EnrolmentsPerWindow = 1 << 30 // a few enrollers register every synthetic patient
	return p
}

// Result summarizes a run.
type Result struct {
	Seed       uint64
	Heights    uint64 // highest height committed by an honest node
	Delivered  int
	Dropped    int
	Txs        int // transactions committed
	Evidence   int // evidence transactions committed
	Crashes    int
	PowerLoss  int // crashes that lost unsynced writes
	InCommit   int // crashes between two writes of a commit
	BeforeSend int // crashes after persisting and before sending
	Partitions int
	Withholds  int
	SetChanges int // authority-set changes that took effect
	CatchUps   int // restarts more than 10 heights behind that caught up by sync
	CaughtUp   uint64
	Byzantine  int // messages sent by Byzantine nodes beyond honest behaviour
	Penalties  int // times an honest node blamed a Byzantine sender
	Violations []string
}

// Err is nil when the run broke no invariant.
func (r *Result) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	return fmt.Errorf("sim seed %d: %d violations:\n  %s", r.Seed, len(r.Violations), strings.Join(r.Violations, "\n  "))
}

// Add sums another run's counters into r.
func (r *Result) Add(o Result) {
	r.Heights += o.Heights
	r.Delivered += o.Delivered
	r.Dropped += o.Dropped
	r.Txs += o.Txs
	r.Evidence += o.Evidence
	r.Crashes += o.Crashes
	r.PowerLoss += o.PowerLoss
	r.InCommit += o.InCommit
	r.BeforeSend += o.BeforeSend
	r.Partitions += o.Partitions
	r.Withholds += o.Withholds
	r.SetChanges += o.SetChanges
	r.CatchUps += o.CatchUps
	r.CaughtUp += o.CaughtUp
	r.Byzantine += o.Byzantine
	r.Penalties += o.Penalties
}

// Summary is a one-line account of r's counters.
func (r *Result) Summary() string {
	return fmt.Sprintf("%d heights, %d txs and %d evidence committed, %d crashes (%d power losses, %d mid-commit, %d between persist and send), %d partitions, %d withholdings, %d set changes, %d sync catch-ups (%d heights), %d Byzantine messages (%d penalties), %d delivered, %d dropped",
		r.Heights, r.Txs, r.Evidence, r.Crashes, r.PowerLoss, r.InCommit, r.BeforeSend, r.Partitions, r.Withholds, r.SetChanges, r.CatchUps, r.CaughtUp, r.Byzantine, r.Penalties, r.Delivered, r.Dropped)
}

type node struct {
	idx      int
	key      chain.PrivKey
	behavior Behavior
	// durable: its store keeps every commit through a power loss. A node that is not durable
	// models an authority whose store can fall behind its sign state: SyncNone on a power
	// loss, or a data directory restored from an old backup. It loses up to its last
	// len(snaps) commits, never its sign state (kept at each commit: snaps).
	durable     bool
	snaps       []*store.Memory
	mem         *store.Memory
	rep         *replica.Replica
	up          bool
	incarnation int
	lastCrash   int64
	skew        int64
	// crashNext places the next crash: -1 none; 0 before sending the next output; n > 0
	// after n more store writes.
	crashNext int
	// restartHeight is the height it restarted at, for counting catch-ups.
	restartHeight uint64
}

type world struct {
	cfg      Config
	rng      *rand.Rand
	q        eventQueue
	now      int64
	genesis  *chain.Genesis
	cid      string // chain.ConsensusID: what votes and proposals are signed under
	licensor chain.PrivKey
	// enrollers are the first providers the workload registered (at most maxEnrollers): once
	// committed they co-sign patient registrations.
	enrollers []chain.PrivKey
	nodes     []*node
	byKey     map[chain.PubKey]int
	group     []int // partition group per node; nil when connected
	withhold  *withholding
	healed    bool
	dropRate  float64

	honestA, honestB, coalition []int
	forks                       map[hr]fork
	fakes                       map[uint64]*forgery

	junk, junkBad []*chain.Tx // a Flooder's junk, generated once
	farRound      uint32

	check checker
	res   Result
}

// Run simulates one network from cfg.Seed and checks every invariant.
func Run(cfg Config) Result {
	w := &world{
		cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), dropRate: cfg.DropRate,
		forks: map[hr]fork{}, fakes: map[uint64]*forgery{}, byKey: map[chain.PubKey]int{},
	}
	w.check.init(w)
	w.res.Seed = cfg.Seed
	if err := w.setup(); err != nil {
		w.violate("setup: %v", err)
		return w.res
	}
	healAt := w.now + cfg.FaultMs
	end := healAt + cfg.HealMs
	if cfg.Laggard > 0 {
		// The laggard phase comes first and lasts until it has caught up.
		healAt, end = w.now+1<<40, w.now+1<<40
	}
	w.q.schedule(healAt, w.heal)
	for w.q.Len() > 0 {
		ev := w.q.next()
		if ev.at > end {
			break
		}
		w.now = ev.at
		ev.run()
		if len(w.res.Violations) > 0 {
			return w.res
		}
		if cfg.Laggard > 0 && w.laggardDone() && healAt > w.now+cfg.HealMs {
			healAt, end = w.now, w.now+cfg.HealMs
			w.q.schedule(healAt, w.heal)
		}
		if cfg.Laggard > 0 && w.now-w.genesis.TimeMs > 600_000 {
			w.violate("laggard: not caught up after 600 simulated seconds")
			return w.res
		}
	}
	w.check.final()
	return w.res
}

func (w *world) trace(format string, args ...any) {
	if w.cfg.Trace != nil {
		w.cfg.Trace(fmt.Sprintf("t=%d ", w.now-w.genesis.TimeMs) + fmt.Sprintf(format, args...))
	}
}

func (w *world) violate(format string, args ...any) {
	w.res.Violations = append(w.res.Violations, fmt.Sprintf("t=%dms: ", w.now-w.genesis.TimeMs)+fmt.Sprintf(format, args...))
}

// reader adapts the seeded generator for key generation.
type reader struct{ r *rand.Rand }

func (r reader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.r.Uint32())
	}
	return len(p), nil
}

func (w *world) newKey() chain.PrivKey {
	k, err := chain.GenerateKey(reader{w.rng})
	if err != nil {
		panic(err) // a seeded reader never fails
	}
	return k
}

func (w *world) setup() error {
	var auths []chain.Authority
	for i := 0; i < w.cfg.N+w.cfg.Spares; i++ {
		k := w.newKey()
		n := &node{idx: i, key: k, behavior: w.cfg.Byzantine[i], crashNext: -1}
		if w.cfg.MaxSkewMs > 0 {
			n.skew = w.rng.Int64N(2*w.cfg.MaxSkewMs+1) - w.cfg.MaxSkewMs
		}
		// Half the nodes' stores keep every commit through a power loss; the others may lose
		// their last few commits (but never their sign state).
		n.durable = w.rng.Float64() < w.cfg.DurableShare
		n.mem = store.NewMemory()
		w.nodes = append(w.nodes, n)
		w.byKey[k.Public()] = i
		if i < w.cfg.N {
			auths = append(auths, chain.Authority{Key: k.Public(), Name: "sim-" + strconv.Itoa(i)})
		}
		switch {
		case n.behavior == Equivocator:
			w.coalition = append(w.coalition, i)
		case n.behavior == Honest && len(w.honestA) <= len(w.honestB):
			w.honestA = append(w.honestA, i)
		case n.behavior == Honest:
			w.honestB = append(w.honestB, i)
		}
	}
	w.licensor = w.newKey()
	w.genesis = &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: "medledger-sim", TimeMs: 1_700_000_000_000,
		Authorities: auths, LicensingAuthorities: []chain.Authority{{Key: w.licensor.Public(), Name: "sim licensing board"}},
		Params: Params(),
	}
	w.cid = chain.ConsensusID(w.genesis.ChainID, w.genesis.Hash())
	w.now = w.genesis.TimeMs
	for _, n := range w.nodes {
		if w.cfg.Laggard > 0 && n.idx == w.laggard() {
			continue
		}
		if err := w.start(n); err != nil {
			return err
		}
	}
	w.scheduleFaults()
	if w.cfg.Trace != nil {
		w.q.schedule(w.now+1000, w.traceRounds)
	}
	return nil
}

func (w *world) traceRounds() {
	var b strings.Builder
	for _, n := range w.nodes {
		if n.up {
			fmt.Fprintf(&b, " %d:%d/%d", n.idx, n.rep.Engine().Height(), n.rep.Engine().Round())
		} else {
			fmt.Fprintf(&b, " %d:down", n.idx)
		}
	}
	w.trace("rounds%s", b.String())
	w.q.schedule(w.now+1000, w.traceRounds)
}

// nodeNow is n's clock: simulated time plus its skew.
func (w *world) nodeNow(n *node) int64 { return w.now + n.skew }

func (w *world) exp(mean int64) int64 { return 1 + int64(w.rng.ExpFloat64()*float64(mean)) }

// honestNodes are the nodes whose behaviour is honest (spares included).
func (w *world) honest(n *node) bool { return n.behavior == Honest }

func (w *world) maxHonestHeight() uint64 {
	var h uint64
	for _, n := range w.nodes {
		if w.honest(n) {
			h = max(h, n.mem.Height())
		}
	}
	return h
}
