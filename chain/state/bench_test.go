package state

import (
	"fmt"
	"testing"

	"github.com/medledger/medledger/chain"
)

// patientBlock makes n register-patient transactions from n fresh keys.
func patientBlock(b *testing.B, nt *net, count int) []*chain.Tx {
	txs := make([]*chain.Tx, count)
	for i := range txs {
		txs[i] = nt.patientTx(testKey(b, fmt.Sprintf("bench-%d", i)))
	}
	return txs
}

// BenchmarkApplyBlock executes a block of 1,000 register-patient transactions on a map-backed
// view, verifying signatures in a batch (nil VerifiedSet) or trusting a mempool cache.
func BenchmarkApplyBlock(b *testing.B) {
	for _, c := range []struct {
		name     string
		verified VerifiedSet
	}{{"verify", nil}, {"verified", verifyAll{}}} {
		b.Run(c.name, func(b *testing.B) {
			nt := newNet(b, 4)
			txs := patientBlock(b, nt, 1000)
			h := nt.header()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := nt.m.ApplyBlock(nt.view, h, txs, c.verified); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(txs))/b.Elapsed().Seconds(), "txs/s")
		})
	}
}

// BenchmarkCheckTx checks one register-patient transaction against committed state.
func BenchmarkCheckTx(b *testing.B) {
	for _, c := range []struct {
		name     string
		verified VerifiedSet
	}{{"verify", nil}, {"verified", verifyAll{}}} {
		b.Run(c.name, func(b *testing.B) {
			nt := newNet(b, 4)
			tx := nt.patientTx(testKey(b, "bench"))
			b.ReportAllocs()
			for b.Loop() {
				if err := nt.m.CheckTx(nt.view, tx, nt.time, c.verified); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txs/s")
		})
	}
}
