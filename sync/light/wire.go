package light

import (
	"errors"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/statetree"
	"github.com/medledger/medledger/records/exchange"
	"github.com/medledger/medledger/wallet/envelope"
)

// Wire limits. A response of MaxHeaders headers (a header, a certificate of up to
// chain.MaxAuthorities signatures, perhaps a set proof) or of MaxKeys proofs stays far below
// MaxResponseBytes.
const (
	WireVersion      = 1
	MaxHeaders       = 128
	MaxKeys          = 64
	MaxKeyBytes      = 128
	MaxRequestBytes  = 64 << 10
	MaxResponseBytes = exchange.MaxFetchResponseBytes + 64<<10
	maxReasonBytes   = 256
)

// Request kinds.
const (
	KindStatus  uint8 = 1 // the node's newest certified height
	KindHeaders uint8 = 2 // headers From..From+Count-1 with their certificates
	KindProve   uint8 = 3 // proofs of Keys in the state after block Height
	KindSubmit  uint8 = 4 // a transaction for the mempool (a wallet: signed by its own patient)
	KindFetch   uint8 = 5 // a record's ciphertext and the requester's key envelope (a signed access request)
)

// Response statuses.
const (
	StatusOK      uint8 = 0
	StatusRefused uint8 = 1 // the peer may not ask this (a key about another patient)
	StatusMissing uint8 = 2 // this node does not have it (a height above its head, or pruned)
	StatusError   uint8 = 3 // malformed request or internal error
)

// ErrMalformed marks input that does not decode or breaks a limit.
var ErrMalformed = errors.New("light: malformed message")

// Request is one question on the wallet protocol.
type Request struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Kind    uint8
	From    uint64 // KindHeaders: first height
	Count   uint32 // KindHeaders: how many (at most MaxHeaders)
	Height  uint64 // KindProve: the state after this block
	Keys    [][]byte
	Tx      []byte // KindSubmit: the transaction's canonical encoding
	Access  []byte // KindFetch: a chain.AccessRequest's canonical encoding
}

// Validate checks a request's form and limits.
func (r *Request) Validate() error {
	if r.Version != WireVersion {
		return fmt.Errorf("%w: request version %d, want %d", ErrMalformed, r.Version, WireVersion)
	}
	switch r.Kind {
	case KindStatus:
	case KindHeaders:
		if r.From == 0 || r.Count == 0 || r.Count > MaxHeaders {
			return fmt.Errorf("%w: headers from %d count %d (count 1..%d from height 1)", ErrMalformed, r.From, r.Count, MaxHeaders)
		}
	case KindProve:
		if len(r.Keys) == 0 || len(r.Keys) > MaxKeys {
			return fmt.Errorf("%w: %d keys to prove, want 1..%d", ErrMalformed, len(r.Keys), MaxKeys)
		}
		for _, k := range r.Keys {
			if len(k) == 0 || len(k) > MaxKeyBytes {
				return fmt.Errorf("%w: key of %d bytes, want 1..%d", ErrMalformed, len(k), MaxKeyBytes)
			}
		}
	case KindSubmit:
		if len(r.Tx) == 0 {
			return fmt.Errorf("%w: submit without a transaction", ErrMalformed)
		}
	case KindFetch:
		if len(r.Access) == 0 {
			return fmt.Errorf("%w: fetch without an access request", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: request kind %d", ErrMalformed, r.Kind)
	}
	return nil
}

// DecodeRequest decodes and validates a request.
func DecodeRequest(data []byte) (*Request, error) {
	var r Request
	if err := chain.DecodeCanonical("light request", data, MaxRequestBytes, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// SignedHeader is a header with the certificate that commits it and, when the header names a
// next authority set other than its own, a proof of that set in the state its StateRoot commits
// to (state.NextSetKey).
type SignedHeader struct {
	_       struct{} `cbor:",toarray"`
	Header  chain.Header
	Cert    chain.CommitCert
	NextSet *Proof
}

// Proof is statetree.Proof on the wire.
type Proof struct {
	_          struct{} `cbor:",toarray"`
	Version    int64
	Key        []byte
	Value      []byte
	Exists     bool
	Commitment []byte
}

func wireProof(p *statetree.Proof) *Proof {
	return &Proof{Version: p.Version, Key: p.Key, Value: p.Value, Exists: p.Exists, Commitment: p.Commitment}
}

func (p *Proof) tree() *statetree.Proof {
	return &statetree.Proof{Version: p.Version, Key: p.Key, Value: p.Value, Exists: p.Exists, Commitment: p.Commitment}
}

// Response answers a Request.
type Response struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Status  uint8
	Reason  string
	Height  uint64 // KindStatus: the newest certified height
	Headers []SignedHeader
	Proofs  []Proof
	TxHash  chain.Hash // KindSubmit: the accepted transaction's hash
	// KindFetch: the ciphertext as the holder stores it and the requester's key envelope.
	Ciphertext []byte
	Envelopes  []envelope.Envelope
}

// DecodeResponse decodes a response and checks its form against the request it answers.
func DecodeResponse(data []byte, req *Request) (*Response, error) {
	var r Response
	if err := chain.DecodeCanonical("light response", data, MaxResponseBytes, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if r.Version != WireVersion {
		return nil, fmt.Errorf("%w: response version %d", ErrMalformed, r.Version)
	}
	if len(r.Reason) > maxReasonBytes {
		return nil, fmt.Errorf("%w: reason of %d bytes", ErrMalformed, len(r.Reason))
	}
	if r.Status != StatusOK {
		if len(r.Headers) > 0 || len(r.Proofs) > 0 {
			return nil, fmt.Errorf("%w: a refusal with content", ErrMalformed)
		}
		return &r, nil
	}
	switch req.Kind {
	case KindHeaders:
		if len(r.Headers) == 0 || len(r.Headers) > int(req.Count) || len(r.Proofs) > 0 {
			return nil, fmt.Errorf("%w: %d headers for a request of %d", ErrMalformed, len(r.Headers), req.Count)
		}
	case KindProve:
		if len(r.Proofs) != len(req.Keys) || len(r.Headers) > 0 {
			return nil, fmt.Errorf("%w: %d proofs for %d keys", ErrMalformed, len(r.Proofs), len(req.Keys))
		}
	case KindFetch:
		if len(r.Headers) > 0 || len(r.Proofs) > 0 || len(r.Ciphertext) == 0 || len(r.Envelopes) != 1 ||
			len(r.Ciphertext) > envelope.MaxCiphertextLen {
			return nil, fmt.Errorf("%w: a fetch answered with %d bytes and %d envelopes", ErrMalformed, len(r.Ciphertext), len(r.Envelopes))
		}
	default:
		if len(r.Headers) > 0 || len(r.Proofs) > 0 {
			return nil, fmt.Errorf("%w: status with content", ErrMalformed)
		}
	}
	if req.Kind != KindFetch && (len(r.Ciphertext) > 0 || len(r.Envelopes) > 0) {
		return nil, fmt.Errorf("%w: a record in an answer that is not a fetch", ErrMalformed)
	}
	return &r, nil
}

func reason(s string) string {
	if len(s) > maxReasonBytes {
		return s[:maxReasonBytes]
	}
	return s
}
