package consensus

import (
	"fmt"
	"slices"
	"testing"

	"github.com/medledger/medledger/chain"
)

// A test network in the style of etcd-io/raft's raft_test.go: every engine lives on one
// goroutine, messages wait in a FIFO queue and timeouts in a virtual-time list, and the test
// decides what is delivered, dropped or crashed. Nothing sleeps.

const testChain = "test-chain"

var testParams = chain.Params{
	MaxBlockTxs: 100, MaxBlockBytes: 1 << 20,
	TimeoutProposeMs: 1000, TimeoutVoteMs: 500, TimeoutDeltaMs: 500,
	BlockIntervalMs: 200, MaxClockDriftMs: 5000,
}

const genesisTime = 1_700_000_000_000

func testKey(i int) chain.PrivKey {
	seed := make([]byte, 32)
	seed[0], seed[1] = byte(i), 0xA5
	k, err := chain.PrivKeyFromSeed(seed)
	if err != nil {
		panic(err)
	}
	return k
}

// testKeys returns n keys sorted like the authority set, so node i is Authorities[i] and the
// proposer of (h, r) is node (h+r) % n.
func testKeys(n int) ([]chain.PrivKey, *chain.AuthoritySet) {
	keys := make([]chain.PrivKey, n)
	members := make([]chain.Authority, n)
	for i := range keys {
		keys[i] = testKey(i)
		members[i] = chain.Authority{Key: keys[i].Public(), Name: fmt.Sprintf("a%d", i)}
	}
	set, err := chain.NewAuthoritySet(members)
	if err != nil {
		panic(err)
	}
	slices.SortFunc(keys, func(a, b chain.PrivKey) int { return set.Index(a.Public()) - set.Index(b.Public()) })
	return keys, set
}

type hrs struct {
	h    uint64
	r    uint32
	step Step
}

type node struct {
	key       *chain.PrivKey
	eng       *Engine
	disk      []byte // the persisted sign state
	gen       int    // bumps on restart, so an old engine's timers are dropped
	down      bool
	commits   []*Commit
	evidence  []*chain.Evidence
	sent      map[hrs]Message // everything this key ever sent, across restarts
	requested []BlockRequest
}

type envelope struct {
	from, to int
	m        Message
}

type timer struct {
	at   int64
	node int
	gen  int
	t    Timeout
}

type network struct {
	t      *testing.T
	set    *chain.AuthoritySet
	nodes  []*node
	queue  []envelope
	timers []timer
	now    int64

	// drop decides whether a message is lost; valid is a node's verdict on a block.
	drop  func(from, to int, m Message) bool
	valid func(to int, b *chain.Block) bool
	// crash, if set, is asked before each Ready is handled; see crashMode.
	crash func(i int, rd Ready) crashMode
	// noSync turns off the simulated block sync, so that only consensus messages help laggards.
	noSync bool
}

type crashMode int

const (
	noCrash            crashMode = iota
	crashBeforePersist           // the Ready is lost entirely
	crashAfterPersist            // the sign state reached disk, the messages never left
)

// newNetwork builds n authorities plus the given extra nodes (observers: nil key, or a key
// outside the set).
func newNetwork(t *testing.T, n int, extra ...*chain.PrivKey) *network {
	keys, set := testKeys(n)
	nw := &network{t: t, set: set, now: genesisTime}
	for i := range keys {
		nw.nodes = append(nw.nodes, &node{key: &keys[i], sent: map[hrs]Message{}})
	}
	for _, k := range extra {
		nw.nodes = append(nw.nodes, &node{key: k, sent: map[hrs]Message{}})
	}
	for i := range nw.nodes {
		nw.boot(i)
	}
	return nw
}

func (nw *network) cfg(i int) Config {
	return Config{ChainID: testChain, Key: nw.nodes[i].key, Params: testParams}
}

// boot starts (or restarts) node i from its committed blocks and persisted sign state.
func (nw *network) boot(i int) {
	nd := nw.nodes[i]
	s := Start{Height: uint64(len(nd.commits)) + 1, Authorities: nw.set, LastBlockTime: genesisTime}
	if k := len(nd.commits); k > 0 {
		s.LastBlockTime = nd.commits[k-1].Block.Header.Time
	}
	if nd.disk != nil {
		ss, err := DecodeSignState(nd.disk)
		if err != nil {
			nw.t.Fatalf("node %d: persisted sign state: %v", i, err)
		}
		s.Signed = ss
	}
	e, err := New(nw.cfg(i), s)
	if err != nil {
		nw.t.Fatalf("node %d: %v", i, err)
	}
	nd.eng, nd.down = e, false
	nd.gen++
	e.Start(nw.now)
	nw.process(i)
}

