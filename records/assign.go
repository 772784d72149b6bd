package records

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/placement"
)

// Who holds what, from the ledger alone: the record's author plus the Params.Replicas active
// providers whose node keys score highest for the record id (records/placement). Every node
// computes the same holders from the same tip, so pushes, pulls, fetches and DHT provider
// records all follow one assignment, never whoever happens to be connected.

// holdSlack widens the assignment when this node judges someone else's claim (a push, a pull, a
// DHT provider record, a fetch candidate): a member that joined or lapsed in a block one side
// has not seen yet moves the boundary by one.
const holdSlack = 1

// mayHoldWait bounds MayHold's ledger read: it runs on the DHT's request goroutines.
const mayHoldWait = 2 * time.Second

// Assignment is who should hold a record at one tip of the ledger.
type Assignment struct {
	// Author is the node key of the record's author; zero when the author is no longer an
	// active provider (it has lost the right to serve, so nobody should fetch from it).
	Author chain.PubKey
	// Holders are the other holders, highest placement score first: exactly Params.Replicas
	// of them when there are enough active providers.
	Holders []chain.PubKey
}

// Includes reports whether key is the author or one of the holders.
func (a Assignment) Includes(key chain.PubKey) bool {
	return key != (chain.PubKey{}) && (key == a.Author || slices.Contains(a.Holders, key))
}

// memberKeys is the placement input at one tip: the node keys of the providers active at its
// block time.
type memberKeys struct {
	height   uint64
	replicas int
	keys     []chain.PubKey                 // sorted by member id
	byMember map[chain.Address]chain.PubKey // active providers only
}

// placeCache keeps the placement input of the latest tip seen: one entry, rebuilt once per
// block (one read of the provider list and one per provider).
type placeCache struct {
	mu  sync.Mutex
	cur *memberKeys
}

// membersAt returns the placement input at view's tip.
func (r *Service) membersAt(view state.View) (*memberKeys, error) {
	height, timeMs, err := state.Tip(view)
	if err != nil {
		return nil, err
	}
	r.place.mu.Lock()
	cur := r.place.cur
	r.place.mu.Unlock()
	if cur != nil && cur.height == height {
		return cur, nil
	}
	params, err := state.Params(view)
	if err != nil {
		return nil, err
	}
	ids, err := state.ActiveProviders(view, timeMs)
	if err != nil {
		return nil, err
	}
	m := &memberKeys{height: height, replicas: params.ReplicaCount(), byMember: make(map[chain.Address]chain.PubKey, len(ids))}
	for _, id := range ids {
		rec, err := state.Member(view, id)
		if err != nil {
			return nil, err
		}
		if !rec.ActiveAt(timeMs) || rec.NodeKey == (chain.PubKey{}) {
			continue
		}
		m.keys = append(m.keys, rec.NodeKey)
		m.byMember[id] = rec.NodeKey
	}
	r.place.mu.Lock()
	// Views of older tips may still be in flight: keep the newest.
	if r.place.cur == nil || r.place.cur.height < height {
		r.place.cur = m
	}
	r.place.mu.Unlock()
	return m, nil
}

// assignment computes who should hold rec at view's tip, widened by slack holders.
func (r *Service) assignment(view state.View, rec *state.RecordState, slack int) (Assignment, error) {
	m, err := r.membersAt(view)
	if err != nil {
		return Assignment{}, err
	}
	author := m.byMember[rec.Author] // zero when the author is not active
	return Assignment{Author: author, Holders: placement.Holders(rec.ID, author, m.keys, m.replicas+slack)}, nil
}

// Assignment returns who should hold rec at view's tip: its author's node and the
// Params.Replicas holders placement names among the active providers' nodes.
func (r *Service) Assignment(view state.View, rec *state.RecordState) (Assignment, error) {
	return r.assignment(view, rec, 0)
}

// MayHold reports whether the ledger assigns the node with libp2p identity p to hold the record
// with id id (its author, or a holder within one place of slack for membership changes not
// seen by everyone yet). The DHT accepts a provider record for a record id only if it holds
// (p2p.Admission.MayProvide); records announce record ids, never ciphertext hashes. An erased
// or unknown record has no holders.
func (r *Service) MayHold(p peer.ID, id chain.Hash) bool {
	key, err := NodeKeyOf(p)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), mayHoldWait)
	defer cancel()
	ok := false
	_ = r.query(ctx, func(view state.View) error {
		rec, err := state.Record(view, id)
		if err != nil || rec == nil || rec.Erased {
			return err
		}
		a, err := r.assignment(view, rec, holdSlack)
		ok = err == nil && a.Includes(key)
		return err
	})
	return ok
}

// PeerOfNodeKey returns the libp2p peer id of a member node's raw Ed25519 key (the inverse of
// NodeKeyOf).
func PeerOfNodeKey(k chain.PubKey) (peer.ID, error) {
	pk, err := p2pcrypto.UnmarshalEd25519PublicKey(k[:])
	if err != nil {
		return "", fmt.Errorf("records: node key %x: %w", k[:4], err)
	}
	return peer.IDFromPublicKey(pk)
}

// peersOf maps an assignment to peer ids, author first, leaving out this node and keys that
// do not make a peer id.
func (r *Service) peersOf(a Assignment) []peer.ID {
	var out []peer.ID
	for _, k := range append([]chain.PubKey{a.Author}, a.Holders...) {
		if k == (chain.PubKey{}) || k == r.nodeKey {
			continue
		}
		if p, err := PeerOfNodeKey(k); err == nil && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// holders lists the peers to fetch record id from: its author's node, then the holders in
// placement order (one extra for a membership change this node has not seen), as the ledger
// assigns them. Never an unassigned peer: the DHT could only add peers MayHold accepts, and
// those are already listed, so it is not asked.
func (r *Service) holders(ctx context.Context, id chain.Hash) []peer.ID {
	if r.net.LibP2P() == nil {
		return nil // no network: nobody to ask
	}
	if r.holderOrder != nil {
		return r.holderOrder(id)
	}
	var a Assignment
	err := r.query(ctx, func(view state.View) error {
		rec, err := state.Record(view, id)
		if err != nil || rec == nil {
			return err
		}
		a, err = r.assignment(view, rec, holdSlack)
		return err
	})
	if err != nil {
		r.log.Warn("record holders", "record", id.Short(), "err", err)
		return nil
	}
	return r.peersOf(a)
}

// replicaPeer reads what judging a replica push or pull needs, in one view: the record (nil if
// unknown or erased), the member whose node key is peerKey (nil if none), whether it is a
// provider active at the tip, and the record's holders with slack.
func (r *Service) replicaPeer(ctx context.Context, id chain.Hash, peerKey chain.PubKey) (rec *state.RecordState, m *state.MemberRecord, active bool, assign Assignment, err error) {
	err = r.query(ctx, func(view state.View) error {
		var err error
		if rec, err = state.Record(view, id); err != nil || rec == nil || rec.Erased {
			return err
		}
		if m, err = state.MemberByNode(view, peerKey); err != nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		active = m != nil && m.Role == chain.RoleProvider && m.ActiveAt(now)
		assign, err = r.assignment(view, rec, holdSlack)
		return err
	})
	return rec, m, active, assign, err
}
