package state

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// Adjudication, decisions, disputes and the volume rule.

func TestClaimAdjudicatedByRule(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	cl, res := c.file(c.spec("adj", day0, "99213", "99214", "36415"))
	require.Equal(t, ClaimAdjudicated, cl.Status)
	require.Equal(t, ClaimAdjudicated, cl.Settled)
	require.Equal(t, uint32(1), cl.ScheduleRevision)
	require.False(t, cl.Flagged)
	require.True(t, claimEvent(res, EventClaimAdjudicated, addr(c.payer).String()))
	// Coinsurance 20%: allowed = min(billed, fee), the patient's share rounded down, the payer
	// pays the rest. 11 033 × 20% = 2 206.6 → the patient owes 2 206, the payer 8 827.
	want := [][3]uint64{ // allowed, paid, patient
		{7_500, 6_000, 1_500},  // billed 9 000 over the fee
		{11_033, 8_827, 2_206}, // billed 15 000, fee 11 033
		{1_000, 800, 200},      // billed 1 234, fee 1 000
	}
	for i, w := range want {
		l := cl.Lines[i]
		require.Equal(t, w, [3]uint64{l.AllowedCents, l.PaidCents, l.PatientCents}, "line %d", i)
		require.Equal(t, chain.DenyNone, l.Reason)
	}

	// A code without a fee entry (97110) pends the whole claim for the payer's decision.
	p, res := c.file(c.spec("pend", day0, "99213", "97110"))
	require.Equal(t, ClaimPended, p.Status)
	require.True(t, claimEvent(res, EventClaimPended, addr(c.payer).String()))
	for _, l := range p.Lines {
		require.Zero(t, l.AllowedCents+l.PaidCents+l.PatientCents)
	}
}

func (c *claimNet) decideTx(payer chain.PrivKey, label string, lines ...chain.LineDecision) *chain.Tx {
	return c.tx(payer, chain.TxClaimDecide, &chain.ClaimDecide{Claim: claimID(label), Lines: lines})
}

func (c *claimNet) disputeTx(patient chain.PrivKey, label string, r chain.DisputeReason) *chain.Tx {
	return c.tx(patient, chain.TxClaimDispute, &chain.ClaimDispute{Claim: claimID(label), Reason: r, Statement: chain.Sum256([]byte("statement/" + label))})
}

func TestClaimDecide(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	c.file(c.spec("pend", day0, "99213", "97110")) // billed 9 000 and 4 000
	pay := chain.LineDecision{PaidCents: 6_000, PatientCents: 1_500}
	deny := chain.LineDecision{Reason: chain.DenyNotNecessary}

	c.refused(c.decideTx(c.payer2, "pend", pay, deny), ErrClaimRole, "not the signer's")
	c.refused(c.decideTx(c.payer, "nope", pay, deny), ErrNoClaim, "no claim")
	c.refused(c.decideTx(c.payer, "pend", pay), ErrDecision, "1 line decisions for claim")
	c.refused(c.decideTx(c.payer, "pend", pay, chain.LineDecision{PaidCents: 4_000, PatientCents: 1}), ErrDecision, "exceed the 4000 billed")
	// The limit is the billed amount, exactly.
	out := c.apply(c.decideTx(c.payer, "pend", pay, chain.LineDecision{PaidCents: 3_000, PatientCents: 1_000}))
	cl := c.claim("pend")
	require.Equal(t, ClaimDecided, cl.Status)
	require.Equal(t, c.height, cl.DecidedHeight)
	require.Equal(t, uint64(4_000), cl.Lines[1].AllowedCents)
	require.Equal(t, uint64(3_000), cl.Lines[1].PaidCents)
	require.True(t, claimEvent(out.Results[0], EventClaimDecided, addr(c.payer).String(), addr(c.doc).String()))
	// Decided and undisputed: no second decision.
	c.refused(c.decideTx(c.payer, "pend", pay, deny), ErrClaimState, "not disputed")
	// The payer also decides a claim the rule adjudicated (overriding it).
	c.file(c.spec("adj", day0, "99213"))
	c.apply(c.decideTx(c.payer, "adj", chain.LineDecision{Reason: chain.DenyContentMismatch}))
	cl = c.claim("adj")
	require.Equal(t, ClaimDecided, cl.Status)
	require.Equal(t, chain.DenyContentMismatch, cl.Lines[0].Reason)
	require.Zero(t, cl.Lines[0].PaidCents)
}

