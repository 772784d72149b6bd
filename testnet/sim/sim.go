package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
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
)

func (b Behavior) String() string {
	return [...]string{"honest", "equivocator", "amnesiac", "invalid-proposer", "withholder"}[b]
}

// Config describes one simulated run. Times are simulated milliseconds.
type Config struct {
	Seed      uint64
	N         int
	Byzantine map[int]Behavior // by node index; absent means honest

	FaultMs     int64   // length of the faulty phase
	HealMs      int64   // length of the healed phase, in which liveness is required
	MinProgress uint64  // heights every honest node must gain after healing
	DropRate    float64 // during the faulty phase
	DupRate     float64
	MinDelayMs  int64
	MaxDelayMs  int64

	PartitionEveryMs int64 // mean time between partitions in the faulty phase; 0: none
	CrashEveryMs     int64 // mean time between crashes in the faulty phase; 0: none
	TxEveryMs        int64 // mean time between submitted transactions; 0: none

	LeakEquivocation bool

	// Trace, if set, receives a line per notable event (crash, restart, commit, partition):
	// replaying one seed with it set shows what happened.
	Trace func(string)
}

// DefaultConfig is the fault mix `make test` runs: a Byzantine authority of a behaviour chosen by
// the seed (for n >= 4), 5% loss, 5% duplication, 1–60 ms delays (so messages reorder), a
// partition about every 2.5 s and a crash about every 3 s during the 10 s faulty phase, then 10 s
// healed in which every honest node must gain at least 3 heights.
func DefaultConfig(seed uint64, n int) Config {
	c := Config{
		Seed: seed, N: n, Byzantine: map[int]Behavior{},
		FaultMs: 10_000, HealMs: 10_000, MinProgress: 3,
		DropRate: 0.05, DupRate: 0.05, MinDelayMs: 1, MaxDelayMs: 60,
		PartitionEveryMs: 2500, CrashEveryMs: 3000, TxEveryMs: 150,
		LeakEquivocation: true,
	}
	f := (n - 1) / 3
	r := rand.New(rand.NewPCG(seed, 0xb42))
	for i := 0; i < f; i++ {
		c.Byzantine[r.IntN(n)] = Behavior(1 + r.IntN(4))
	}
	return c
}

// Params are the genesis parameters of simulated networks: short timeouts keep runs small.
func Params() chain.Params {
	p := chain.DefaultParams()
	p.TimeoutProposeMs, p.TimeoutVoteMs, p.TimeoutDeltaMs, p.BlockIntervalMs = 300, 150, 100, 50
	p.MaxBlockTxs = 500
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
	Partitions int
	Violations []string
}

// Err is nil when the run broke no invariant.
func (r *Result) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	return fmt.Errorf("sim seed %d: %d violations:\n  %s", r.Seed, len(r.Violations), strings.Join(r.Violations, "\n  "))
}

type node struct {
	idx         int
	key         chain.PrivKey
	behavior    Behavior
	mem         *store.Memory
	rep         *replica.Replica
	up          bool
	incarnation int
	lastCrash   int64
	nonce       uint64
}

type hr struct {
	h uint64
	r uint32
}

type fork struct {
	x, y      chain.Hash
	blockY    *chain.Block
	proposalY *chain.Proposal
}

type signKey struct {
	authority chain.PubKey
	h         uint64
	r         uint32
	step      uint8 // 0 proposal, else vote type
}

type offence struct {
	authority chain.PubKey
	h         uint64
	r         uint32
	t         chain.VoteType
}

type observation struct {
	observer int
	at       int64
}

type world struct {
	cfg      Config
	rng      *rand.Rand
	q        eventQueue
	now      int64
	genesis  *chain.Genesis
	licensor chain.PrivKey
	nodes    []*node
	byKey    map[chain.PubKey]int
	group    []int // partition group per node; nil when connected
	healed   bool
	dropRate float64

	honestA, honestB, coalition []int
	forks                       map[hr]fork

	committed    map[uint64]chain.Hash
	committedTxs map[uint64]bool
	roots        map[uint64]chain.Hash
	signed       map[signKey]chain.Hash
	seen         []map[offence]chain.Hash // votes delivered to each node
	observed     map[offence]observation
	res          Result
	heightAtHeal uint64
}

