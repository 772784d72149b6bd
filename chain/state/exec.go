package state

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// executor runs the transactions of one block (or one mempool check) on an overlay.
//
// The authority-set schedule lives in two keys: after block H, auth/next is set(H+1) and
// auth/after is set(H+2). While block h runs, cur (= stored auth/next = set(h)) decides who may
// propose and vote, and changes are made directly to auth/after in the overlay, which becomes
// set(h+2); finish then moves the old auth/after (set(h+1)) into auth/next.
type executor struct {
	m      *Machine
	o      *Overlay
	h      *chain.Header
	params chain.Params
	// consensusID is what this chain's votes are signed under (chain.ConsensusID).
	consensusID string
	// Loaded by loadSets from the view under the overlay, so they are the pre-block sets.
	cur       *chain.AuthoritySet
	oldAfter  *chain.AuthoritySet
	licensing *chain.AuthoritySet
}

// begin reads what every transaction needs. checkTip makes it insist that h follows the stored
// tip (ApplyBlock); CheckTx builds its own header and skips that.
func (m *Machine) begin(view View, h *chain.Header, checkTip bool) (*executor, error) {
	if view == nil || h == nil {
		return nil, fmt.Errorf("state: no view or header")
	}
	if h.ChainID != m.chainID {
		return nil, fmt.Errorf("%w: header is for %q, this machine for %q", ErrWrongChain, h.ChainID, m.chainID)
	}
	var p paramsRecord
	if err := mustGet(view, keyParams, "params", &p); err != nil {
		return nil, err
	}
	if p.ChainID != m.chainID {
		return nil, fmt.Errorf("%w: state is for %q, this machine for %q", ErrWrongChain, p.ChainID, m.chainID)
	}
	if checkTip {
		var tip tipRecord
		if err := mustGet(view, keyTip, "tip", &tip); err != nil {
			return nil, err
		}
		if h.Height != tip.Height+1 {
			return nil, fmt.Errorf("state: block height %d does not follow state height %d", h.Height, tip.Height)
		}
		if h.Time <= tip.Time {
			return nil, fmt.Errorf("state: block %d time %d not after previous time %d", h.Height, h.Time, tip.Time)
		}
	}
	return &executor{m: m, o: NewOverlay(view), h: h, params: p.Params, consensusID: chain.ConsensusID(m.chainID, p.GenesisHash)}, nil
}

// loadSets reads the authority and licensing sets as they were before the block, once: most
// transactions (patients, records, consents, audit) never need them, and decoding them dominated
// CheckTx.
func (e *executor) loadSets() error {
	if e.cur != nil {
		return nil
	}
	base := e.o.base
	cur, err := readSet(base, keyNext, "authority set (next)")
	if err != nil {
		return err
	}
	if e.oldAfter, err = readSet(base, keyAfter, "authority set (after next)"); err != nil {
		return err
	}
	if e.licensing, err = readSet(base, keyLicensing, "licensing authorities"); err != nil {
		return err
	}
	e.cur = cur
	return nil
}

// apply runs one transaction; on error every write it made is undone.
func (e *executor) apply(tx *chain.Tx, hash chain.Hash, sigOK bool) (TxResult, error) {
	snap := e.o.Snapshot()
	res, err := e.run(tx, hash, sigOK)
	if err != nil {
		e.o.Revert(snap)
		return TxResult{}, err
	}
	return res, nil
}

