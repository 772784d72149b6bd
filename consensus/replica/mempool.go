package replica

import (
	"errors"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// Mempool refusals. ErrMempoolFull, ErrSignerFull and ErrRegistrationsFull are about this node's
// load: the sender may try again later. The others say the transaction does not belong here.
var (
	ErrMempoolFull       = errors.New("replica: mempool full")
	ErrSignerFull        = errors.New("replica: too many pending transactions from this signer")
	ErrRegistrationsFull = errors.New("replica: too many pending registrations from unregistered signers")
	ErrDuplicateTx       = errors.New("replica: transaction already pending")
	ErrStaleNonce        = errors.New("replica: transaction nonce already used")
	ErrNonceGap          = errors.New("replica: transaction nonce too far ahead of the ledger")
	ErrNotMember         = errors.New("replica: signer is not registered on the ledger")
	ErrRefusedByState    = errors.New("replica: refused by the ledger's rules")
)

// MempoolConfig bounds the pool. Zero fields take the defaults named in each comment.
type MempoolConfig struct {
	MaxTxs   int // 50,000 transactions
	MaxBytes int // 64 MiB of encoded transactions
	// NonceWindow: a signer's pending nonces must lie in (ledger nonce, ledger nonce + window];
	// 256. It also caps the signer's pending transactions.
	NonceWindow uint64
	// MaxSignerBytes caps one signer's pending bytes; 8 MiB.
	MaxSignerBytes int
	// MaxRegistrations and MaxRegistrationBytes are the global quota of pending registrations
	// by signers the ledger does not know yet; 256 and 2 MiB.
	MaxRegistrations     int
	MaxRegistrationBytes int
	// MaxEvidence caps pending evidence transactions (one per offence); 64.
	MaxEvidence int
	// TTLBlocks: a transaction still pending this many blocks after it arrived is dropped; 300.
	TTLBlocks uint64
	// RecheckPerCommit is how many transactions that the block did not touch are checked again
	// against the new state after each commit, longest-unchecked first; 256.
	RecheckPerCommit int
}

func (c *MempoolConfig) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxTxs, 50_000)
	def(&c.MaxBytes, 64<<20)
	def(&c.MaxSignerBytes, 8<<20)
	def(&c.MaxRegistrations, 256)
	def(&c.MaxRegistrationBytes, 2<<20)
	def(&c.MaxEvidence, 64)
	def(&c.RecheckPerCommit, 256)
	if c.NonceWindow == 0 {
		c.NonceWindow = 256
	}
	if c.TTLBlocks == 0 {
		c.TTLBlocks = 300
	}
}

// Member is what admission needs to know about a signer, read from committed state.
type Member struct {
	Registered bool   // a member (state.Signer), an authority, or a genesis attestation issuer
	Certifying bool   // in the set certifying the next block: may report evidence
	Nonce      uint64 // the last nonce the ledger accepted from this signer
}

// Dropped is a pending transaction that left the pool without being committed, and why.
type Dropped struct {
	Tx     *chain.Tx
	Hash   chain.Hash
	Reason error
}

// Mempool holds admitted transactions waiting for a block. Admission is by rule (see Add), so
// what the pool holds is bounded per signer, for unregistered signers together, and in total,
// and a transaction that cannot execute never makes the chain busy: only a signer's run of
// nonces that starts at its ledger nonce + 1 (its executable run) is offered to blocks and
// counted by Executable.
//
// Each signature is verified once, on entry; the state machine is told so through Verified.
type Mempool struct {
	chainID string
	cfg     MempoolConfig

	txs      map[chain.Hash]*entry
	signers  map[chain.PubKey]*signerQueue
	evidence map[chain.Hash]*entry // by offence key
	own      map[chain.Hash]*entry // submitted at this node, resent until they leave
	order    []*entry              // arrival order; removed entries are skipped and compacted lazily
	seq      uint64
	bytes    int
	heads    int // signers whose next executable nonce is pending

	regCount, regBytes int
}

type entry struct {
	tx      *chain.Tx
	hash    chain.Hash
	size    int
	seq     uint64
	added   uint64 // committed height when it arrived
	checked uint64 // committed height of its last successful check (heads and evidence)
	reg     bool   // counted against the registration quota
	offence chain.Hash
	gone    bool
	sentAt  int64 // own transactions: when this node last sent it (ms)
}

