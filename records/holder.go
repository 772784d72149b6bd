package records

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// Push is the blob protocol's store handler. This node keeps a copy only if the ledger says it
// should: the record is anchored with this ciphertext hash and not erased, this node is one of
// its assigned holders (one place of slack), and the pushing node belongs to an active provider
// that is the record's author, or another assigned holder repairing a replica, and signed the
// push with that provider's key. A pushing member is held to its quota (memberQuota): beyond
// it the push is refused with StatusBusy and may be sent again later.
func (r *Service) Push(ctx context.Context, from peer.ID, req *exchange.PushRequest) error {
	fromKey, err := NodeKeyOf(from)
	if err != nil {
		return fmt.Errorf("%w: the pushing peer's identity is not a member node key", exchange.ErrRefused)
	}
	var (
		rec    *state.RecordState
		pusher *state.MemberRecord
		active bool
		assign Assignment
	)
	if err := r.query(ctx, func(view state.View) error {
		var err error
		if rec, err = state.Record(view, req.Record); err != nil || rec == nil || rec.Erased {
			return err
		}
		if pusher, err = state.MemberByNode(view, fromKey); err != nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		active = pusher != nil && pusher.Role == chain.RoleProvider && pusher.ActiveAt(now)
		assign, err = r.assignment(view, rec, holdSlack)
		return err
	}); err != nil {
		return err
	}
	switch {
	case rec == nil:
		return fmt.Errorf("%w: record %s is not anchored on this node's ledger yet", exchange.ErrNotFound, req.Record.Short())
	case rec.Erased:
		// Also stops a replayed push from bringing an erased record back.
		return fmt.Errorf("%w: record %s is erased", exchange.ErrRefused, req.Record.Short())
	case !active:
		return fmt.Errorf("%w: the pushing node is not an active provider's", exchange.ErrRefused)
	case pusher.Key != req.Sender:
		return fmt.Errorf("%w: push signed with another key than the pushing node's provider's", exchange.ErrRefused)
	case pusher.ID != rec.Author && !slices.Contains(assign.Holders, fromKey):
		return fmt.Errorf("%w: only the author or an assigned holder may push record %s", exchange.ErrRefused, req.Record.Short())
	case rec.CiphertextHash != req.CiphertextHash:
		return fmt.Errorf("%w: ciphertext hash does not match the anchor of record %s", exchange.ErrRefused, req.Record.Short())
	case !assign.Includes(r.nodeKey):
		return fmt.Errorf("%w: the ledger does not assign record %s to this node", exchange.ErrRefused, req.Record.Short())
	}
	size := len(req.Ciphertext)
	for i := range req.Envelopes {
		size += len(req.Envelopes[i].Wrapped) + 64
	}
	if err := r.pushQuota.take(pusher.ID, size, r.now()); err != nil {
		return err
	}
	if len(req.Ciphertext) > 0 {
		if got := chain.Sum256(req.Ciphertext); got != rec.CiphertextHash {
			return fmt.Errorf("%w: ciphertext does not hash to the anchor of record %s", exchange.ErrRefused, req.Record.Short())
		}
		if _, err := r.blobs.PutBatch([]blobstore.RecordFiles{{Record: rec.ID, Ciphertext: req.Ciphertext, Envelopes: req.Envelopes}}); err != nil {
			return err
		}
		r.provideAsync(rec.ID)
		return nil
	}
	if !r.blobs.Has(rec.CiphertextHash) {
		return fmt.Errorf("%w: no copy of record %s here for these envelopes", exchange.ErrNotFound, req.Record.Short())
	}
	for _, e := range req.Envelopes {
		if err := r.blobs.PutEnvelope(rec.ID, e); err != nil {
			return err
		}
	}
	return nil
}

