// Package placement decides which member nodes hold a record's ciphertext. Every node computes
// the same answer from the same inputs (the record id and the ledger's set of active members), so
// the ledger itself says who should hold what: an author cannot steer replicas to friends, a
// fetcher knows where to look without trusting the DHT, and a node refuses a provider record from
// a peer the placement does not name.
//
// It is rendezvous (highest-random-weight) hashing: each candidate scores SHA-256(domain, record
// id, candidate key) and the highest scores win. When a member joins or leaves, only the records
// whose top scores it takes or held move, about 1/n of them.
package placement

import (
	"bytes"
	"crypto/sha256"
	"slices"

	"github.com/medledger/medledger/chain"
)

// domain separates placement scores from every other hash of the same bytes.
const domain = "medledger/placement/v1"

// Holders returns the nodes that should hold record id besides its author: the replicas
// candidates with the highest scores, highest first. The author is never among them (it holds
// its own copy). candidates need not be sorted and may contain the author or duplicates.
func Holders(id chain.Hash, author chain.PubKey, candidates []chain.PubKey, replicas int) []chain.PubKey {
	ranked := Rank(id, candidates)
	out := make([]chain.PubKey, 0, min(replicas, len(ranked)))
	for _, k := range ranked {
		if len(out) == replicas {
			break
		}
		if k != author {
			out = append(out, k)
		}
	}
	return out
}

// Rank orders the distinct candidates by their score for id, highest first; ties (which need a
// SHA-256 collision) fall back to key order so the result never depends on input order.
func Rank(id chain.Hash, candidates []chain.PubKey) []chain.PubKey {
	type scored struct {
		key   chain.PubKey
		score [sha256.Size]byte
	}
	s := make([]scored, 0, len(candidates))
	for _, k := range candidates {
		s = append(s, scored{key: k, score: Score(id, k)})
	}
	slices.SortFunc(s, func(a, b scored) int {
		if c := bytes.Compare(b.score[:], a.score[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.key[:], b.key[:])
	})
	s = slices.CompactFunc(s, func(a, b scored) bool { return a.key == b.key })
	out := make([]chain.PubKey, len(s))
	for i, x := range s {
		out[i] = x.key
	}
	return out
}

// Score is candidate's weight for record id.
func Score(id chain.Hash, candidate chain.PubKey) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write(id[:])
	h.Write(candidate[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// Assigned reports whether key is the author or one of the first replicas+slack holders of id.
// A node accepting provider records or pushes allows a little slack, because members it has not
// yet seen join or leave move the boundary; slack 0 is the exact placement.
func Assigned(id chain.Hash, author, key chain.PubKey, candidates []chain.PubKey, replicas, slack int) bool {
	if key == author {
		return true
	}
	return slices.Contains(Holders(id, author, candidates, replicas+slack), key)
}
