package index

import (
	"github.com/medledger/medledger/chain"
)

// ref is the in-memory index the record service kept before this package (records/index.go's
// indexBlock at commit befcb3a), over events: the reference the persisted index must match.
type ref struct {
	records   map[chain.Hash]Record
	order     []chain.Hash
	byPatient map[chain.Address][]chain.Hash
	consents  map[chain.Address][]chain.Hash
	accesses  map[chain.Address][]chain.Hash
	seenReq   map[chain.Hash]bool
}

func newRef() *ref {
	return &ref{records: map[chain.Hash]Record{}, byPatient: map[chain.Address][]chain.Hash{}, consents: map[chain.Address][]chain.Hash{},
		accesses: map[chain.Address][]chain.Hash{}, seenReq: map[chain.Hash]bool{}}
}

func (r *ref) apply(height uint64, evs []Event) {
	for _, e := range evs {
		switch e.Kind {
		case Anchor:
			if _, ok := r.records[e.ID]; ok {
				continue
			}
			r.records[e.ID] = Record{ID: e.ID, Patient: e.Patient, Author: e.Author, CiphertextHash: e.CiphertextHash, Height: height, Seq: uint64(len(r.order))}
			r.order = append(r.order, e.ID)
			r.byPatient[e.Patient] = append(r.byPatient[e.Patient], e.ID)
		case Consent:
			r.consents[e.Patient] = append(r.consents[e.Patient], e.ID)
		case Access:
			rec, ok := r.records[e.Record]
			if !ok || r.seenReq[e.ID] {
				continue
			}
			r.seenReq[e.ID] = true
			r.accesses[rec.Patient] = append(r.accesses[rec.Patient], e.ID)
		}
	}
}
