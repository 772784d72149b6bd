package index

import (
	"fmt"
	"sort"
	"time"

	"github.com/medledger/medledger/chain"
)

// ScalePoint is what one patient's lists cost at one size of the index.
type ScalePoint struct {
	Records    uint64  `json:"records"`
	Patients   int     `json:"patients"`
	ListUs     float64 `json:"list_us"` // median of the timed calls, one page each
	ConsentsUs float64 `json:"consents_us"`
	AccessesUs float64 `json:"accesses_us"`
	ReopenMs   float64 `json:"reopen_ms"` // Open and a first list: what a restarting node waits for
	Tables     int     `json:"tables"`
	GrowSecs   float64 `json:"grow_seconds"` // building this size from the previous one
}

// scaleCalls is how many times each list is timed per size.
const scaleCalls = 200

// MeasureScale grows a fresh index in dir with synthetic blocks (2,000 events each, records
// spread over patients) to each size in sizes, and at each size times the lists of one patient
// whose lists stay the same (20 records, 5 consents, 20 accesses; their entries are the oldest)
// and a reopen. On a well-built index the times do not grow with the rest. progress, if not nil,
// hears each size as it is done.
func MeasureScale(dir string, sizes []uint64, patients int, progress func(ScalePoint)) ([]ScalePoint, error) {
	x, err := Open(dir, Options{})
	if err != nil {
		return nil, err
	}
	defer func() {
		if x != nil {
			_ = x.Close()
		}
	}()
	g := newGen(7, patients, 50)
	var target chain.Address
	target[0] = 0xee
	var evs []Event
	var recs []chain.Hash
	for i := range 20 {
		id := chain.Sum256(fmt.Append(nil, "target record", i))
		recs = append(recs, id)
		evs = append(evs, Event{Kind: Anchor, ID: id, Patient: target, Author: g.authors[0], CiphertextHash: id})
	}
	for i := range 5 {
		evs = append(evs, Event{Kind: Consent, ID: chain.Sum256(fmt.Append(nil, "target consent", i)), Patient: target})
	}
	for i := range 20 {
		evs = append(evs, Event{Kind: Access, ID: chain.Sum256(fmt.Append(nil, "target access", i)), Record: recs[i]})
	}
	h := uint64(1)
	if err := x.Apply(h, blockHash(h), evs); err != nil {
		return nil, err
	}
	var out []ScalePoint
	for _, n := range sizes {
		start := time.Now()
		for x.Count() < n {
			h++
			if err := x.Apply(h, blockHash(h), g.block(2000)); err != nil {
				return nil, err
			}
		}
		p := ScalePoint{Records: x.Count(), Patients: patients, GrowSecs: time.Since(start).Seconds()}
		settle(x)
		p.Tables = len(x.s.db.Tables())
		var lerr error
		p.ListUs = medianUs(func() {
			if r, _, err := x.Records(target, "", 0); err != nil || len(r) != 20 {
				lerr = fmt.Errorf("index: the target's records: %d, %v", len(r), err)
			}
		})
		p.ConsentsUs = medianUs(func() {
			if r, _, err := x.Consents(target, "", 0); err != nil || len(r) != 5 {
				lerr = fmt.Errorf("index: the target's consents: %d, %v", len(r), err)
			}
		})
		p.AccessesUs = medianUs(func() {
			if r, _, err := x.Accesses(target, "", 0); err != nil || len(r) != 20 {
				lerr = fmt.Errorf("index: the target's accesses: %d, %v", len(r), err)
			}
		})
		if lerr != nil {
			return out, lerr
		}
		if err := x.Close(); err != nil {
			return out, err
		}
		x = nil
		t := time.Now()
		if x, err = Open(dir, Options{}); err != nil {
			return out, err
		}
		if r, _, err := x.Records(target, "", 0); err != nil || len(r) != 20 || x.Height() != h {
			return out, fmt.Errorf("index: after reopening: %d records at height %d, %v", len(r), x.Height(), err)
		}
		p.ReopenMs = float64(time.Since(t).Microseconds()) / 1000
		out = append(out, p)
		if progress != nil {
			progress(p)
		}
	}
	return out, nil
}

// settle waits (at most two minutes) for the compactions after a bulk load, as a node indexing
// a block a second would have them done: level 0 below its trigger and the tables unchanged for
// two seconds.
func settle(x *Index) {
	deadline := time.Now().Add(2 * time.Minute)
	last, still := "", 0
	for time.Now().Before(deadline) {
		var ids []uint64
		l0 := 0
		for _, t := range x.s.db.Tables() {
			ids = append(ids, t.ID)
			if t.Level == 0 {
				l0++
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		shape := fmt.Sprint(ids)
		if shape == last {
			still++
		} else {
			last, still = shape, 0
		}
		if l0 < 5 && still >= 4 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func medianUs(f func()) float64 {
	d := make([]float64, scaleCalls)
	for i := range d {
		t := time.Now()
		f()
		d[i] = float64(time.Since(t).Nanoseconds()) / 1000
	}
	sort.Float64s(d)
	return d[len(d)/2]
}
