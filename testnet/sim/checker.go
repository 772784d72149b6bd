package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/consensus"
	"github.com/medledger/medledger/consensus/replica"
)

// The invariants the simulation checks, after every event unless noted:
//
//   - agreement: honest nodes commit one block hash per height;
//   - identical state roots, headers that name the ledger's authority sets, valid certificates;
//   - an honest authority never signs two different messages for one height, round and step;
//   - an honest authority prevotes for a block only if the proposer of that round proposed it;
//   - locking: an honest authority that precommitted B in round r prevotes for another block in
//     a later round only if a quorum prevoted that block in some round from r on (a proof of
//     lock it may have seen);
//   - evidence only accuses Byzantine authorities, and every authority seen equivocating is out
//     of the set by the end;
//   - honest nodes never blame each other for invalid input;
//   - bounded resources (every 500 ms): no honest mempool holds a transaction beyond the nonce
//     window or older than its time to live, and the next-height buffer stays under its cap;
//   - liveness: every honest node gains MinProgress heights after the network heals, and a
//     laggard catches up.
type checker struct {
	w *world

	committed    map[uint64]chain.Hash
	committedTxs map[uint64]bool
	roots        map[uint64]chain.Hash
	sets         map[uint64]*chain.AuthoritySet // the set certifying each height, once read
	setSeen      map[uint64]bool                // heights whose set change was counted
	signedBy     map[signKey]chain.Hash
	proposals    map[hr]map[chain.Hash][]chain.PubKey // who proposed each block, by height and round
	prevotes     map[hr]map[chain.Hash]map[chain.PubKey]bool
	locks        map[lockKey]lock
	seen         []map[offence]chain.Hash // votes delivered to each node
	observed     map[offence]observation
	heightAtHeal uint64
	catchUp      map[int]uint64 // node -> height it must reach to count as caught up
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

type lockKey struct {
	node int
	h    uint64
}

type lock struct {
	round uint32
	block chain.Hash
}

func (c *checker) init(w *world) {
	*c = checker{
		w: w, committed: map[uint64]chain.Hash{}, committedTxs: map[uint64]bool{}, roots: map[uint64]chain.Hash{},
		sets: map[uint64]*chain.AuthoritySet{}, setSeen: map[uint64]bool{}, signedBy: map[signKey]chain.Hash{}, proposals: map[hr]map[chain.Hash][]chain.PubKey{},
		prevotes: map[hr]map[chain.Hash]map[chain.PubKey]bool{}, locks: map[lockKey]lock{}, observed: map[offence]observation{},
		catchUp: map[int]uint64{},
	}
}

func (c *checker) healed() { c.heightAtHeal = c.w.maxHonestHeight() }

// sent records every proposal and prevote anyone puts on the wire.
func (c *checker) sent(from int, m *replica.Message) {
	switch {
	case m.Proposal != nil:
		k := hr{m.Proposal.Height, m.Proposal.Round}
		if c.proposals[k] == nil {
			c.proposals[k] = map[chain.Hash][]chain.PubKey{}
		}
		ps := c.proposals[k][m.Proposal.BlockHash]
		if !slices.Contains(ps, m.Proposal.Proposer) {
			c.proposals[k][m.Proposal.BlockHash] = append(ps, m.Proposal.Proposer)
		}
	case m.Vote != nil && m.Vote.Type == chain.Prevote:
		k := hr{m.Vote.Height, m.Vote.Round}
		if c.prevotes[k] == nil {
			c.prevotes[k] = map[chain.Hash]map[chain.PubKey]bool{}
		}
		if c.prevotes[k][m.Vote.BlockHash] == nil {
			c.prevotes[k][m.Vote.BlockHash] = map[chain.PubKey]bool{}
		}
		c.prevotes[k][m.Vote.BlockHash][m.Vote.Authority] = true
	}
}

// signed checks what an honest node is about to send under its own signature.
func (c *checker) signed(n *node, m *replica.Message) {
	w := c.w
	var k signKey
	var h chain.Hash
	switch {
	case m.Proposal != nil && m.Proposal.Proposer == n.key.Public():
		k, h = signKey{m.Proposal.Proposer, m.Proposal.Height, m.Proposal.Round, 0}, m.Proposal.BlockHash
	case m.Vote != nil && m.Vote.Authority == n.key.Public():
		k, h = signKey{m.Vote.Authority, m.Vote.Height, m.Vote.Round, uint8(m.Vote.Type)}, m.Vote.BlockHash
		c.voteRules(n, m.Vote)
	default:
		return
	}
	if prev, ok := c.signedBy[k]; ok && prev != h {
		w.violate("honest node %d double-signed at %d/%d step %d: %s and %s", n.idx, k.h, k.r, k.step, prev.Short(), h.Short())
	}
	c.signedBy[k] = h
}

// voteRules checks an honest vote against the round's proposer and the voter's lock.
func (c *checker) voteRules(n *node, v *chain.Vote) {
	w := c.w
	lk := lockKey{n.idx, v.Height}
	if v.Type == chain.Precommit {
		if !v.BlockHash.IsZero() {
			if l, ok := c.locks[lk]; !ok || v.Round >= l.round {
				c.locks[lk] = lock{round: v.Round, block: v.BlockHash}
			}
		}
		return
	}
	if v.BlockHash.IsZero() {
		return
	}
	// The set of the vote's height, from the node's own store: by the time its output is seen
	// here the node may have committed that height in the same call.
	set := c.setAt(n, v.Height)
	if set == nil {
		return
	}
	want := set.Proposer(v.Height, v.Round)
	if !slices.Contains(c.proposals[hr{v.Height, v.Round}][v.BlockHash], want) {
		w.violate("honest node %d prevoted %s at %d/%d, which the round's proposer %s did not propose", n.idx, v.BlockHash.Short(), v.Height, v.Round, want.Short())
	}
	l, ok := c.locks[lk]
	if !ok || l.block == v.BlockHash || v.Round <= l.round {
		return
	}
	for r := l.round; r < v.Round; r++ {
		if len(c.prevotes[hr{v.Height, r}][v.BlockHash]) >= set.Quorum() {
			return
		}
	}
	w.violate("honest node %d prevoted %s at %d/%d against its lock on %s from round %d, with no proof of lock since", n.idx, v.BlockHash.Short(), v.Height, v.Round, l.block.Short(), l.round)
}

// setAt is the authority set certifying height h, read from n's store (the state after h-1),
// or nil if n does not hold that state.
func (c *checker) setAt(n *node, h uint64) *chain.AuthoritySet {
	if s := c.sets[h]; s != nil {
		return s
	}
	view, err := n.mem.StateAt(h - 1)
	if err != nil {
		return nil
	}
	set, _, err := state.Authorities(view)
	if err != nil {
		return nil
	}
	c.sets[h] = set
	return set
}

// observe records equivocations that an honest authority could have seen: two different votes
// by one authority for the same height, round and type, delivered while it decides that height.
// Only authorities of that height may report evidence; a full node that sees one cannot.
func (c *checker) observe(n *node, v *chain.Vote) {
	// The engine keeps (and so can report) only votes of its height within its round window.
	if e := n.rep.Engine(); v.Height != e.Height() || uint64(v.Round) > uint64(e.Round())+consensus.RoundWindow {
		return
	}
	if !n.rep.Authorities().Contains(n.key.Public()) {
		return
	}
	for len(c.seen) <= n.idx {
		c.seen = append(c.seen, map[offence]chain.Hash{})
	}
	o := offence{authority: v.Authority, h: v.Height, r: v.Round, t: v.Type}
	prev, ok := c.seen[n.idx][o]
	if !ok {
		c.seen[n.idx][o] = v.BlockHash
		return
	}
	if prev != v.BlockHash {
		if _, done := c.observed[o]; !done {
			c.observed[o] = observation{observer: n.idx, at: c.w.now}
			c.w.trace("node %d sees %s equivocate at %d/%d %s", n.idx, v.Authority.Short(), v.Height, v.Round, v.Type)
		}
	}
}

// forget drops what n had seen: a crashed node's engine starts with no votes.
func (c *checker) forget(n *node) {
	if n.idx < len(c.seen) {
		c.seen[n.idx] = map[offence]chain.Hash{}
	}
}

func (c *checker) evidenceTx(tx *chain.Tx, where string) {
	w := c.w
	body, err := chain.DecodePayload(tx.Kind, tx.Payload)
	if err != nil {
		w.violate("evidence %s does not decode: %v", where, err)
		return
	}
	ev := body.(*chain.Evidence)
	i, ok := w.byKey[ev.A.Authority]
	if !ok || w.honest(w.nodes[i]) {
		w.violate("evidence %s accuses honest authority %s", where, ev.A.Authority.Short())
	}
}

func (c *checker) commit(n *node, b *chain.Block) {
	w := c.w
	h, hash := b.Header.Height, b.Hash()
	w.trace("node %d committed %d %s (%d txs) root %s", n.idx, h, hash.Short(), len(b.Txs), n.mem.StateRoot().Short())
	if !w.honest(n) {
		return
	}
	if prev, ok := c.committed[h]; ok && prev != hash {
		w.violate("agreement: node %d committed %s at height %d, another honest node %s", n.idx, hash.Short(), h, prev.Short())
		return
	}
	c.committed[h] = hash
	w.res.Heights = max(w.res.Heights, h)
	if _, counted := c.committedTxs[h]; !counted {
		c.committedTxs[h] = true
		w.res.Txs += len(b.Txs)
		for _, tx := range b.Txs {
			if tx.Kind == chain.TxEvidence {
				w.res.Evidence++
				c.evidenceTx(tx, fmt.Sprintf("committed at %d", h))
			}
		}
	}
	// Several blocks can commit in one call (block sync); the store's root is that of the last.
	// Earlier ones are still covered: the next header's StateRoot must match the local root.
	if h == n.mem.Height() {
		root := n.mem.StateRoot()
		if prev, ok := c.roots[h]; ok && prev != root {
			w.violate("state roots differ at height %d: node %d has %s, another %s", h, n.idx, root.Short(), prev.Short())
		}
		c.roots[h] = root
	}
	set := c.setAt(n, h)
	if set == nil {
		w.violate("node %d: no authority set for height %d in its store", n.idx, h)
		return
	}
	if !c.setSeen[h] {
		c.setSeen[h] = true
		if h > 1 {
			if ps := c.setAt(n, h-1); ps != nil && ps.Hash() != set.Hash() {
				w.res.SetChanges++
				w.trace("authority set changes at height %d: %d members", h, set.Size())
			}
		}
	}
	if b.Header.AuthoritiesHash != set.Hash() {
		w.violate("block %d names authority set %s, ledger says %s", h, b.Header.AuthoritiesHash.Short(), set.Hash().Short())
	}
	cert, err := n.mem.Cert(h)
	if err != nil {
		w.violate("node %d: certificate %d: %v", n.idx, h, err)
		return
	}
	if err := cert.Verify(w.cid, set, h, hash); err != nil {
		w.violate("node %d: invalid certificate at %d: %v", n.idx, h, err)
	}
	if target, ok := c.catchUp[n.idx]; ok && h >= target {
		delete(c.catchUp, n.idx)
		w.res.CatchUps++
		w.res.CaughtUp += target - n.restartHeight
	}
}

// node is called after each of n's outputs: it notes restarts far behind, to count catch-ups.
func (c *checker) node(n *node) {
	if !c.w.honest(n) || !n.up {
		return
	}
	if top := c.w.maxHonestHeight(); n.mem.Height() == n.restartHeight && top > n.restartHeight+10 {
		if _, ok := c.catchUp[n.idx]; !ok {
			c.catchUp[n.idx] = top
		}
	}
}

// audit checks the bounded-resource invariants on every live honest node.
func (c *checker) audit() {
	w := c.w
	for _, n := range w.nodes {
		if !n.up || !w.honest(n) {
			continue
		}
		mp := n.rep.Mempool()
		cfg := mp.Config()
		height := n.mem.Height()
		view := n.mem.State()
		mp.Each(func(tx *chain.Tx, added uint64) {
			if height >= added+cfg.TTLBlocks {
				w.violate("node %d: mempool keeps %s from height %d at height %d (time to live %d blocks)", n.idx, tx.Hash().Short(), added, height, cfg.TTLBlocks)
			}
			if tx.Kind == chain.TxEvidence {
				return
			}
			nonce, err := state.Nonce(view, tx.Signer.Address())
			if err == nil && tx.Nonce > nonce+cfg.NonceWindow {
				w.violate("node %d: mempool keeps nonce %d of %s, ledger at %d, window %d", n.idx, tx.Nonce, tx.Signer.Short(), nonce, cfg.NonceWindow)
			}
		})
		if _, bytes := n.rep.Buffered(); bytes > 48<<20 {
			w.violate("node %d buffers %d bytes for the next height", n.idx, bytes)
		}
	}
}

// evidenceGraceMs is how long before the end of a run an equivocation must have been seen for
// the checker to require its evidence on the ledger.
const evidenceGraceMs = 5000

func (c *checker) final() {
	w := c.w
	var final *node
	for _, n := range w.nodes {
		if !w.honest(n) {
			continue
		}
		if n.mem.Height() < c.heightAtHeal+w.cfg.MinProgress {
			w.violate("liveness: honest node %d at height %d, network was at %d when it healed %d ms earlier (need +%d)",
				n.idx, n.mem.Height(), c.heightAtHeal, w.cfg.HealMs, w.cfg.MinProgress)
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
	for o, obs := range c.observed {
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
