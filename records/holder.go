package records

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

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
	return r.PushBatch(ctx, from, []*exchange.PushRequest{req})[0]
}

// PushBatch is Push for several records from one peer (exchange.BatchHandler): each is judged
// on its own, and those accepted are stored together (one group of fsyncs). The batch counts
// as one request against the member's quota, and its bytes as the sum of the records'.
func (r *Service) PushBatch(ctx context.Context, from peer.ID, reqs []*exchange.PushRequest) []error {
	errs := make([]error, len(reqs))
	fromKey, err := NodeKeyOf(from)
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("%w: the pushing peer's identity is not a member node key", exchange.ErrRefused)
		}
		return errs
	}
	recs := make([]*state.RecordState, len(reqs))
	var pusher chain.Address
	size, accepted := 0, 0
	for i, req := range reqs {
		recs[i], pusher, errs[i] = r.judgePush(ctx, fromKey, req)
		if errs[i] != nil {
			continue
		}
		accepted++
		size += len(req.Ciphertext)
		for j := range req.Envelopes {
			size += len(req.Envelopes[j].Wrapped) + 64
		}
	}
	if accepted == 0 {
		return errs
	}
	if err := r.pushQuota.take(pusher, size, r.now()); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	var files []blobstore.RecordFiles
	var at []int
	for i, req := range reqs {
		if errs[i] != nil {
			continue
		}
		// Envelopes alone (after a grant) only for a record whose ciphertext is here.
		if len(req.Ciphertext) == 0 && !r.blobs.Has(recs[i].CiphertextHash) {
			errs[i] = fmt.Errorf("%w: no copy of record %s here for these envelopes", exchange.ErrNotFound, req.Record.Short())
			continue
		}
		f := blobstore.RecordFiles{Record: recs[i].ID, Envelopes: req.Envelopes}
		if len(req.Ciphertext) > 0 {
			f.Ciphertext = req.Ciphertext
		}
		files, at = append(files, f), append(at, i)
	}
	if len(files) == 0 {
		return errs
	}
	if _, err := r.blobs.PutBatch(files); err != nil {
		for _, i := range at {
			errs[i] = err
		}
		return errs
	}
	for _, i := range at {
		if len(reqs[i].Ciphertext) > 0 {
			r.provideAsync(recs[i].ID)
		}
	}
	return errs
}

// judgePush checks one push against the ledger (see Push) and returns the record and the
// pushing member.
func (r *Service) judgePush(ctx context.Context, fromKey chain.PubKey, req *exchange.PushRequest) (*state.RecordState, chain.Address, error) {
	rec, pusher, active, assign, err := r.replicaPeer(ctx, req.Record, fromKey)
	if err != nil {
		return nil, chain.Address{}, err
	}
	switch {
	case rec == nil:
		return nil, chain.Address{}, fmt.Errorf("%w: record %s is not anchored on this node's ledger yet", exchange.ErrNotFound, req.Record.Short())
	case rec.Erased:
		// Also stops a replayed push from bringing an erased record back.
		return nil, chain.Address{}, fmt.Errorf("%w: record %s is erased", exchange.ErrRefused, req.Record.Short())
	case !active:
		return nil, chain.Address{}, fmt.Errorf("%w: the pushing node is not an active provider's", exchange.ErrRefused)
	case pusher.Key != req.Sender:
		return nil, chain.Address{}, fmt.Errorf("%w: push signed with another key than the pushing node's provider's", exchange.ErrRefused)
	case pusher.ID != rec.Author && !slices.Contains(assign.Holders, fromKey):
		return nil, chain.Address{}, fmt.Errorf("%w: only the author or an assigned holder may push record %s", exchange.ErrRefused, req.Record.Short())
	case rec.CiphertextHash != req.CiphertextHash:
		return nil, chain.Address{}, fmt.Errorf("%w: ciphertext hash does not match the anchor of record %s", exchange.ErrRefused, req.Record.Short())
	case !assign.Includes(r.nodeKey):
		return nil, chain.Address{}, fmt.Errorf("%w: the ledger does not assign record %s to this node", exchange.ErrRefused, req.Record.Short())
	}
	if len(req.Ciphertext) > 0 {
		if got := chain.Sum256(req.Ciphertext); got != rec.CiphertextHash {
			return nil, chain.Address{}, fmt.Errorf("%w: ciphertext does not hash to the anchor of record %s", exchange.ErrRefused, req.Record.Short())
		}
	}
	return rec, pusher.ID, nil
}

