package envelope

import (
	"crypto/hpke"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/medledger/medledger/chain"
	"golang.org/x/crypto/chacha20poly1305"
)

// Batch sealing: an import seals many records to the same few recipients (the patient, the
// author, the patient's grantees). One HPKE encapsulation per record and recipient dominated
// its cost, so a Batch draws, per recipient, one batch key, wraps it with HPKE once, and wraps
// each record's data key under it with an AEAD bound to the record's Context.
//
// A batch envelope (EnvelopeVersionBatch) is therefore the batch key's HPKE wrapping (the same
// bytes in every envelope of the batch for that recipient) followed by the record's data key
// sealed under the batch key. What it changes and what it does not:
//   - Only the recipient's private key opens the batch key (HPKE, bound to the suite, the
//     recipient's key id and the chain id), and the batch key opens a record's data key only
//     through that record's own envelope for that recipient, whose AEAD is bound to the
//     record's Context: an envelope is still good for one record and one recipient, and a
//     recipient can open exactly the records that carry an envelope for it, which are the
//     records its consents covered (or that were wrapped for it later, one by one).
//   - Erasure still shreds: deleting a record's envelopes deletes the only copies of its data
//     key wrapped under any batch key.
//   - The batch key never leaves the sealing process in clear; leaking it is no worse than
//     leaking the data keys of the batch's records for that recipient, which the recipient
//     (the only other party able to derive it) can open anyway.

// EnvelopeVersionBatch is an envelope whose data key is wrapped under a batch key (Batch).
const EnvelopeVersionBatch = 2

// batchWrapExtra is what a batch envelope adds to a single one: the data key's AEAD nonce, the
// data key and its tag.
const batchWrapExtra = xNonceLen + DataKeyLen + xTagLen

// Domain strings of batch envelopes.
const (
	domainBatchKey   = "medledger/batch-key/v1"
	domainKeyInBatch = "medledger/record-key-in-batch/v1"
)

// Batch seals records of one chain with one HPKE encapsulation per recipient for the whole
// batch. It is safe for concurrent use. Call Close when done: it clears the batch keys.
type Batch struct {
	rand    io.Reader
	chainID string

	mu     sync.Mutex
	keys   map[chain.Hash]*batchKey
	opened openedKeys // priv's batch keys opened by WrapFor
}

type batchKey struct {
	key     []byte // DataKeyLen
	wrapped []byte // HPKE of key to the recipient
}

// NewBatch starts a batch for records of chainID. rand is as for Seal.
func NewBatch(rand io.Reader, chainID string) *Batch {
	return &Batch{rand: randOrDefault(rand), chainID: chainID, keys: map[chain.Hash]*batchKey{}, opened: openedKeys{m: map[chain.Hash][]byte{}}}
}

// Seal is Seal with batch envelopes; ctx must name the batch's chain.
func (b *Batch) Seal(plaintext []byte, ctx Context, recipients []Recipient) (*Sealed, error) {
	if ctx.ChainID != b.chainID {
		return nil, fmt.Errorf("envelope: a batch of chain %q cannot seal a record of chain %q", b.chainID, ctx.ChainID)
	}
	return seal(b.rand, plaintext, ctx, recipients, b.wrap)
}

// Close clears the batch keys; the Batch cannot seal afterwards.
func (b *Batch) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range b.keys {
		clear(k.key)
	}
	b.keys = nil
	b.opened.clear()
}

// wrap seals a record's data key to one recipient under the recipient's batch key.
func (b *Batch) wrap(key, ctxBytes []byte, to PublicKey) (Envelope, error) {
	p, err := params(to.suite)
	if err != nil {
		return Envelope{}, err
	}
	id := to.KeyID()
	bk, err := b.keyFor(to, id, p)
	if err != nil {
		return Envelope{}, err
	}
	aead, err := chacha20poly1305.NewX(bk.key)
	if err != nil {
		return Envelope{}, fmt.Errorf("envelope: batch key cipher: %w", err)
	}
	w := make([]byte, 0, p.wrappedLen+batchWrapExtra)
	w = append(w, bk.wrapped...)
	nonce := make([]byte, xNonceLen)
	if _, err := io.ReadFull(b.rand, nonce); err != nil {
		return Envelope{}, fmt.Errorf("envelope: nonce: %w", err)
	}
	w = append(w, nonce...)
	w = aead.Seal(w, nonce, key, keyInBatchAD(to.suite, id, ctxBytes))
	return Envelope{Version: EnvelopeVersionBatch, Suite: to.suite, RecipientKeyID: id, Wrapped: w}, nil
}