// restart simulates kill -9: memory is lost, the disk and committed blocks stay.
func (nw *network) restart(i int) { nw.boot(i) }

// process handles node i's Ready the way the replica must: persist, send, arm, build, commit.
func (nw *network) process(i int) {
	nd := nw.nodes[i]
	for nd.eng.HasReady() {
		rd := nd.eng.Ready()
		mode := noCrash
		if nw.crash != nil {
			mode = nw.crash(i, rd)
		}
		if mode == crashBeforePersist {
			nw.restart(i)
			return
		}
		if rd.SignState != nil {
			nd.disk = EncodeSignState(rd.SignState)
		}
		if mode == crashAfterPersist {
			nw.restart(i)
			return
		}
		for _, m := range append(rd.Messages, rd.Resends...) {
			nw.checkSent(i, m)
			for j := range nw.nodes {
				if j != i {
					nw.queue = append(nw.queue, envelope{from: i, to: j, m: m})
				}
			}
		}
		for _, t := range rd.Timeouts {
			nw.timers = append(nw.timers, timer{at: nw.now + t.DelayMs, node: i, gen: nd.gen, t: t})
		}
		nd.evidence = append(nd.evidence, rd.Evidence...)
		if req := rd.NeedBlock; req != nil {
			nd.requested = append(nd.requested, *req)
			nd.eng.Propose(nw.buildBlock(i, *req), nw.now)
		}
		if c := rd.Committed; c != nil {
			nw.checkCommit(i, c)
			nd.commits = append(nd.commits, c)
			nd.eng.NewHeight(Start{Height: c.Block.Header.Height + 1, Authorities: nw.set, LastBlockTime: c.Block.Header.Time}, nw.now)
		}
	}
}

// buildBlock makes an empty block; proposer and round go into it so that different rounds and
// proposers give different blocks.
func (nw *network) buildBlock(i int, req BlockRequest) *chain.Block {
	nd := nw.nodes[i]
	h := chain.Header{
		Version: chain.HeaderVersion, ChainID: testChain, Height: req.Height,
		Time: req.MinTime + int64(req.Round), TxRoot: chain.TxRoot(nil),
		AuthoritiesHash: nw.set.Hash(), NextAuthoritiesHash: nw.set.Hash(), Proposer: nd.key.Public(),
	}
	if k := len(nd.commits); k > 0 {
		h.PrevHash = nd.commits[k-1].Block.Hash()
	}
	return &chain.Block{Version: chain.BlockVersion, Header: h}
}

// checkSent asserts that a key never signs two different messages at one (height, round, step)
// and that what it sends was persisted first.
func (nw *network) checkSent(i int, m Message) {
	nd := nw.nodes[i]
	if nd.key == nil {
		nw.t.Fatalf("observer %d sent a message", i)
	}
	var at hrs
	if m.Vote != nil && m.Vote.Authority != nd.key.Public() {
		return // a relayed vote of another authority (POL or last commit)
	}
	if m.Vote != nil {
		at = hrs{m.Vote.Height, m.Vote.Round, StepPrevote}
		if m.Vote.Type == chain.Precommit {
			at.step = StepPrecommit
		}
		if err := m.Vote.VerifySig(testChain); err != nil {
			nw.t.Fatalf("node %d sent a bad vote: %v", i, err)
		}
	} else {
		at = hrs{m.Proposal.Height, m.Proposal.Round, StepPropose}
		if err := m.Proposal.VerifySig(testChain); err != nil || m.Proposal.BlockHash != m.Block.Hash() {
			nw.t.Fatalf("node %d sent a bad proposal: %v", i, err)
		}
	}
	if prev, ok := nd.sent[at]; ok && !sameMessage(prev, m) {
		nw.t.Fatalf("node %d signed conflicting messages at %+v:\n%+v\n%+v", i, at, prev, m)
	}
	nd.sent[at] = m
	ss, err := DecodeSignState(nd.disk)
	if err != nil {
		nw.t.Fatalf("node %d sent %+v with no persisted sign state: %v", i, at, err)
	}
	if ss.Height < at.h || ss.Height == at.h && (ss.Round < at.r || ss.Round == at.r && ss.Step < at.step) {
		nw.t.Fatalf("node %d sent %+v before persisting it (disk at %d/%d/%s)", i, at, ss.Height, ss.Round, ss.Step)
	}
}

func sameMessage(a, b Message) bool {
	if a.Vote != nil && b.Vote != nil {
		return *a.Vote == *b.Vote
	}
	if a.Proposal != nil && b.Proposal != nil {
		return *a.Proposal == *b.Proposal
	}
	return false
}

