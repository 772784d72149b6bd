package index

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
)

// benchPatients is how many patients the benchmark chain spreads its records over.
const benchPatients = 100_000

// benchChain is an index grown in steps to the scales of BenchmarkPatientLists, with one
// patient whose lists stay the same size (20 records, 5 consents, 20 accesses) whatever the
// scale: the time to list them should not depend on the rest.
type benchChain struct {
	dir    string
	x      *Index
	g      *gen
	h      uint64
	target chain.Address
}

func newBenchChain(b *testing.B) *benchChain {
	dir, err := os.MkdirTemp("", "index-bench-")
	if err != nil {
		b.Fatal(err)
	}
	x, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	c := &benchChain{dir: dir, x: x, g: newGen(7, benchPatients, 50)}
	c.target[0] = 0xee
	// The target patient's entries come first: at the largest scale they are the oldest.
	var evs []Event
	var recs []chain.Hash
	for i := range 20 {
		id := chain.Sum256(fmt.Append(nil, "target record", i))
		recs = append(recs, id)
		evs = append(evs, Event{Kind: Anchor, ID: id, Patient: c.target, Author: c.g.authors[0], CiphertextHash: id})
	}
	for i := range 5 {
		evs = append(evs, Event{Kind: Consent, ID: chain.Sum256(fmt.Append(nil, "target consent", i)), Patient: c.target})
	}
	for i := range 20 {
		evs = append(evs, Event{Kind: Access, ID: chain.Sum256(fmt.Append(nil, "target access", i)), Record: recs[i]})
	}
	c.apply(b, evs)
	return c
}

func (c *benchChain) apply(b *testing.B, evs []Event) {
	c.h++
	if err := c.x.Apply(c.h, blockHash(c.h), evs); err != nil {
		b.Fatal(err)
	}
}

// grow adds blocks of 2,000 events until the index holds n records.
func (c *benchChain) grow(b *testing.B, n uint64) {
	for c.x.Count() < n {
		c.apply(b, c.g.block(2000))
	}
}

// settle waits (up to two minutes) for Badger's compactions after the bulk load to finish (level
// 0 below its compaction trigger and the set of tables unchanged for two seconds), as they are
// on a node that indexes a block a second, and reports the shape of the tree.
func (c *benchChain) settle(b *testing.B) {
	deadline := time.Now().Add(2 * time.Minute)
	shape := func() (string, int, int) {
		var ids []uint64
		l0 := 0
		for _, t := range c.x.s.db.Tables() {
			ids = append(ids, t.ID)
			if t.Level == 0 {
				l0++
			}
		}
		slices.Sort(ids)
		return fmt.Sprint(ids), l0, len(ids)
	}
	last, still := "", 0
	for {
		ids, l0, total := shape()
		if ids == last {
			still++
		} else {
			last, still = ids, 0
		}
		if (l0 < 5 && still >= 4) || time.Now().After(deadline) {
			b.Logf("%d records: %d tables, %d in level 0", c.x.Count(), total, l0)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *benchChain) close() {
	_ = c.x.Close()
	_ = os.RemoveAll(c.dir)
}

// BenchmarkPatientLists lists one patient's records, consents and accesses (one page each), and
// reopens the index (a node restart), at 10k, 100k and 1M records over 100k patients. The
// per-operation times should be about the same at every scale.
//
// INDEX_BENCH_MAX (records) stops it at a smaller scale.
//
//	go test ./records/index -run '^$' -bench PatientLists
func BenchmarkPatientLists(b *testing.B) {
	c := newBenchChain(b)
	defer c.close()
	limit := uint64(math.MaxUint64)
	if v, err := strconv.ParseUint(os.Getenv("INDEX_BENCH_MAX"), 10, 64); err == nil {
		limit = v
	}
	for _, n := range []uint64{10_000, 100_000, 1_000_000} {
		if n > limit {
			break
		}
		c.grow(b, n)
		c.settle(b)
		scale := fmt.Sprintf("records=%dk", n/1000)
		b.Run(scale+"/list", func(b *testing.B) {
			for b.Loop() {
				if recs, _, err := c.x.Records(c.target, "", 0); err != nil || len(recs) != 20 {
					b.Fatal(len(recs), err)
				}
			}
		})
		b.Run(scale+"/consents", func(b *testing.B) {
			for b.Loop() {
				if ids, _, err := c.x.Consents(c.target, "", 0); err != nil || len(ids) != 5 {
					b.Fatal(len(ids), err)
				}
			}
		})
		b.Run(scale+"/accesses", func(b *testing.B) {
			for b.Loop() {
				if acc, _, err := c.x.Accesses(c.target, "", 0); err != nil || len(acc) != 20 {
					b.Fatal(len(acc), err)
				}
			}
		})
		// A restart: Open (what a starting node waits for) and a first list; the Close before
		// it is the previous run's shutdown, not timed.
		b.Run(scale+"/restart", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				if err := c.x.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				x, err := Open(c.dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				c.x = x
				if recs, _, err := x.Records(c.target, "", 0); x.Height() != c.h || err != nil || len(recs) != 20 {
					b.Fatal("tip lost", err)
				}
			}
		})
	}
}

// BenchmarkRebuildInMemory is what a restart cost before this package: the in-memory index
// rebuilt from every block (here only the indexing itself, from events already decoded, so
// below the real cost of reading and decoding the chain), at 10k, 100k and 1M records.
//
//	go test ./records/index -run '^$' -bench RebuildInMemory -benchtime 1x
func BenchmarkRebuildInMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		g := newGen(7, benchPatients, 50)
		var blocks [][]Event
		for recs := 0; recs < n; {
			evs := g.block(2000)
			for _, e := range evs {
				if e.Kind == Anchor {
					recs++
				}
			}
			blocks = append(blocks, evs)
		}
		b.Run(fmt.Sprintf("records=%dk", n/1000), func(b *testing.B) {
			for b.Loop() {
				r := newRef()
				for h, evs := range blocks {
					r.apply(uint64(h)+1, evs)
				}
			}
		})
	}
}
