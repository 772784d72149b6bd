package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/records"
)

// maxClassCache bounds the peers whose class is remembered between commits; a flood of fresh
// identities empties it rather than growing it.
const maxClassCache = 8192

// committedState is what membership reads: the committed height and the state at it. The
// Badger store answers both from any goroutine.
type committedState interface {
	Height() uint64
	State() state.View
}

// membership answers the p2p host's admission questions from this node's committed ledger:
// a peer is a Member if its libp2p key is the node key of a member active at the last block's
// time, a Wallet if its key is an active patient's signing key, and otherwise a Stranger (which
// may present a licence ticket over the join protocol). Answers are cached per height: the
// host asks on every connection and stream.
type membership struct {
	chainID string
	genesis *chain.Genesis
	store   committedState
	// mayHold, if set, says whether the ledger assigns p as a holder of record id (records'
	// placement); until then every member may announce.
	mayHold func(p peer.ID, id chain.Hash) bool

	mu      sync.Mutex
	height  uint64
	view    state.View
	tipTime int64
	classes map[peer.ID]p2p.Class
}

func newMembership(g *chain.Genesis, st committedState) *membership {
	return &membership{chainID: g.ChainID, genesis: g, store: st, classes: make(map[peer.ID]p2p.Class)}
}

// refreshLocked moves to the latest committed height, dropping what was cached for the last.
func (m *membership) refreshLocked() error {
	h := m.store.Height()
	if m.view != nil && h == m.height {
		return nil
	}
	view := m.store.State()
	_, t, err := state.Tip(view)
	if err != nil {
		return err
	}
	m.height, m.view, m.tipTime = h, view, t
	clear(m.classes)
	return nil
}

// Class implements p2p.Admission.
func (m *membership) Class(p peer.ID) p2p.Class {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		return p2p.Stranger // no view of the ledger: admit nobody rather than everybody
	}
	if c, ok := m.classes[p]; ok {
		return c
	}
	c := m.classify(p)
	if len(m.classes) >= maxClassCache {
		clear(m.classes)
	}
	m.classes[p] = c
	return c
}

func (m *membership) classify(p peer.ID) p2p.Class {
	key, err := records.NodeKeyOf(p)
	if err != nil {
		return p2p.Stranger
	}
	if mem, err := state.MemberByNode(m.view, key); err == nil && mem != nil && mem.Role != chain.RolePatient && mem.ActiveAt(m.tipTime) {
		return p2p.Member
	}
	// A patient's wallet speaks with the patient's own signing key.
	id, retired, err := state.ResolveSigner(m.view, key)
	if err != nil || retired {
		return p2p.Stranger
	}
	if mem, err := state.Member(m.view, id); err == nil && mem != nil && mem.Role == chain.RolePatient && mem.Key == key && mem.ActiveAt(m.tipTime) {
		return p2p.Wallet
	}
	return p2p.Stranger
}

// CheckTicket implements p2p.Admission: the ticket is a licence (canonical encoding) by an
// issuer genesis names for its role, unexpired at the last block's time, not revoked on the
// ledger, and naming p's key as its node key.
func (m *membership) CheckTicket(p peer.ID, ticket []byte) error {
	var l chain.Licence
	if err := chain.DecodeCanonical("licence ticket", ticket, p2p.MaxTicketBytes, &l); err != nil {
		return err
	}
	if err := l.Validate(); err != nil {
		return err
	}
	key, err := records.NodeKeyOf(p)
	if err != nil {
		return err
	}
	if l.NodeKey != key {
		return fmt.Errorf("node: licence %q names node key %s, not the presenting peer's", l.Number, l.NodeKey.Short())
	}
	m.mu.Lock()
	err = m.refreshLocked()
	view, tip := m.view, m.tipTime
	m.mu.Unlock()
	if err != nil {
		return err
	}
	issuer, err := m.isIssuer(view, l.Role, l.Issuer)
	if err != nil {
		return err
	}
	if !issuer {
		return fmt.Errorf("node: licence %q is not issued by an issuer genesis names for role %s", l.Number, l.Role)
	}
	if l.NotAfter <= tip {
		return fmt.Errorf("node: licence %q expired", l.Number)
	}
	if err := l.VerifySig(m.chainID); err != nil {
		return err
	}
	// A member whose attestation was revoked, or who left, cannot come back in on the old licence.
	if mem, err := state.Member(view, l.Subject.Address()); err != nil {
		return err
	} else if mem != nil && (mem.Revoked || mem.Left) {
		return errors.New("node: the licence's holder was revoked or left")
	}
	return nil
}

func (m *membership) isIssuer(view state.View, role chain.Role, key chain.PubKey) (bool, error) {
	if role == chain.RoleProvider {
		for _, a := range m.genesis.LicensingAuthorities {
			if a.Key == key {
				return true, nil
			}
		}
		return false, nil
	}
	return state.IsIssuer(view, role, key)
}

// MayProvide implements p2p.Admission: only members may announce holders, and only of records
// the ledger assigns them (when the record service says so).
func (m *membership) MayProvide(p peer.ID, id chain.Hash) bool {
	if m.Class(p) != p2p.Member {
		return false
	}
	if m.mayHold == nil {
		return true
	}
	return m.mayHold(p, id)
}

// walletScope is the wallet protocol's scope rule (sync/light.Options.Scope): a peer admitted
// as a patient's wallet proves only that patient's keys; members, and anyone else the host let
// through, are not limited.
func (m *membership) walletScope(p peer.ID) (chain.Address, bool) {
	if m.Class(p) != p2p.Wallet {
		return chain.Address{}, false
	}
	key, err := records.NodeKeyOf(p)
	if err != nil {
		return chain.Address{}, true // limited to no one
	}
	m.mu.Lock()
	view := m.view
	m.mu.Unlock()
	id, _, err := state.ResolveSigner(view, key)
	if err != nil {
		return chain.Address{}, true
	}
	return id, true
}