type signerQueue struct {
	committed uint64 // the ledger's nonce for this signer, as of the last admission or commit
	byNonce   map[uint64]*entry
	bytes     int
	head      bool
}

// NewMempool returns an empty pool for chainID.
func NewMempool(chainID string, cfg MempoolConfig) *Mempool {
	cfg.defaults()
	return &Mempool{
		chainID: chainID, cfg: cfg,
		txs: make(map[chain.Hash]*entry), signers: make(map[chain.PubKey]*signerQueue),
		evidence: make(map[chain.Hash]*entry),
		own:      make(map[chain.Hash]*entry),
	}
}

// Config returns the pool's bounds with defaults filled in.
func (m *Mempool) Config() MempoolConfig { return m.cfg }

// Admission is everything Add needs besides the transaction: the signer's standing on the
// ledger, the committed height, whether the signature was verified already, and the check of
// the transaction against committed state (run only when the transaction could execute next).
type Admission struct {
	Member   Member
	Height   uint64
	Verified bool
	Check    func(*chain.Tx) error
}

// Add admits tx by rule, cheapest checks first, the signature and the state check last:
//
//   - form and chain;
//   - not already pending (by hash, by signer and nonce, by offence for evidence);
//   - evidence carries nonce 0 and an authority's signature, at most MaxEvidence pending;
//   - otherwise the signer is registered, or the transaction is a registration (nonce 1) under
//     the global registration quota;
//   - the nonce lies in the window after the ledger's nonce; the signer's count and bytes caps;
//   - the pool's count and byte caps;
//   - the signature, unless a.Verified;
//   - a.Check, when the transaction is executable now (the signer's next nonce, or evidence).
func (m *Mempool) Add(tx *chain.Tx, a Admission) (chain.Hash, error) {
	if err := tx.Validate(); err != nil {
		return chain.Hash{}, err
	}
	if tx.ChainID != m.chainID {
		return chain.Hash{}, fmt.Errorf("replica: transaction for chain %q", tx.ChainID)
	}
	enc := tx.Encode()
	h := chain.Sum256(enc)
	if _, ok := m.txs[h]; ok {
		return h, ErrDuplicateTx
	}
	e := &entry{tx: tx, hash: h, size: len(enc), added: a.Height}
	executable := false
	if !tx.Kind.UsesNonce() {
		key, err := offenceKey(tx)
		if err != nil {
			return h, err
		}
		switch {
		case !a.Member.Certifying:
			return h, fmt.Errorf("%w: evidence signed by %s, not an authority", ErrNotMember, tx.Signer.Short())
		case m.evidence[key] != nil:
			return h, fmt.Errorf("%w: evidence for this offence", ErrDuplicateTx)
		case len(m.evidence) >= m.cfg.MaxEvidence:
			return h, ErrMempoolFull
		}
		e.offence, executable = key, true
	} else {
		q := m.signers[tx.Signer]
		committed := a.Member.Nonce
		if q != nil {
			committed = max(committed, q.committed)
		}
		switch {
		case !a.Member.Registered && !(tx.Kind.IsRegistration() && tx.Nonce == 1):
			return h, fmt.Errorf("%w: %s may only register itself", ErrNotMember, tx.Signer.Short())
		case tx.Nonce <= committed:
			return h, fmt.Errorf("%w: nonce %d, ledger is at %d", ErrStaleNonce, tx.Nonce, committed)
		case tx.Nonce > committed+m.cfg.NonceWindow && mutant != "gapforever":
			if q != nil && uint64(len(q.byNonce)) >= m.cfg.NonceWindow {
				return h, ErrSignerFull // its window is full of its own pending transactions
			}
			return h, fmt.Errorf("%w: nonce %d, ledger is at %d, window %d", ErrNonceGap, tx.Nonce, committed, m.cfg.NonceWindow)
		}
		if q != nil {
			if q.byNonce[tx.Nonce] != nil {
				return h, fmt.Errorf("%w: another transaction with nonce %d from this signer", ErrDuplicateTx, tx.Nonce)
			}
			if uint64(len(q.byNonce)) >= m.cfg.NonceWindow || q.bytes+e.size > m.cfg.MaxSignerBytes {
				return h, ErrSignerFull
			}
		}
		if !a.Member.Registered {
			if m.regCount >= m.cfg.MaxRegistrations || m.regBytes+e.size > m.cfg.MaxRegistrationBytes {
				return h, ErrRegistrationsFull
			}
			e.reg = true
		}
		executable = tx.Nonce == committed+1
	}
	if len(m.txs) >= m.cfg.MaxTxs || m.bytes+e.size > m.cfg.MaxBytes {
		return h, ErrMempoolFull
	}
	if !a.Verified {
		if err := tx.VerifySig(m.chainID); err != nil {
			return h, err
		}
	}
	if executable && a.Check != nil {
		if err := a.Check(tx); err != nil {
			return h, err
		}
		e.checked = a.Height
	}
	m.insert(e, a.Member.Nonce)
	return h, nil
}

