package sim

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
)

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
	enroller, ok := w.enroller(n)
	if w.rng.IntN(5) == 0 || !ok {
		// The node key stands in for the practice's libp2p identity; derived, so the run's
		// random stream is what it was before licences named one.
		nodeKey := chain.PubKey(chain.Sum256(append([]byte("sim-node/"), k.Public().String()...)))
		lic := chain.Licence{Role: chain.RoleProvider, Subject: k.Public(), NodeKey: nodeKey, Number: fmt.Sprintf("LIC-%d", w.rng.IntN(1_000_000)),
			Jurisdiction: "SIM", NotAfter: w.now + 365*24*3600*1000}
		lic.Sign(w.licensor, w.genesis.ChainID)
		tx = chain.NewTx(k, w.genesis.ChainID, chain.TxRegisterMember, 1, &chain.RegisterMember{Licence: lic, EncryptionKey: enc})
		if len(w.enrollers) < maxEnrollers {
			w.enrollers = append(w.enrollers, k)
		}
	} else {
		body := chain.NewEnrolment(enroller, enroller.Public().Address(), w.genesis.ChainID, k.Public(), enc)
		tx = chain.NewTx(k, w.genesis.ChainID, chain.TxRegisterPatient, 1, body)
	}
	w.submit(n, tx, true)
}

// maxEnrollers bounds the providers the workload remembers as enrollers.
const maxEnrollers = 8

// enroller returns a provider the workload registered that is active in n's committed state, so
// a patient registration it co-signs is valid there.
func (w *world) enroller(n *node) (chain.PrivKey, bool) {
	view := n.mem.State()
	_, now, err := state.Tip(view)
	if err != nil {
		return chain.PrivKey{}, false
	}
	for _, k := range w.enrollers {
		if p, err := state.ActiveProvider(view, k.Public().Address(), now); err == nil && p != nil {
			return k, true
		}
	}
	return chain.PrivKey{}, false
}

// submit hands tx to n's replica; must says the transaction is valid and only load may refuse it.
func (w *world) submit(n *node, tx *chain.Tx, must bool) {
	_, out, err := n.rep.SubmitTx(tx, w.nodeNow(n))
	if errors.Is(err, replica.ErrHalted) {
		w.after(n, out, err)
		return
	}
	if err != nil {
		if must && !errors.Is(err, replica.ErrMempoolFull) && !errors.Is(err, replica.ErrRegistrationsFull) && w.honest(n) {
			w.violate("node %d refused a valid transaction: %v", n.idx, err)
		}
		return
	}
	w.handleOutput(n, out)
}

// proposeSetChange has an honest authority propose adding a node that is not an authority (a
// spare, or one removed before) or removing one, keeping the set able to tolerate the Byzantine
// members left in it; the other honest authorities vote for it a little later, each through its
// own node.
func (w *world) proposeSetChange() {
	if w.healed {
		return
	}
	w.q.schedule(w.now+w.exp(w.cfg.SetChangeEveryMs), w.proposeSetChange)
	var proposer *node
	for _, i := range w.rng.Perm(len(w.nodes)) {
		if n := w.nodes[i]; n.up && w.honest(n) && n.rep.Authorities().Contains(n.key.Public()) {
			proposer = n
			break
		}
	}
	if proposer == nil {
		return
	}
	_, pending, err := state.Authorities(proposer.mem.State())
	if err != nil {
		return
	}
	var outside, removable []*node
	for _, n := range w.nodes {
		in := pending.Contains(n.key.Public())
		switch {
		case !in && w.honest(n):
			outside = append(outside, n)
		case in && w.tolerates(pending, n.key.Public()):
			removable = append(removable, n)
		}
	}
	body := &chain.AuthorityPropose{}
	switch {
	case len(outside) > 0 && (pending.Size() < w.cfg.N || w.rng.IntN(2) == 0):
		s := outside[w.rng.IntN(len(outside))]
		body.Action, body.Subject = chain.AuthorityAdd, chain.Authority{Key: s.key.Public(), Name: fmt.Sprintf("sim-%d", s.idx)}
	case len(removable) > 0:
		s := removable[w.rng.IntN(len(removable))]
		body.Action, body.Subject = chain.AuthorityRemove, chain.Authority{Key: s.key.Public()}
	default:
		return
	}
	tx := w.ownTx(proposer, chain.TxAuthorityPropose, body)
	if tx == nil {
		return
	}
	w.trace("node %d proposes %s %s", proposer.idx, body.Action, body.Subject.Key.Short())
	w.submit(proposer, tx, false)
	id := tx.Hash()
	for _, n := range w.nodes {
		if n == proposer || !w.honest(n) {
			continue
		}
		w.q.schedule(w.now+200+w.rng.Int64N(1500), func() {
			if n.up && n.rep.Authorities().Contains(n.key.Public()) {
				if vtx := w.ownTx(n, chain.TxAuthorityVote, &chain.AuthorityVote{Proposal: id}); vtx != nil {
					w.submit(n, vtx, false)
				}
			}
		})
	}
}

// tolerates reports whether removing key from set leaves at most f Byzantine members, at least
// four members, and no fewer members than the network started with minus one.
func (w *world) tolerates(set *chain.AuthoritySet, key chain.PubKey) bool {
	if set.Size() <= max(4, w.cfg.N-1) {
		return false
	}
	byz := 0
	for _, a := range set.Authorities {
		if a.Key != key && !w.honest(w.nodes[w.byKey[a.Key]]) {
			byz++
		}
	}
	return byz <= (set.Size()-2)/3
}

// ownTx signs a transaction of n's authority key with its next nonce.
func (w *world) ownTx(n *node, kind chain.TxKind, body any) *chain.Tx {
	committed, err := state.Nonce(n.mem.State(), n.key.Public().Address())
	if err != nil {
		return nil
	}
	return chain.NewTx(n.key, w.genesis.ChainID, kind, n.rep.Mempool().NextNonce(n.key.Public(), committed), body)
}

// nextSet is the set certifying the height after the one st decides next.
func nextSet(st *store.Memory) (*chain.AuthoritySet, error) {
	_, after, err := state.Authorities(st.State())
	return after, err
}
