package records

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/exchange"
)

// testPlacementFollowsLicences: a provider is a placement candidate while its licence runs and
// drops out, moving its records to the next in line, once block time passes its expiry; nobody
// has to act.
func testPlacementFollowsLicences(t *testing.T, f *recFixture, r *running) {
	k := f.newProviderKeys("short-licence")
	lic := f.licence(k)
	_, tipMs := f.tip()
	lic.NotAfter = tipMs + 3_000
	lic.Sign(f.licKey, f.g.ChainID)
	f.submit(k.Signing, chain.TxRegisterProvider, &chain.RegisterProvider{Licence: lic, EncryptionKey: k.Encryption.Public().Bytes()})
	_, key := nodeOf(t, k)

	// A record id whose first holder is this provider while it is active.
	candidates := func() []chain.PubKey {
		var m *memberKeys
		f.view(func(v state.View) {
			var err error
			m, err = r.membersAt(v)
			require.NoError(t, err)
		})
		return m.keys
	}
	require.Contains(t, candidates(), key)
	var id chain.Hash
	for {
		id = randomHash(t)
		if a := r.assignmentOf(t, f, id); len(a.Holders) > 0 && a.Holders[0] == key {
			break
		}
	}
	before := r.assignmentOf(t, f, id)
	f.waitFor("licence lapsed by block time", func() bool { _, ms := f.tip(); return ms >= lic.NotAfter })
	require.NotContains(t, candidates(), key)
	after := r.assignmentOf(t, f, id)
	require.NotContains(t, after.Holders, key)
	require.Equal(t, before.Holders[1], after.Holders[0], "the next in line moves up")
	require.Len(t, after.Holders, len(before.Holders))
}

// assignmentOf is the assignment of a record id authored by this node, at the tip.
func (r *running) assignmentOf(t *testing.T, f *recFixture, id chain.Hash) Assignment {
	t.Helper()
	var a Assignment
	f.view(func(v state.View) {
		var err error
		a, err = r.assignment(v, &state.RecordState{ID: id, Author: f.keys.ID()}, 0)
		require.NoError(t, err)
	})
	require.Equal(t, f.nodeKey, a.Author)
	return a
}

func TestUnpushedList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "unpushed")
	u, err := openUnpushed(dir)
	require.NoError(t, err)
	now := time.Unix(1_700_000_000, 0)
	a, b, c := randomHash(t), randomHash(t), randomHash(t)
	require.NoError(t, u.add([]chain.Hash{a, b}, now))
	require.NoError(t, u.add([]chain.Hash{c}, now))
	require.Equal(t, 3, u.len())
	require.Empty(t, u.due(now.Add(time.Second), time.Minute, 10), "fresh imports are left to their own pushes")
	require.Len(t, u.due(now.Add(time.Minute), time.Minute, 10), 3)
	require.Len(t, u.due(now.Add(time.Minute), time.Minute, 2), 2, "bounded per pass")

	require.NoError(t, u.done(a))
	require.NoError(t, u.done(a), "twice is harmless")
	require.Equal(t, 2, filesUnder(t, dir), "b keeps its import's file")
	require.NoError(t, u.done(c))
	require.Equal(t, 1, filesUnder(t, dir))

	// After a restart the list is the imports not wholly confirmed (a confirmed record of such
	// an import is pushed once more), due at once.
	u2, err := openUnpushed(dir)
	require.NoError(t, err)
	require.ElementsMatch(t, []chain.Hash{a, b}, u2.due(now, time.Hour, 10))
	age, ok := u2.age(b, time.Now().Add(time.Hour))
	require.True(t, ok)
	require.Greater(t, age, 59*time.Minute)
	_, ok = u2.age(c, time.Now())
	require.False(t, ok)
	require.NoError(t, u2.done(b))
	require.Equal(t, 1, filesUnder(t, dir))
	require.NoError(t, u2.done(a))
	require.Zero(t, filesUnder(t, dir))

	// A damaged file is an error, not a silent loss.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad"), []byte("short"), 0o600))
	_, err = openUnpushed(dir)
	require.Error(t, err)
}

func TestUnpushedListBounded(t *testing.T) {
	u, err := openUnpushed(filepath.Join(t.TempDir(), "unpushed"))
	require.NoError(t, err)
	now := time.Now()
	for range maxUnpushedBatches {
		u.batches[randomHash(t).String()] = &unpushedBatch{left: 1, created: now}
	}
	require.Error(t, u.add([]chain.Hash{randomHash(t)}, now))
}

func TestMemberQuota(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	q := newMemberQuota("push", 1000, time.Minute, 3)
	a, b := chain.Address{1}, chain.Address{2}
	require.NoError(t, q.take(a, 600, now))
	err := q.take(a, 600, now)
	require.ErrorIs(t, err, exchange.ErrBusy)
	require.Contains(t, err.Error(), "push")
	require.NoError(t, q.take(a, 400, now), "a refused push charges nothing")
	require.NoError(t, q.take(b, 600, now), "members have their own quotas")
	require.ErrorIs(t, q.take(a, 1, now), exchange.ErrBusy)
	require.NoError(t, q.take(a, 500, now.Add(30*time.Second)), "bytes come back with time")
	require.ErrorIs(t, q.take(b, 1001, now.Add(time.Hour)), exchange.ErrBusy, "larger than the whole window")

	// The request rate: 3 a second.
	c := chain.Address{3}
	for range 3 {
		require.NoError(t, q.take(c, 0, now))
	}
	err = q.take(c, 0, now)
	require.ErrorIs(t, err, exchange.ErrBusy)
	require.Contains(t, err.Error(), "a second")
	require.NoError(t, q.take(c, 0, now.Add(time.Second)))
}

func TestMemberQuotaBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	q := newMemberQuota("push", 1000, time.Minute, 3)
	for i := range quotaMembers {
		require.NoError(t, q.take(chain.Address{byte(i), byte(i >> 8), 1}, 1000, now))
	}
	require.ErrorIs(t, q.take(chain.Address{9, 9, 9}, 1, now), exchange.ErrBusy, "a full table of busy members refuses newcomers")
	require.NoError(t, q.take(chain.Address{9, 9, 9}, 1, now.Add(time.Hour)), "idle members are forgotten")
	require.Len(t, q.m, 1, "only the newcomer is left")
}