// Fetch is the blob protocol's fetch handler. The ledger decides: the requester must be a
// registered provider holding a current consent (or emergency access) for this record and
// purpose. The holder decides only on a fresh view of the ledger, and each request id at most
// once, across restarts: a request already in the journal or on the ledger is refused. Every
// decision on a record held here is journalled durably before the answer goes out, and the
// journal reaches the ledger even across a crash.
func (r *Service) Fetch(ctx context.Context, from peer.ID, req *chain.AccessRequest) *exchange.FetchResponse {
	refuse := func(st exchange.Status, reason string) *exchange.FetchResponse {
		return &exchange.FetchResponse{Status: st, Reason: reason}
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
	id := req.ID()
	switch r.claim(id) {
	case claimBusy:
		return refuse(exchange.StatusError, "holder busy")
	case claimTaken:
		return refuse(exchange.StatusRefused, "request already used: sign a new one")
	}
	defer r.release(id)
	// One signed request, one decision, also after a restart: a decided request is in the
	// journal until the ledger has it. The journal is asked first, since its flusher removes an
	// entry only once the ledger holds it, so between the two questions nothing slips through.
	if used, err := r.journal.Has(id); err != nil {
		return refuse(exchange.StatusError, "audit journal unavailable")
	} else if used {
		return refuse(exchange.StatusRefused, "request already used: sign a new one")
	}
	var rec *state.RecordState
	var prov *state.MemberRecord
	var self *state.MemberRecord // the record's own patient, reading it with their wallet
	var cerr error
	var logged, stale, throttled bool
	err := r.query(ctx, func(view state.View) error {
		var err error
		if stale, err = r.stale(view); err != nil || stale {
			return err
		}
		a, err := state.Access(view, id)
		if err != nil {
			return err
		}
		if logged = a != nil; logged {
			return nil
		}
		if rec, err = state.Record(view, req.Record); err != nil || rec == nil {
			return err
		}
		// A provider, or a payer (CheckAccess lets it read only the sealed claims naming it).
		if prov, err = state.Reader(view, req.Requester.Address()); err != nil {
			return err
		}
		if prov == nil {
			// A patient reads their own records without consent; never as an emergency.
			m, err := state.MemberByKey(view, req.Requester)
			if err == nil && m != nil && m.Role == chain.RolePatient && m.ID == rec.Patient && !req.Emergency {
				self = m
			}
			return err
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		if _, cerr = state.CheckAccess(view, now, req.Requester.Address(), rec, req.Purpose, req.Emergency); cerr != nil {
			throttled, err = state.RefusalThrottled(view, req.Requester.Address(), rec, now)
		}
		return err
	})
	switch {
	case err != nil:
		return refuse(exchange.StatusError, "ledger unavailable")
	case stale:
		// It cannot judge: a consent may have been revoked in the blocks it has not seen. Not
		// a refusal (nothing is logged); the requester asks the next holder.
		return refuse(exchange.StatusError, ErrStaleView.Error())
	case logged:
		return refuse(exchange.StatusRefused, "request already used: sign a new one")
	case rec == nil:
		return refuse(exchange.StatusNotFound, "no such record on this node's ledger")
	case rec.Erased:
		return refuse(exchange.StatusNotFound, "record erased")
	case !r.blobs.Has(rec.CiphertextHash):
		return refuse(exchange.StatusNotFound, "not held here")
	case prov == nil && self == nil:
		return refuse(exchange.StatusRefused, "requester is not a registered provider (nor the record's patient)")
	}
	// A request whose role the ledger would refuse is refused before it costs an entry.
	if err := state.CheckRequestRole(req.Role, self != nil); err != nil {
		return refuse(exchange.StatusRefused, err.Error())
	}
	if cerr != nil {
		reason := truncateReason(consentReason(cerr))
		// Refusals are logged at a bounded rate per requester and record: the ledger keeps one
		// an hour, and this node journals no more than that.
		if !throttled && r.shouldLogRefusal(refusalKey{req.Requester.Address(), rec.ID}) {
			if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessRefused, Reason: reason}); err != nil {
				return refuse(exchange.StatusError, "audit journal unavailable")
			}
		}
		return refuse(exchange.StatusRefused, reason)
	}
	var encKey []byte
	if prov != nil {
		encKey = prov.EncryptionKey
	} else {
		encKey = self.EncryptionKey
	}
	keyID := envelope.KeyIDOf(encKey)
	env, err := r.blobs.Envelope(rec.ID, keyID)
	if err != nil && rec.Author == r.self {
		to, perr := envelope.ParsePublicKey(encKey)
		if perr == nil {
			if env, err = r.wrapKey(rec, to); err == nil {
				r.storeWrapped(rec.ID, env)
			}
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
	if !r.hideServes.Load() {
		if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessServed}); err != nil {
			return refuse(exchange.StatusError, "audit journal unavailable")
		}
	}
	return &exchange.FetchResponse{Status: exchange.StatusOK, Ciphertext: ct, Envelopes: []envelope.Envelope{env}}
}

