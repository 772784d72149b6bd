package records

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
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
// remote, leaves an access entry on the ledger.
func (r *Service) Read(ctx context.Context, id chain.Hash, purpose string, emergency bool) (*ReadResult, error) {
	var rec *state.RecordState
	var cerr error
	err := r.query(ctx, func(view state.View) error {
		var err error
		if rec, err = state.Record(view, id); err != nil || rec == nil {
			return err
		}
		me, err := state.Provider(view, r.self)
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
	req := r.newRequest(id, purpose, emergency, r.nodeKey) // for this node as the holder
	if cerr != nil {
		// This node refuses its own user as any holder would, and the attempt is audited too
		// (once per refusalLogEvery for the same read, so polling cannot flood the ledger).
		if r.shouldLogRefusal(refusalKey{id, purpose, emergency}) {
			if err := r.logAccess(chain.AccessEntry{Request: *req, Outcome: chain.AccessRefused, Reason: truncateReason(consentReason(cerr))}); err != nil {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrAccessRefused, consentReason(cerr))
	}

	ct, env, holder, err := r.readLocal(rec, req)
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
	var resp *exchange.FetchResponse
	var from peer.ID
	err := fmt.Errorf("no holder with a usable identity for record %s", rec.ID.Short())
	for _, h := range holders {
		hk, kerr := NodeKeyOf(h)
		if kerr != nil {
			continue
		}
		hreq := r.newRequest(rec.ID, req.Purpose, req.Emergency, hk)
		resp, from, err = exchange.FetchFrom(ctx, r.net.LibP2P(), r.chainID, []peer.ID{h}, hreq, rec.CiphertextHash, func(p peer.ID, err error) {
			r.log.Warn("holder served a bad copy", "peer", p, "record", rec.ID.Short(), "err", err)
		})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		if errors.Is(err, exchange.ErrRefused) {
			return nil, envelope.Envelope{}, "", fmt.Errorf("%w: %w", ErrAccessRefused, err)
		}
		return nil, envelope.Envelope{}, "", fmt.Errorf("%w: %w", ErrRecordNotFound, err)
	}
	for _, e := range resp.Envelopes {
		if e.RecipientKeyID == r.keyID {
			return resp.Ciphertext, e, from.String(), nil
		}
	}
	return nil, envelope.Envelope{}, "", fmt.Errorf("holder %s sent no key envelope for this node", from)
}

// newRequest signs a request for record id addressed to the holder node holder.
func (r *Service) newRequest(id chain.Hash, purpose string, emergency bool, holder chain.PubKey) *chain.AccessRequest {
	req := &chain.AccessRequest{Record: id, RequesterNode: r.nodeKey, Holder: holder, Purpose: purpose, Emergency: emergency,
		IssuedMs: r.now().UnixMilli(), Nonce: randUint64()}
	req.Sign(r.keys.Signing, r.chainID)
	return req
}

// NodeKeyOf returns the raw Ed25519 key a libp2p peer id embeds.
func NodeKeyOf(p peer.ID) (chain.PubKey, error) {
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return chain.PubKey{}, err
	}
	raw, err := pk.Raw()
	if err != nil {
		return chain.PubKey{}, err
	}
	var k chain.PubKey
	if len(raw) != len(k) {
		return chain.PubKey{}, fmt.Errorf("peer %s has a %d-byte key, not an Ed25519 key", p, len(raw))
	}
	copy(k[:], raw)
	return k, nil
}

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
