package exchange

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

// ProtocolID names the blob exchange protocol of network chainID.
func ProtocolID(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/blobs/1.0.0")
}

// DomainPush signs PushRequests.
const DomainPush chain.Domain = "medledger/blob-push/v1"

// MessageVersion is the encoding version of every message of this protocol.
const MessageVersion = 1

// Errors returned by this package; test them with errors.Is.
var (
	// ErrNotFound: the holder does not have the record, or no holder had it.
	ErrNotFound = errors.New("blobs: not found")
	// ErrHashMismatch: a ciphertext does not hash to the address it was given with.
	ErrHashMismatch = errors.New("blobs: ciphertext does not match its hash")
	// ErrRefused: the remote holder refused the request; the error carries its reason.
	ErrRefused = errors.New("blobs: refused")
	// ErrTampered: a holder served a ciphertext that does not hash to the anchored hash.
	ErrTampered = errors.New("blobs: holder served a tampered ciphertext")
	// ErrTooLarge: a ciphertext, message or frame exceeds its limit.
	ErrTooLarge = errors.New("blobs: too large")
	// ErrMalformed: a message or frame is not what this package produces.
	ErrMalformed = errors.New("blobs: malformed message")
	// ErrRateLimited: a peer opened streams faster than ServerOptions.Rate and Burst allow.
	ErrRateLimited = errors.New("blobs: rate limit exceeded")
	// ErrStalled: a holder sent no byte of its answer within the first-byte deadline
	// (FetchWithin).
	ErrStalled = errors.New("blobs: holder stalled")
	// ErrBusy: the holder refused for now because the sender is over its quota (StatusBusy);
	// the same request may succeed later.
	ErrBusy = errors.New("blobs: over quota, retry later")
)

// Message size limits, in bytes. Every frame's length prefix is checked against the limit of the
// message it must carry before its body is read.
const (
	// MaxPushRequestBytes bounds an encoded PushRequest: a full ciphertext, the most envelopes a
	// sealed record may have, and the fixed fields.
	MaxPushRequestBytes = envelope.MaxCiphertextLen + envelope.MaxEnvelopes*envelope.MaxEnvelopeLen + 512
	// MaxFetchRequestBytes bounds a Request that carries a fetch (an encoded AccessRequest).
	MaxFetchRequestBytes = chain.MaxAccessRequestBytes + 64
	// MaxPullRequestBytes bounds a Request that carries a pull (two hashes).
	MaxPullRequestBytes = 128
	// MaxRequestBytes bounds a Request frame: the larger of the two kinds.
	MaxRequestBytes = MaxPushRequestBytes + 64
	// MaxFetchResponseBytes bounds an encoded FetchResponse.
	MaxFetchResponseBytes = envelope.MaxCiphertextLen + envelope.MaxEnvelopes*envelope.MaxEnvelopeLen + chain.MaxReasonLen + 512
	// MaxPushResponseBytes bounds an encoded PushResponse.
	MaxPushResponseBytes = chain.MaxReasonLen + 64
)

// RequestKind says what a Request carries.
type RequestKind uint8

// Request kinds.
const (
	KindFetch RequestKind = 1
	KindPush  RequestKind = 2
	// KindPull: a holder the ledger assigns to a record asks for its ciphertext and envelopes
	// (replica repair). Answered with a FetchResponse; no consent check and no access entry,
	// because copying ciphertext between assigned holders is not a read.
	KindPull RequestKind = 3
)

