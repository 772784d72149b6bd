package replica

import (
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/medledger/medledger/chain"
)

// MessageVersion is the replica wire message encoding version.
const MessageVersion = 1

// Message is what replicas exchange. Exactly one group of fields is set:
// Proposal+Block, Vote, Tx, SyncFrom (a sync request), SyncBlocks+SyncCerts (a sync answer),
// Status, or Txs (a batch of transactions: gossip carries transactions in batches, since a
// message's fixed costs, in pubsub and in judging, dwarf a 300-byte transaction's).
type Message struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Proposal   *chain.Proposal
	Block      *chain.Block
	Vote       *chain.Vote
	Tx         *chain.Tx
	SyncFrom   uint64 // non-zero: asks for committed blocks from this height on
	SyncBlocks []*chain.Block
	SyncCerts  []*chain.CommitCert
	// Status, non-zero, is the sender's committed height. Every node sends it to its peers while
	// a round stalls: a node that signs nothing (a full node, an authority removed from the set)
	// sends no votes, so without it a peer behind would never learn that it could catch up.
	Status uint64
	Txs    []*chain.Tx
}

// MaxTxBatch bounds the transactions of one Txs message.
const MaxTxBatch = 1024

// Kind names the message for logs and metrics.
func (m *Message) Kind() string {
	switch {
	case m.Proposal != nil:
		return "proposal"
	case m.Vote != nil:
		return "vote"
	case m.Tx != nil:
		return "tx"
	case m.SyncFrom != 0:
		return "sync-request"
	case len(m.SyncBlocks) > 0:
		return "sync-response"
	case m.Status != 0:
		return "status"
	case len(m.Txs) > 0:
		return "txs"
	}
	return "empty"
}

// Encode returns the canonical encoding.
func (m *Message) Encode() []byte { return chain.Encode(m) }

// MaxMessageBytes bounds a decoded message: a full block, or a sync batch.
const MaxMessageBytes = chain.MaxBlockBytes + 1<<20

// DecodeMessage decodes and checks the form of a message.
func DecodeMessage(data []byte) (*Message, error) {
	var m Message
	if err := chain.DecodeCanonical("replica message", data, MaxMessageBytes, &m); err != nil {
		return nil, err
	}
	return &m, m.Validate()
}

// Validate checks that exactly one kind of content is present and well formed.
func (m *Message) Validate() error {
	if m.Version != MessageVersion {
		return fmt.Errorf("%w: replica message version %d", chain.ErrUnknownVersion, m.Version)
	}
	kinds := 0
	if m.Proposal != nil || m.Block != nil {
		kinds++
		if m.Proposal == nil || m.Block == nil {
			return fmt.Errorf("replica: proposal message needs both proposal and block")
		}
		if err := m.Proposal.Validate(); err != nil {
			return err
		}
		if err := m.Block.Validate(); err != nil {
			return err
		}
	}
	if m.Vote != nil {
		kinds++
		if err := m.Vote.Validate(); err != nil {
			return err
		}
	}
	if m.Tx != nil {
		kinds++
		if err := m.Tx.Validate(); err != nil {
			return err
		}
	}
	if m.SyncFrom != 0 {
		kinds++
	}
	if len(m.SyncBlocks) > 0 || len(m.SyncCerts) > 0 {
		kinds++
		if len(m.SyncBlocks) != len(m.SyncCerts) || len(m.SyncBlocks) > MaxSyncBatch {
			return fmt.Errorf("replica: sync response with %d blocks and %d certificates (at most %d)", len(m.SyncBlocks), len(m.SyncCerts), MaxSyncBatch)
		}
		for i, b := range m.SyncBlocks {
			if b == nil || m.SyncCerts[i] == nil {
				return fmt.Errorf("replica: sync response entry %d is empty", i)
			}
			if err := b.Validate(); err != nil {
				return err
			}
		}
	}
	if m.Status != 0 {
		kinds++
	}
	if m.Txs != nil {
		kinds++
		if err := validateTxs(m.Txs); err != nil {
			return err
		}
	}
	if kinds != 1 {
		return fmt.Errorf("replica: message must carry exactly one kind of content, has %d", kinds)
	}
	return nil
}

// Head is a message decoded without its block's transactions: enough to judge a proposal from
// its signed header (height, round, proposer, block hash) before paying for decoding, hashing
// and executing a block of up to chain.MaxBlockBytes. The block hash is the header's hash, so
// the header alone proves which block the proposer signed.
type Head struct {
	Proposal *chain.Proposal
	Header   *chain.Header // the proposed block's header
	Vote     *chain.Vote
	Tx       *chain.Tx
	SyncFrom uint64
	Sync     int // blocks in a sync response
	Status   uint64
	Txs      []*chain.Tx
}

// Kind names the message for logs and metrics.
func (h *Head) Kind() string {
	switch {
	case h.Proposal != nil:
		return "proposal"
	case h.Vote != nil:
		return "vote"
	case h.Tx != nil:
		return "tx"
	case h.SyncFrom != 0:
		return "sync-request"
	case h.Sync > 0:
		return "sync-response"
	case h.Status != 0:
		return "status"
	case len(h.Txs) > 0:
		return "txs"
	}
	return "empty"
}

type wireHead struct {
	_          struct{} `cbor:",toarray"`
	Version    uint8
	Proposal   *chain.Proposal
	Block      *blockHead
	Vote       *chain.Vote
	Tx         *chain.Tx
	SyncFrom   uint64
	SyncBlocks []cbor.RawMessage
	SyncCerts  []cbor.RawMessage
	Status     uint64
	Txs        []*chain.Tx
}