func TestClaimDispute(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	c.file(c.spec("adj", day0, "99213"))

	// Only the claim's own patient disputes it: not another patient, not the payer.
	c.refused(c.disputeTx(c.bob, "adj", chain.DisputeNotReceived), ErrClaimRole, "another patient")
	c.refused(c.disputeTx(c.payer, "adj", chain.DisputeNotReceived), ErrClaimRole, "another patient")
	c.refused(c.disputeTx(c.alice, "nope", chain.DisputeNotReceived), ErrNoClaim, "no claim")

	out := c.apply(c.disputeTx(c.alice, "adj", chain.DisputeNotReceived))
	cl := c.claim("adj")
	require.Equal(t, ClaimDisputed, cl.Status)
	require.Equal(t, ClaimAdjudicated, cl.Settled, "the adjudication stays in force and visible")
	require.Equal(t, uint64(6_000), cl.Lines[0].PaidCents)
	d := cl.Dispute()
	require.NotNil(t, d)
	require.Equal(t, chain.DisputeNotReceived, d.Reason)
	require.Equal(t, chain.Sum256([]byte("statement/adj")), d.Statement)
	require.Equal(t, c.height, d.Height)
	// The payer and the provider see it.
	require.True(t, claimEvent(out.Results[0], EventClaimDisputed, claimID("adj").Short(), addr(c.payer).String(), addr(c.doc).String()))
	c.refused(c.disputeTx(c.alice, "adj", chain.DisputeWrongAmount), ErrClaimState, "already disputed")

	// The payer's decision answers the dispute, which stays on the claim.
	out = c.apply(c.decideTx(c.payer, "adj", chain.LineDecision{Reason: chain.DenyOther}))
	require.True(t, claimEvent(out.Results[0], EventClaimDecided, "dispute"))
	cl = c.claim("adj")
	require.Equal(t, ClaimDecided, cl.Status)
	require.Nil(t, cl.Dispute())
	require.Len(t, cl.Disputes, 1)
	require.Equal(t, c.height, cl.Disputes[0].ResolvedHeight)

	// The patient may dispute again after a decision, up to MaxDisputesPerClaim times.
	for range MaxDisputesPerClaim - 1 {
		c.apply(c.disputeTx(c.alice, "adj", chain.DisputeWrongAmount))
		c.apply(c.decideTx(c.payer, "adj", chain.LineDecision{PaidCents: 100}))
	}
	c.refused(c.disputeTx(c.alice, "adj", chain.DisputeOther), ErrClaimState, "the limit")

	// A pended claim can be disputed too; the payer's decision still settles it.
	c.file(c.spec("pend", day0, "97110"))
	c.apply(c.disputeTx(c.alice, "pend", chain.DisputeMembershipCovers))
	require.Equal(t, ClaimPended, c.claim("pend").Settled)
	c.apply(c.decideTx(c.payer, "pend", chain.LineDecision{Reason: chain.DenyNotCovered}))
	require.Equal(t, ClaimDecided, c.claim("pend").Status)
}

// codeSets are 15 distinct non-empty sets of codes, so claims of one patient on one day differ.
func codeSet(i int) []string {
	all := []string{"99213", "99214", "36415", "97110"}
	var out []string
	for b := range all {
		if (i%15+1)&(1<<b) != 0 {
			out = append(out, all[b])
		}
	}
	return out
}