func (k RequestKind) String() string {
	switch k {
	case KindFetch:
		return "fetch"
	case KindPush:
		return "push"
	case KindPull:
		return "pull"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// Request is the one message a client sends on a stream: a fetch (Fetch holds an encoded,
// signed chain.AccessRequest), a push (Push is set) or a pull (Pull is set); the fields of the
// other kinds are empty.
type Request struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Kind    RequestKind
	Fetch   []byte
	Push    *PushRequest
	Pull    *PullRequest
}

// Validate checks the request's envelope: version, kind, and that exactly the field of its kind
// is set. The fetched AccessRequest and the pushed PushRequest are validated by their own
// decoders.
func (r *Request) Validate() error {
	if r.Version != MessageVersion {
		return fmt.Errorf("%w: request version %d (this build understands %d)", chain.ErrUnknownVersion, r.Version, MessageVersion)
	}
	switch r.Kind {
	case KindFetch:
		if len(r.Fetch) == 0 || r.Push != nil || r.Pull != nil {
			return fmt.Errorf("%w: a fetch carries an access request and no push or pull", ErrMalformed)
		}
		if len(r.Fetch) > chain.MaxAccessRequestBytes {
			return fmt.Errorf("%w: access request of %d bytes, limit %d", ErrTooLarge, len(r.Fetch), chain.MaxAccessRequestBytes)
		}
	case KindPush:
		if r.Push == nil || len(r.Fetch) != 0 || r.Pull != nil {
			return fmt.Errorf("%w: a push carries a push request and no access request or pull", ErrMalformed)
		}
	case KindPull:
		if r.Pull == nil || len(r.Fetch) != 0 || r.Push != nil {
			return fmt.Errorf("%w: a pull carries a pull request and nothing else", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown request kind %d", ErrMalformed, uint8(r.Kind))
	}
	return nil
}

// DecodeRequest decodes and validates a request frame's body (at most MaxRequestBytes,
// canonical). A fetch is at most MaxFetchRequestBytes and a pull MaxPullRequestBytes; a push's
// PushRequest and a pull's PullRequest are validated, but no signature is checked.
func DecodeRequest(data []byte) (*Request, error) {
	var r Request
	if err := chain.DecodeCanonical("blob request", data, MaxRequestBytes, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Kind == KindFetch && len(data) > MaxFetchRequestBytes {
		return nil, fmt.Errorf("%w: fetch request of %d bytes, limit %d", ErrTooLarge, len(data), MaxFetchRequestBytes)
	}
	switch r.Kind {
	case KindPush:
		if err := r.Push.Validate(); err != nil {
			return nil, err
		}
	case KindPull:
		if len(data) > MaxPullRequestBytes {
			return nil, fmt.Errorf("%w: pull request of %d bytes, limit %d", ErrTooLarge, len(data), MaxPullRequestBytes)
		}
		if err := r.Pull.Validate(); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// PullRequest asks a holder for a record's ciphertext and every envelope it holds, for a
// replica the ledger assigns to the requester. It is not signed: the holder decides on the
// stream's authenticated peer id, whose key the ledger binds to a member.
type PullRequest struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	Record         chain.Hash
	CiphertextHash chain.Hash // the anchored hash the requester will check the copy against
}

// Validate checks the request's form.
func (p *PullRequest) Validate() error {
	switch {
	case p.Version != MessageVersion:
		return fmt.Errorf("%w: pull request version %d (this build understands %d)", chain.ErrUnknownVersion, p.Version, MessageVersion)
	case p.Record.IsZero() || p.CiphertextHash.IsZero():
		return fmt.Errorf("%w: pull without a record id or ciphertext hash", ErrMalformed)
	}
	return nil
}

// PushRequest sends a record's ciphertext and/or envelopes to a holder. It is signed by the
// sender's provider key (DomainPush, under the chain id); the signature covers every field but
// the ciphertext itself, which is bound through CiphertextHash.
type PushRequest struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	Record         chain.Hash // the record (version) id of its RecordAnchor
	CiphertextHash chain.Hash // the anchored ciphertext hash: the blob's address
	// Ciphertext is the encoded ciphertext; empty for an envelope-only update (for example new
	// envelopes after a consent grant). When set it must hash to CiphertextHash.
	Ciphertext []byte
	Envelopes  []envelope.Envelope // distinct recipients
	Sender     chain.PubKey        // the sending provider's signing key
	Sig        chain.Signature
}

type pushSigned struct {
	_              struct{} `cbor:",toarray"`
	Version        uint8
	Record         chain.Hash
	CiphertextHash chain.Hash
	Envelopes      []envelope.Envelope
	Sender         chain.PubKey
}

// SignedBytes is what the sender signs.
func (p *PushRequest) SignedBytes() []byte {
	return chain.Encode(&pushSigned{Version: p.Version, Record: p.Record, CiphertextHash: p.CiphertextHash,
		Envelopes: p.Envelopes, Sender: p.Sender})
}

// Sign fills in Version, Sender and Sig.
func (p *PushRequest) Sign(key chain.PrivKey, chainID string) {
	p.Version = MessageVersion
	p.Sender = key.Public()
	p.Sig = key.Sign(DomainPush, chainID, p.SignedBytes())
}

// VerifySig checks the sender's signature under chainID.
func (p *PushRequest) VerifySig(chainID string) error {
	if err := chain.Verify(p.Sender, DomainPush, chainID, p.SignedBytes(), p.Sig); err != nil {
		return fmt.Errorf("blobs: push request signature: %w", err)
	}
	return nil
}

// Validate checks the request's form: version, record and hash, a ciphertext within
// envelope.MaxCiphertextLen, at most envelope.MaxEnvelopes valid envelopes with distinct
// recipients, and something to push. It does not hash the ciphertext (CheckCiphertext) or check
// the signature (VerifySig).
func (p *PushRequest) Validate() error {
	if p.Version != MessageVersion {
		return fmt.Errorf("%w: push request version %d (this build understands %d)", chain.ErrUnknownVersion, p.Version, MessageVersion)
	}
	switch {
	case p.Record.IsZero():
		return fmt.Errorf("%w: push without a record id", ErrMalformed)
	case p.CiphertextHash.IsZero():
		return fmt.Errorf("%w: push without a ciphertext hash", ErrMalformed)
	case len(p.Ciphertext) > envelope.MaxCiphertextLen:
		return fmt.Errorf("%w: ciphertext of %d bytes, limit %d", ErrTooLarge, len(p.Ciphertext), envelope.MaxCiphertextLen)
	case len(p.Ciphertext) == 0 && len(p.Envelopes) == 0:
		return fmt.Errorf("%w: push with neither a ciphertext nor envelopes", ErrMalformed)
	}
	return validateEnvelopes(p.Envelopes)
}

// CheckCiphertext checks that a non-empty Ciphertext hashes to CiphertextHash.
func (p *PushRequest) CheckCiphertext() error {
	if len(p.Ciphertext) > 0 && chain.Sum256(p.Ciphertext) != p.CiphertextHash {
		return fmt.Errorf("%w: record %s ciphertext does not hash to %s", ErrHashMismatch, p.Record.Short(), p.CiphertextHash.Short())
	}
	return nil
}

func validateEnvelopes(es []envelope.Envelope) error {
	if len(es) > envelope.MaxEnvelopes {
		return fmt.Errorf("%w: %d envelopes, limit %d", ErrTooLarge, len(es), envelope.MaxEnvelopes)
	}
	seen := make(map[chain.Hash]bool, len(es))
	for i := range es {
		if err := es[i].Validate(); err != nil {
			return fmt.Errorf("%w: envelope %d: %w", ErrMalformed, i, err)
		}
		if seen[es[i].RecipientKeyID] {
			return fmt.Errorf("%w: two envelopes for recipient %s", ErrMalformed, es[i].RecipientKeyID.Short())
		}
		seen[es[i].RecipientKeyID] = true
	}
	return nil
}

// Status is a response's outcome.
type Status uint8

// Response statuses.
const (
	// StatusOK: served (a fetch) or accepted (a push).
	StatusOK Status = 1
	// StatusRefused: the holder refused (no consent, not a holder, ...); Reason says why. A
	// refused fetch is logged on the ledger like a served one.
	StatusRefused Status = 2
	// StatusNotFound: the holder does not have the record.
	StatusNotFound Status = 3
	// StatusError: the request was invalid, or the holder failed; Reason says which.
	StatusError Status = 4
	// StatusBusy: the sender is over its quota at this holder (pushes or pulled bytes per
	// member); Reason says which. The same request may be sent again later.
	StatusBusy Status = 5
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusRefused:
		return "refused"
	case StatusNotFound:
		return "not found"
	case StatusError:
		return "error"
	case StatusBusy:
		return "busy"
	}
	return fmt.Sprintf("status-%d", uint8(s))
}

func (s Status) valid() bool { return s >= StatusOK && s <= StatusBusy }

// FetchResponse answers a fetch. Ciphertext and Envelopes are set only with StatusOK, which
// always carries a ciphertext; Reason only with another status.
type FetchResponse struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Status     Status
	Reason     string
	Ciphertext []byte
	Envelopes  []envelope.Envelope
}

// Validate checks the response's form.
func (r *FetchResponse) Validate() error {
	if r.Version != MessageVersion {
		return fmt.Errorf("%w: fetch response version %d (this build understands %d)", chain.ErrUnknownVersion, r.Version, MessageVersion)
	}
	if !r.Status.valid() {
		return fmt.Errorf("%w: unknown status %d", ErrMalformed, uint8(r.Status))
	}
	if len(r.Reason) > chain.MaxReasonLen {
		return fmt.Errorf("%w: reason of %d bytes, limit %d", ErrMalformed, len(r.Reason), chain.MaxReasonLen)
	}
	if r.Status != StatusOK {
		if len(r.Ciphertext) != 0 || len(r.Envelopes) != 0 {
			return fmt.Errorf("%w: a %s fetch response carries a ciphertext or envelopes", ErrMalformed, r.Status)
		}
		return nil
	}
	if r.Reason != "" {
		return fmt.Errorf("%w: a served fetch carries a reason", ErrMalformed)
	}
	if len(r.Ciphertext) == 0 {
		return fmt.Errorf("%w: a served fetch without a ciphertext", ErrMalformed)
	}
	if len(r.Ciphertext) > envelope.MaxCiphertextLen {
		return fmt.Errorf("%w: ciphertext of %d bytes, limit %d", ErrTooLarge, len(r.Ciphertext), envelope.MaxCiphertextLen)
	}
	return validateEnvelopes(r.Envelopes)
}

func decodeFetchResponse(data []byte) (*FetchResponse, error) {
	var r FetchResponse
	if err := chain.DecodeCanonical("fetch response", data, MaxFetchResponseBytes, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// PushResponse answers a push.
type PushResponse struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Status  Status
	Reason  string
}

// Validate checks the response's form.
func (r *PushResponse) Validate() error {
	if r.Version != MessageVersion {
		return fmt.Errorf("%w: push response version %d (this build understands %d)", chain.ErrUnknownVersion, r.Version, MessageVersion)
	}
	if !r.Status.valid() {
		return fmt.Errorf("%w: unknown status %d", ErrMalformed, uint8(r.Status))
	}
	if len(r.Reason) > chain.MaxReasonLen {
		return fmt.Errorf("%w: reason of %d bytes, limit %d", ErrMalformed, len(r.Reason), chain.MaxReasonLen)
	}
	if r.Status == StatusOK && r.Reason != "" {
		return fmt.Errorf("%w: an accepted push carries a reason", ErrMalformed)
	}
	return nil
}

func decodePushResponse(data []byte) (*PushResponse, error) {
	var r PushResponse
	if err := chain.DecodeCanonical("push response", data, MaxPushResponseBytes, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// reason makes s fit a response's Reason: valid UTF-8 of at most chain.MaxReasonLen bytes.
func reason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= chain.MaxReasonLen {
		return s
	}
	s = s[:chain.MaxReasonLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
