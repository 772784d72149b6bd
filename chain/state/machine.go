package state

import (
	"errors"
	"fmt"
	"strings"

	"github.com/medledger/medledger/chain"
)

// Machine executes MedLedger transactions for one chain. It holds no state of its own between
// calls (committed state is the View passed in), so one Machine may serve every height.
type Machine struct {
	chainID string
	sigs    SigCache // nil: every check verifies
}

// New returns the state machine for chainID.
func New(chainID string) *Machine { return &Machine{chainID: chainID} }

// ChainID is the chain this machine accepts transactions for.
func (m *Machine) ChainID() string { return m.chainID }

// VerifiedSet lets a caller skip re-verifying transaction signatures it has already checked
// (the mempool's cache). It covers only the transaction's own signature: licence and evidence
// signatures inside payloads are always verified.
type VerifiedSet interface {
	Verified(txHash chain.Hash) bool
}

// Event types reported in TxResult.
const (
	EventProviderRegistered = "provider-registered"
	EventPatientRegistered  = "patient-registered"
	EventProposalOpened     = "authority-proposal-opened"
	EventVoteCounted        = "authority-vote-counted"
	EventAuthorityChange    = "authority set change decided"
	EventProposalVoid       = "authority-proposal-void"
	EventEvidenceAccepted   = "evidence-accepted"
	EventOffenderNotRemoved = "evidence-offender-not-removed"
)

// Event is something a transaction did that callers may want to show or act on. Detail is for
// people and logs; it holds keys, ids and heights, never personal data.
type Event struct {
	Type   string
	Detail string
}

// TxResult is what one transaction did.
type TxResult struct {
	Hash   chain.Hash
	Kind   chain.TxKind
	Events []Event
}

// Outcome is the result of executing a block.
type Outcome struct {
	// Changes is the block's complete effect on state, sorted by key.
	Changes ChangeSet
	// Results has one entry per transaction, in block order.
	Results []TxResult
	// BlockEvents is what the block did of itself, after its transactions (automatic removal
	// proposals).
	BlockEvents []Event
	// NextAuthorities is the set that certifies height h.Height+chain.AuthorityChangeDelay. It is
	// non-nil exactly when that set differs from the set certifying h.Height+1, that is, when this
	// block decided a change (an authority proposal passed or evidence removed an offender) whose
	// net effect is not nil. It is nil otherwise, and then set(h.Height+2) = set(h.Height+1).
	NextAuthorities *chain.AuthoritySet
}

// TxError says which transaction made a block invalid, and why.
type TxError struct {
	Index int
	Hash  chain.Hash
	Kind  chain.TxKind
	Err   error
}

func (e *TxError) Error() string {
	return fmt.Sprintf("state: transaction %d (%s, %s): %s", e.Index, e.Hash.Short(), e.Kind, strings.TrimPrefix(e.Err.Error(), "state: "))
}

func (e *TxError) Unwrap() error { return e.Err }

// Errors callers may test with errors.Is.
var (
	// ErrNonce: the nonce is not the signer's last accepted nonce + 1 (a replay, a gap or a
	// duplicate). The mempool may keep a transaction whose nonce is ahead. Evidence, which
	// carries no nonce, never fails with it.
	ErrNonce = errors.New("state: wrong nonce")
	// ErrBlockFull: the block has reached the genesis limit on transactions or bytes.
	ErrBlockFull = errors.New("state: block full")
	// ErrWrongChain: the transaction or header names another chain.
	ErrWrongChain = errors.New("state: wrong chain")
)

// ProposalLifetime is how many heights after the proposing block an authority proposal accepts
// votes (about 2.8 hours at one block per second): long enough for every authority's operator to
// act, short enough that a stale proposal cannot pass long after the reason for it is forgotten.
const ProposalLifetime = 10_000

