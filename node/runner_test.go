package node

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
)

// TestFourRunnersAgreeInRealTime runs four authorities on the in-process bus with real timers,
// submits transactions while they run, and waits (on a condition, with a generous deadline)
// until every node has committed the same blocks.
func TestFourRunnersAgreeInRealTime(t *testing.T) {
	const n, target = 4, 5
	var keys []chain.PrivKey
	var auths []chain.Authority
	for i := range n {
		seed := sha256.Sum256([]byte{byte(i)})
		k, err := chain.PrivKeyFromSeed(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		auths = append(auths, chain.Authority{Key: k.Public(), Name: "a" + strconv.Itoa(i)})
	}
	params := chain.DefaultParams()
	params.TimeoutProposeMs, params.TimeoutVoteMs, params.TimeoutDeltaMs, params.BlockIntervalMs = 400, 200, 100, 20
	g := &chain.Genesis{Version: chain.GenesisVersion, ChainID: "runner-test", TimeMs: time.Now().UnixMilli(), Authorities: auths, Params: params,
		LicensingAuthorities: testLicensingAuthorities(t)}
	log := slog.New(slog.DiscardHandler)
	bus := NewBus(log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stores := make([]*store.Memory, n)
	runners := make([]*Runner, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		stores[i] = store.NewMemory()
		rep, err := replica.New(replica.Config{Genesis: g, Key: &keys[i]}, stores[i])
		if err != nil {
			t.Fatal(err)
		}
		runners[i] = NewRunner(rep, bus.Join(replica.PeerID(strconv.Itoa(i))), log, time.Now, Hooks{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runners[i].Run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	seed := sha256.Sum256([]byte("patient"))
	patient, _ := chain.PrivKeyFromSeed(seed[:])
	tx := regTx(t, patient, g.ChainID, []byte{1})
	if _, err := runners[1].Submit(ctx, tx); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		heights := make([]uint64, n)
		for i, r := range runners {
			if err := r.Query(ctx, func(rep *replica.Replica) { heights[i] = rep.Height() }); err != nil {
				t.Fatal(err)
			}
		}
		if minOf(heights) >= target {
			break
		}
		select {
		case err := <-errs:
			t.Fatalf("runner failed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("heights %v after 60 s, want all >= %d", heights, target)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for h := uint64(1); h <= target; h++ {
		want, err := stores[0].Block(h)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < n; i++ {
			got, err := stores[i].Block(h)
			if err != nil || got.Hash() != want.Hash() {
				t.Fatalf("node %d disagrees at height %d: %v", i, h, err)
			}
		}
	}
	if _, _, err := stores[2].TxLocation(tx.Hash()); err != nil {
		t.Fatalf("submitted transaction not committed everywhere: %v", err)
	}
}

func minOf(xs []uint64) uint64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}
