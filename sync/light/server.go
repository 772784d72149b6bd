package light

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/statetree"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/p2p/frame"
	"github.com/medledger/medledger/records/exchange"
)

// Source is what the server reads: a node's committed chain (store.Store fits). Its reads must
// be safe beside commits.
type Source interface {
	Height() uint64
	Block(height uint64) (*chain.Block, error)
	Cert(height uint64) (*chain.CommitCert, error)
	StateAt(height uint64) (state.View, error)
	Prove(height uint64, key []byte) (*statetree.Proof, error)
}

// Options configure Serve; the zero value serves everyone everything, at the default rate.
type Options struct {
	Log *slog.Logger
	// Penalize scores a peer that sent garbage or broke the rate limit.
	Penalize func(peer.ID, error)
	// Scope says whether p is limited to one patient's keys (a wallet) and which patient;
	// unlimited peers (members) may prove any key. Nil: everyone is unlimited.
	Scope func(p peer.ID) (patient chain.Address, limited bool)
	// Submit hands a transaction to the node's mempool; nil refuses every submission.
	Submit func(ctx context.Context, tx *chain.Tx) (chain.Hash, error)
	// Fetch serves a record to a signed access request (records.Service.Fetch, which checks
	// the request, the requester's rights and journals the read); nil refuses every fetch.
	Fetch func(ctx context.Context, from peer.ID, req *chain.AccessRequest) *exchange.FetchResponse
	// Rate and Burst bound requests per peer (per second); 0 means the defaults.
	Rate  float64
	Burst int
}

// Default request rate per peer. A wallet asks in bursts: 79 requests to verify 10,000 headers,
// then a few per 64 keys of its patient's log; a burst over the limit is reset, not scored, so
// an honest wallet with a long history is slowed, never banned.
const (
	DefaultRate   = 100
	DefaultBurst  = 400
	streamTimeout = 20 * time.Second
)

type server struct {
	chainID string
	src     Source
	opts    Options
	streams *frame.Server
}

// Serve answers the wallet protocol of chainID on h from src until the returned stop is called.
// The host's admission decides who may open the protocol at all (members and patients' wallets).
func Serve(h host.Host, chainID string, src Source, opts Options) (stop func()) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Penalize == nil {
		opts.Penalize = func(peer.ID, error) {}
	}
	if opts.Rate <= 0 {
		opts.Rate = DefaultRate
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	// Over the rate limit a stream is reset, not scored (see DefaultRate).
	s := &server{chainID: chainID, src: src, opts: opts,
		streams: frame.NewServer(frame.ServerConfig{Rate: opts.Rate, Burst: opts.Burst, Timeout: streamTimeout, Penalize: opts.Penalize})}
	pid := p2p.WalletProtocol(chainID)
	h.SetStreamHandler(pid, s.handle)
	var once sync.Once
	return func() {
		once.Do(func() {
			h.RemoveStreamHandler(pid)
			s.streams.Close()
		})
	}
}

// handle serves one request stream (frame.Server: rate limit, deadline, bounded frame); a
// request that does not decode resets the stream and strikes the peer.
func (s *server) handle(st network.Stream) {
	s.streams.Serve(st, MaxRequestBytes, func(ctx context.Context, from peer.ID, body []byte) []byte {
		req, err := DecodeRequest(body)
		if err != nil {
			s.opts.Penalize(from, err)
			return nil
		}
		resp := s.answer(ctx, from, req)
		resp.Version, resp.Reason = WireVersion, reason(resp.Reason)
		return chain.Encode(resp)
	})
}

func (s *server) answer(ctx context.Context, from peer.ID, req *Request) *Response {
	top := s.src.Height()
	switch req.Kind {
	case KindStatus:
		return &Response{Height: top}
	case KindHeaders:
		if req.From > top {
			return &Response{Status: StatusMissing, Reason: fmt.Sprintf("this node's head is %d", top)}
		}
		var out []SignedHeader
		size := 0
		for h := req.From; h <= top && h < req.From+uint64(req.Count); h++ {
			sh, err := s.signedHeader(h)
			if err != nil {
				if len(out) > 0 {
					break // send what is ready
				}
				return s.failure(from, fmt.Sprintf("header %d", h), err)
			}
			if size += len(chain.Encode(sh)); size > MaxResponseBytes/2 && len(out) > 0 {
				break
			}
			out = append(out, *sh)
		}
		return &Response{Headers: out}
	case KindProve:
		// Proofs at Height are checked against header Height+1, which must be certified here.
		if req.Height >= top {
			return &Response{Status: StatusMissing, Reason: fmt.Sprintf("no certified header above %d here (head %d)", req.Height, top)}
		}
		if patient, limited := s.scope(from); limited {
			view, err := s.src.StateAt(req.Height)
			if err != nil {
				return s.failure(from, fmt.Sprintf("state at %d", req.Height), err)
			}
			for _, k := range req.Keys {
				ok, err := state.KeyConcerns(view, k, patient)
				if err != nil {
					return s.failure(from, "key scope", err)
				}
				if !ok {
					return &Response{Status: StatusRefused, Reason: fmt.Sprintf("a wallet proves its own patient's keys only (%q)", safeKey(k))}
				}
			}
		}
		proofs := make([]Proof, len(req.Keys))
		for i, k := range req.Keys {
			p, err := s.src.Prove(req.Height, k)
			if err != nil {
				return s.failure(from, fmt.Sprintf("proof at %d", req.Height), err)
			}
			proofs[i] = *wireProof(p)
		}
		return &Response{Proofs: proofs}
	case KindSubmit:
		return s.submit(ctx, from, req.Tx)
	case KindFetch:
		return s.fetch(ctx, from, req.Access)
	}
	return &Response{Status: StatusError, Reason: "unknown request"}
}