type blockHead struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Header  chain.Header
	Txs     cbor.RawMessage
}

// DecodeHead decodes what DecodeMessage decodes except blocks' transactions and sync batches,
// and checks the form of what it decoded. A message that DecodeHead accepts may still fail
// DecodeMessage (a malformed transaction inside the block).
func DecodeHead(data []byte) (*Head, error) {
	var w wireHead
	if err := chain.DecodeCanonical("replica message", data, MaxMessageBytes, &w); err != nil {
		return nil, err
	}
	if w.Version != MessageVersion {
		return nil, fmt.Errorf("%w: replica message version %d", chain.ErrUnknownVersion, w.Version)
	}
	h := &Head{Proposal: w.Proposal, Vote: w.Vote, Tx: w.Tx, SyncFrom: w.SyncFrom, Sync: len(w.SyncBlocks), Status: w.Status, Txs: w.Txs}
	kinds := 0
	if w.Proposal != nil || w.Block != nil {
		kinds++
		if w.Proposal == nil || w.Block == nil {
			return nil, fmt.Errorf("replica: proposal message needs both proposal and block")
		}
		if err := w.Proposal.Validate(); err != nil {
			return nil, err
		}
		if w.Block.Version != chain.BlockVersion {
			return nil, fmt.Errorf("%w: block version %d", chain.ErrUnknownVersion, w.Block.Version)
		}
		if err := w.Block.Header.Validate(); err != nil {
			return nil, err
		}
		h.Header = &w.Block.Header
	}
	if w.Vote != nil {
		kinds++
		if err := w.Vote.Validate(); err != nil {
			return nil, err
		}
	}
	if w.Tx != nil {
		kinds++
		if err := w.Tx.Validate(); err != nil {
			return nil, err
		}
	}
	if w.SyncFrom != 0 {
		kinds++
	}
	if len(w.SyncBlocks) > 0 || len(w.SyncCerts) > 0 {
		kinds++
		if len(w.SyncBlocks) != len(w.SyncCerts) || len(w.SyncBlocks) > MaxSyncBatch {
			return nil, fmt.Errorf("replica: sync response with %d blocks and %d certificates (at most %d)", len(w.SyncBlocks), len(w.SyncCerts), MaxSyncBatch)
		}
	}
	if w.Status != 0 {
		kinds++
	}
	if w.Txs != nil {
		kinds++
		if err := validateTxs(w.Txs); err != nil {
			return nil, err
		}
	}
	if kinds != 1 {
		return nil, fmt.Errorf("replica: message must carry exactly one kind of content, has %d", kinds)
	}
	return h, nil
}

func validateTxs(txs []*chain.Tx) error {
	if len(txs) == 0 || len(txs) > MaxTxBatch {
		return fmt.Errorf("replica: a batch of %d transactions (1..%d)", len(txs), MaxTxBatch)
	}
	for i, tx := range txs {
		if tx == nil {
			return fmt.Errorf("replica: batch entry %d is empty", i)
		}
		if err := tx.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// ErrShortHead says a prefix of a message ends before the part a decoder needs.
var ErrShortHead = errors.New("replica: message head cut short")

// CBOR heads of the arrays DecodeProposalHead steps into: a message (the ten fields of
// wireHead) and a block (version, header, transactions).
const (
	cborMessageArray = 0x80 | 10
	cborBlockArray   = 0x80 | 3
)

// DecodeProposalHead decodes, from a prefix of an encoded message, the part of a proposal that
// judging needs: its signed fields and its block's header, with their form checked as
// DecodeHead checks them. It returns nil, nil, nil for a message that is not a proposal, and an
// error wrapping ErrShortHead when the prefix ends before the header; any other error means the
// whole message fails DecodeHead too. What it returns may still belong to a message that fails
// DecodeHead (its transactions are not looked at).
func DecodeProposalHead(prefix []byte) (*chain.Proposal, *chain.Header, error) {
	short := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %w", ErrShortHead, err)
		}
		return err
	}
	if len(prefix) == 0 {
		return nil, nil, ErrShortHead
	}
	if prefix[0] != cborMessageArray {
		return nil, nil, fmt.Errorf("replica: message is not an array of %d fields", cborMessageArray&0x1f)
	}
	var version uint8
	rest, err := chain.DecodeFirst("replica message version", prefix[1:], &version)
	if err != nil {
		return nil, nil, short(err)
	}
	if version != MessageVersion {
		return nil, nil, fmt.Errorf("%w: replica message version %d", chain.ErrUnknownVersion, version)
	}
	var p *chain.Proposal
	if rest, err = chain.DecodeFirst("proposal", rest, &p); err != nil {
		return nil, nil, short(err)
	}
	if p == nil {
		return nil, nil, nil
	}
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	switch {
	case len(rest) == 0:
		return nil, nil, ErrShortHead
	case rest[0] != cborBlockArray:
		return nil, nil, fmt.Errorf("replica: proposal message needs both proposal and block")
	}
	var bv uint8
	if rest, err = chain.DecodeFirst("block version", rest[1:], &bv); err != nil {
		return nil, nil, short(err)
	}
	if bv != chain.BlockVersion {
		return nil, nil, fmt.Errorf("%w: block version %d", chain.ErrUnknownVersion, bv)
	}
	var h chain.Header
	if _, err = chain.DecodeFirst("header", rest, &h); err != nil {
		return nil, nil, short(err)
	}
	if err := h.Validate(); err != nil {
		return nil, nil, err
	}
	return p, &h, nil
}
