package chain

import "fmt"

// Versions of the header and block encodings.
const (
	HeaderVersion = 1
	BlockVersion  = 1
)

// Hard limits on what any node will decode, whatever genesis says: genesis Params may set lower
// limits, never higher ones.
const (
	MaxHeaderBytes   = 1024
	MaxBlockBytes    = 16 << 20
	MaxBlockTxsLimit = 100_000
)

// Header is what authorities vote on: the block hash is the header's hash.
//
// StateRoot is the authenticated state root after executing every block below Height (the
// previous block's result, as in Tendermint), so a proposer never has to execute its own block
// before proposing it. AuthoritiesHash names the set that certifies this block and
// NextAuthoritiesHash the set that certifies Height+1, so light clients follow set changes from
// headers and certificates alone.
type Header struct {
	_                   struct{} `cbor:",toarray"`
	Version             uint8
	ChainID             string
	Height              uint64
	Time                int64 // block time, Unix milliseconds; strictly increasing
	PrevHash            Hash
	TxRoot              Hash
	StateRoot           Hash
	AuthoritiesHash     Hash
	NextAuthoritiesHash Hash
	Proposer            PubKey
}

// Hash is the block hash.
func (h *Header) Hash() Hash { return Sum256(Encode(h)) }

// Validate checks the header's form.
func (h *Header) Validate() error {
	if err := checkVersion("header", h.Version, HeaderVersion); err != nil {
		return err
	}
	if err := validateChainID(h.ChainID); err != nil {
		return err
	}
	if h.Height == 0 {
		return fmt.Errorf("chain: header height must be at least 1")
	}
	if h.Height == 1 != h.PrevHash.IsZero() {
		return fmt.Errorf("chain: header at height %d: previous hash must be zero exactly at height 1", h.Height)
	}
	return nil
}

// DecodeHeader decodes and validates a header.
func DecodeHeader(data []byte) (*Header, error) {
	var h Header
	if err := decodeCanonical("header", data, MaxHeaderBytes, &h); err != nil {
		return nil, err
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

// Block is a header and its transactions.
type Block struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Header  Header
	Txs     []*Tx
}

// Hash is the header's hash.
func (b *Block) Hash() Hash { return b.Header.Hash() }

// Encode returns the canonical encoding.
func (b *Block) Encode() []byte { return Encode(b) }

// Validate checks the block's form: header, every transaction's form and chain, and that TxRoot
// matches. Signatures and state rules are the state machine's business.
func (b *Block) Validate() error {
	if err := checkVersion("block", b.Version, BlockVersion); err != nil {
		return err
	}
	if err := b.Header.Validate(); err != nil {
		return err
	}
	if len(b.Txs) > MaxBlockTxsLimit {
		return fmt.Errorf("%w: block has %d transactions, limit %d", ErrTooLarge, len(b.Txs), MaxBlockTxsLimit)
	}
	for i, tx := range b.Txs {
		if tx == nil {
			return fmt.Errorf("chain: block %d transaction %d is empty", b.Header.Height, i)
		}
		if err := tx.Validate(); err != nil {
			return fmt.Errorf("chain: block %d transaction %d: %w", b.Header.Height, i, err)
		}
		if tx.ChainID != b.Header.ChainID {
			return fmt.Errorf("chain: block %d transaction %d is for chain %q", b.Header.Height, i, tx.ChainID)
		}
	}
	if got := TxRoot(b.Txs); got != b.Header.TxRoot {
		return fmt.Errorf("chain: block %d transaction root %s does not match header %s", b.Header.Height, got.Short(), b.Header.TxRoot.Short())
	}
	return nil
}

// DecodeBlock decodes and validates a block.
func DecodeBlock(data []byte) (*Block, error) {
	var b Block
	if err := decodeCanonical("block", data, MaxBlockBytes, &b); err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}
