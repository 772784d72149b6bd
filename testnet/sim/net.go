package sim

import (
	"errors"
	"strconv"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
)

func (w *world) handleOutput(n *node, out replica.Output) {
	for _, b := range out.Committed {
		w.check.commit(n, b)
	}
	if len(out.Committed) > 0 {
		w.snapshot(n)
	}
	for _, p := range out.Penalties {
		w.blame(n, p.Peer, p.Err)
	}
	for _, d := range out.Dropped {
		w.trace("node %d dropped %s %s: %v", n.idx, d.Tx.Kind, d.Hash.Short(), d.Reason)
	}
	for _, m := range out.Broadcast {
		w.broadcast(n, m)
	}
	for _, m := range out.Resend {
		w.broadcast(n, m)
	}
	for _, a := range out.Unicast {
		to, err := strconv.Atoi(string(a.To))
		if err == nil && to >= 0 && to < len(w.nodes) && w.sends(n) {
			if n.behavior == Flooder && len(a.Msg.SyncBlocks) > 0 {
				a.Msg = w.forgeSync(n, a.Msg)
			}
			w.transmit(n.idx, to, a.Msg)
		}
	}
	inc := n.incarnation
	for _, t := range out.Timeouts {
		w.q.schedule(w.now+t.DelayMs, func() {
			if n.up && n.incarnation == inc {
				out, err := n.rep.HandleTimeout(t, w.nodeNow(n))
				w.after(n, out, err)
			}
		})
	}
	w.check.node(n)
}

// blame records that node n found a peer's input invalid: a violation if both are honest.
func (w *world) blame(n *node, peer replica.PeerID, err error) {
	from, perr := strconv.Atoi(string(peer))
	if perr != nil || from < 0 || from >= len(w.nodes) {
		return
	}
	if w.honest(w.nodes[from]) && w.honest(n) {
		w.violate("node %d blamed honest node %d: %v", n.idx, from, err)
		return
	}
	w.res.Penalties++
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
	if w.honest(n) {
		w.check.signed(n, m)
	}
	if m.Tx != nil && m.Tx.Kind == chain.TxEvidence {
		w.check.evidenceTx(m.Tx, "broadcast by node "+strconv.Itoa(n.idx))
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

func (w *world) sendAll(n *node, to []int, m *replica.Message) {
	for _, i := range to {
		if i != n.idx {
			w.transmit(n.idx, i, m)
		}
	}
}

// transmit puts m on the wire from one node to another, subject to the faults of the moment:
// partitions, a withholding aimed at the receiver, loss, duplication, and delays (some longer
// than every timeout).
func (w *world) transmit(from, to int, m *replica.Message) {
	w.check.sent(from, m)
	if w.group != nil && w.group[from] != w.group[to] {
		w.res.Dropped++
		return
	}
	if wh := w.withhold; wh != nil && wh.victim == to && !wh.allow[from] {
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
		if !w.healed && w.cfg.SlowRate > 0 && w.rng.Float64() < w.cfg.SlowRate {
			delay = w.cfg.SlowMinMs + w.rng.Int64N(w.cfg.SlowMaxMs-w.cfg.SlowMinMs+1)
		}
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
		if w.honest(w.nodes[from]) {
			w.violate("node %d sent an undecodable message: %v", from, err)
		}
		return
	}
	if m.Vote != nil && w.honest(n) {
		w.check.observe(n, m.Vote)
	}
	out, err := n.rep.Handle(replica.PeerID(strconv.Itoa(from)), m, w.nodeNow(n))
	if err != nil && errors.Is(err, replica.ErrInvalid) {
		w.blame(n, replica.PeerID(strconv.Itoa(from)), err)
	}
	w.after(n, out, err)
}
