package main

import (
	"slices"
	"strings"
	"time"
)

// Pure helpers of `medledger bench`: percentiles, and sorting refusals by cause.

// percentile returns the p-quantile (0 ≤ p ≤ 1) of ds in milliseconds by the nearest-rank rule
// the bench has always used (index ⌊p·n⌋, capped at n−1), or 0 for no samples. ds is not
// modified.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []time.Duration, p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := min(len(s)-1, max(0, int(p*float64(len(s)))))
	return float64(s[i]) / float64(time.Millisecond)
}

// refusalKind sorts a refused submission by cause.
type refusalKind int

const (
	// refusedLoad: the node refused for its own load (503, or in a batch answer the message the
	// API gives for a 503: mempool, signer or registration limit full, or a timeout). This is the
	// early refusal issue 10 asks for under overload.
	refusedLoad refusalKind = iota
	// refusedOther: any other refusal (conflict, invalid, a non-503 status).
	refusedOther
	// failedTransport: no answer at all (connection error, client timeout).
	failedTransport
)

// loadRefusals are the messages node/api.go gives, per transaction of a batch, for refusals that
// a single submission answers with 503.
var loadRefusals = []string{"mempool full", "too many pending", "did not answer in time", "context deadline exceeded"}

// classifyBatchError sorts one per-transaction error message of a batch answer.
func classifyBatchError(msg string) refusalKind {
	m := strings.ToLower(msg)
	for _, s := range loadRefusals {
		if strings.Contains(m, s) {
			return refusedLoad
		}
	}
	return refusedOther
}

// classifyStatus sorts a whole batch refused with an HTTP status (0: no answer).
func classifyStatus(code int) refusalKind {
	switch {
	case code == 0:
		return failedTransport
	case code == 503 || code == 429:
		return refusedLoad
	}
	return refusedOther
}

// bytesToMB converts a byte count to MB (2^20 bytes), as the bench prints memory.
func bytesToMB(b int64) float64 { return float64(b) / (1 << 20) }
