package store

import (
	"fmt"
	"testing"
)

// BenchmarkCommit measures committed blocks per second for blocks of 100 and 1,000 transactions of
// about 300 bytes, with each sync policy. Each block also changes a few KB of state.
func BenchmarkCommit(b *testing.B) {
	for _, txs := range []int{100, 1000} {
		for _, policy := range []SyncPolicy{SyncEveryCommit, SyncNone} {
			b.Run(fmt.Sprintf("txs=%d/sync=%s", txs, policy), func(b *testing.B) {
				s, err := OpenBadger(b.TempDir(), Options{Sync: policy})
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					if err := s.Close(); err != nil {
						b.Error(err)
					}
				}()
				if _, err := s.InitGenesis(testGenesis(1), testGenesisState(1)); err != nil {
					b.Fatal(err)
				}
				spec := blockSpec{txs: txs, txBytes: 230} // ~300 bytes encoded
				// Generating blocks is not what is measured.
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					prev, err := tipHash(s)
					if err != nil {
						b.Fatal(err)
					}
					blk, cert, cs := genBlock(1, s.Height()+1, prev, s.StateRoot(), spec)
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
