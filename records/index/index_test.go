package index

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

func openT(t *testing.T, dir string, opts Options) *Index {
	t.Helper()
	x, err := Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = x.Close() })
	return x
}

// pages collects a whole patient list through pages of size limit.
func pages[T any](t *testing.T, limit int, page func(after string, limit int) ([]T, string, error)) []T {
	t.Helper()
	var out []T
	after := ""
	full := min(limit, MaxPage)
	if limit <= 0 {
		full = DefaultPage
	}
	for i := 0; ; i++ {
		items, next, err := page(after, limit)
		require.NoError(t, err)
		require.LessOrEqual(t, len(items), full)
		out = append(out, items...)
		if next == "" {
			return out
		}
		require.Len(t, items, full, "a page before the last is full")
		after = next
		require.Less(t, i, 1_000_000)
	}
}

// sameAsRef checks every list of every patient, the anchor order and each record against ref.
func sameAsRef(t *testing.T, x *Index, r *ref, g *gen, limit int) {
	t.Helper()
	for _, p := range g.patients {
		recs := pages(t, limit, func(a string, l int) ([]Record, string, error) { return x.Records(p, a, l) })
		var ids []chain.Hash
		for _, rec := range recs {
			ids = append(ids, rec.ID)
			want := r.records[rec.ID]
			require.Equal(t, want, rec)
		}
		require.Equal(t, r.byPatient[p], ids, "records of %x", p)
		require.Equal(t, r.consents[p], pages(t, limit, func(a string, l int) ([]chain.Hash, string, error) { return x.Consents(p, a, l) }))
		acc := pages(t, limit, func(a string, l int) ([]AccessRef, string, error) { return x.Accesses(p, a, l) })
		var reqs []chain.Hash
		for _, a := range acc {
			reqs = append(reqs, a.Request)
			require.Equal(t, p, r.records[a.Record].Patient)
		}
		require.Equal(t, r.accesses[p], reqs, "accesses of %x", p)
	}
	require.Equal(t, uint64(len(r.order)), x.Count())
	var order []chain.Hash
	require.NoError(t, x.Each(func(rec Record) bool { order = append(order, rec.ID); return true }))
	require.Equal(t, r.order, order)
	for id, want := range r.records {
		got, ok, err := x.Record(id)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, got)
	}
}

// The persisted index answers what the in-memory one did, for random chains, across a reopen.
func TestMatchesInMemoryIndex(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			dir := t.TempDir()
			x := openT(t, dir, Options{})
			g, r := newGen(seed, 7, 3), newRef()
			for h := uint64(1); h <= 40; h++ {
				evs := g.block(int(g.rng.IntN(60)))
				r.apply(h, evs)
				require.NoError(t, x.Apply(h, blockHash(h), evs))
				require.NoError(t, x.Apply(h, blockHash(h), evs), "a block applied twice is ignored")
			}
			sameAsRef(t, x, r, g, 1+int(seed)*3)
			require.NoError(t, x.Close())
			y := openT(t, dir, Options{})
			h, hash := y.Tip()
			require.Equal(t, uint64(40), h)
			require.Equal(t, blockHash(40), hash)
			sameAsRef(t, y, r, g, 0)
		})
	}
}

// A block too large for one Badger transaction is written in parts, the tip in the last; a
// crash between parts leaves the tip at the block before, and applying the block again after a
// reopen gives what one clean apply does.
func TestPartialBlockResumes(t *testing.T) {
	for crashAfter := 1; crashAfter <= 3; crashAfter++ {
		t.Run(fmt.Sprint("after part ", crashAfter), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "index")
			opts := Options{MemTableSize: 1 << 20} // ~150 KiB per transaction: a block of 6,000 events needs several
			x, err := Open(dir, opts)
			require.NoError(t, err)
			g, r := newGen(uint64(crashAfter), 50, 4), newRef()
			for h := uint64(1); h <= 3; h++ {
				evs := g.block(500)
				r.apply(h, evs)
				require.NoError(t, x.Apply(h, blockHash(h), evs))
			}
			big := g.block(6000)
			x.s.crashAfterParts = crashAfter
			require.ErrorIs(t, x.Apply(4, blockHash(4), big), errCrash)
			require.NoError(t, x.Close())

			y := openT(t, dir, opts)
			require.Equal(t, uint64(3), y.Height(), "the tip is the last block written whole")
			r.apply(4, big)
			require.NoError(t, y.Apply(4, blockHash(4), big))
			next := g.block(300)
			r.apply(5, next)
			require.NoError(t, y.Apply(5, blockHash(5), next))
			sameAsRef(t, y, r, g, 0)
		})
	}
}