// fileDay files n claims by doc on day (alice's first, then bob's) in one block and returns the
// claims in order.
func (c *claimNet) fileDay(day uint32, n int) []*ClaimRecord {
	c.t.Helper()
	var labels [2][]string
	var specs []claimSpec
	for i := range n {
		p, who := i/15, []chain.PrivKey{c.alice, c.bob}[i/15]
		label := fmt.Sprintf("d%d-%d", day, i)
		labels[p] = append(labels[p], label)
		s := c.spec(label, day, codeSet(i)...)
		s.patient = who
		specs = append(specs, s)
	}
	c.at(day, 8*hour)
	var visits []*chain.Tx
	for p, ls := range labels {
		if len(ls) > 0 {
			visits = append(visits, c.visitTx(c.doc, []chain.PrivKey{c.alice, c.bob}[p], ls...))
		}
	}
	c.apply(visits...)
	c.at(day, 9*hour)
	var txs []*chain.Tx
	for _, s := range specs {
		txs = append(txs, c.claimTx(s))
	}
	c.apply(txs...)
	var out []*ClaimRecord
	for _, s := range specs {
		out = append(out, c.claim(s.id))
	}
	return out
}

func TestClaimVolumeFlagged(t *testing.T) {
	c := newClaimNet(t)
	c.apply(c.coverageTx(c.payer, "bob", c.bob, day0-60, 0))
	// Ten days of history at about three claims a day (2, 3 or 4), none flagged.
	for d := day0 - 10; d < day0; d++ {
		for _, cl := range c.fileDay(d, 2+int(d%3)) {
			require.False(t, cl.Flagged)
		}
	}
	v, err := ProviderClaimVolume(c.view, addr(c.doc))
	require.NoError(t, err)
	require.Equal(t, uint32(9), v.Days)
	// Then 20 in one day. The average is about 3: the threshold is max(3 × 3, 3 + 10) = 13.
	// The first 13 pass as usual (the near miss); from the 14th on each is flagged to the payer
	// and pended, although the schedule prices every code.
	cls := c.fileDay(day0, 20)
	for i, cl := range cls {
		require.Equal(t, i >= 13, cl.Flagged, "claim %d", i)
		require.Equal(t, uint32(i+1), cl.VolumeToday)
		require.Equal(t, uint32(10), cl.VolumeDays)
		require.InDelta(t, 3*VolumeScale, float64(cl.VolumeAverage), VolumeScale/2)
		// 97110 has no fee entry: such claims pend whatever their volume.
		if cl.Flagged || slices.Contains(codeSet(i), "97110") {
			require.Equal(t, ClaimPended, cl.Status, "claim %d", i)
		} else {
			require.Equal(t, ClaimAdjudicated, cl.Status, "claim %d", i)
		}
	}
}

func TestClaimVolumeEventNamesPayer(t *testing.T) {
	c := newClaimNet(t)
	c.apply(c.coverageTx(c.payer, "bob", c.bob, day0-60, 0))
	for d := day0 - 7; d < day0; d++ {
		c.fileDay(d, 1)
	}
	// Average 1, threshold max(3, 11) = 11: the 12th claim of the day is flagged.
	cls := c.fileDay(day0, 12)
	require.False(t, cls[10].Flagged)
	require.True(t, cls[11].Flagged)
	s := c.spec("one more", day0, "99213")
	s.patient = c.bob
	_, res := c.file(s)
	require.True(t, claimEvent(res, EventClaimFlagged, addr(c.doc).String(), addr(c.payer).String(), "13 claims today"))
}

// TestClaimVolumeHistory checks the statistic itself: the warm-up mean, zero days, the minimum
// history, and the O(1) decay against folding zero days one by one.
func TestClaimVolumeHistory(t *testing.T) {
	day := func(v *claimVolumeRecord, d uint32, n uint32) {
		v.advance(d)
		v.Count += n
	}
	// Six days of 1 claim then 50: too little history to judge (near miss); the seventh day
	// of history makes 50 a flag.
	v := &claimVolumeRecord{}
	for d := range uint32(6) {
		day(v, 100+d, 1)
	}
	day(v, 106, 0)
	require.Equal(t, uint32(6), v.Days)
	require.False(t, v.flags(50))
	day(v, 107, 0)
	require.Equal(t, uint32(7), v.Days)
	require.Equal(t, uint64(6*VolumeScale/7), v.Average, "the day without claims counts as zero")
	require.True(t, v.flags(50))
	// Low volume: 3 × average is not enough, the margin of 10 applies.
	require.False(t, v.flags(10))
	require.True(t, v.flags(11))

	// A gap folds its zero days at once, as folding them one by one would (up to rounding).
	for _, gap := range []uint32{1, 5, 20, 21, 40, 200, 5000} {
		a := &claimVolumeRecord{}
		for d := range uint32(10) {
			day(a, 1000+d, 30)
		}
		b := *a
		a.advance(1010 + gap)
		b.fold(uint64(b.Count) * VolumeScale)
		b.Count = 0
		for range gap {
			b.fold(0)
		}
		require.Equal(t, b.Days, a.Days, "gap %d", gap)
		require.InDelta(t, float64(b.Average), float64(a.Average), float64(b.Average)/100+float64(gap), "gap %d", gap)
	}
	// The first claim starts the history on its own day.
	v = &claimVolumeRecord{}
	day(v, 500, 1)
	require.Equal(t, claimVolumeRecord{Day: 500, Count: 1}, *v)
}

