package envelope_test

import (
	"testing"

	"github.com/medledger/medledger/wallet/envelope"
)

func BenchmarkGenerateKey(b *testing.B) {
	for b.Loop() {
		if _, err := envelope.GenerateKey(nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal1MiB3Recipients(b *testing.B) {
	rs := recipients(testKeys(b, 3, 1)...)
	ctx := testContext("r", 1)
	body := testBody(1 << 20)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := envelope.Seal(nil, body, ctx, rs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen1MiB(b *testing.B) {
	keys := testKeys(b, 3, 1)
	ctx := testContext("r", 1)
	body := testBody(1 << 20)
	s := seal(b, body, ctx, keys...)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := envelope.Open(keys[2], s, ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrapFor is a consent grant for one existing record: it opens the record (a 4 KiB FHIR
// resource) and wraps its data key for the grantee.
func BenchmarkWrapFor(b *testing.B) {
	patient, grantee := testKey(b, 1), testKey(b, 2)
	ctx := testContext("r", 1)
	s := seal(b, testBody(4096), ctx, patient)
	var e envelope.Envelope
	for b.Loop() {
		var err error
		if e, err = envelope.WrapFor(patient, s, ctx, grantee.Public()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(e.Encode())), "envelope-bytes")
	b.ReportMetric(float64(len(grantee.Public().Bytes())), "pubkey-bytes")
}

func BenchmarkOpenEnvelopeOnly(b *testing.B) {
	k := testKey(b, 1)
	ctx := testContext("r", 1)
	s := seal(b, nil, ctx, k)
	for b.Loop() {
		if _, err := envelope.Open(k, s, ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// A small record (an Observation, ~500 bytes) to three recipients, one by one and in a batch
// (the import's case: the same recipients for every record of a Bundle).
func BenchmarkSealSmall3Recipients(b *testing.B) {
	keys := testKeys(b, 3, 1)
	body := testBody(500)
	b.Run("single", func(b *testing.B) {
		for b.Loop() {
			if _, err := envelope.Seal(nil, body, testContext("r", 1), recipients(keys...)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch100", func(b *testing.B) {
		var bt *envelope.Batch
		i := 0
		for b.Loop() {
			if i%100 == 0 {
				bt = envelope.NewBatch(nil, "medledger-test")
			}
			i++
			if _, err := bt.Seal(body, testContext("r", 1), recipients(keys...)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