func (m *Mempool) insert(e *entry, committed uint64) {
	m.seq++
	e.seq = m.seq
	m.txs[e.hash] = e
	m.order = append(m.order, e)
	m.bytes += e.size
	if e.reg {
		m.regCount++
		m.regBytes += e.size
	}
	if e.tx.Kind == chain.TxEvidence {
		m.evidence[e.offence] = e
		return
	}
	q := m.signers[e.tx.Signer]
	if q == nil {
		q = &signerQueue{committed: committed, byNonce: make(map[uint64]*entry)}
		m.signers[e.tx.Signer] = q
	}
	q.committed = max(q.committed, committed)
	q.byNonce[e.tx.Nonce] = e
	q.bytes += e.size
	m.touch(q)
}

// touch recomputes whether q's next executable nonce is pending.
func (m *Mempool) touch(q *signerQueue) {
	head := q.byNonce[q.committed+1] != nil
	if head != q.head {
		q.head = head
		if head {
			m.heads++
		} else {
			m.heads--
		}
	}
}

func (m *Mempool) remove(e *entry) {
	if e.gone {
		return
	}
	e.gone = true
	delete(m.txs, e.hash)
	delete(m.own, e.hash)
	m.bytes -= e.size
	if e.reg {
		m.regCount--
		m.regBytes -= e.size
	}
	if e.tx.Kind == chain.TxEvidence {
		if m.evidence[e.offence] == e {
			delete(m.evidence, e.offence)
		}
		return
	}
	q := m.signers[e.tx.Signer]
	if q == nil || q.byNonce[e.tx.Nonce] != e {
		return
	}
	delete(q.byNonce, e.tx.Nonce)
	q.bytes -= e.size
	m.touch(q)
	if len(q.byNonce) == 0 {
		if q.head {
			m.heads--
		}
		delete(m.signers, e.tx.Signer)
	}
}

