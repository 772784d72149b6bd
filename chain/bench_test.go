package chain_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/medledger/medledger/chain"
)

// benchTx is a transaction with a ~300-byte payload, the size of a typical registration.
func benchTx(b *testing.B, key chain.PrivKey, nonce uint64) *chain.Tx {
	b.Helper()
	tx := chain.NewTx(key, chainA, chain.TxRegisterPatient, nonce, &chain.RegisterPatient{EncryptionKey: make([]byte, 296)})
	if n := len(tx.Payload); n < 290 || n > 310 {
		b.Fatalf("payload is %d bytes", n)
	}
	return tx
}

func BenchmarkTxSign(b *testing.B) {
	key := testKey(b, 1)
	tx := benchTx(b, key, 1)
	b.ReportAllocs()
	for b.Loop() {
		tx.Sig = key.Sign(chain.DomainTx, chainA, tx.SignedBytes())
	}
}

func BenchmarkTxVerify(b *testing.B) {
	tx := benchTx(b, testKey(b, 1), 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := tx.VerifySig(chainA); err != nil {
			b.Fatal(err)
		}
	}
}

func benchBatch(b *testing.B, n int) {
	txs := make([]*chain.Tx, n)
	for i := range txs {
		txs[i] = benchTx(b, testKey(b, i%64), uint64(i+1))
	}
	b.ReportAllocs()
	for b.Loop() {
		bv := chain.NewBatchVerifier()
		for _, tx := range txs {
			bv.Add(tx.Signer, chain.DomainTx, chainA, tx.SignedBytes(), tx.Sig)
		}
		if ok, _ := bv.Verify(); !ok {
			b.Fatal("batch rejected")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sig")
}

func BenchmarkTxVerifyBatch64(b *testing.B)   { benchBatch(b, 64) }
func BenchmarkTxVerifyBatch1024(b *testing.B) { benchBatch(b, 1024) }

// BenchmarkStdlibEd25519Verify is crypto/ed25519 over the same signed bytes, for comparison (it is
// not ZIP-215 and must not be used for consensus).
func BenchmarkStdlibEd25519Verify(b *testing.B) {
	key := testKey(b, 1)
	tx := benchTx(b, key, 1)
	pub := key.Public()
	msg := chain.SignBytes(chain.DomainTx, chainA, tx.SignedBytes())
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub[:], msg, tx.Sig[:]) {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkTxEncode(b *testing.B) {
	tx := benchTx(b, testKey(b, 1), 1)
	b.SetBytes(int64(len(tx.Encode())))
	b.ReportAllocs()
	for b.Loop() {
		_ = tx.Encode()
	}
}

func BenchmarkTxDecode(b *testing.B) {
	enc := benchTx(b, testKey(b, 1), 1).Encode()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := chain.DecodeTx(enc); err != nil {
			b.Fatal(err)
		}
	}
}
