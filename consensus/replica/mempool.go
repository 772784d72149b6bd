package replica

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Mempool errors callers can test for.
var (
	ErrMempoolFull = errors.New("replica: mempool full")
	ErrDuplicateTx = errors.New("replica: transaction already pending")
	ErrStaleNonce  = errors.New("replica: transaction nonce already used")
)

// Mempool holds verified transactions waiting for a block, in arrival order. Each signature is
// verified once, on entry; the state machine is told so through Verified and does not verify it
// again.
type Mempool struct {
	chainID  string
	maxTxs   int
	maxBytes int
	bytes    int
	txs      map[chain.Hash]*chain.Tx
	order    []chain.Hash // arrival order; removed entries are skipped and compacted lazily
	senders  map[senderNonce]chain.Hash
}

type senderNonce struct {
	signer chain.PubKey
	nonce  uint64
}

// NewMempool bounds the pool by count and total encoded size.
func NewMempool(chainID string, maxTxs, maxBytes int) *Mempool {
	return &Mempool{
		chainID: chainID, maxTxs: maxTxs, maxBytes: maxBytes,
		txs: make(map[chain.Hash]*chain.Tx), senders: make(map[senderNonce]chain.Hash),
	}
}

// Add verifies and queues tx. committedNonce is the signer's last nonce on the ledger.
func (m *Mempool) Add(tx *chain.Tx, committedNonce uint64) (chain.Hash, error) {
	return m.add(tx, committedNonce, true)
}

// AddVerified queues tx whose signature this node has already verified (in a gossip validator).
func (m *Mempool) AddVerified(tx *chain.Tx, committedNonce uint64) (chain.Hash, error) {
	return m.add(tx, committedNonce, false)
}

func (m *Mempool) add(tx *chain.Tx, committedNonce uint64, verify bool) (chain.Hash, error) {
	if err := tx.Validate(); err != nil {
		return chain.Hash{}, err
	}
	h := tx.Hash()
	if _, ok := m.txs[h]; ok {
		return h, ErrDuplicateTx
	}
	if tx.Nonce <= committedNonce {
		return h, fmt.Errorf("%w: nonce %d, ledger is at %d", ErrStaleNonce, tx.Nonce, committedNonce)
	}
	sn := senderNonce{tx.Signer, tx.Nonce}
	if _, ok := m.senders[sn]; ok {
		return h, fmt.Errorf("%w: another transaction with nonce %d from this signer", ErrDuplicateTx, tx.Nonce)
	}
	size := len(tx.Encode())
	if len(m.txs) >= m.maxTxs || m.bytes+size > m.maxBytes {
		return h, ErrMempoolFull
	}
	if tx.ChainID != m.chainID {
		return h, fmt.Errorf("replica: transaction for chain %q", tx.ChainID)
	}
	if verify {
		if err := tx.VerifySig(m.chainID); err != nil {
			return h, err
		}
	}
	m.txs[h] = tx
	m.senders[sn] = h
	m.order = append(m.order, h)
	m.bytes += size
	return h, nil
}

// Verified reports whether h's signature was checked on entry (state.VerifiedSet).
func (m *Mempool) Verified(h chain.Hash) bool { _, ok := m.txs[h]; return ok }

// Len is the number of pending transactions.
func (m *Mempool) Len() int { return len(m.txs) }

// Bytes is the pending transactions' total encoded size.
func (m *Mempool) Bytes() int { return m.bytes }

// Has reports whether h is pending.
func (m *Mempool) Has(h chain.Hash) bool { _, ok := m.txs[h]; return ok }

// NextNonce is the nonce signer's next transaction should carry: one past the run of its pending
// transactions that directly follows committed.
func (m *Mempool) NextNonce(signer chain.PubKey, committed uint64) uint64 {
	n := committed + 1
	for {
		if _, ok := m.senders[senderNonce{signer, n}]; !ok {
			return n
		}
		n++
	}
}

// Pending returns up to max transactions in arrival order.
func (m *Mempool) Pending(max int) []*chain.Tx {
	out := make([]*chain.Tx, 0, min(max, len(m.txs)))
	for _, h := range m.order {
		if len(out) == max {
			break
		}
		if tx, ok := m.txs[h]; ok {
			out = append(out, tx)
		}
	}
	return out
}

// Remove drops the given transactions (committed, or found invalid).
func (m *Mempool) Remove(txs []*chain.Tx) {
	for _, tx := range txs {
		m.removeHash(tx.Hash())
	}
	m.compact()
}

// PruneStale drops every transaction whose nonce the ledger has already used.
func (m *Mempool) PruneStale(committedNonce func(chain.PubKey) uint64) {
	for h, tx := range m.txs {
		if tx.Nonce <= committedNonce(tx.Signer) {
			m.removeHash(h)
		}
	}
	m.compact()
}

func (m *Mempool) removeHash(h chain.Hash) {
	tx, ok := m.txs[h]
	if !ok {
		return
	}
	delete(m.txs, h)
	delete(m.senders, senderNonce{tx.Signer, tx.Nonce})
	m.bytes -= len(tx.Encode())
}

// compact rebuilds the order slice once most of it refers to removed transactions.
func (m *Mempool) compact() {
	if len(m.order) < 2*len(m.txs)+64 {
		return
	}
	kept := m.order[:0]
	for _, h := range m.order {
		if _, ok := m.txs[h]; ok {
			kept = append(kept, h)
		}
	}
	m.order = kept
}
