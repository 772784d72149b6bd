package records

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// ReadResult is a decrypted record.
type ReadResult struct {
	Record *state.RecordState
	JSON   []byte
	Holder string // "local" or the peer id that served it
}

// Read fetches (or finds locally), verifies and decrypts a record for this provider. The node
// enforces the ledger's consent state for its own users first: without a current consent (or
// emergency access) it refuses even if it holds a copy and an envelope. Every read, local or
// remote, leaves an access entry on the ledger; a remote one also this node's receipt. On a
// stale view of the ledger this node judges nothing itself: it neither serves its own copy nor
// logs a refusal, and leaves the decision to a remote holder with a fresh view (its own records'
// author needs no consent, so reads them from its copy whatever the view's age). role is the
// staff role of the person asking (chain.AccessRequest.Role): it goes on the ledger with the read.
func (r *Service) Read(ctx context.Context, id chain.Hash, purpose string, emergency bool, role string) (*ReadResult, error) {
	if err := chain.ValidateRole(role); err != nil {
		return nil, err
	}
	var rec *state.RecordState
	var cerr error
	var stale bool
	err := r.query(ctx, func(view state.View) error {
		var err error
		if stale, err = r.stale(view); err != nil {
			return err
		}
		if rec, err = state.Record(view, id); err != nil || rec == nil {
			return err
		}
		me, err := state.Reader(view, r.self)
		if err != nil {
			return err
		}
		if me == nil {
			return fmt.Errorf("%w: this node's provider %s is not registered yet", ErrNotRegistered, r.self)
		}
		now, err := tipTime(view)
		if err != nil {
			return err
		}
		_, cerr = state.CheckAccess(view, now, r.self, rec, purpose, emergency)
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case rec == nil:
		return nil, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	case rec.Erased:
		return nil, fmt.Errorf("%w: %s was erased at the patient's request", ErrRecordErased, id)
	}
	req := r.newRequest(id, purpose, emergency, role, r.nodeKey) // for this node as the holder
	if cerr != nil && stale {
		return nil, fmt.Errorf("%w: %s (%w: a consent given since may not be seen yet; try again when this node has caught up)",
			ErrAccessRefused, consentReason(cerr), ErrStaleView)
	}
	if cerr != nil {
		// This node refuses its own user as any holder would, and the attempt is audited too
		// (once per refusalLogEvery for the same requester and record, whatever the purpose,
		// so polling cannot flood the ledger).
		if r.shouldLogRefusal(refusalKey{r.self, id}) {
			if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessRefused, Reason: truncateReason(consentReason(cerr))}); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrAccessRefused, consentReason(cerr))
	}

	var ct []byte
	var env envelope.Envelope
	holder, err := "", ErrStaleView
	if !stale || rec.Author == r.self {
		ct, env, holder, err = r.readLocal(rec, req)
	}
	if err != nil {
		ct, env, holder, err = r.fetchRemote(ctx, rec, req)
		if err != nil {
			return nil, err
		}
	}
	s := &envelope.Sealed{Ciphertext: ct, Envelopes: []envelope.Envelope{env}}
	plain, err := envelope.Open(r.keys.Encryption, s, r.context(rec))
	if err != nil {
		return nil, fmt.Errorf("decrypt record %s: %w", id.Short(), err)
	}
	return &ReadResult{Record: rec, JSON: plain, Holder: holder}, nil
}

// readLocal serves a read from this node's own copy, journalling it like any served fetch.
func (r *Service) readLocal(rec *state.RecordState, req *chain.AccessRequest) ([]byte, envelope.Envelope, string, error) {
	env, err := r.blobs.Envelope(rec.ID, r.keyID)
	if err != nil {
		return nil, env, "", err
	}
	ct, err := r.blobs.Get(rec.CiphertextHash)
	if err != nil {
		if errors.Is(err, blobstore.ErrCorrupt) {
			r.log.Warn("local copy of a record is corrupt; fetching another", "record", rec.ID.Short())
		}
		return nil, env, "", err
	}
	if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessServed}); err != nil {
		return nil, env, "", err
	}
	return ct, env, "local", nil
}

