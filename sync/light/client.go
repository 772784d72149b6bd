package light

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/medledger/medledger/wallet/envelope"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/p2p/frame"
)

// Errors a node's answer can carry.
var (
	ErrRefused = errors.New("light: the node refused")
	ErrMissing = errors.New("light: the node does not have it")
)

// Client asks one node over the wallet protocol. It trusts nothing it hears: Sync and Patient
// check every answer with a Verifier.
type Client struct {
	host    host.Host
	peer    peer.ID
	chainID string
	// Timeout bounds one round trip (default 20 s).
	Timeout time.Duration
}

// NewClient asks node to over h, on network chainID's wallet protocol.
func NewClient(h host.Host, chainID string, to peer.ID) *Client {
	return &Client{host: h, peer: to, chainID: chainID, Timeout: 20 * time.Second}
}

// Peer is the node asked.
func (c *Client) Peer() peer.ID { return c.peer }

// roundTrip asks once, and again (at most three more times, backing off) if the stream broke
// before an answer arrived: a node over its rate limit resets the stream. An answer that
// arrived is never asked again, whatever it says.
func (c *Client) roundTrip(ctx context.Context, req *Request) (*Response, error) {
	for attempt := 0; ; attempt++ {
		var answered bool
		resp, err := c.exchange(ctx, req, &answered)
		if err == nil || answered || attempt == 3 || ctx.Err() != nil {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(200<<attempt) * time.Millisecond):
		}
	}
}

// exchange is one request on one stream; answered tells whether a whole answer arrived.
func (c *Client) exchange(ctx context.Context, req *Request, answered *bool) (*Response, error) {
	req.Version = WireVersion
	if err := req.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	st, err := c.host.NewStream(ctx, c.peer, p2p.WalletProtocol(c.chainID))
	if err != nil {
		return nil, fmt.Errorf("light: open a stream to %s: %w", c.peer, err)
	}
	stopReset := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stopReset()
	if err := frame.Write(st, chain.Encode(req)); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("light: ask %s: %w", c.peer, err)
	}
	_ = st.CloseWrite()
	body, err := frame.Read(st, MaxResponseBytes)
	if err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("light: answer from %s: %w", c.peer, err)
	}
	*answered = true
	_ = st.Close()
	resp, err := DecodeResponse(body, req)
	if err != nil {
		return nil, fmt.Errorf("light: answer from %s: %w", c.peer, err)
	}
	switch resp.Status {
	case StatusOK:
		return resp, nil
	case StatusRefused:
		return nil, fmt.Errorf("%w: %s: %s", ErrRefused, c.peer, resp.Reason)
	case StatusMissing:
		return nil, fmt.Errorf("%w: %s: %s", ErrMissing, c.peer, resp.Reason)
	}
	return nil, fmt.Errorf("light: %s answered: %s", c.peer, resp.Reason)
}

// Status is the node's newest certified height (as the node says: unverified).
func (c *Client) Status(ctx context.Context) (uint64, error) {
	resp, err := c.roundTrip(ctx, &Request{Kind: KindStatus})
	if err != nil {
		return 0, err
	}
	return resp.Height, nil
}

// Sync brings v up to the node's head, verifying every header on the way. It returns the height
// reached; a node that claims a head it cannot back with headers makes Sync fail.
func (c *Client) Sync(ctx context.Context, v *Verifier) (uint64, error) {
	head, err := c.Status(ctx)
	if err != nil {
		return v.Height(), err
	}
	// A node a block or two behind the header v trusts may be catching up; one that stays
	// behind is stale, or serves a chain rolled back.
	for deadline := time.Now().Add(behindGrace); head < v.Height() && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return v.Height(), ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if head, err = c.Status(ctx); err != nil {
			return v.Height(), err
		}
	}
	if head < v.Height() {
		return v.Height(), fmt.Errorf("%w: %s's head is %d, below the header already verified at %d (a stale view, or withheld blocks)", ErrBehind, c.peer, head, v.Height())
	}
	for v.Height() < head {
		count := min(uint64(MaxHeaders), head-v.Height())
		resp, err := c.roundTrip(ctx, &Request{Kind: KindHeaders, From: v.Height() + 1, Count: uint32(count)})
		if err != nil {
			return v.Height(), err
		}
		for i := range resp.Headers {
			if err := v.Accept(&resp.Headers[i]); err != nil {
				return v.Height(), fmt.Errorf("%s: %w", c.peer, err)
			}
		}
	}
	return v.Height(), nil
}

