package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	if got := percentile(nil, 0.5); got != 0 {
		t.Fatalf("no samples: %v", got)
	}
	// Unsorted input, left as it was.
	ds := []time.Duration{ms(30), ms(10), ms(20), ms(40)}
	for _, tc := range []struct {
		p    float64
		want float64
	}{{0, 10}, {0.5, 30}, {0.99, 40}, {1, 40}, {-1, 10}} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%.2f = %v, want %v", tc.p, got, tc.want)
		}
	}
	if ds[0] != ms(30) {
		t.Fatal("percentile sorted its input")
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(100 - i) // 100..1
	}
	if got := percentile(hundred, 0.99); got != 100 {
		t.Fatalf("p99 of 1..100 = %v, want 100", got)
	}
	if got := percentile(hundred, 0.5); got != 51 {
		t.Fatalf("p50 of 1..100 = %v, want 51", got)
	}
}

func TestClassifyRefusals(t *testing.T) {
	for msg, want := range map[string]refusalKind{
		"mempool full: retry later": refusedLoad,
		"too many pending transactions from this signer: retry after the next block": refusedLoad,
		"too many pending registrations: retry later":                                refusedLoad,
		"duplicate transaction": refusedOther,
		"bad signature":         refusedOther,
	} {
		if got := classifyBatchError(msg); got != want {
			t.Errorf("%q: %v, want %v", msg, got, want)
		}
	}
	for code, want := range map[int]refusalKind{0: failedTransport, 503: refusedLoad, 429: refusedLoad, 400: refusedOther, 500: refusedOther} {
		if got := classifyStatus(code); got != want {
			t.Errorf("status %d: %v, want %v", code, got, want)
		}
	}
}
