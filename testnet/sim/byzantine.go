package sim

import (
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
)

type hr struct {
	h uint64
	r uint32
}

type fork struct {
	x, y      chain.Hash
	blockY    *chain.Block
	proposalY *chain.Proposal
}

// forgery is a Flooder's fake block for a height, with a certificate that repeats its own
// precommit in place of a quorum's.
type forgery struct {
	block *chain.Block
	cert  *chain.CommitCert
}

// corrupt replaces a proposal's block with one whose state root is wrong.
func (w *world) corrupt(n *node, m *replica.Message) *replica.Message {
	b := *m.Block
	b.Header.StateRoot[0] ^= 0xff
	p := *m.Proposal
	p.BlockHash = b.Hash()
	p.Sign(n.key, w.cid)
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
			p.Sign(n.key, w.cid)
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
	alt.Sign(n.key, w.cid)
	altMsg := &replica.Message{Version: replica.MessageVersion, Vote: &alt}
	w.sendAll(n, toA, m)
	w.sendAll(n, toB, altMsg)
	if w.cfg.LeakEquivocation && len(w.honestA) > 0 && w.rng.IntN(2) == 0 {
		w.transmit(n.idx, w.honestA[w.rng.IntN(len(w.honestA))], altMsg)
	}
}

// flood is one burst of a Flooder's junk, every ~100 ms while it is up: an off-turn proposal of
// a valid block full of transactions, a proposal whose header names another proposer, votes and
// proposals for future heights, transactions from unknown signers, gap nonces, a forged
// signature.
func (w *world) flood(n *node) {
	w.q.schedule(w.now+w.exp(100), func() { w.flood(n) })
	if !n.up || !n.rep.Authorities().Contains(n.key.Public()) {
		return
	}
	e := n.rep.Engine()
	h, r := e.Height(), e.Round()+uint32(w.rng.IntN(2))
	set := n.rep.Authorities()
	send := func(m *replica.Message) {
		w.res.Byzantine++
		for _, to := range w.others(n) {
			w.transmit(n.idx, to, m)
		}
	}
	switch w.rng.IntN(6) {
	case 0: // off turn, a block that would execute
		if set.Proposer(h, r) != n.key.Public() {
			if b := w.blockOf(n, h, w.junkTxs(n, true)); b != nil {
				send(w.propose(n, h, r, b))
			}
		}
	case 1: // in turn or not, a header that lies about who built the block
		if b := w.blockOf(n, h, nil); b != nil {
			for _, a := range set.Authorities {
				if a.Key != n.key.Public() {
					b.Header.Proposer = a.Key
					break
				}
			}
			send(w.propose(n, h, r, b))
		}
	case 2: // votes for heights ahead
		for d := uint64(1); d <= 5; d++ {
			v := &chain.Vote{Type: chain.Prevote, Height: h + d, Round: uint32(w.rng.IntN(3))}
			if w.cfg.FloodFarRounds {
				w.farRound++
				v.Round = 1000 + w.farRound
			}
			reader{w.rng}.Read(v.BlockHash[:])
			v.Sign(n.key, w.cid)
			send(&replica.Message{Version: replica.MessageVersion, Vote: v})
		}
	case 3: // a proposal for the next height, out of turn
		if b := w.blockOf(n, h, nil); b != nil && set.Proposer(h+1, 0) != n.key.Public() {
			b.Header.Height, b.Header.PrevHash = h+1, chain.Hash{1}
			send(w.propose(n, h+1, 0, b))
		}
	case 4: // junk transactions: unknown signers, gap nonces
		for _, tx := range w.junkTxs(n, false) {
			send(&replica.Message{Version: replica.MessageVersion, Tx: tx})
		}
	case 5: // a forged signature
		tx := w.junkTxs(n, true)[0]
		bad := *tx
		bad.Sig[3] ^= 0x40
		send(&replica.Message{Version: replica.MessageVersion, Tx: &bad})
	}
}