// ErrBehind is Sync's answer when the node's head stays below the header the verifier trusts.
var ErrBehind = errors.New("light: node is behind the trusted header")

// behindGrace is how long Sync waits for a node behind the trusted header to catch up.
const behindGrace = 5 * time.Second

// TrustHeader starts a verifier from the header at height whose hash the user confirmed: the
// node serves the header (its hash must match) and a proof of the next authority set against
// it (so the header must be recent enough that the node still keeps the state before it).
func (c *Client) TrustHeader(ctx context.Context, g *chain.Genesis, height uint64, hash chain.Hash) (*Verifier, error) {
	if height < 2 {
		return nil, errors.New("light: a trusted header must be above height 1")
	}
	resp, err := c.roundTrip(ctx, &Request{Kind: KindHeaders, From: height, Count: 1})
	if err != nil {
		return nil, err
	}
	if len(resp.Headers) == 0 || resp.Headers[0].Header.Height != height {
		return nil, fmt.Errorf("%w: %s sent no header %d", ErrUnverified, c.peer, height)
	}
	h := &resp.Headers[0].Header
	if got := h.Hash(); got != hash {
		return nil, fmt.Errorf("%w: %s's header %d is %s, not the trusted %s", ErrUnverified, c.peer, height, got, hash)
	}
	key := state.NextSetKey()
	pr, err := c.roundTrip(ctx, &Request{Kind: KindProve, Height: height - 1, Keys: [][]byte{key}})
	if err != nil {
		return nil, err
	}
	if len(pr.Proofs) != 1 {
		return nil, fmt.Errorf("%w: %s sent %d proofs for one key", ErrUnverified, c.peer, len(pr.Proofs))
	}
	val, err := verifyAgainst(h, &pr.Proofs[0], key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.peer, err)
	}
	if val == nil {
		return nil, fmt.Errorf("%w: %s proved no next authority set at header %d", ErrUnverified, c.peer, height)
	}
	set, err := state.DecodeAuthoritySet(val)
	if err != nil {
		return nil, fmt.Errorf("%w: header %d's next set: %w", ErrUnverified, height, err)
	}
	return NewVerifierAt(g, h, set)
}

// Prove asks for keys at v's proof height and returns their verified values (nil: absent).
func (c *Client) Prove(ctx context.Context, v *Verifier, keys [][]byte) ([][]byte, error) {
	at, err := v.ProofHeight()
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(keys))
	for start := 0; start < len(keys); start += MaxKeys {
		batch := keys[start:min(start+MaxKeys, len(keys))]
		resp, err := c.roundTrip(ctx, &Request{Kind: KindProve, Height: at, Keys: batch})
		if err != nil {
			return nil, err
		}
		for i, k := range batch {
			val, err := v.Value(&resp.Proofs[i], k)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.peer, err)
			}
			out = append(out, val)
		}
	}
	return out, nil
}

// PatientState is what the ledger holds about one patient, every piece proved against one
// trusted header: their registration, their log, every item the log names, and what the
// audit joins to those items (the other side of each read, the block time).
type PatientState struct {
	Header  chain.Header // the trusted header the proofs were checked against
	Member  *state.MemberRecord
	Log     []state.PatientLogEntry
	Items   []*state.Item // Items[i] is what Log[i] names
	Patient chain.Address
	values  map[string][]byte // every proved key: its value, nil when proved absent
}