// ErrStaleView is a holder's answer when its last block is too old to judge a consent by.
var ErrStaleView = errors.New("holder's ledger view is stale")

// stale reports whether the view's last block is older, by this node's clock, than the
// freshness bound.
func (r *Service) stale(view state.View) (bool, error) {
	_, tipMs, err := state.Tip(view)
	if err != nil {
		return false, err
	}
	bound := r.staleAfter
	if bound == 0 {
		p, err := state.Params(view)
		if err != nil {
			return false, err
		}
		bound = max(staleBlocks*time.Duration(p.BlockIntervalMs)*time.Millisecond, minStaleAfter)
	}
	return r.now().UnixMilli()-tipMs > bound.Milliseconds(), nil
}

type claimResult int

const (
	claimOK claimResult = iota
	claimTaken
	claimBusy
)

// claim marks request id as being decided by this holder; a concurrent decision of the same id
// is refused (claimTaken), and beyond maxInflight decisions at once so is any (claimBusy).
func (r *Service) claim(id chain.Hash) claimResult {
	r.limMu.Lock()
	defer r.limMu.Unlock()
	switch {
	case r.inflight[id]:
		return claimTaken
	case len(r.inflight) >= maxInflight:
		return claimBusy
	}
	r.inflight[id] = true
	return claimOK
}

// release ends the decision of request id; what was decided is in the journal by now.
func (r *Service) release(id chain.Hash) {
	r.limMu.Lock()
	defer r.limMu.Unlock()
	delete(r.inflight, id)
}

// storeWrapped keeps an envelope wrapped on demand, in the background: the read it was made for
// does not wait behind the store's other writes (a grant's wrapping stores a whole patient's
// envelopes at once), and an envelope not kept is only wrapped again at the next read. At most
// maxBackgroundStores wait at once; beyond, the envelope is not kept.
func (r *Service) storeWrapped(record chain.Hash, env envelope.Envelope) {
	select {
	case r.storeSem <- struct{}{}:
	default:
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		defer func() { <-r.storeSem }()
		if err := r.blobs.PutEnvelope(record, env); err != nil {
			r.log.Warn("keep an envelope wrapped on demand", "record", record.Short(), "err", err)
		}
	}()
}

// maxBackgroundStores bounds storeWrapped's writes in flight.
const maxBackgroundStores = 64