// blockOf builds a block that would execute on n's chain at height h (nil if n is not there).
func (w *world) blockOf(n *node, h uint64, txs []*chain.Tx) *chain.Block {
	st := n.mem
	if st.Height()+1 != h {
		return nil
	}
	prev, prevTime := chain.ZeroHash, w.genesis.TimeMs
	if h > 1 {
		pb, err := st.Block(h - 1)
		if err != nil {
			return nil
		}
		prev, prevTime = pb.Hash(), pb.Header.Time
	}
	cur := n.rep.Authorities()
	next, err := nextSet(st)
	if err != nil {
		return nil
	}
	b := &chain.Block{Version: chain.BlockVersion, Header: chain.Header{
		Version: chain.HeaderVersion, ChainID: w.genesis.ChainID, Height: h, Time: max(w.nodeNow(n), prevTime+1),
		PrevHash: prev, StateRoot: st.StateRoot(), AuthoritiesHash: cur.Hash(), NextAuthoritiesHash: next.Hash(),
		Proposer: n.key.Public(),
	}, Txs: txs}
	b.Header.TxRoot = chain.TxRoot(txs)
	return b
}

func (w *world) propose(n *node, h uint64, r uint32, b *chain.Block) *replica.Message {
	p := &chain.Proposal{Height: h, Round: r, POLRound: -1, BlockHash: b.Hash()}
	p.Sign(n.key, w.cid)
	return &replica.Message{Version: replica.MessageVersion, Proposal: p, Block: b}
}

// junkTxs returns a Flooder's junk, generated once: registrations by fresh keys (valid, for
// stuffing blocks) or, with valid false, non-registrations by unknown signers and its own
// transactions behind a nonce gap.
func (w *world) junkTxs(n *node, valid bool) []*chain.Tx {
	if w.junk == nil {
		chainID := w.genesis.ChainID
		// Valid junk needs an enroller committed on the Flooder's node; before there is one,
		// its registrations name the Flooder's authority key, and the ledger refuses them.
		e, ok := w.enroller(n)
		if !ok {
			e = n.key
		}
		for i := range 20 {
			k := w.newKey()
			body := chain.NewEnrolment(e, e.Public().Address(), chainID, k.Public(), []byte{byte(i), 1, 2})
			w.junk = append(w.junk, chain.NewTx(k, chainID, chain.TxRegisterPatient, 1, body))
			w.junkBad = append(w.junkBad, chain.NewTx(k, chainID, chain.TxConsentRevoke, 1, &chain.ConsentRevoke{Consent: chain.Hash{byte(i)}}))
		}
		for _, gap := range []uint64{3, 4, 5, 6, 7, 300, 1000, 5000} {
			w.junkBad = append(w.junkBad, chain.NewTx(n.key, chainID, chain.TxConsentRevoke, gap, &chain.ConsentRevoke{Consent: chain.Hash{byte(gap)}}))
		}
	}
	if valid {
		return w.junk
	}
	return w.junkBad
}

// forgeSync replaces a Flooder's honest sync answer with a forged block for its first height,
// certified by the Flooder's own precommit repeated a quorum of times.
func (w *world) forgeSync(n *node, m *replica.Message) *replica.Message {
	real := m.SyncBlocks[0]
	h := real.Header.Height
	f := w.fakes[h]
	if f == nil {
		b := *real
		b.Txs = nil
		b.Header.TxRoot = chain.TxRoot(nil)
		b.Header.Time++
		v := &chain.Vote{Type: chain.Precommit, Height: h, BlockHash: b.Hash()}
		v.Sign(n.key, w.cid)
		cert := &chain.CommitCert{Version: chain.CertVersion, Height: h, BlockHash: b.Hash()}
		for range m.SyncCerts[0].Sigs {
			cert.Sigs = append(cert.Sigs, chain.CommitSig{Authority: n.key.Public(), Sig: v.Sig})
		}
		f = &forgery{block: &b, cert: cert}
		w.fakes[h] = f
	}
	w.res.Byzantine++
	return &replica.Message{Version: replica.MessageVersion, SyncBlocks: []*chain.Block{f.block}, SyncCerts: []*chain.CommitCert{f.cert}}
}