// Run simulates one network from cfg.Seed and checks every invariant.
func Run(cfg Config) Result {
	w := &world{
		cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), dropRate: cfg.DropRate,
		forks: map[hr]fork{}, committed: map[uint64]chain.Hash{}, committedTxs: map[uint64]bool{}, roots: map[uint64]chain.Hash{},
		signed: map[signKey]chain.Hash{}, observed: map[offence]observation{}, byKey: map[chain.PubKey]int{},
	}
	w.res.Seed = cfg.Seed
	if err := w.setup(); err != nil {
		w.violate("setup: %v", err)
		return w.res
	}
	// Simulated time starts at genesis; phase lengths are relative to it.
	healAt := w.now + cfg.FaultMs
	end := healAt + cfg.HealMs
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
	}
	w.finalChecks()
	return w.res
}

func (w *world) trace(format string, args ...any) {
	if w.cfg.Trace != nil {
		w.cfg.Trace(fmt.Sprintf("t=%d ", w.now-w.genesis.TimeMs) + fmt.Sprintf(format, args...))
	}
}

func (w *world) violate(format string, args ...any) {
	w.res.Violations = append(w.res.Violations, fmt.Sprintf("t=%dms: ", w.now)+fmt.Sprintf(format, args...))
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
	for i := 0; i < w.cfg.N; i++ {
		k := w.newKey()
		n := &node{idx: i, key: k, behavior: w.cfg.Byzantine[i], mem: store.NewMemory()}
		w.nodes = append(w.nodes, n)
		w.byKey[k.Public()] = i
		auths = append(auths, chain.Authority{Key: k.Public(), Name: "sim-" + strconv.Itoa(i)})
		w.seen = append(w.seen, map[offence]chain.Hash{})
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
	w.now = w.genesis.TimeMs
	for _, n := range w.nodes {
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

// amnesiac is a store that forgets what its authority signed.
type amnesiac struct{ store.Store }

func (amnesiac) SignState() ([]byte, map[chain.Hash][]byte, error) { return nil, nil, nil }

func (w *world) start(n *node) error {
	var st store.Store = n.mem
	if n.behavior == Amnesiac {
		st = amnesiac{n.mem}
	}
	key := n.key
	rep, err := replica.New(replica.Config{Genesis: w.genesis, Key: &key}, st)
	if err != nil {
		return fmt.Errorf("node %d: %w", n.idx, err)
	}
	n.rep, n.up = rep, true
	n.incarnation++
	out, err := rep.Start(w.now)
	w.after(n, out, err)
	return nil
}

func (w *world) exp(mean int64) int64 { return 1 + int64(w.rng.ExpFloat64()*float64(mean)) }

func (w *world) scheduleFaults() {
	if w.cfg.PartitionEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.PartitionEveryMs), w.partition)
	}
	if w.cfg.CrashEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.CrashEveryMs), w.crashOne)
	}
	if w.cfg.TxEveryMs > 0 {
		w.q.schedule(w.now+w.exp(w.cfg.TxEveryMs), w.submitTx)
	}
	for _, n := range w.nodes {
		if n.behavior == Amnesiac {
			n := n
			w.q.schedule(w.now+w.exp(1500), func() { w.amnesia(n) })
		}
	}
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

func (w *world) crashOne() {
	if w.healed {
		return
	}
	n := w.nodes[w.rng.IntN(len(w.nodes))]
	if n.up {
		w.crash(n)
		w.q.schedule(w.now+100+w.rng.Int64N(3000), func() { w.restart(n) })
	}
	w.q.schedule(w.now+w.exp(w.cfg.CrashEveryMs), w.crashOne)
}

func (w *world) crash(n *node) {
	w.res.Crashes++
	w.trace("node %d crashed at height %d", n.idx, n.mem.Height())
	n.up = false
	n.incarnation++
	n.lastCrash = w.now
	n.rep = nil
}

func (w *world) restart(n *node) {
	if n.up {
		return
	}
	n.mem = n.mem.CrashClone()
	w.trace("node %d restarts at height %d", n.idx, n.mem.Height())
	if err := w.start(n); err != nil {
		w.violate("restart: %v", err)
	}
}

func (w *world) amnesia(n *node) {
	if n.up {
		w.crash(n)
		w.restart(n)
	}
	w.q.schedule(w.now+w.exp(1500), func() { w.amnesia(n) })
}

func (w *world) heal() {
	w.healed = true
	w.group = nil
	w.dropRate = 0
	for _, n := range w.nodes {
		if !n.up {
			w.restart(n)
		}
	}
	w.heightAtHeal = w.maxHonestHeight()
}

func (w *world) maxHonestHeight() uint64 {
	var h uint64
	for _, n := range w.nodes {
		if n.behavior == Honest {
			h = max(h, n.mem.Height())
		}
	}
	return h
}

