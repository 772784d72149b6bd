package state

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// claimNet is recNet (providers doc, nurse, holder; patients alice, bob) with a payers' board
// named as the payer issuer, two registered payers, payer's schedule for doc and coverage of
// alice by payer. Block time is still near genesis: tests move it to the days they need (at).
type claimNet struct {
	*recNet
	board, payer, payer2 chain.PrivKey
}

const (
	day0 uint32 = 19_700 // 2023-12-09; genesis (genesisTime) is day 19675
	hour        = 60 * 60 * 1000
)

// Fee schedule of payer for doc (cents) and what doc bills.
var (
	testFees   = map[string]uint64{"99213": 7_500, "99214": 11_033, "36415": 1_000}
	testBilled = map[string]uint64{"99213": 9_000, "99214": 15_000, "36415": 1_234, "97110": 4_000}
	// planA covers office visits (99213) for its members: payer will not pay for them.
	planA = chain.Sum256([]byte("plan/A"))
)

func newClaimNet(t *testing.T) *claimNet {
	t.Helper()
	c := &claimNet{recNet: newRecNet(t), board: testKey(t, "payers' board"), payer: testKey(t, "payer"), payer2: testKey(t, "payer 2")}
	// newNet's genesis names only a pharmacy board: add the payers' board to the issuers record,
	// as a genesis naming it would have written it.
	is, err := Issuers(c.view)
	require.NoError(t, err)
	is = chain.SortIssuers(append(is, chain.Issuer{Role: chain.RolePayer, Key: c.board.Public(), Name: "payers' board"}))
	c.view.m[string(keyIssuers)] = chain.Encode(&issuersRecord{Version: RecordVersion, Issuers: is})
	far := int64(genesisTime) + 1_000_000_000_000
	c.apply(c.memberTx(c.payer, c.licenceFor(chain.RolePayer, c.payer.Public(), c.board, far)),
		c.memberTx(c.payer2, c.licenceFor(chain.RolePayer, c.payer2.Public(), c.board, far)))
	c.apply(c.scheduleTx(c.payer, c.doc, 20, map[chain.Hash][]string{planA: {"99213"}}))
	c.apply(c.coverageTx(c.payer, "alice", c.alice, day0-60, 0))
	return c
}

// at moves the next block's time to day at offset ms.
func (c *claimNet) at(day uint32, offset int64) {
	c.t.Helper()
	next := int64(day)*chain.DayMs + offset
	require.Greater(c.t, next, c.time, "time goes forward")
	c.time = next - 1000
}

// billingKey is the key K payer shares with provider; fp fingerprints a code under it.
func billingKey(payer, provider chain.PrivKey) chain.Hash {
	return chain.Sum256([]byte("billing-key/" + addr(payer).String() + "/" + addr(provider).String()))
}

func fp(payer, provider chain.PrivKey, code string) chain.Fingerprint {
	k := billingKey(payer, provider)
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte(code))
	return chain.Hash(m.Sum(nil))
}

func (c *claimNet) scheduleTx(payer, provider chain.PrivKey, coins uint8, excluded map[chain.Hash][]string) *chain.Tx {
	k := billingKey(payer, provider)
	s := &chain.PayerSchedule{Provider: addr(provider), Currency: "USD", KeyCommit: chain.Sum256(k[:]),
		KeyEnvelope: []byte("sealed K"), CoinsurancePct: coins}
	for code, cents := range testFees {
		s.Fees = append(s.Fees, chain.FeeEntry{Code: fp(payer, provider, code), AllowedCents: cents})
	}
	slices.SortFunc(s.Fees, func(a, b chain.FeeEntry) int { return compareHash(a.Code, b.Code) })
	for plan, codes := range excluded {
		x := chain.PlanExclusion{Plan: plan}
		for _, code := range codes {
			x.Codes = append(x.Codes, fp(payer, provider, code))
		}
		slices.SortFunc(x.Codes, compareHash)
		s.Excluded = append(s.Excluded, x)
	}
	slices.SortFunc(s.Excluded, func(a, b chain.PlanExclusion) int { return compareHash(a.Plan, b.Plan) })
	return c.tx(payer, chain.TxPayerSchedule, s)
}

