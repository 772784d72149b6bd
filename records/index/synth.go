package index

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/medledger/medledger/chain"
)

// The synthetic chain behind the index's tests and its scale measurement (scale.go).

// gen makes random blocks of events, reproducible from its seed: anchors (some repeated, within
// a block and across blocks), consents, and accesses (some repeated, some of unknown records,
// some of records anchored later in the same block).
type gen struct {
	rng      *rand.Rand
	patients []chain.Address
	authors  []chain.Address
	recs     []chain.Hash
	reqs     []chain.Hash
	n        uint64
}

func newGen(seed uint64, patients, authors int) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := range patients {
		var a chain.Address
		binary.BigEndian.PutUint64(a[:], uint64(i)+1)
		a[19] = 'p'
		g.patients = append(g.patients, a)
	}
	for i := range authors {
		var a chain.Address
		binary.BigEndian.PutUint64(a[:], uint64(i)+1)
		a[19] = 'a'
		g.authors = append(g.authors, a)
	}
	return g
}

func (g *gen) hash() chain.Hash {
	g.n++
	var h chain.Hash
	binary.BigEndian.PutUint64(h[:], g.n)
	binary.BigEndian.PutUint64(h[8:], g.rng.Uint64())
	return h
}

// block makes n events: about half anchors, a tenth consents, the rest accesses.
func (g *gen) block(n int) []Event {
	evs := make([]Event, 0, n)
	for range n {
		switch x := g.rng.IntN(100); {
		case x < 50:
			if len(g.recs) > 0 && g.rng.IntN(50) == 0 {
				// A repeated anchor: ignored.
				evs = append(evs, Event{Kind: Anchor, ID: g.recs[g.rng.IntN(len(g.recs))], Patient: g.patients[0], Author: g.authors[0]})
				continue
			}
			id := g.hash()
			g.recs = append(g.recs, id)
			evs = append(evs, Event{Kind: Anchor, ID: id, Patient: g.patients[g.rng.IntN(len(g.patients))],
				Author: g.authors[g.rng.IntN(len(g.authors))], CiphertextHash: g.hash()})
		case x < 60:
			evs = append(evs, Event{Kind: Consent, ID: g.hash(), Patient: g.patients[g.rng.IntN(len(g.patients))]})
		default:
			var rec chain.Hash
			fresh := g.rng.IntN(20) == 0 || len(g.recs) == 0
			if fresh {
				rec = g.hash() // unknown, or anchored later
			} else {
				rec = g.recs[g.rng.IntN(len(g.recs))]
			}
			req := g.hash()
			if len(g.reqs) > 0 && g.rng.IntN(5) == 0 {
				req = g.reqs[g.rng.IntN(len(g.reqs))] // logged again (by the other side)
			}
			g.reqs = append(g.reqs, req)
			evs = append(evs, Event{Kind: Access, ID: req, Record: rec})
			if fresh && g.rng.IntN(2) == 0 {
				// The record is anchored after the access, in the same block: the access is not listed.
				g.recs = append(g.recs, rec)
				evs = append(evs, Event{Kind: Anchor, ID: rec, Patient: g.patients[g.rng.IntN(len(g.patients))], Author: g.authors[0]})
			}
		}
	}
	return evs
}

// blockHash is the synthetic chain's block hash at height h.
func blockHash(h uint64) chain.Hash { return chain.Sum256(fmt.Appendf(nil, "block %d", h)) }