func (e *executor) run(tx *chain.Tx, hash chain.Hash, sigOK bool) (TxResult, error) {
	res := TxResult{Hash: hash, Kind: tx.Kind}
	if err := tx.Validate(); err != nil {
		return res, fmt.Errorf("state: %w", err)
	}
	if tx.ChainID != e.m.chainID {
		return res, fmt.Errorf("%w: transaction is for %q, this is %q", ErrWrongChain, tx.ChainID, e.m.chainID)
	}
	if !sigOK {
		if err := tx.VerifySig(e.m.chainID); err != nil {
			return res, fmt.Errorf("state: %w", err)
		}
	}
	// Nonces belong to signing keys (a rotated-in key starts at 1; the old key is refused, so
	// nothing it signed can be replayed); rights belong to the member id the key resolves to.
	keyAddr := tx.Signer.Address()
	addr, err := e.resolveSigner(tx.Signer)
	if err != nil {
		return res, err
	}
	// Evidence carries nonce 0 (tx.Validate checked it) and is unique by its offence instead.
	if tx.Kind.UsesNonce() {
		var acct accountRecord
		if _, err := get(e.o, nonceKey(keyAddr), "account", &acct); err != nil {
			return res, err
		}
		if tx.Nonce != acct.Nonce+1 {
			return res, fmt.Errorf("%w: nonce %d, want %d", ErrNonce, tx.Nonce, acct.Nonce+1)
		}
	}
	body, err := chain.DecodePayload(tx.Kind, tx.Payload)
	if err != nil {
		return res, fmt.Errorf("state: %w", err)
	}
	switch tx.Kind {
	case chain.TxRegisterMember, chain.TxAuthorityPropose, chain.TxAuthorityVote, chain.TxEvidence,
		chain.TxRevokeAttestation, chain.TxRotateKeys, chain.TxLeave:
		// Only these read the authority or licensing sets; patients and record, consent and
		// audit transactions never do.
		if err := e.loadSets(); err != nil {
			return res, err
		}
	}
	switch b := body.(type) {
	case *chain.RegisterMember:
		err = e.registerMember(tx, addr, b, &res)
	case *chain.RegisterPatient:
		err = e.registerPatient(tx, addr, b, &res)
	case *chain.RevokeAttestation:
		err = e.revokeAttestation(tx, b, &res)
	case *chain.RotateKeys:
		err = e.rotateKeys(tx, addr, b, &res)
	case *chain.Leave:
		err = e.leave(tx, addr, &res)
	case *chain.AuthorityPropose:
		err = e.propose(tx, hash, b, &res)
	case *chain.AuthorityVote:
		err = e.vote(tx, b, &res)
	case *chain.Evidence:
		err = e.evidence(tx, b, &res)
	case *chain.AnchorRecords:
		err = e.anchorRecords(addr, b, &res)
	case *chain.ConsentGrant:
		err = e.grantConsent(addr, hash, b, &res)
	case *chain.ConsentRevoke:
		err = e.revokeConsent(addr, b, &res)
	case *chain.EmergencyAccess:
		err = e.emergencyAccess(tx, addr, hash, b, &res)
	case *chain.AccessLog:
		err = e.accessLog(addr, b, &res)
	case *chain.RecordErase:
		err = e.eraseRecords(addr, b, &res)
	case *chain.EraseAck:
		err = e.ackErase(addr, b, &res)
	case *chain.AccessReceipts:
		err = e.accessReceipts(addr, b, &res)
	case *chain.PlanPublish:
		err = e.publishPlan(addr, b, &res)
	case *chain.PlanRetire:
		err = e.retirePlan(addr, b, &res)
	case *chain.MembershipEnrol:
		err = e.enrolMembership(addr, b, &res)
	case *chain.MembershipChange:
		err = e.changeMembership(addr, b, &res)
	case *chain.MembershipCancel:
		err = e.cancelMembership(addr, b, &res)
	case *chain.PaymentRecord:
		err = e.recordPayment(addr, hash, b, &res)
	case *chain.PayerSchedule:
		err = e.payerSchedule(addr, b, &res)
	case *chain.CoverageSet:
		err = e.coverageSet(addr, b, &res)
	case *chain.ClaimSubmit:
		err = e.claimSubmit(addr, b, &res)
	case *chain.ClaimDecide:
		err = e.claimDecide(addr, b, &res)
	case *chain.ClaimDispute:
		err = e.claimDispute(addr, b, &res)
	default:
		err = fmt.Errorf("state: no rule for transaction kind %s", tx.Kind)
	}
	if err != nil {
		return res, err
	}
	if tx.Kind.UsesNonce() {
		e.o.Set(nonceKey(keyAddr), chain.Encode(&accountRecord{Version: RecordVersion, Nonce: tx.Nonce}))
	}
	return res, nil
}

func (r *TxResult) event(typ, format string, args ...any) {
	r.Events = append(r.Events, Event{Type: typ, Detail: fmt.Sprintf(format, args...)})
}

// finish files automatic removal proposals, deletes what expires at this height, shifts the
// authority schedule and its history, records the tip and collects the change set.
func (e *executor) finish(results []TxResult) (*Outcome, error) {
	if err := e.loadSets(); err != nil {
		return nil, err
	}
	blockEvents, err := e.autoRemove()
	if err != nil {
		return nil, err
	}
	if err := e.expire(); err != nil {
		return nil, err
	}
	if err := e.advanceEpochs(); err != nil {
		return nil, err
	}
	newAfter, err := readSet(e.o, keyAfter, "authority set (after next)")
	if err != nil {
		return nil, err
	}
	if !setsEqual(e.cur, e.oldAfter) {
		writeSet(e.o, keyNext, e.oldAfter)
	}
	e.o.Set(keyTip, chain.Encode(&tipRecord{Version: RecordVersion, Height: e.h.Height, Time: e.h.Time}))
	out := &Outcome{Changes: e.o.ChangeSet(), Results: results, BlockEvents: blockEvents}
	if !setsEqual(newAfter, e.oldAfter) {
		out.NextAuthorities = newAfter
	}
	return out, nil
}

func insertSorted(keys []chain.PubKey, k chain.PubKey) []chain.PubKey {
	i, _ := slices.BinarySearchFunc(keys, k, func(a, b chain.PubKey) int { return bytes.Compare(a[:], b[:]) })
	return slices.Insert(keys, i, k)
}