// dropFrom removes e and every later nonce of its signer (they can no longer execute in the
// order they were signed), recording each in out.
func (m *Mempool) dropFrom(e *entry, reason error, out *[]Dropped) {
	if e.tx.Kind == chain.TxEvidence {
		m.remove(e)
		*out = append(*out, Dropped{Tx: e.tx, Hash: e.hash, Reason: reason})
		return
	}
	q := m.signers[e.tx.Signer]
	var later []*entry
	if q != nil {
		for n, x := range q.byNonce {
			if n > e.tx.Nonce {
				later = append(later, x)
			}
		}
	}
	slices.SortFunc(later, func(a, b *entry) int { return compareU64(a.tx.Nonce, b.tx.Nonce) })
	m.remove(e)
	*out = append(*out, Dropped{Tx: e.tx, Hash: e.hash, Reason: reason})
	for _, x := range later {
		m.remove(x)
		*out = append(*out, Dropped{Tx: x.tx, Hash: x.hash, Reason: fmt.Errorf("replica: behind dropped transaction %s: %w", e.hash.Short(), reason)})
	}
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Own transactions are sent again, directly to every peer, while they stay pending: gossip
// delivers a payload once, and a transaction published while this node had no peer, or whose
// only receivers restarted, would otherwise wait in this pool until its TTL.
const (
	ownResendMs  = 10_000 // a pending own transaction is resent this long after its last send
	ownResendMax = 16     // resent per commit at most, oldest first
)

// MarkOwn records that h was submitted at this node and sent at now.
func (m *Mempool) MarkOwn(h chain.Hash, now int64) {
	if e := m.txs[h]; e != nil {
		e.sentAt = now
		m.own[h] = e
	}
}

// DueOwn returns up to max own transactions last sent at least every ms before now, oldest
// first, and records them as sent now.
func (m *Mempool) DueOwn(now, every int64, max int) []*chain.Tx {
	var due []*entry
	for _, e := range m.own {
		if now-e.sentAt >= every {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *entry) int { return compareU64(a.seq, b.seq) })
	var out []*chain.Tx
	for _, e := range due[:min(max, len(due))] {
		e.sentAt = now
		out = append(out, e.tx)
	}
	return out
}

// Verified reports whether h's signature was checked on entry (state.VerifiedSet).
func (m *Mempool) Verified(h chain.Hash) bool { _, ok := m.txs[h]; return ok }

// Len is the number of pending transactions.
func (m *Mempool) Len() int { return len(m.txs) }

// Bytes is the pending transactions' total encoded size.
func (m *Mempool) Bytes() int { return m.bytes }

// Executable reports whether some pending transaction could go into the next block: a signer's
// next nonce, or evidence. Only then is the chain busy.
func (m *Mempool) Executable() bool { return m.heads > 0 || len(m.evidence) > 0 }

// Has reports whether h is pending.
func (m *Mempool) Has(h chain.Hash) bool { _, ok := m.txs[h]; return ok }

// HasOffence reports whether evidence for the offence with this key is pending.
func (m *Mempool) HasOffence(key chain.Hash) bool { return m.evidence[key] != nil }

// NextNonce is the nonce signer's next transaction should carry: one past the run of its pending
// transactions that directly follows committed.
func (m *Mempool) NextNonce(signer chain.PubKey, committed uint64) uint64 {
	n := committed + 1
	q := m.signers[signer]
	if q == nil {
		return n
	}
	for q.byNonce[n] != nil {
		n++
	}
	return n
}

// Pending returns up to max executable transactions in arrival order, each signer's run in
// nonce order from its next nonce: what a proposer packs into a block. Transactions behind a
// nonce gap are not offered.
func (m *Mempool) Pending(max int) []*chain.Tx {
	out := make([]*chain.Tx, 0, min(max, len(m.txs)))
	done := make(map[chain.PubKey]bool)
	for _, e := range m.order {
		if len(out) >= max {
			break
		}
		if e.gone {
			continue
		}
		if e.tx.Kind == chain.TxEvidence {
			out = append(out, e.tx)
			continue
		}
		if done[e.tx.Signer] {
			continue
		}
		done[e.tx.Signer] = true
		q := m.signers[e.tx.Signer]
		for n := q.committed + 1; len(out) < max; n++ {
			x := q.byNonce[n]
			if x == nil {
				break
			}
			out = append(out, x.tx)
		}
	}
	return out
}

// Reject drops a transaction the block builder found invalid against the state it builds on,
// with its signer's later nonces.
func (m *Mempool) Reject(h chain.Hash, reason error) []Dropped {
	var out []Dropped
	if e := m.txs[h]; e != nil {
		m.dropFrom(e, reason, &out)
	}
	m.compact()
	return out
}

// Commit is what Update needs to know about a committed block and the state after it.
type Commit struct {
	Height uint64
	Txs    []*chain.Tx
	// Nonce reads a signer's ledger nonce after the block.
	Nonce func(chain.PubKey) (uint64, error)
	// Check re-checks a transaction against the state after the block.
	Check func(*chain.Tx) error
}

// Update brings the pool to the state after a committed block and returns what it dropped:
// the block's transactions leave; every pending transaction whose nonce the block used is
// dropped (another transaction took the nonce); evidence for offences the block punished goes;
// transactions older than TTLBlocks expire; the new next transaction of every signer in the
// block, and up to RecheckPerCommit others (longest unchecked first), are checked against the
// new state. A transaction that fails is dropped with its signer's later nonces, so its signer
// can use the nonce again.
func (m *Mempool) Update(c Commit) []Dropped {
	var out []Dropped
	touched := make(map[chain.PubKey]bool)
	for _, tx := range c.Txs {
		h := tx.Hash()
		if e := m.txs[h]; e != nil {
			m.remove(e)
		}
		if tx.Kind == chain.TxEvidence {
			if key, err := offenceKey(tx); err == nil {
				if e := m.evidence[key]; e != nil {
					m.dropFrom(e, errors.New("replica: offence already punished"), &out)
				}
			}
			continue
		}
		touched[tx.Signer] = true
	}
	for signer := range touched {
		q := m.signers[signer]
		if q == nil {
			continue
		}
		n, err := c.Nonce(signer)
		if err != nil {
			continue
		}
		q.committed = max(q.committed, n)
		var stale []*entry
		for nonce, e := range q.byNonce {
			if nonce <= q.committed {
				stale = append(stale, e)
			}
		}
		for _, e := range stale {
			m.remove(e)
			out = append(out, Dropped{Tx: e.tx, Hash: e.hash, Reason: fmt.Errorf("%w: nonce %d taken by another transaction", ErrStaleNonce, e.tx.Nonce)})
		}
		if q = m.signers[signer]; q != nil {
			m.touch(q)
		}
	}
	m.expire(c.Height, &out)
	m.recheck(c, touched, &out)
	m.compact()
	return out
}

func (m *Mempool) expire(height uint64, out *[]Dropped) {
	if height < m.cfg.TTLBlocks || mutant == "gapforever" {
		return
	}
	limit := height - m.cfg.TTLBlocks
	for _, e := range m.order {
		if e.added > limit {
			break // arrival order is also height order
		}
		if !e.gone {
			m.dropFrom(e, fmt.Errorf("replica: transaction expired after %d blocks in the mempool", m.cfg.TTLBlocks), out)
		}
	}
}

// recheck checks the executable transactions that the new state may have invalidated: the
// heads of the signers in the block always, then the longest-unchecked others up to the budget.
func (m *Mempool) recheck(c Commit, touched map[chain.PubKey]bool, out *[]Dropped) {
	if c.Check == nil {
		return
	}
	var due []*entry
	for signer := range touched {
		if q := m.signers[signer]; q != nil && q.head {
			due = append(due, q.byNonce[q.committed+1])
		}
	}
	var others []*entry
	for _, q := range m.signers {
		if q.head {
			if e := q.byNonce[q.committed+1]; !touched[e.tx.Signer] && e.checked < c.Height {
				others = append(others, e)
			}
		}
	}
	for _, e := range m.evidence {
		others = append(others, e)
	}
	slices.SortFunc(others, func(a, b *entry) int {
		if a.checked != b.checked {
			return compareU64(a.checked, b.checked)
		}
		return compareU64(a.seq, b.seq)
	})
	slices.SortFunc(due, func(a, b *entry) int { return compareU64(a.seq, b.seq) })
	due = append(due, others[:min(len(others), m.cfg.RecheckPerCommit)]...)
	for _, e := range due {
		if e.gone {
			continue
		}
		if err := c.Check(e.tx); err != nil {
			m.dropFrom(e, err, out)
			continue
		}
		e.checked = c.Height
	}
}

// compact rebuilds the order slice once most of it refers to removed transactions.
func (m *Mempool) compact() {
	if len(m.order) < 2*len(m.txs)+64 {
		return
	}
	kept := m.order[:0]
	for _, e := range m.order {
		if !e.gone {
			kept = append(kept, e)
		}
	}
	clear(m.order[len(kept):])
	m.order = kept
}

// offenceKey is the offence an evidence transaction reports.
func offenceKey(tx *chain.Tx) (chain.Hash, error) {
	key, ok := chain.EvidenceKeyOf(tx)
	if !ok {
		return chain.Hash{}, fmt.Errorf("replica: evidence transaction without decodable evidence")
	}
	return key, nil
}

// Each calls f for every pending transaction, in arrival order, with the committed height at
// which it arrived (for audits: the simulation checks the pool's bounds from outside).
func (m *Mempool) Each(f func(tx *chain.Tx, added uint64)) {
	for _, e := range m.order {
		if !e.gone {
			f(e.tx, e.added)
		}
	}
}