// submitTx registers a synthetic patient (or, sometimes, a provider) through a random live node.
func (w *world) submitTx() {
	w.q.schedule(w.now+w.exp(w.cfg.TxEveryMs), w.submitTx)
	n := w.nodes[w.rng.IntN(len(w.nodes))]
	if !n.up {
		return
	}
	k := w.newKey()
	enc := make([]byte, 32)
	reader{w.rng}.Read(enc)
	var tx *chain.Tx
	if w.rng.IntN(5) == 0 {
		lic := chain.Licence{Subject: k.Public(), Number: fmt.Sprintf("LIC-%d", w.rng.IntN(1_000_000)), Jurisdiction: "SIM", NotAfter: w.now + 365*24*3600*1000}
		lic.Sign(w.licensor, w.genesis.ChainID)
		tx = chain.NewTx(k, w.genesis.ChainID, chain.TxRegisterProvider, 1, &chain.RegisterProvider{Licence: lic, EncryptionKey: enc})
	} else {
		tx = chain.NewTx(k, w.genesis.ChainID, chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: enc})
	}
	_, out, err := n.rep.SubmitTx(tx)
	if err != nil {
		if !errors.Is(err, replica.ErrMempoolFull) {
			w.violate("node %d refused a valid transaction: %v", n.idx, err)
		}
		return
	}
	w.handleOutput(n, out)
}

func (w *world) after(n *node, out replica.Output, err error) {
	if err != nil {
		if errors.Is(err, replica.ErrInvalid) {
			return // the sender's fault; scored by a real node
		}
		if n.behavior == Honest {
			w.violate("node %d halted: %v", n.idx, err)
		}
		w.crash(n)
		return
	}
	w.handleOutput(n, out)
}

func (w *world) handleOutput(n *node, out replica.Output) {
	for _, b := range out.Committed {
		w.checkCommit(n, b)
	}
	for _, m := range out.Broadcast {
		w.broadcast(n, m)
	}
	for _, a := range out.Unicast {
		to, err := strconv.Atoi(string(a.To))
		if err == nil && to >= 0 && to < len(w.nodes) && w.sends(n) {
			w.transmit(n.idx, to, a.Msg)
		}
	}
	inc := n.incarnation
	for _, t := range out.Timeouts {
		t := t
		w.q.schedule(w.now+t.DelayMs, func() {
			if n.up && n.incarnation == inc {
				out, err := n.rep.HandleTimeout(t, w.now)
				w.after(n, out, err)
			}
		})
	}
}

func (w *world) sends(n *node) bool { return n.behavior != Withholder }

func (w *world) others(n *node) []int {
	var out []int
	for i := range w.nodes {
		if i != n.idx {
			out = append(out, i)
		}
	}
	return out
}

func (w *world) broadcast(n *node, m *replica.Message) {
	if m.Vote != nil {
		w.trace("node %d sends %s %d/%d %s", n.idx, m.Vote.Type, m.Vote.Height, m.Vote.Round, m.Vote.BlockHash.Short())
	}
	if m.Proposal != nil {
		w.trace("node %d proposes %d/%d %s pol %d", n.idx, m.Proposal.Height, m.Proposal.Round, m.Proposal.BlockHash.Short(), m.Proposal.POLRound)
	}
	if n.behavior == Honest {
		w.recordSigned(n, m)
	}
	if m.Tx != nil && m.Tx.Kind == chain.TxEvidence {
		w.checkEvidenceTx(m.Tx, "broadcast by node "+strconv.Itoa(n.idx))
	}
	switch {
	case !w.sends(n):
		return
	case n.behavior == InvalidProposer && m.Proposal != nil:
		m = w.corrupt(n, m)
	case n.behavior == Equivocator && (m.Proposal != nil || m.Vote != nil):
		w.equivocate(n, m)
		return
	}
	for _, to := range w.others(n) {
		w.transmit(n.idx, to, m)
	}
}

// corrupt replaces a proposal's block with one whose state root is wrong.
func (w *world) corrupt(n *node, m *replica.Message) *replica.Message {
	b := *m.Block
	b.Header.StateRoot[0] ^= 0xff
	p := *m.Proposal
	p.BlockHash = b.Hash()
	p.Sign(n.key, w.genesis.ChainID)
	return &replica.Message{Version: replica.MessageVersion, Proposal: &p, Block: &b}
}