// MaxEvidenceAge is how many heights back the conflicting votes of evidence may be. Evidence older
// than this is refused, so state need not judge offences of authorities long gone; at one block per
// second it is a little over a day, ample time for any node that saw the equivocation to submit it.
const MaxEvidenceAge = 100_000

// txBytesBudget is the most encoded transaction bytes a block may carry: the genesis limit on
// the block minus room for the header and framing, so a full block still fits MaxBlockBytes.
func txBytesBudget(p *chain.Params) int {
	return int(p.MaxBlockBytes) - chain.MaxHeaderBytes - 64
}

// Genesis returns the initial state (height 0): parameters, the licensing authorities and other
// attestation issuers, and the genesis authority set as the sets certifying heights 1 and 2 and as the first epoch of the
// authority-set history.
func (m *Machine) Genesis(g *chain.Genesis) (ChangeSet, error) {
	if g == nil {
		return ChangeSet{}, fmt.Errorf("state: no genesis")
	}
	if err := g.Validate(); err != nil {
		return ChangeSet{}, fmt.Errorf("state: genesis: %w", err)
	}
	if g.ChainID != m.chainID {
		return ChangeSet{}, fmt.Errorf("%w: genesis is for %q, this machine for %q", ErrWrongChain, g.ChainID, m.chainID)
	}
	set := g.AuthoritySet()
	o := NewOverlay(emptyView{})
	o.Set(keyParams, chain.Encode(&paramsRecord{Version: RecordVersion, ChainID: g.ChainID, GenesisHash: g.Hash(), Params: g.Params}))
	o.Set(keyTip, chain.Encode(&tipRecord{Version: RecordVersion, Height: 0, Time: g.TimeMs}))
	writeSet(o, keyNext, set)
	writeSet(o, keyAfter, set)
	startEpochs(o, set)
	lic := &chain.AuthoritySet{}
	if len(g.LicensingAuthorities) > 0 {
		var err error
		if lic, err = chain.NewAuthoritySet(g.LicensingAuthorities); err != nil {
			return ChangeSet{}, fmt.Errorf("state: genesis licensing authorities: %w", err)
		}
	}
	writeSet(o, keyLicensing, lic)
	o.Set(keyIssuers, chain.Encode(&issuersRecord{Version: RecordVersion, Issuers: append([]chain.Issuer{}, g.Issuers...)}))
	// Genesis members register as a registration transaction would, at height 0 and genesis
	// time, under the same rules (an issuer genesis names, unexpired, one per key and node key);
	// genesis itself stands in for each subject's signature.
	e := &executor{m: m, o: o, h: &chain.Header{ChainID: g.ChainID, Time: g.TimeMs}, params: g.Params, licensing: lic}
	for i := range g.Members {
		gm := &g.Members[i]
		tx := &chain.Tx{Kind: chain.TxRegisterMember, Signer: gm.Licence.Subject}
		body := &chain.RegisterMember{Licence: gm.Licence, EncryptionKey: gm.EncryptionKey}
		if err := e.registerMember(tx, gm.Licence.Subject.Address(), body, &TxResult{}); err != nil {
			return ChangeSet{}, fmt.Errorf("state: genesis member %d: %w", i, err)
		}
	}
	return o.ChangeSet(), nil
}

type emptyView struct{}

func (emptyView) Get([]byte) ([]byte, error) { return nil, nil }

