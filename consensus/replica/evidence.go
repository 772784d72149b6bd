package replica

import (
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// reportEvidence turns an equivocation this replica observed into an evidence transaction signed
// by its authority key, unless the offence is already punished on the ledger or evidence for it
// is already pending (someone else's: one offence needs one transaction). Evidence carries no
// nonce, so a copy that loses the race leaves no gap behind it.
func (r *Replica) reportEvidence(ev *chain.Evidence, out *Output) {
	if r.cfg.Key == nil {
		return
	}
	key := ev.Key()
	if r.mempool.HasOffence(key) {
		return
	}
	if rec, err := state.EvidenceAccepted(r.store.State(), key); err != nil || rec != nil {
		return
	}
	tx := chain.NewTx(*r.cfg.Key, r.chainID, chain.TxEvidence, 0, ev)
	if _, err := r.addTx(tx, nil, false); err != nil {
		return
	}
	out.Broadcast = append(out.Broadcast, &Message{Version: MessageVersion, Tx: tx})
}