func covID(label string) chain.Hash { return chain.Sum256([]byte("coverage/" + label)) }

func (c *claimNet) coverageTx(payer chain.PrivKey, label string, patient chain.PrivKey, from, to uint32) *chain.Tx {
	return c.tx(payer, chain.TxCoverageSet, &chain.CoverageSet{ID: covID(label), Patient: addr(patient), FromDay: from, ToDay: to})
}

func (c *claimNet) endCoverageTx(payer chain.PrivKey, label string, patient chain.PrivKey) *chain.Tx {
	return c.tx(payer, chain.TxCoverageSet, &chain.CoverageSet{ID: covID(label), Patient: addr(patient), End: true})
}

// claimSpec is a claim to file; spec fills in the usual parties.
type claimSpec struct {
	id                       string
	provider, payer, patient chain.PrivKey
	encounter, record        string // labels of the anchored Encounter and Claim records
	day                      uint32
	codes                    []string
}

func (c *claimNet) spec(label string, day uint32, codes ...string) claimSpec {
	return claimSpec{id: label, provider: c.doc, payer: c.payer, patient: c.alice, encounter: label, record: label, day: day, codes: codes}
}

func claimID(label string) chain.Hash { return chain.Sum256([]byte("claim-id/" + label)) }

func (c *claimNet) claimTx(s claimSpec) *chain.Tx {
	k := billingKey(s.payer, s.provider)
	b := &chain.ClaimSubmit{ID: claimID(s.id), Patient: addr(s.patient), Payer: addr(s.payer),
		Encounter: rid("enc/" + s.encounter), Record: rid("claim/" + s.record), ServiceDay: s.day, KeyCommit: chain.Sum256(k[:])}
	for _, code := range s.codes {
		b.Lines = append(b.Lines, chain.ClaimLine{Code: fp(s.payer, s.provider, code), BilledCents: testBilled[code]})
	}
	b.DupPrint = chain.ClaimDupPrint(b.Patient, b.ServiceDay, b.Lines)
	return c.tx(s.provider, chain.TxClaimSubmit, b)
}

// visitTxs anchor, by provider for patient, an Encounter and a sealed Claim record per label.
func (c *claimNet) visitTx(provider, patient chain.PrivKey, labels ...string) *chain.Tx {
	var as []chain.RecordAnchor
	for _, l := range labels {
		as = append(as, newAnchor("enc/"+l, patient, "Encounter"), newAnchor("claim/"+l, patient, "Claim"))
	}
	return c.anchorTx(provider, as...)
}

// file anchors the visit of s (unless anchored) and files s, returning the claim.
func (c *claimNet) file(s claimSpec) (*ClaimRecord, TxResult) {
	c.t.Helper()
	if rec, _ := Record(c.view, rid("claim/"+s.record)); rec == nil {
		c.apply(c.visitTx(s.provider, s.patient, s.record))
	}
	out := c.apply(c.claimTx(s))
	return c.claim(s.id), out.Results[0]
}

func (c *claimNet) claim(label string) *ClaimRecord {
	c.t.Helper()
	cl, err := Claim(c.view, claimID(label))
	require.NoError(c.t, err)
	require.NotNil(c.t, cl, "claim %s", label)
	return cl
}

// refused checks that tx fails with sentinel and a message containing want, changing nothing.
func (c *claimNet) refused(tx *chain.Tx, sentinel error, want string) {
	c.t.Helper()
	err := c.fails(tx, want)
	require.True(c.t, errors.Is(err, sentinel), "error %v is not %v", err, sentinel)
}