func (r *Service) fetchRemote(ctx context.Context, rec *state.RecordState, req *chain.AccessRequest) ([]byte, envelope.Envelope, string, error) {
	holders := r.holders(ctx, rec.ID)
	if len(holders) == 0 {
		return nil, envelope.Envelope{}, "", fmt.Errorf("%w: no peers to fetch record %s from", ErrRecordNotFound, rec.ID.Short())
	}
	// One request per holder, each addressed to it: a request can buy one read from one holder.
	// A holder that refuses, stalls, is stale or serves a bad copy costs at most its deadline;
	// the next one is asked.
	var said []string
	var refusers []peer.ID
	for _, h := range holders {
		if err := ctx.Err(); err != nil {
			return nil, envelope.Envelope{}, "", fmt.Errorf("%w: record %s: %w", ErrRecordNotFound, rec.ID.Short(), err)
		}
		hk, kerr := NodeKeyOf(h)
		if kerr != nil {
			continue
		}
		hreq := r.newRequest(rec.ID, req.Purpose, req.Emergency, req.Role, hk)
		resp, err := r.fetchOne(ctx, h, hreq, rec)
		if err != nil {
			said = append(said, err.Error())
			continue
		}
		if resp.Status == exchange.StatusRefused {
			refusers = append(refusers, h)
		}
		if resp.Status != exchange.StatusOK {
			said = append(said, fmt.Sprintf("%s: %s: %s", h, resp.Status, resp.Reason))
			continue
		}
		// The ciphertext is the record's: this node's receipt goes on the ledger whatever the
		// holder logs, so the patient sees the read even if the holder hides it.
		if err := r.logReceipt(chain.AccessReceipt{Request: *hreq, CiphertextHash: rec.CiphertextHash}); err != nil {
			return nil, envelope.Envelope{}, "", fmt.Errorf("record %s received, but its receipt could not be journalled: %w", rec.ID.Short(), err)
		}
		// This node's view allowed the read and a holder served it: those that refused it
		// judged wrongly (or a block apart from the others; one strike is far from a ban).
		for _, p := range refusers {
			r.net.Penalize(p, fmt.Errorf("records: refused a read of record %s that %s served", rec.ID.Short(), h))
		}
		for _, e := range resp.Envelopes {
			if e.RecipientKeyID == r.keyID {
				return resp.Ciphertext, e, h.String(), nil
			}
		}
		return nil, envelope.Envelope{}, "", fmt.Errorf("holder %s sent no key envelope for this node", h)
	}
	msg := fmt.Sprintf("record %s from %d holders: %s", rec.ID.Short(), len(holders), strings.Join(said, "; "))
	if len(refusers) > 0 {
		return nil, envelope.Envelope{}, "", fmt.Errorf("%w: %w: %s", ErrAccessRefused, exchange.ErrRefused, msg)
	}
	return nil, envelope.Envelope{}, "", fmt.Errorf("%w: %s", ErrRecordNotFound, msg)
}

// fetchOne asks holder h for rec with hreq, within h's deadlines: the first byte within
// r.firstByte, the whole answer within a time the record's size allows at holderMinRate. A
// holder that misses them, sends a malformed answer or a ciphertext that is not the anchored
// one gets a strike, and an error.
func (r *Service) fetchOne(ctx context.Context, h peer.ID, hreq *chain.AccessRequest, rec *state.RecordState) (*exchange.FetchResponse, error) {
	total := r.firstByte + holderSlack + time.Duration(rec.Size/holderMinRate)*time.Second
	hctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	resp, err := exchange.FetchWithin(hctx, r.net.LibP2P(), r.chainID, h, hreq, r.firstByte)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %w", h, ctx.Err())
	case errors.Is(err, exchange.ErrStalled), hctx.Err() != nil:
		err = fmt.Errorf("records: holder %s stalled on record %s (%w)", h, rec.ID.Short(), err)
		r.net.Penalize(h, err)
		return nil, err
	case errors.Is(err, exchange.ErrMalformed), errors.Is(err, exchange.ErrTooLarge):
		r.net.Penalize(h, err)
		return nil, err
	default:
		return nil, err
	}
	if resp.Status == exchange.StatusOK {
		if got := chain.Sum256(resp.Ciphertext); got != rec.CiphertextHash {
			err := fmt.Errorf("%w: %s served %s for record %s, anchored %s", exchange.ErrTampered, h, got.Short(), rec.ID.Short(), rec.CiphertextHash.Short())
			r.log.Warn("holder served a bad copy", "peer", h, "record", rec.ID.Short())
			r.net.Penalize(h, err)
			return nil, err
		}
	}
	return resp, nil
}

// newRequest signs a request for record id addressed to the holder node holder.
func (r *Service) newRequest(id chain.Hash, purpose string, emergency bool, role string, holder chain.PubKey) *chain.AccessRequest {
	req := &chain.AccessRequest{Record: id, RequesterNode: r.nodeKey, Holder: holder, Purpose: purpose, Emergency: emergency, Role: role,
		IssuedMs: r.now().UnixMilli(), Nonce: randUint64()}
	req.Sign(r.keys.Signing, r.chainID)
	return req
}

// NodeKeyOf returns the raw Ed25519 key a libp2p peer id embeds (p2p.NodeKey).
func NodeKeyOf(p peer.ID) (chain.PubKey, error) { return p2p.NodeKey(p) }

func randUint64() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return binary.LittleEndian.Uint64(b[:])
}

// PatientOf returns the patient of a record.
func (r *Service) PatientOf(ctx context.Context, id chain.Hash) (chain.Address, error) {
	var rec *state.RecordState
	err := r.query(ctx, func(view state.View) error {
		var err error
		rec, err = state.Record(view, id)
		return err
	})
	if err != nil {
		return chain.Address{}, err
	}
	if rec == nil {
		return chain.Address{}, fmt.Errorf("%w: %s", ErrRecordNotFound, id)
	}
	return rec.Patient, nil
}