// equivocate splits the honest authorities: group A and the coalition see version X, group B
// sees version Y of the same proposal or vote.
func (w *world) equivocate(n *node, m *replica.Message) {
	toA := append(append([]int{}, w.honestA...), w.coalition...)
	toB := w.honestB
	if m.Proposal != nil {
		key := hr{m.Proposal.Height, m.Proposal.Round}
		f, ok := w.forks[key]
		if !ok {
			b := *m.Block
			b.Header.Time++
			p := *m.Proposal
			p.BlockHash = b.Hash()
			p.Sign(n.key, w.genesis.ChainID)
			f = fork{x: m.Proposal.BlockHash, y: p.BlockHash, blockY: &b, proposalY: &p}
			w.forks[key] = f
		}
		w.sendAll(n, toA, m)
		w.sendAll(n, toB, &replica.Message{Version: replica.MessageVersion, Proposal: f.proposalY, Block: f.blockY})
		return
	}
	v := m.Vote
	alt := *v
	f, ok := w.forks[hr{v.Height, v.Round}]
	switch {
	case ok && v.BlockHash == f.x:
		alt.BlockHash = f.y
	case w.cfg.LeakEquivocation && w.rng.IntN(4) == 0:
		reader{w.rng}.Read(alt.BlockHash[:])
	default:
		w.sendAll(n, w.others(n), m)
		return
	}
	alt.Sign(n.key, w.genesis.ChainID)
	altMsg := &replica.Message{Version: replica.MessageVersion, Vote: &alt}
	w.sendAll(n, toA, m)
	w.sendAll(n, toB, altMsg)
	if w.cfg.LeakEquivocation && len(w.honestA) > 0 && w.rng.IntN(2) == 0 {
		w.transmit(n.idx, w.honestA[w.rng.IntN(len(w.honestA))], altMsg)
	}
}

func (w *world) sendAll(n *node, to []int, m *replica.Message) {
	for _, i := range to {
		if i != n.idx {
			w.transmit(n.idx, i, m)
		}
	}
}

func (w *world) transmit(from, to int, m *replica.Message) {
	if w.group != nil && w.group[from] != w.group[to] {
		w.res.Dropped++
		return
	}
	if w.rng.Float64() < w.dropRate {
		w.res.Dropped++
		return
	}
	data := m.Encode()
	copies := 1
	if w.rng.Float64() < w.cfg.DupRate {
		copies = 2
	}
	for range copies {
		delay := w.cfg.MinDelayMs + w.rng.Int64N(w.cfg.MaxDelayMs-w.cfg.MinDelayMs+1)
		w.q.schedule(w.now+delay, func() { w.deliver(from, to, data) })
	}
}

func (w *world) deliver(from, to int, data []byte) {
	n := w.nodes[to]
	if !n.up {
		w.res.Dropped++
		return
	}
	w.res.Delivered++
	m, err := replica.DecodeMessage(data)
	if err != nil {
		w.violate("node %d sent an undecodable message: %v", from, err)
		return
	}
	if m.Vote != nil && n.behavior == Honest {
		w.observe(n, m.Vote)
	}
	out, err := n.rep.Handle(replica.PeerID(strconv.Itoa(from)), m, w.now)
	if err != nil && errors.Is(err, replica.ErrInvalid) && w.nodes[from].behavior == Honest && n.behavior == Honest {
		w.violate("node %d rejected node %d's %s: %v", to, from, m.Kind(), err)
	}
	w.after(n, out, err)
}

// observe records equivocations that an honest node could have seen: two different votes by one
// authority for the same height, round and type, delivered while the node decides that height.
func (w *world) observe(n *node, v *chain.Vote) {
	if v.Height != n.rep.Engine().Height() {
		return
	}
	o := offence{authority: v.Authority, h: v.Height, r: v.Round, t: v.Type}
	prev, ok := w.seen[n.idx][o]
	if !ok {
		w.seen[n.idx][o] = v.BlockHash
		return
	}
	if prev != v.BlockHash {
		if _, done := w.observed[o]; !done {
			w.observed[o] = observation{observer: n.idx, at: w.now}
		}
	}
}

func (w *world) recordSigned(n *node, m *replica.Message) {
	var k signKey
	var h chain.Hash
	switch {
	case m.Proposal != nil:
		k, h = signKey{m.Proposal.Proposer, m.Proposal.Height, m.Proposal.Round, 0}, m.Proposal.BlockHash
	case m.Vote != nil:
		k, h = signKey{m.Vote.Authority, m.Vote.Height, m.Vote.Round, uint8(m.Vote.Type)}, m.Vote.BlockHash
	default:
		return
	}
	if prev, ok := w.signed[k]; ok && prev != h {
		w.violate("honest node %d double-signed at %d/%d step %d: %s and %s", n.idx, k.h, k.r, k.step, prev.Short(), h.Short())
	}
	w.signed[k] = h
}