// Pages are bounded whatever the limit asked; a cursor is checked; Scan wraps.
func TestBoundedAnswers(t *testing.T) {
	x := openT(t, t.TempDir(), Options{})
	var p chain.Address
	p[0] = 1
	var evs []Event
	for i := range MaxPage + 10 {
		evs = append(evs, Event{Kind: Anchor, ID: chain.Sum256(fmt.Append(nil, i)), Patient: p},
			Event{Kind: Consent, ID: chain.Sum256(fmt.Append(nil, "c", i)), Patient: p})
	}
	require.NoError(t, x.Apply(1, blockHash(1), evs))
	for _, limit := range []int{0, -1, MaxPage + 1, 1 << 30} {
		recs, next, err := x.Records(p, "", limit)
		require.NoError(t, err)
		require.Len(t, recs, MaxPage)
		require.NotEmpty(t, next)
		rest, last, err := x.Records(p, next, limit)
		require.NoError(t, err)
		require.Len(t, rest, 10)
		require.Empty(t, last)
		cs, _, err := x.Consents(p, "", limit)
		require.NoError(t, err)
		require.Len(t, cs, MaxPage)
	}
	recs, next, err := x.Records(p, "", 3)
	require.NoError(t, err)
	require.Len(t, recs, 3)
	for _, bad := range []string{"zz", "00", next + "00"} {
		_, _, err := x.Records(p, bad, 3)
		require.ErrorIs(t, err, ErrBadCursor, bad)
	}
	_, _, err = x.Consents(p, next, 3) // a records cursor is too short for consents
	require.ErrorIs(t, err, ErrBadCursor)
	// An unknown patient has empty lists.
	none, next, err := x.Accesses(chain.Address{9}, "", 5)
	require.NoError(t, err)
	require.Empty(t, none)
	require.Empty(t, next)
	// Scan wraps past the last record.
	got, total, err := x.Scan(MaxPage+8, 4)
	require.NoError(t, err)
	require.Equal(t, uint64(MaxPage+10), total)
	require.Equal(t, []uint64{MaxPage + 8, MaxPage + 9, 0, 1}, []uint64{got[0].Seq, got[1].Seq, got[2].Seq, got[3].Seq})
}

// Two handles on one directory share the database; the last Close closes it; Reset empties it.
func TestSharedHandlesAndReset(t *testing.T) {
	dir := t.TempDir()
	a := openT(t, dir, Options{})
	b := openT(t, dir, Options{})
	require.NoError(t, a.Apply(1, blockHash(1), []Event{{Kind: Anchor, ID: chain.Hash{1}, Patient: chain.Address{1}}}))
	require.Equal(t, uint64(1), b.Height())
	require.NoError(t, a.SetReacted(1))
	require.NoError(t, a.Close())
	_, ok, err := b.Record(chain.Hash{1})
	require.NoError(t, err)
	require.True(t, ok)
	reacted, err := b.Reacted()
	require.NoError(t, err)
	require.Equal(t, uint64(1), reacted)
	require.NoError(t, b.Reset())
	require.Zero(t, b.Height())
	require.Zero(t, b.Count())
	_, ok, err = b.Record(chain.Hash{1})
	require.NoError(t, err)
	require.False(t, ok)
	reacted, err = b.Reacted()
	require.NoError(t, err)
	require.Zero(t, reacted)
}

// TestMeasureScale runs the scale measurement at small sizes: the target patient's lists are
// found at each, and the index reopens at its tip.
func TestMeasureScale(t *testing.T) {
	var seen []ScalePoint
	pts, err := MeasureScale(t.TempDir(), []uint64{2_000, 6_000}, 1_000, func(p ScalePoint) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || len(seen) != 2 || pts[1].Records < 6_000 || pts[0].ListUs <= 0 || pts[1].ReopenMs <= 0 {
		t.Fatalf("%+v", pts)
	}
}
