package badger

import (
	"fmt"
	"testing"

	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/chain/store/storetest"
)

// BenchmarkCommit measures committed blocks per second for blocks of 100 and 1,000 transactions of
// about 300 bytes, with each sync policy. Each block also changes a few KB of state.
func BenchmarkCommit(b *testing.B) {
	for _, txs := range []int{100, 1000} {
		for _, policy := range []store.SyncPolicy{store.SyncEveryCommit, store.SyncNone} {
			b.Run(fmt.Sprintf("txs=%d/sync=%s", txs, policy), func(b *testing.B) {
				s, err := Open(b.TempDir(), Options{Store: store.Options{Sync: policy}, GCInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					if err := s.Close(); err != nil {
						b.Error(err)
					}
				}()
				if _, err := s.InitGenesis(storetest.Genesis(1), storetest.GenesisState(1)); err != nil {
					b.Fatal(err)
				}
				spec := storetest.BlockSpec{Txs: txs, TxBytes: 230} // ~300 bytes encoded
				// Generating blocks is not what is measured.
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					prev, err := storetest.TipHash(s)
					if err != nil {
						b.Fatal(err)
					}
					blk, cert, cs := storetest.GenBlock(1, s.Height()+1, prev, s.StateRoot(), spec)
					b.StartTimer()
					if _, err := s.Commit(blk, cert, cs); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "blocks/s")
				b.ReportMetric(float64(b.N*txs)/b.Elapsed().Seconds(), "txs/s")
			})
		}
	}
}