func (w *world) checkEvidenceTx(tx *chain.Tx, where string) {
	body, err := chain.DecodePayload(tx.Kind, tx.Payload)
	if err != nil {
		w.violate("evidence %s does not decode: %v", where, err)
		return
	}
	ev := body.(*chain.Evidence)
	i, ok := w.byKey[ev.A.Authority]
	if !ok || w.nodes[i].behavior == Honest {
		w.violate("evidence %s accuses honest authority %s", where, ev.A.Authority.Short())
	}
}

func (w *world) checkCommit(n *node, b *chain.Block) {
	h, hash := b.Header.Height, b.Hash()
	w.trace("node %d committed %d %s (%d txs) root %s", n.idx, h, hash.Short(), len(b.Txs), n.mem.StateRoot().Short())
	if n.behavior != Honest {
		return
	}
	if prev, ok := w.committed[h]; ok && prev != hash {
		w.violate("agreement: node %d committed %s at height %d, another honest node %s", n.idx, hash.Short(), h, prev.Short())
		return
	}
	w.committed[h] = hash
	w.res.Heights = max(w.res.Heights, h)
	if _, counted := w.committedTxs[h]; !counted {
		w.committedTxs[h] = true
		w.res.Txs += len(b.Txs)
		for _, tx := range b.Txs {
			if tx.Kind == chain.TxEvidence {
				w.res.Evidence++
				w.checkEvidenceTx(tx, fmt.Sprintf("committed at %d", h))
			}
		}
	}
	// Several blocks can commit in one call (block sync); the store's root is that of the last.
	// Earlier ones are still covered: the next header's StateRoot must match the local root.
	if h == n.mem.Height() {
		root := n.mem.StateRoot()
		if prev, ok := w.roots[h]; ok && prev != root {
			w.violate("state roots differ at height %d: node %d has %s, another %s", h, n.idx, root.Short(), prev.Short())
		}
		w.roots[h] = root
	}
	prevState, err := n.mem.StateAt(h - 1)
	if err != nil {
		w.violate("node %d: state at %d: %v", n.idx, h-1, err)
		return
	}
	set, _, err := state.Authorities(prevState)
	if err != nil {
		w.violate("node %d: authorities at %d: %v", n.idx, h, err)
		return
	}
	if b.Header.AuthoritiesHash != set.Hash() {
		w.violate("block %d names authority set %s, ledger says %s", h, b.Header.AuthoritiesHash.Short(), set.Hash().Short())
	}
	cert, err := n.mem.Cert(h)
	if err != nil {
		w.violate("node %d: certificate %d: %v", n.idx, h, err)
		return
	}
	if err := cert.Verify(w.genesis.ChainID, set, h, hash); err != nil {
		w.violate("node %d: invalid certificate at %d: %v", n.idx, h, err)
	}
}

// evidenceGraceMs is how long before the end of a run an equivocation must have been seen for
// the checker to require its evidence on the ledger.
const evidenceGraceMs = 5000

func (w *world) finalChecks() {
	var final *node
	for _, n := range w.nodes {
		if n.behavior != Honest {
			continue
		}
		if n.mem.Height() < w.heightAtHeal+w.cfg.MinProgress {
			w.violate("liveness: honest node %d at height %d, network was at %d when it healed %d ms earlier (need +%d)",
				n.idx, n.mem.Height(), w.heightAtHeal, w.cfg.HealMs, w.cfg.MinProgress)
		}
		if final == nil || n.mem.Height() > final.mem.Height() {
			final = n
		}
	}
	if final == nil {
		return
	}
	_, afterNext, err := state.Authorities(final.mem.State())
	if err != nil {
		w.violate("final authorities: %v", err)
		return
	}
	offenders := map[chain.PubKey]int64{}
	for o, obs := range w.observed {
		// Evidence needs a few blocks to commit: equivocations seen in the last seconds of a run
		// are not required on the ledger yet, nor those whose observer crashed (losing its
		// mempool) before the evidence could spread.
		if w.nodes[obs.observer].lastCrash < obs.at && obs.at <= w.now-evidenceGraceMs {
			if at, ok := offenders[o.authority]; !ok || obs.at < at {
				offenders[o.authority] = obs.at
			}
		}
	}
	keys := make([]chain.PubKey, 0, len(offenders))
	for k := range offenders {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b chain.PubKey) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		if afterNext.Contains(k) {
			w.violate("evidence: node %d (%s) was seen equivocating at t=%d but is still an authority", w.byKey[k], w.nodes[w.byKey[k]].behavior, offenders[k]-w.genesis.TimeMs)
		}
	}
}