// ApplyBlock executes a block's transactions in order on an Overlay over view (the state after
// block h.Height-1) and returns the block's change set. A block is valid only if every
// transaction is: the first invalid one makes ApplyBlock fail with a *TxError naming its index,
// hash and reason. Header-level failures (wrong chain, height not following the stored tip, time
// not after the previous block's, too many transactions or bytes) are plain errors. ApplyBlock
// never writes to view, so an error leaves state as it was.
//
// Transaction signatures not vouched for by verified are checked in one batch; if the batch
// fails, the per-signature results find the culprit.
func (m *Machine) ApplyBlock(view View, h *chain.Header, txs []*chain.Tx, verified VerifiedSet) (*Outcome, error) {
	e, err := m.begin(view, h, true)
	if err != nil {
		return nil, err
	}
	if len(txs) > int(e.params.MaxBlockTxs) {
		return nil, fmt.Errorf("%w: block %d has %d transactions, limit %d", ErrBlockFull, h.Height, len(txs), e.params.MaxBlockTxs)
	}
	hashes := make([]chain.Hash, len(txs))
	size := 0
	for i, tx := range txs {
		if tx == nil {
			return nil, &TxError{Index: i, Err: fmt.Errorf("state: empty transaction")}
		}
		enc := tx.Encode()
		size += len(enc)
		hashes[i] = chain.Sum256(enc)
	}
	if size > txBytesBudget(&e.params) {
		return nil, fmt.Errorf("%w: block %d has %d bytes of transactions, limit %d", ErrBlockFull, h.Height, size, txBytesBudget(&e.params))
	}
	sigOK := m.verifyBatch(txs, hashes, verified)
	results := make([]TxResult, len(txs))
	for i, tx := range txs {
		res, err := e.apply(tx, hashes[i], sigOK[i])
		if err != nil {
			return nil, &TxError{Index: i, Hash: hashes[i], Kind: tx.Kind, Err: err}
		}
		results[i] = res
	}
	return e.finish(results)
}

// verifyBatch reports per transaction whether its signature is known good: vouched for by
// verified or checked here. Transactions for another chain or of bad form are left false; apply
// rejects them for that reason before it looks at the signature.
func (m *Machine) verifyBatch(txs []*chain.Tx, hashes []chain.Hash, verified VerifiedSet) []bool {
	ok := make([]bool, len(txs))
	bv := chain.NewBatchVerifier()
	var idx []int
	for i, tx := range txs {
		if verified != nil && verified.Verified(hashes[i]) {
			ok[i] = true
			continue
		}
		if tx.ChainID != m.chainID || tx.Validate() != nil {
			continue
		}
		bv.Add(tx.Signer, chain.DomainTx, m.chainID, tx.SignedBytes(), tx.Sig)
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return ok
	}
	all, valid := bv.Verify()
	for j, i := range idx {
		ok[i] = all || (j < len(valid) && valid[j])
	}
	return ok
}

// CheckTx validates one transaction against committed state for the mempool: form, chain,
// signature (unless verified vouches for it), nonce == stored nonce + 1 (for evidence: nonce 0,
// an offence not yet punished, a signer of the set certifying the next block), and the kind's
// rules as if the transaction were the only one in the next block, with blockTime (the last
// block's time) as its time. It writes nothing.
func (m *Machine) CheckTx(view View, tx *chain.Tx, blockTime int64, verified VerifiedSet) error {
	if tx == nil {
		return fmt.Errorf("state: empty transaction")
	}
	var tip tipRecord
	if err := mustGet(view, keyTip, "tip", &tip); err != nil {
		return err
	}
	h := &chain.Header{Version: chain.HeaderVersion, ChainID: m.chainID, Height: tip.Height + 1, Time: blockTime}
	e, err := m.begin(view, h, false)
	if err != nil {
		return err
	}
	hash := tx.Hash()
	_, err = e.apply(tx, hash, verified != nil && verified.Verified(hash))
	return err
}

// Tip returns the height and time of the last executed block (height 0 and the genesis time
// before the first block).
func Tip(view View) (height uint64, timeMs int64, err error) {
	var t tipRecord
	if err := mustGet(view, keyTip, "tip", &t); err != nil {
		return 0, 0, err
	}
	return t.Height, t.Time, nil
}

// Params returns the genesis consensus parameters.
func Params(view View) (chain.Params, error) {
	var p paramsRecord
	if err := mustGet(view, keyParams, "params", &p); err != nil {
		return chain.Params{}, err
	}
	return p.Params, nil
}