// ErrNotProved is what PatientState.View answers for a key the wallet did not prove.
var ErrNotProved = errors.New("light: key not proved")

// View is the proved state as a state.View: the keys proved answer their values, every other
// key ErrNotProved, so that code written for a node's state (records.ConsentsJSON,
// records.AccessesJSON) runs on what the wallet verified and fails on anything it did not.
func (ps *PatientState) View() state.View { return provedView(ps.values) }

type provedView map[string][]byte

func (v provedView) Get(key []byte) ([]byte, error) {
	val, ok := v[string(key)]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotProved, key)
	}
	return val, nil
}

// IDs returns the ids of the log's items of kind k, in log order, once each.
func (ps *PatientState) IDs(kinds ...state.LogKind) []chain.Hash {
	seen := map[chain.Hash]bool{}
	var out []chain.Hash
	for _, e := range ps.Log {
		for _, k := range kinds {
			if e.Kind == k && !seen[e.ID] {
				seen[e.ID] = true
				out = append(out, e.ID)
			}
		}
	}
	return out
}

// maxLogEntries bounds what a wallet fetches for one patient (a node that claims more is
// asked for no more than this).
const maxLogEntries = 1 << 20

// Patient fetches and verifies patient's state at v's trusted header. A node that omits an
// entry, forges one, or serves a value from another state fails the proofs.
func (c *Client) Patient(ctx context.Context, v *Verifier, patient chain.Address) (*PatientState, error) {
	ps := &PatientState{Header: *v.Header(), Patient: patient, values: map[string][]byte{}}
	prove := func(keys [][]byte) ([][]byte, error) {
		vals, err := c.Prove(ctx, v, keys)
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			ps.values[string(k)] = vals[i]
		}
		return vals, nil
	}
	vals, err := prove([][]byte{state.MemberKey(patient), state.PatientLogHeadKey(patient), state.TipKey()})
	if err != nil {
		return nil, err
	}
	if vals[0] != nil {
		if ps.Member, err = state.DecodeMember(vals[0]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnverified, err)
		}
	}
	n, err := state.DecodePatientLogLength(vals[1])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnverified, err)
	}
	if n > maxLogEntries {
		return nil, fmt.Errorf("light: patient %s's log has %d entries, more than this wallet reads (%d)", patient, n, maxLogEntries)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = state.PatientLogEntryKey(patient, uint64(i))
	}
	raw, err := prove(keys)
	if err != nil {
		return nil, err
	}
	itemKeys := make([][]byte, n)
	for i, r := range raw {
		e, err := state.DecodePatientLogEntry(r)
		if err != nil {
			return nil, fmt.Errorf("%w: log entry %d: %w", ErrUnverified, i, err)
		}
		ps.Log = append(ps.Log, *e)
		itemKeys[i], _ = state.ItemKey(e.Kind, e.ID)
	}
	items, err := prove(itemKeys)
	if err != nil {
		return nil, err
	}
	// The other side of each read: a holder's entry has a receipt key, a receipt an entry key;
	// either may be absent, and the proof says so.
	var joins [][]byte
	for i, r := range items {
		e := ps.Log[i]
		if r == nil {
			return nil, fmt.Errorf("%w: log entry %d names %s %s, proved absent", ErrUnverified, i, e.Kind, e.ID.Short())
		}
		it, err := state.DecodeItem(e.Kind, e.ID, r)
		if err != nil {
			return nil, fmt.Errorf("%w: log entry %d: %w", ErrUnverified, i, err)
		}
		if !it.Concerns(patient) { // a family membership or a sponsor's payment concerns several
			return nil, fmt.Errorf("%w: log entry %d names %s %s of another patient", ErrUnverified, i, e.Kind, e.ID.Short())
		}
		ps.Items = append(ps.Items, it)
		var other state.LogKind
		switch e.Kind {
		case state.LogAccess:
			other = state.LogReceipt
		case state.LogReceipt:
			other = state.LogAccess
		default:
			continue
		}
		k, _ := state.ItemKey(other, e.ID)
		if _, done := ps.values[string(k)]; !done {
			joins = append(joins, k)
			ps.values[string(k)] = nil // placeholder, so it is asked once
		}
	}
	if len(joins) > 0 {
		if _, err := prove(joins); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// Submit hands tx to the node's mempool and returns its hash. Acceptance is the node's word;
// WaitNonce proves the transaction took effect.
func (c *Client) Submit(ctx context.Context, tx *chain.Tx) (chain.Hash, error) {
	resp, err := c.roundTrip(ctx, &Request{Kind: KindSubmit, Tx: tx.Encode()})
	if err != nil {
		return chain.Hash{}, err
	}
	if resp.TxHash != tx.Hash() {
		return chain.Hash{}, fmt.Errorf("%w: %s acknowledged transaction %s, sent %s", ErrUnverified, c.peer, resp.TxHash.Short(), tx.Hash().Short())
	}
	return resp.TxHash, nil
}

// Nonce proves the last nonce signing key key used, at v's trusted header.
func (c *Client) Nonce(ctx context.Context, v *Verifier, key chain.PubKey) (uint64, error) {
	vals, err := c.Prove(ctx, v, [][]byte{state.NonceKey(key.Address())})
	if err != nil {
		return 0, err
	}
	n, err := state.DecodeNonce(vals[0])
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnverified, err)
	}
	return n, nil
}