// Fetch is the blob protocol's fetch handler. The ledger decides: the requester must be a
// registered provider holding a current consent (or emergency access) for this record and
// purpose. Every decision on a record held here is journalled durably before the answer goes
// out, and the journal reaches the ledger even across a crash.
func (r *Service) Fetch(ctx context.Context, from peer.ID, req *chain.AccessRequest) *exchange.FetchResponse {
	refuse := func(st exchange.Status, reason string) *exchange.FetchResponse {
		return &exchange.FetchResponse{Status: st, Reason: reason}
	}
	var rec *state.RecordState
	var prov *state.ProviderRecord
	var cerr error
	err := r.query(ctx, func(view state.View) error {
		var err error
		if rec, err = state.Record(view, req.Record); err != nil || rec == nil {
			return err
		}
		if prov, err = state.Provider(view, req.Requester.Address()); err != nil || prov == nil {
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		_, cerr = state.CheckAccess(view, now, req.Requester.Address(), rec, req.Purpose, req.Emergency)
		return nil
	})
	switch {
	case err != nil:
		return refuse(exchange.StatusError, "ledger unavailable")
	case rec == nil:
		return refuse(exchange.StatusNotFound, "no such record on this node's ledger")
	case rec.Erased:
		return refuse(exchange.StatusNotFound, "record erased")
	case !r.blobs.Has(rec.CiphertextHash):
		return refuse(exchange.StatusNotFound, "not held here")
	case prov == nil:
		return refuse(exchange.StatusRefused, "requester is not a registered provider")
	}
	// A request is good only from the node it names and at the holder it names: a copy taken
	// from the ledger, or sent to several holders, is refused before it costs an entry.
	if k, kerr := NodeKeyOf(from); kerr != nil || k != req.RequesterNode {
		return refuse(exchange.StatusRefused, "request is bound to another requester node")
	}
	if req.Holder != r.nodeKey {
		return refuse(exchange.StatusRefused, "request is addressed to another holder")
	}
	// Compared in milliseconds without subtracting the request's value: a far-off IssuedMs must
	// not overflow into a small skew.
	if now, maxMs := r.now().UnixMilli(), maxRequestSkew.Milliseconds(); req.IssuedMs < now-maxMs || req.IssuedMs > now+maxMs {
		return refuse(exchange.StatusRefused, "request time too far from the holder's clock")
	}
	if !r.firstUse(req.ID()) {
		// One signed request, one read: a replay within the time window would be served
		// without a ledger entry of its own.
		return refuse(exchange.StatusRefused, "request already used: sign a new one")
	}
	if cerr != nil {
		reason := truncateReason(consentReason(cerr))
		if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessRefused, Reason: reason}); err != nil {
			return refuse(exchange.StatusError, "audit journal unavailable")
		}
		return refuse(exchange.StatusRefused, reason)
	}
	keyID := envelope.KeyIDOf(prov.EncryptionKey)
	env, err := r.blobs.Envelope(rec.ID, keyID)
	if err != nil && rec.Author == r.self {
		to, perr := envelope.ParsePublicKey(prov.EncryptionKey)
		if perr == nil {
			env, err = r.wrap(rec, to)
		}
	}
	if err != nil {
		return refuse(exchange.StatusNotFound, "no key envelope for the requester here")
	}
	// Served as stored: the fetcher checks the hash against the anchor, so a damaged or
	// tampered copy is caught there and another holder is tried.
	ct, err := os.ReadFile(r.blobs.Path(rec.CiphertextHash))
	if err != nil {
		return refuse(exchange.StatusNotFound, "not held here")
	}
	if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessServed}); err != nil {
		return refuse(exchange.StatusError, "audit journal unavailable")
	}
	return &exchange.FetchResponse{Status: exchange.StatusOK, Ciphertext: ct, Envelopes: []envelope.Envelope{env}}
}

// firstUse records a request id and reports whether this holder sees it for the first time
// within the request-time window (older ids are refused by the time check anyway).
func (r *Service) firstUse(id chain.Hash) bool {
	r.limMu.Lock()
	defer r.limMu.Unlock()
	now := r.now()
	if _, ok := r.used[id]; ok {
		return false
	}
	if len(r.used) >= 1024 {
		for k, t := range r.used {
			if now.Sub(t) > 2*maxRequestSkew {
				delete(r.used, k)
			}
		}
	}
	r.used[id] = now
	return true
}