// TestClaimAmendedEncounter: an encounter amended after the visit still dates from its first
// version; an amendment of another provider's encounter is not the claimant's visit.
func TestClaimAmendedEncounter(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	orig := newAnchor("enc/amended", c.alice, "Encounter")
	c.apply(c.anchorTx(c.doc, orig, newAnchor("claim/amended", c.alice, "Claim")))
	c.at(day0+1, 9*hour)
	c.apply(c.anchorTx(c.doc, amendment("enc/amended v2", orig, "Encounter")))
	s := c.spec("amended", day0, "99213")
	s.encounter = "amended v2"
	c.apply(c.claimTx(s))

	// nurse's encounter, amended by doc under alice's consent: still nurse's visit.
	norig := newAnchor("enc/nurse", c.alice, "Encounter")
	c.apply(c.anchorTx(c.nurse, norig, newAnchor("claim/nurse", c.alice, "Claim")),
		c.grantTx(c.alice, c.doc, allScope, "treatment", 0))
	c.apply(c.anchorTx(c.doc, amendment("enc/nurse v2", norig, "Encounter")), c.anchorTx(c.doc, newAnchor("claim/by doc", c.alice, "Claim")))
	s = c.spec("by doc", day0+1, "99214")
	s.encounter = "nurse v2"
	c.refused(c.claimTx(s), ErrPhantomVisit, "first anchored by")
}

func TestClaimQueriesStorageErrors(t *testing.T) {
	for name, err := range map[string]error{
		"schedule":  second(Schedule(failView{}, chain.Address{1}, chain.Address{2})),
		"coverage":  second(Coverage(failView{}, rid("x"))),
		"coverages": second(Coverages(failView{}, chain.Address{1}, chain.Address{2})),
		"claim":     second(Claim(failView{}, rid("x"))),
		"print":     second(ClaimWithPrint(failView{}, chain.Address{1}, rid("x"))),
		"volume":    second(ProviderClaimVolume(failView{}, chain.Address{1})),
		"payer":     second(ActivePayer(failView{}, chain.Address{1}, 0)),
	} {
		require.ErrorContains(t, err, "disk on fire", name)
	}
	// A dangling coverage index entry is reported, not skipped.
	v := newMemView()
	v.m[string(coveragesKey(chain.Address{1}, chain.Address{2}))] = chain.Encode(&coverageIndex{Version: RecordVersion, IDs: []chain.Hash{rid("gone")}})
	_, err := Coverages(v, chain.Address{1}, chain.Address{2})
	require.ErrorContains(t, err, "missing")
}

// TestClaimsDeterministic: the same claim blocks give byte-identical change sets.
func TestClaimsDeterministic(t *testing.T) {
	run := func() [][]byte {
		c := newClaimNet(t)
		c.apply(c.coverageTx(c.payer, "bob", c.bob, day0-60, 0))
		var out [][]byte
		for d := day0 - 8; d <= day0; d++ {
			c.at(d, 8*hour)
			c.apply(c.visitTx(c.doc, c.alice, fmt.Sprint(d)))
			c.at(d, 9*hour)
			o := c.apply(c.claimTx(c.spec(fmt.Sprint(d), d, codeSet(int(d))...)), c.disputeTx(c.alice, fmt.Sprint(d), chain.DisputeWrongAmount))
			out = append(out, encodeChanges(o.Changes))
		}
		return out
	}
	a, b := run(), run()
	require.Equal(t, a, b)
}