// walletKinds are the transactions a patient's wallet may submit over the wallet protocol:
// its own consents, erasures and key rotations, cancelling a membership it subscribes to and
// disputing a claim in its name (the rules check it is the subscriber or the claim's patient).
// Registration and enrolment need a practice's co-signature and go through the practice.
var walletKinds = map[chain.TxKind]bool{
	chain.TxConsentGrant: true, chain.TxConsentRevoke: true, chain.TxRecordErase: true, chain.TxRotateKeys: true,
	chain.TxMembershipCancel: true, chain.TxClaimDispute: true,
}

func (s *server) submit(ctx context.Context, from peer.ID, data []byte) *Response {
	if s.opts.Submit == nil {
		return &Response{Status: StatusRefused, Reason: "this node takes no transactions over the wallet protocol"}
	}
	tx, err := chain.DecodeTx(data)
	if err == nil {
		err = tx.Validate()
	}
	if err != nil {
		s.opts.Penalize(from, err)
		return &Response{Status: StatusError, Reason: "invalid transaction: " + err.Error()}
	}
	if patient, limited := s.scope(from); limited {
		if !walletKinds[tx.Kind] {
			return &Response{Status: StatusRefused, Reason: fmt.Sprintf("a wallet submits consents, revocations, erasures, key rotations, membership cancellations and claim disputes, not %s", tx.Kind)}
		}
		view, err := s.src.StateAt(s.src.Height())
		if err != nil {
			return s.failure(from, "state", err)
		}
		id, retired, err := state.ResolveSigner(view, tx.Signer)
		if err != nil {
			return s.failure(from, "signer", err)
		}
		if retired || id != patient {
			return &Response{Status: StatusRefused, Reason: "a wallet submits its own patient's transactions only"}
		}
	}
	hash, err := s.opts.Submit(ctx, tx)
	if err != nil {
		return &Response{Status: StatusRefused, Reason: err.Error()}
	}
	return &Response{TxHash: hash}
}

func (s *server) scope(p peer.ID) (chain.Address, bool) {
	if s.opts.Scope == nil {
		return chain.Address{}, false
	}
	return s.opts.Scope(p)
}

// signedHeader is header h, its certificate and, when h names a new next set, that set's proof
// in the state after h-1 (the state h's StateRoot commits to).
func (s *server) signedHeader(h uint64) (*SignedHeader, error) {
	b, err := s.src.Block(h)
	if err != nil {
		return nil, err
	}
	c, err := s.src.Cert(h)
	if err != nil {
		return nil, err
	}
	sh := &SignedHeader{Header: b.Header, Cert: *c}
	if b.Header.NextAuthoritiesHash != b.Header.AuthoritiesHash {
		p, err := s.src.Prove(h-1, state.NextSetKey())
		if err != nil {
			return nil, err
		}
		sh.NextSet = wireProof(p)
	}
	return sh, nil
}

func (s *server) failure(from peer.ID, what string, err error) *Response {
	if errors.Is(err, store.ErrPruned) || errors.Is(err, store.ErrNotFound) {
		return &Response{Status: StatusMissing, Reason: fmt.Sprintf("%s: %v", what, err)}
	}
	s.opts.Log.Warn("light: serving a wallet", "peer", from, "what", what, "err", err)
	return &Response{Status: StatusError, Reason: "internal error: " + what}
}

func safeKey(k []byte) string {
	for i, c := range k {
		if c < 0x20 || c > 0x7e {
			return string(k[:i]) + "…"
		}
	}
	return string(k)
}

func (s *server) fetch(ctx context.Context, from peer.ID, data []byte) *Response {
	if s.opts.Fetch == nil {
		return &Response{Status: StatusRefused, Reason: "this node serves no records over the wallet protocol"}
	}
	ar, err := chain.DecodeAccessRequest(data)
	if err == nil {
		err = ar.VerifySig(s.chainID)
	}
	if err != nil {
		s.opts.Penalize(from, err)
		return &Response{Status: StatusError, Reason: "invalid access request: " + err.Error()}
	}
	fr := s.opts.Fetch(ctx, from, ar)
	switch {
	case fr == nil:
		return &Response{Status: StatusError, Reason: "internal error"}
	case fr.Status == exchange.StatusOK && len(fr.Envelopes) == 1:
		return &Response{Ciphertext: fr.Ciphertext, Envelopes: fr.Envelopes}
	case fr.Status == exchange.StatusOK:
		return &Response{Status: StatusError, Reason: "internal error: no single key envelope"}
	case fr.Status == exchange.StatusNotFound:
		return &Response{Status: StatusMissing, Reason: fr.Reason}
	case fr.Status == exchange.StatusRefused:
		return &Response{Status: StatusRefused, Reason: fr.Reason}
	}
	return &Response{Status: StatusError, Reason: fr.Reason}
}