// checkCommit verifies the certificate and that every node commits the same block per height.
func (nw *network) checkCommit(i int, c *Commit) {
	h := c.Block.Header.Height
	if want := uint64(len(nw.nodes[i].commits)) + 1; h != want {
		nw.t.Fatalf("node %d committed height %d, expected %d", i, h, want)
	}
	if err := c.Cert.Verify(testChain, nw.set, h, c.Block.Hash()); err != nil {
		nw.t.Fatalf("node %d: certificate for height %d: %v", i, h, err)
	}
	if !slices.IsSortedFunc(c.Cert.Sigs, func(a, b chain.CommitSig) int { return nw.set.Index(a.Authority) - nw.set.Index(b.Authority) }) {
		nw.t.Fatalf("node %d: certificate signatures not sorted", i)
	}
	for j, o := range nw.nodes {
		if uint64(len(o.commits)) >= h && o.commits[h-1].Block.Hash() != c.Block.Hash() {
			nw.t.Fatalf("SAFETY: nodes %d and %d committed different blocks at height %d", i, j, h)
		}
	}
}

// deliver hands one message to its recipient, verifying signatures as the driver does.
func (nw *network) deliver(env envelope) {
	nd := nw.nodes[env.to]
	if nd.down || (nw.drop != nil && nw.drop(env.from, env.to, env.m)) {
		return
	}
	if v := env.m.Vote; v != nil {
		if v.VerifySig(testChain) != nil {
			return
		}
		nd.eng.HandleVote(v, nw.now)
	} else {
		p, b := env.m.Proposal, env.m.Block
		if p.VerifySig(testChain) != nil {
			return
		}
		valid := b.Validate() == nil
		if nw.valid != nil {
			valid = valid && nw.valid(env.to, b)
		}
		nd.eng.HandleProposal(p, b, valid, nw.now)
	}
	nw.process(env.to)
}

// step delivers the next message or, with none in flight, advances time to the next timeout.
// It reports false when nothing is left to do.
func (nw *network) step() bool {
	if len(nw.queue) > 0 {
		env := nw.queue[0]
		nw.queue = nw.queue[1:]
		nw.deliver(env)
		return true
	}
	if nw.catchUp() {
		return true
	}
	for len(nw.timers) > 0 {
		k := 0
		for j, tm := range nw.timers {
			if tm.at < nw.timers[k].at {
				k = j
			}
		}
		tm := nw.timers[k]
		nw.timers = slices.Delete(nw.timers, k, k+1)
		nd := nw.nodes[tm.node]
		if nd.down || tm.gen != nd.gen {
			continue
		}
		nw.now = max(nw.now, tm.at)
		nd.eng.HandleTimeout(tm.t, nw.now)
		nw.process(tm.node)
		return true
	}
	return false
}

// catchUp plays the block-sync protocol (the replica's job, not the engine's): a live node
// behind another gets the next committed block and certificate and moves on to the next height.
func (nw *network) catchUp() bool {
	for i, nd := range nw.nodes {
		if nd.down || nw.noSync {
			continue
		}
		h := len(nd.commits)
		for _, o := range nw.nodes {
			if len(o.commits) > h {
				c := o.commits[h]
				nw.checkCommit(i, c)
				nd.commits = append(nd.commits, c)
				nd.eng.NewHeight(Start{Height: c.Block.Header.Height + 1, Authorities: nw.set, LastBlockTime: c.Block.Header.Time}, nw.now)
				nw.process(i)
				return true
			}
		}
	}
	return false
}

// runUntil steps until cond holds, failing after a generous number of steps.
func (nw *network) runUntil(what string, cond func() bool) {
	nw.t.Helper()
	for range 200_000 {
		if cond() {
			return
		}
		if !nw.step() {
			nw.t.Fatalf("network idle before %s", what)
		}
	}
	for i, nd := range nw.nodes {
		nw.t.Logf("node %d: height %d round %d step %s commits %d", i, nd.eng.Height(), nd.eng.Round(), nd.eng.Step(), len(nd.commits))
	}
	nw.t.Fatalf("gave up waiting for %s", what)
}

// allCommitted reports whether every live node has committed at least height h.
func (nw *network) allCommitted(h int) func() bool {
	return func() bool {
		for _, nd := range nw.nodes {
			if !nd.down && len(nd.commits) < h {
				return false
			}
		}
		return true
	}
}

// stop takes node i down, including what it had queued but not yet delivered.
func (nw *network) stop(i int) {
	nw.nodes[i].down = true
	nw.queue = slices.DeleteFunc(nw.queue, func(env envelope) bool { return env.from == i })
}