// WaitNonce follows the chain until key's proved nonce reaches nonce (a transaction it signed
// with that nonce committed, or another with the same nonce did), or ctx ends.
func (c *Client) WaitNonce(ctx context.Context, v *Verifier, key chain.PubKey, nonce uint64) error {
	for {
		if _, err := c.Sync(ctx, v); err != nil {
			return err
		}
		if v.Height() >= 2 {
			n, err := c.Nonce(ctx, v, key)
			if err != nil {
				return err
			}
			if n >= nonce {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("light: waiting for nonce %d of %s: %w", nonce, key.Short(), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PatientReadPurpose is the purpose of use of a patient's read of their own record (HL7 v3
// ActReason PATRQT, "patient requested").
const PatientReadPurpose = "PATRQT"

// ReadOwn fetches a record the patient's log proved (rec), from the node asked, as the
// patient: the request is signed with key (the patient's signing key, also the wallet's libp2p
// identity), the node journals the read like any other, and the wallet checks the ciphertext
// against the proved anchor before it opens it with enc.
func (c *Client) ReadOwn(ctx context.Context, key chain.PrivKey, enc *envelope.PrivateKey, rec *state.RecordState) ([]byte, error) {
	if rec.Erased || rec.CiphertextHash.IsZero() {
		return nil, fmt.Errorf("light: record %s is erased", rec.ID.Short())
	}
	holder, err := p2p.NodeKey(c.peer)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ar := &chain.AccessRequest{Record: rec.ID, RequesterNode: key.Public(), Holder: holder, Purpose: PatientReadPurpose, Role: chain.AccessRolePatient,
		IssuedMs: time.Now().UnixMilli(), Nonce: binary.BigEndian.Uint64(nonce)}
	ar.Sign(key, c.chainID)
	resp, err := c.roundTrip(ctx, &Request{Kind: KindFetch, Access: chain.Encode(ar)})
	if err != nil {
		return nil, err
	}
	if got := chain.Sum256(resp.Ciphertext); got != rec.CiphertextHash {
		return nil, fmt.Errorf("%w: %s served a ciphertext of record %s that is not the anchored one", ErrUnverified, c.peer, rec.ID.Short())
	}
	plain, err := envelope.Open(enc, &envelope.Sealed{Ciphertext: resp.Ciphertext, Envelopes: resp.Envelopes},
		envelope.Context{ChainID: c.chainID, RecordID: rec.ID, Version: rec.RecVersion})
	if err != nil {
		return nil, fmt.Errorf("light: open record %s: %w", rec.ID.Short(), err)
	}
	return plain, nil
}
