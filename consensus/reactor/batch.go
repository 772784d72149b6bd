package reactor

import (
	"sync"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/consensus/replica"
)

// Outgoing transactions travel in batches: a gossip message's fixed costs (pubsub's framing,
// message id, seen cache and per-peer queues; the receiver's decoding and judging, whose
// signature checks run as one batch) are paid once per batch instead of once per 300-byte
// transaction. A batch goes out when it would outgrow the topic's limit, or txBatchDelay after
// its first transaction: the delay is a few milliseconds against a block time of hundreds.
const (
	txBatchDelay = 10 * time.Millisecond
	// txBatchBytes leaves room for the message's wrapper under MaxGossipTxBytes.
	txBatchBytes = MaxGossipTxBytes - 1<<10
)

type txBatcher struct {
	publish func(data []byte)

	mu     sync.Mutex
	txs    []*chain.Tx
	bytes  int
	timer  *time.Timer
	closed bool
}

func newTxBatcher(publish func(data []byte)) *txBatcher { return &txBatcher{publish: publish} }

// add queues tx for the next batch.
func (b *txBatcher) add(tx *chain.Tx) {
	size := len(tx.Encode())
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	var full []*chain.Tx
	if len(b.txs) > 0 && (b.bytes+size > txBatchBytes || len(b.txs) >= replica.MaxTxBatch) {
		full = b.takeLocked()
	}
	b.txs = append(b.txs, tx)
	b.bytes += size
	if b.timer == nil {
		b.timer = time.AfterFunc(txBatchDelay, b.flush)
	}
	b.mu.Unlock()
	b.send(full)
}

// flush sends what is queued.
func (b *txBatcher) flush() {
	b.mu.Lock()
	txs := b.takeLocked()
	b.mu.Unlock()
	b.send(txs)
}

func (b *txBatcher) takeLocked() []*chain.Tx {
	txs := b.txs
	b.txs, b.bytes = nil, 0
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	return txs
}

func (b *txBatcher) send(txs []*chain.Tx) {
	switch len(txs) {
	case 0:
	case 1: // a lone transaction keeps the single-transaction form
		b.publish((&replica.Message{Version: replica.MessageVersion, Tx: txs[0]}).Encode())
	default:
		b.publish((&replica.Message{Version: replica.MessageVersion, Txs: txs}).Encode())
	}
}

// close sends what is queued and stops batching.
func (b *txBatcher) close() {
	b.mu.Lock()
	txs := b.takeLocked()
	b.closed = true
	b.mu.Unlock()
	b.send(txs)
}