// keyFor returns the batch key of recipient to, drawing and wrapping it the first time.
func (b *Batch) keyFor(to PublicKey, id chain.Hash, p suiteParams) (*batchKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil {
		return nil, errors.New("envelope: batch closed")
	}
	if k, ok := b.keys[id]; ok {
		return k, nil
	}
	key := make([]byte, DataKeyLen)
	if _, err := io.ReadFull(b.rand, key); err != nil {
		return nil, fmt.Errorf("envelope: batch key: %w", err)
	}
	w, err := hpke.Seal(to.key, p.kdf, p.aead, batchKeyInfo(to.suite, id, b.chainID), key)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("envelope: wrap batch key: %w", err)
	}
	if len(w) != p.wrappedLen {
		panic(fmt.Sprintf("envelope: wrapped batch key is %d bytes, suite %v expects %d", len(w), to.suite, p.wrappedLen))
	}
	k := &batchKey{key: key, wrapped: w}
	b.keys[id] = k
	return k, nil
}

// unwrapBatch opens a batch envelope addressed to priv: the batch key (from opened if it was
// opened before), then the data key.
func unwrapBatch(priv *PrivateKey, e *Envelope, ctx Context, ctxBytes []byte, p suiteParams, opened *openedKeys) ([]byte, error) {
	hp, rest := e.Wrapped[:p.wrappedLen], e.Wrapped[p.wrappedLen:]
	bk := opened.get(e.RecipientKeyID, ctx.ChainID, hp)
	if bk == nil {
		var err error
		bk, err = hpke.Open(priv.key, p.kdf, p.aead, batchKeyInfo(e.Suite, e.RecipientKeyID, ctx.ChainID), hp)
		if err != nil {
			return nil, fmt.Errorf("%w: envelope does not authenticate", ErrDecrypt)
		}
		if len(bk) != DataKeyLen {
			clear(bk)
			return nil, fmt.Errorf("%w: batch key is %d bytes", ErrMalformed, len(bk))
		}
		if !opened.put(e.RecipientKeyID, ctx.ChainID, hp, bk) {
			defer clear(bk)
		}
	}
	aead, err := chacha20poly1305.NewX(bk)
	if err != nil {
		return nil, fmt.Errorf("envelope: batch key cipher: %w", err)
	}
	key, err := aead.Open(nil, rest[:xNonceLen], rest[xNonceLen:], keyInBatchAD(e.Suite, e.RecipientKeyID, ctxBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: envelope does not authenticate", ErrDecrypt)
	}
	return key, nil
}

// openedKeys remembers batch keys opened during one Batch's life (WrapFor), so that wrapping a
// whole import's records for a new grantee opens the importer's batch key once, not once per
// record. Keyed by the recipient, the chain and a hash of the HPKE wrapping. Cleared by Close.
type openedKeys struct {
	mu sync.Mutex
	m  map[chain.Hash][]byte
}

// maxOpenedKeys bounds an openedKeys; beyond it keys are opened again each time.
const maxOpenedKeys = 1024

func openedKeyID(keyID chain.Hash, chainID string, hp []byte) chain.Hash {
	return chain.Sum256(chain.Encode(&wrapInfo{Domain: domainBatchKey, RecipientKeyID: keyID, Context: append([]byte(chainID+"\x00"), hp...)}))
}

func (o *openedKeys) get(keyID chain.Hash, chainID string, hp []byte) []byte {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[openedKeyID(keyID, chainID, hp)]
}

// put keeps bk and reports whether it did (the caller then must not clear it).
func (o *openedKeys) put(keyID chain.Hash, chainID string, hp, bk []byte) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil || len(o.m) >= maxOpenedKeys {
		return false
	}
	o.m[openedKeyID(keyID, chainID, hp)] = bk
	return true
}

func (o *openedKeys) clear() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range o.m {
		clear(k)
	}
	o.m = nil
}

// WrapFor is WrapFor in the batch: the data key of s goes to to under to's batch key (a batch
// envelope), and a batch key of priv's that opened an earlier record of this Batch is not
// opened again. s's body is still decrypted and authenticated first.
func (b *Batch) WrapFor(priv *PrivateKey, s *Sealed, ctx Context, to PublicKey) (Envelope, error) {
	if to.IsZero() {
		return Envelope{}, fmt.Errorf("%w: no recipient key", ErrInvalidKey)
	}
	if ctx.ChainID != b.chainID {
		return Envelope{}, fmt.Errorf("envelope: a batch of chain %q cannot wrap a record of chain %q", b.chainID, ctx.ChainID)
	}
	key, _, err := openCached(priv, s, ctx, &b.opened)
	defer clear(key)
	if err != nil {
		return Envelope{}, err
	}
	return b.wrap(key, ctx.Bytes(), to)
}

// batchKeyInfo is the HPKE info of a batch key: it names the recipient and the chain, not a
// record (the key serves many).
func batchKeyInfo(s Suite, keyID chain.Hash, chainID string) []byte {
	return chain.Encode(&wrapInfo{Domain: domainBatchKey, Suite: s, RecipientKeyID: keyID, Context: []byte(chainID)})
}

// keyInBatchAD binds a data key wrapped under a batch key to its record and recipient.
func keyInBatchAD(s Suite, keyID chain.Hash, ctxBytes []byte) []byte {
	return chain.Encode(&wrapInfo{Domain: domainKeyInBatch, Suite: s, RecipientKeyID: keyID, Context: ctxBytes})
}