func claimEvent(res TxResult, typ string, parts ...string) bool {
	for _, e := range res.Events {
		if e.Type != typ {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(e.Detail, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// standInMembership writes a membership of patient at provider under plan straight into state.
// STAND-IN: the membership rules are written on another branch; once both are merged, replace it
// with MembershipEnrol (and MembershipCancel for endMs) transactions.
func (c *claimNet) standInMembership(label string, provider, patient chain.PrivKey, plan chain.Hash, startMs, endMs int64) {
	c.t.Helper()
	id := chain.Sum256([]byte("membership/" + label))
	m := &MembershipRecord{Version: RecordVersion, ID: id, Provider: addr(provider), Subscriber: addr(patient), Currency: "USD",
		Period: chain.PeriodMonthly, StartMs: startMs, EndMs: endMs, EnrolledHeight: c.height, EnrolledTime: c.time,
		Segments: []MembershipSegment{{FromMs: startMs, Plan: plan, Members: []chain.MemberTier{{Patient: addr(patient)}}, PriceCents: 9_900}}}
	c.view.m[string(mshipKey(id))] = chain.Encode(m)
	idx := &membershipIndex{Version: RecordVersion}
	_, err := get(c.view, mshipsKey(addr(provider), addr(patient)), "membership index", idx)
	require.NoError(c.t, err)
	idx.IDs = append(idx.IDs, id)
	c.view.m[string(mshipsKey(addr(provider), addr(patient)))] = chain.Encode(idx)
}

func TestPayerScheduleRules(t *testing.T) {
	c := newClaimNet(t)
	s, err := Schedule(c.view, addr(c.payer), addr(c.doc))
	require.NoError(t, err)
	require.Equal(t, uint32(1), s.Revision)
	fee, ok := s.Fee(fp(c.payer, c.doc, "99214"))
	require.True(t, ok)
	require.Equal(t, uint64(11_033), fee)
	require.True(t, s.Excludes(planA, fp(c.payer, c.doc, "99213")))
	require.False(t, s.Excludes(planA, fp(c.payer, c.doc, "99214")))

	// A provider is no payer; the provider a schedule names must be one.
	c.refused(c.scheduleTx(c.nurse, c.doc, 20, nil), ErrClaimRole, "not a registered payer")
	c.refused(c.scheduleTx(c.payer, c.stranger, 20, nil), ErrClaimRole, "not a registered provider")
	// Another payer's schedule for doc is its own pair: payer's stays as it was.
	c.apply(c.scheduleTx(c.payer2, c.doc, 50, nil))
	s2, err := Schedule(c.view, addr(c.payer), addr(c.doc))
	require.NoError(t, err)
	require.Equal(t, s, s2)
	o, err := Schedule(c.view, addr(c.payer2), addr(c.doc))
	require.NoError(t, err)
	require.Equal(t, uint8(50), o.Schedule.CoinsurancePct)
	// payer replaces its own: the revision counts.
	out := c.apply(c.scheduleTx(c.payer, c.doc, 10, nil))
	s3, err := Schedule(c.view, addr(c.payer), addr(c.doc))
	require.NoError(t, err)
	require.Equal(t, uint32(2), s3.Revision)
	require.Equal(t, uint8(10), s3.Schedule.CoinsurancePct)
	require.True(t, claimEvent(out.Results[0], EventScheduleSet, "revision 2"))
	// A payer whose attestation is revoked publishes nothing.
	c.apply(c.net.revokeTx(c.board, addr(c.payer2), chain.RolePayer))
	c.refused(c.scheduleTx(c.payer2, c.doc, 50, nil), ErrClaimRole, "not an active payer")
}

func TestCoverageRules(t *testing.T) {
	c := newClaimNet(t)
	c.refused(c.coverageTx(c.doc, "x", c.bob, day0, 0), ErrClaimRole, "not a registered payer")
	c.refused(c.coverageTx(c.payer, "x", c.stranger, day0, 0), ErrClaimRole, "not a registered patient")
	c.refused(c.coverageTx(c.payer, "alice", c.bob, day0, 0), ErrClaimExists, "exists")
	c.refused(c.endCoverageTx(c.payer2, "alice", c.alice), ErrClaimRole, "not the signer's")
	c.refused(c.endCoverageTx(c.payer, "nope", c.alice), ErrNoClaim, "no coverage")

	// bob is covered for days day0-10 .. day0-1: a claim outside the period is refused, inside
	// passes.
	c.apply(c.coverageTx(c.payer, "bob", c.bob, day0-10, day0-1))
	in, out := c.spec("bob-in", day0-1, "99213"), c.spec("bob-out", day0, "99213")
	in.patient, out.patient = c.bob, c.bob
	c.at(day0-1, 9*hour)
	c.apply(c.visitTx(c.doc, c.bob, "bob-in", "bob-out"))
	c.at(day0, 9*hour)
	c.refused(c.claimTx(out), ErrNotCovered, "covers day 19700")
	c.apply(c.claimTx(in))

	// An end covers no day from the block's day on; days before stay covered.
	c.at(day0+4, 9*hour)
	c.apply(c.visitTx(c.doc, c.alice, "before-end", "at-end"))
	c.at(day0+5, 9*hour)
	c.apply(c.endCoverageTx(c.payer, "alice", c.alice))
	cv, err := Coverage(c.view, covID("alice"))
	require.NoError(t, err)
	require.True(t, cv.Ended)
	require.True(t, cv.CoversDay(day0+4))
	require.False(t, cv.CoversDay(day0+5))
	c.refused(c.endCoverageTx(c.payer, "alice", c.alice), ErrClaimState, "already ended")
	c.refused(c.claimTx(c.spec("at-end", day0+5, "99213")), ErrNotCovered, "")
	c.apply(c.claimTx(c.spec("before-end", day0+4, "99213")))

	// At most chain.MaxCoveragePerPair per pair; coverages that ended longer ago than claims
	// may be filed make room.
	for i := range chain.MaxCoveragePerPair - 1 {
		c.apply(c.coverageTx(c.payer, "alice-"+string(rune('a'+i)), c.alice, day0+6, day0+6))
	}
	list, err := Coverages(c.view, addr(c.payer), addr(c.alice))
	require.NoError(t, err)
	require.Len(t, list, chain.MaxCoveragePerPair)
	c.refused(c.coverageTx(c.payer, "one too many", c.alice, day0+7, 0), ErrCoverageLimit, "")
	c.at(day0+6+ClaimFilingDays+1, 9*hour)
	c.apply(c.coverageTx(c.payer, "one too many", c.alice, day0+7, 0))
	list, err = Coverages(c.view, addr(c.payer), addr(c.alice))
	require.NoError(t, err)
	require.Len(t, list, 1, "the old ones were pruned from the index")
}

func TestClaimFilingChecks(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	c.apply(c.visitTx(c.doc, c.alice, "ok"), c.visitTx(c.nurse, c.alice, "nurse"),
		c.anchorTx(c.doc, newAnchor("claim/obs", c.alice, "Observation"), newAnchor("claim/bob", c.bob, "Claim")))
	ok := c.spec("ok", day0, "99213")

	s := ok
	s.provider = c.payer2 // not a provider
	c.refused(c.claimTx(s), ErrClaimRole, "claimant")
	s = ok
	s.payer = c.nurse
	c.refused(c.claimTx(s), ErrClaimRole, "not a registered payer")
	s = ok
	s.patient = c.stranger
	c.refused(c.claimTx(s), ErrClaimRole, "patient")
	s = ok
	s.payer = c.payer2 // no schedule of payer2 for doc
	c.refused(c.claimTx(s), ErrNoSchedule, "no schedule")
	c.apply(c.scheduleTx(c.payer2, c.doc, 0, nil))
	s.provider = c.doc
	tx := c.claimTx(s)
	b, _ := chain.DecodePayload(tx.Kind, tx.Payload)
	cs := b.(*chain.ClaimSubmit)
	cs.KeyCommit = chain.Sum256([]byte("another key"))
	c.nonces[c.doc.Public()]--
	c.refused(c.tx(c.doc, chain.TxClaimSubmit, cs), ErrNoSchedule, "billing key")
	s = ok
	s.day = day0 + 1
	c.refused(c.claimTx(s), ErrServiceDay, "after the block's day")
	s = ok
	s.record = "obs"
	c.refused(c.claimTx(s), ErrClaimRecord, "not a Claim")
	s.record = "nurse"
	c.refused(c.claimTx(s), ErrClaimRecord, "not the claimant")
	s.record = "bob"
	c.refused(c.claimTx(s), ErrClaimRecord, "of patient")
	s.record = "missing"
	c.refused(c.claimTx(s), ErrClaimRecord, "no record")

	// A print that is not the claim's own is refused by form.
	tx = c.claimTx(ok)
	b, _ = chain.DecodePayload(tx.Kind, tx.Payload)
	cs = b.(*chain.ClaimSubmit)
	cs.DupPrint = chain.Sum256([]byte("random"))
	require.ErrorContains(t, cs.Validate(), "ClaimDupPrint")
	c.nonces[c.doc.Public()]--

	cl, res := c.file(ok)
	require.Equal(t, ClaimAdjudicated, cl.Status)
	require.True(t, claimEvent(res, EventClaimFiled, claimID("ok").Short()))
	c.refused(c.claimTx(ok), ErrClaimExists, "exists")

	// The patient's log names the claim, and a wallet can decode and attribute it.
	n, err := PatientLogLength(c.view, addr(c.alice))
	require.NoError(t, err)
	es, err := PatientLog(c.view, addr(c.alice), n-1, 1)
	require.NoError(t, err)
	require.Equal(t, LogClaim, es[0].Kind)
	key, err := ItemKey(LogClaim, es[0].ID)
	require.NoError(t, err)
	it, err := DecodeItem(LogClaim, es[0].ID, c.view.m[string(key)])
	require.NoError(t, err)
	require.Equal(t, addr(c.alice), it.Patient())
	require.Equal(t, cl, it.Claim)
	who, public, known, err := KeyAbout(c.view, key)
	require.NoError(t, err)
	require.True(t, known)
	require.False(t, public)
	require.Equal(t, addr(c.alice), who)
	_, err = DecodeItem(LogClaim, claimID("other"), c.view.m[string(key)])
	require.Error(t, err)
}

func TestClaimDuplicate(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	first, _ := c.file(c.spec("first", day0, "99213", "36415"))

	// The same patient, provider, day and codes, in another order, under a new claim id and
	// records: refused, naming the earlier claim.
	again := c.spec("again", day0, "36415", "99213")
	c.apply(c.visitTx(c.doc, c.alice, "again"))
	c.refused(c.claimTx(again), ErrDuplicateClaim, first.ID.Short())

	// Near misses: another code; another patient; another day.
	c.file(c.spec("other code", day0, "99214", "36415"))
	c.apply(c.coverageTx(c.payer, "bob", c.bob, day0-1, 0))
	bob := c.spec("bob", day0, "99213", "36415")
	bob.patient = c.bob
	c.file(bob)
	c.at(day0+1, 10*hour)
	c.file(c.spec("next day", day0+1, "99213", "36415"))
	// The print tells other readers nothing about the codes: it is keyed (another billing key
	// gives another print for the same codes).
	l1 := []chain.ClaimLine{{Code: fp(c.payer, c.doc, "99213"), BilledCents: 1}}
	l2 := []chain.ClaimLine{{Code: fp(c.payer2, c.doc, "99213"), BilledCents: 1}}
	require.NotEqual(t, chain.ClaimDupPrint(addr(c.alice), day0, l1), chain.ClaimDupPrint(addr(c.alice), day0, l2))
	p, err := ClaimWithPrint(c.view, addr(c.doc), first.DupPrint)
	require.NoError(t, err)
	require.Equal(t, first.ID, p)
}

func TestClaimPhantomVisit(t *testing.T) {
	c := newClaimNet(t)
	// The encounter was anchored earlier the same day (00:30) as the 09:00 filing: passes.
	c.at(day0, hour/2)
	c.apply(c.visitTx(c.doc, c.alice, "same day"))
	c.at(day0, 9*hour)
	c.file(c.spec("same day", day0, "99213"))

	// Claimed for yesterday, but the encounter was only anchored today: refused.
	c.apply(c.visitTx(c.doc, c.alice, "late"))
	c.refused(c.claimTx(c.spec("late", day0-1, "99214")), ErrPhantomVisit, "after the service day")
	// The same claim for today passes (near miss).
	c.file(c.spec("late", day0, "99214"))

	// Another provider's encounter, however real, is not the claimant's visit.
	c.apply(c.visitTx(c.nurse, c.alice, "nurse visit"), c.anchorTx(c.doc, newAnchor("claim/by doc", c.alice, "Claim")))
	s := c.spec("by doc", day0, "36415")
	s.encounter = "nurse visit"
	c.refused(c.claimTx(s), ErrPhantomVisit, "not the claimant")
	// An encounter of another patient, a record that is no encounter, and none at all.
	c.apply(c.anchorTx(c.doc, newAnchor("enc/bob", c.bob, "Encounter"), newAnchor("enc/obs", c.alice, "Observation")))
	s.encounter = "bob"
	c.refused(c.claimTx(s), ErrPhantomVisit, "of patient")
	s.encounter = "obs"
	c.refused(c.claimTx(s), ErrPhantomVisit, "not an Encounter")
	s.encounter = "never"
	c.refused(c.claimTx(s), ErrPhantomVisit, "no record")
	// An erased encounter no longer backs a claim.
	c.apply(c.visitTx(c.doc, c.alice, "erased"))
	c.apply(c.eraseTx(c.alice, rid("enc/erased")))
	c.refused(c.claimTx(c.spec("erased", day0, "97110")), ErrPhantomVisit, "erased")
}

func TestClaimMemberCare(t *testing.T) {
	c := newClaimNet(t)
	c.at(day0, 9*hour)
	start := int64(day0-30) * chain.DayMs
	c.standInMembership("alice at doc", c.doc, c.alice, planA, start, 0)

	// planA covers 99213 for alice at doc: billing the payer for it is double billing.
	c.apply(c.visitTx(c.doc, c.alice, "visit"))
	c.refused(c.claimTx(c.spec("visit", day0, "99213", "36415")), ErrMemberCare, "plan "+planA.Short())
	// Near miss: a code the plan does not cover passes.
	c.file(c.spec("visit", day0, "36415"))

	// bob's membership is at another practice (nurse): it does not count at doc.
	c.apply(c.coverageTx(c.payer, "bob", c.bob, day0-60, 0))
	c.standInMembership("bob at nurse", c.nurse, c.bob, planA, start, 0)
	bob := c.spec("bob", day0, "99213", "36415")
	bob.patient = c.bob
	c.file(bob)

	// bob's membership at doc was cancelled the day before the service day: it does not count.
	c.standInMembership("bob at doc", c.doc, c.bob, planA, start, int64(day0-1)*chain.DayMs+12*hour)
	bob2 := c.spec("bob 2", day0, "99213")
	bob2.patient = c.bob
	c.file(bob2)
	// carol's was cancelled one hour into the service day: it was in force that day.
	carol := testKey(t, "carol")
	c.apply(c.patientTx(carol))
	c.apply(c.coverageTx(c.payer, "carol", carol, day0-60, 0))
	c.standInMembership("carol at doc", c.doc, carol, planA, start, int64(day0)*chain.DayMs+hour)
	cs := c.spec("carol", day0, "99213")
	cs.patient = carol
	c.apply(c.visitTx(c.doc, carol, "carol"))
	c.refused(c.claimTx(cs), ErrMemberCare, "membership")
}
