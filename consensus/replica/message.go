package replica

import (
	"fmt"

	"github.com/medledger/medledger/chain"
)

// MessageVersion is the replica wire message encoding version.
const MessageVersion = 1

// MaxSyncBatch bounds how many blocks one sync response carries, and maxSyncReplyBytes their
// total size, well inside MaxMessageBytes.
const (
	MaxSyncBatch      = 32
	maxSyncReplyBytes = 8 << 20
)

// Inbound is a message received from a peer, as a transport hands it to the node.
type Inbound struct {
	From PeerID
	Msg  *Message
	// Verified says this node's transport already checked the message's signatures (a gossip
	// validator ran here), so the replica does not verify them a second time.
	Verified bool
}

// Message is what replicas exchange. Exactly one group of fields is set:
// Proposal+Block, Vote, Tx, SyncRequest (FromHeight), or SyncResponse (Blocks+Certs).
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
}

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
	if kinds != 1 {
		return fmt.Errorf("replica: message must carry exactly one kind of content, has %d", kinds)
	}
	return nil
}
