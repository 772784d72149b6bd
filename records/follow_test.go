package records

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// blockLog is a Ledger that records which blocks were asked for.
type blockLog struct {
	Ledger
	mu    sync.Mutex
	asked []uint64
}

func (l *blockLog) Block(ctx context.Context, height uint64) (*chain.Block, error) {
	l.mu.Lock()
	l.asked = append(l.asked, height)
	l.mu.Unlock()
	return l.Ledger.Block(ctx, height)
}

// A restarted service reads its index from disk and asks the ledger only for the block at the
// index's tip (to check it is the same chain) and the blocks after it: it does not replay the
// chain, and lists what it listed before.
func TestRestartDoesNotReplay(t *testing.T) {
	f := newRecFixture(t)
	ctx := testCtx(t)
	r := f.start()
	p := f.newPatient("ivy", true)
	out, err := r.Import(ctx, p.id(), readTestdata(t, "observation.json"))
	require.NoError(t, err)
	f.waitFor("listed", func() bool { l, err := r.List(ctx, p.id()); return err == nil && len(l) == 1 })
	r.stop(t)
	require.NoError(t, r.Close())
	tip := r.idx.Height()
	require.Positive(t, tip)

	log := &blockLog{Ledger: f.ledger}
	r2 := f.run(f.newRecordsWith(func(c *Config) { c.Ledger = log }))
	f.waitFor("following again", func() bool { return indexedUpTo(r2.Service, tip+1) })
	log.mu.Lock()
	asked := append([]uint64(nil), log.asked...)
	log.mu.Unlock()
	require.NotEmpty(t, asked)
	for _, h := range asked {
		require.GreaterOrEqual(t, h, tip, "block %d asked again after a restart at %d", h, tip)
	}
	l, err := r2.List(ctx, p.id())
	require.NoError(t, err)
	require.Len(t, l, 1)
	require.Equal(t, out[0].ID, l[0].ID)
}
