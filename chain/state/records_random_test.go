package state

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// TestRandomRecordBlocks drives seeded random blocks of record, consent and audit transactions
// (provider and patient registrations, anchors and amendments, grants with random scopes and
// expiries, revokes, emergency accesses, access logs with repeated requests, erasures and their
// acknowledgements; many invalid on purpose) through the Builder on one fresh state and
// ApplyBlock on another, and checks after every block that:
//
//   - both states made identical change sets and results and hold identical bytes;
//   - every anchored record has a registered author and patient;
//   - no record has two successors, and the version chains link both ways;
//   - an erased record keeps no resource type, ciphertext hash or size;
//   - each patient/grantee index lists exactly the non-revoked consents of the pair, and the
//     grantee index exactly the grantees with one;
//   - CheckAccess agrees with a naive scan of all consents, so never allows a revoked consent or
//     one at or after its expiry;
//   - there is one access record per request id logged, written once and never rewritten.
//
// -state.seed=N runs only seed N.
func TestRandomRecordBlocks(t *testing.T) {
	nSeeds, nBlocks := 50, 12
	if testing.Short() {
		nSeeds, nBlocks = 15, 10
	}
	var seeds []uint64
	for i := range nSeeds {
		seeds = append(seeds, uint64(1000+i))
	}
	if *seedFlag != 0 {
		seeds = []uint64{*seedFlag}
	}
	stats := map[string]int{}
	var current uint64
	defer func() {
		if t.Failed() {
			t.Logf("failed with seed %d (rerun with -run TestRandomRecordBlocks -state.seed=%d)", current, current)
		}
	}()
	for _, seed := range seeds {
		current = seed
		randomRecordBlocks(t, seed, nBlocks, stats)
	}
	// The mix must keep reaching every rule; a generator change that stops doing so fails here.
	for _, what := range []string{
		"accepted " + chain.TxRegisterProvider.String(), "accepted " + chain.TxRegisterPatient.String(),
		"rejected", EventRecordAnchored, EventRecordSuperseded, EventConsentGranted, EventConsentRevoked,
		EventEmergencyAccess, EventAccessLogged, EventAccessDuplicate, EventRecordErased, EventEraseAcked,
		EventEraseAckDuplicate, "access by consent", "access by author", "no consent", "erased",
		EventAccessThrottled, EventReceiptRecorded, EventReceiptDuplicate, "co-signed emergency", "emergency after revocation",
		"receipt without entry", // (12 blocks never reach ReceiptGraceBlocks: the flag itself is tested in audit_test.go)
	} {
		if len(seeds) > 1 && !testing.Short() {
			require.Positive(t, stats[what], "never happened: %s", what)
		}
	}
	t.Logf("%v", stats)
}

// recGen generates the transactions; it reads the state it builds on only to pick plausible
// targets (records, consents), never to decide what is valid.
type recGen struct {
	seed      uint64
	rng       *rand.Rand
	providers []chain.PrivKey // some register as providers
	patients  []chain.PrivKey // some register as patients
	all       []chain.PrivKey // providers, patients and a key that never registers
	nonces    map[chain.PubKey]uint64
	fresh     int
	requests  []chain.AccessRequest // earlier requests, to repeat
	holder    *chain.PrivKey        // the provider about to log the requests being built
	// ciphertexts: the ciphertext hash first generated for each record id, for receipts (erased
	// records' state no longer shows it).
	ciphertexts  map[chain.Hash]chain.Hash
	receiptBytes map[chain.Hash][]byte // each receipt as first written
	// Filled from the state before each block, in key order.
	records  []*RecordState
	consents []*ConsentRecord
	time     int64
}

var randomTypes = []string{"AllergyIntolerance", "Condition", "MedicationRequest", "Observation"}

var randomPurposes = []string{"TREAT", "RESEARCH", "ETREAT"}

func (g *recGen) pick(keys []chain.PrivKey) chain.PrivKey { return keys[g.rng.IntN(len(keys))] }

func (g *recGen) chance(n int) bool { return g.rng.IntN(n) == 0 }

func (g *recGen) freshID(what string) chain.Hash {
	g.fresh++
	return chain.Sum256(fmt.Appendf(nil, "random-records/%d/%s/%d", g.seed, what, g.fresh))
}

func (g *recGen) tx(k chain.PrivKey, kind chain.TxKind, body any) *chain.Tx {
	nonce := g.nonces[k.Public()] + 1
	if g.chance(20) {
		nonce = uint64(g.rng.IntN(3)) // mostly wrong
	}
	tx := chain.NewTx(k, testChain, kind, nonce, body)
	if g.chance(40) {
		tx.Sig[g.rng.IntN(len(tx.Sig))] ^= 1 << g.rng.IntN(8)
	}
	return tx
}

func (g *recGen) someRecord() *RecordState {
	if len(g.records) == 0 {
		return nil
	}
	return g.records[g.rng.IntN(len(g.records))]
}

// recordIDs returns 1..3 ids, mostly of anchored records, sorted and distinct unless broken on
// purpose.
func (g *recGen) recordIDs(want func(*RecordState) bool) []chain.Hash {
	var ids []chain.Hash
	for range 1 + g.rng.IntN(3) {
		var cands []*RecordState
		for _, r := range g.records {
			if want(r) {
				cands = append(cands, r)
			}
		}
		switch {
		case len(cands) > 0 && !g.chance(5):
			ids = append(ids, cands[g.rng.IntN(len(cands))].ID)
		case len(g.records) > 0 && g.chance(2):
			ids = append(ids, g.someRecord().ID)
		default:
			ids = append(ids, g.freshID("unknown"))
		}
	}
	ids = sortedIDs(ids)
	if !g.chance(15) {
		ids = slices.Compact(ids)
	}
	return ids
}

func (g *recGen) keyOf(a chain.Address) chain.PrivKey {
	for _, k := range g.all {
		if k.Public().Address() == a {
			return k
		}
	}
	panic("unknown address")
}

func (g *recGen) anchor() chain.RecordAnchor {
	if prev := g.someRecord(); prev != nil && g.chance(3) {
		a := chain.RecordAnchor{
			ID: g.freshID("record"), Patient: prev.Patient, ResourceType: prev.ResourceType,
			Version: prev.RecVersion + 1, Supersedes: prev.ID, CiphertextHash: g.freshID("ciphertext"), Size: 1 + uint64(g.rng.IntN(5000)),
		}
		if a.ResourceType == "" { // erased: refused anyway
			a.ResourceType = randomTypes[0]
		}
		switch g.rng.IntN(12) {
		case 0:
			a.Version++
		case 1:
			a.Patient = g.pick(g.patients).Public().Address()
		case 2:
			a.ResourceType = randomTypes[g.rng.IntN(len(randomTypes))]
		case 3:
			a.ID = prev.ID // already anchored (and supersedes itself: refused by form)
		case 4:
			a.CiphertextHash = g.ciphertexts[prev.ID] // the superseded version's ciphertext: refused
		}
		g.noteCiphertext(a)
		return a
	}
	a := chain.RecordAnchor{
		ID: g.freshID("record"), Patient: g.pick(g.patients).Public().Address(), ResourceType: randomTypes[g.rng.IntN(len(randomTypes))],
		Version: 1, CiphertextHash: g.freshID("ciphertext"), Size: 1 + uint64(g.rng.IntN(5000)),
	}
	switch g.rng.IntN(15) {
	case 0:
		a.Patient = g.pick(g.all).Public().Address() // maybe not a patient
	case 1:
		if r := g.someRecord(); r != nil {
			a.ID = r.ID // already anchored
		}
	case 2:
		a.ResourceType = "Not-A-Type"
	case 3:
		if r := g.someRecord(); r != nil {
			a.CiphertextHash = g.ciphertexts[r.ID] // another record's ciphertext: refused
		}
	}
	g.noteCiphertext(a)
	return a
}

func (g *recGen) scope() chain.ConsentScope {
	switch g.rng.IntN(3) {
	case 0:
		return chain.ConsentScope{Kind: chain.ScopeAll}
	case 1:
		var types []string
		for _, typ := range randomTypes {
			if g.chance(2) {
				types = append(types, typ)
			}
		}
		if len(types) == 0 {
			types = []string{"Observation"}
		}
		if g.chance(20) {
			slices.Reverse(types) // unsorted unless one
		}
		return chain.ConsentScope{Kind: chain.ScopeTypes, Types: types}
	default:
		var roots []chain.Hash
		for range 1 + g.rng.IntN(3) {
			if r := g.someRecord(); r != nil && !g.chance(4) {
				roots = append(roots, r.Root)
			} else {
				roots = append(roots, g.freshID("root"))
			}
		}
		return chain.ConsentScope{Kind: chain.ScopeRecords, Records: slices.Compact(sortedIDs(roots))}
	}
}

// holderNode is the node a new request is addressed to: mostly the provider that will log it
// (g.holder, set by the case building the access log), sometimes another provider's.
func (g *recGen) holderNode() chain.PubKey {
	if g.holder != nil && !g.chance(6) {
		return nodeKeyOf((*g.holder).Public())
	}
	return nodeKeyOf(g.pick(g.providers).Public())
}

func (g *recGen) request() chain.AccessRequest {
	if len(g.requests) > 0 && g.chance(4) {
		return g.requests[g.rng.IntN(len(g.requests))] // the same request again
	}
	rec := g.freshID("unknown")
	if r := g.someRecord(); r != nil && !g.chance(8) {
		rec = r.ID
	}
	q := chain.AccessRequest{Role: "clinician",
		Record: rec, RequesterNode: nodeKeyOf(g.pick(g.all).Public()), Holder: g.holderNode(),
		Purpose: randomPurposes[g.rng.IntN(len(randomPurposes))], Emergency: g.chance(3),
		IssuedMs: g.time, Nonce: g.rng.Uint64(),
	}
	requester := g.pick(g.providers)
	if g.chance(10) {
		requester = g.pick(g.all)
	}
	chainID := testChain
	if g.chance(30) {
		chainID = "another-chain"
	}
	q.Sign(requester, chainID)
	if g.chance(30) {
		q.Sig[3] ^= 4
	}
	g.requests = append(g.requests, q)
	return q
}

// next returns one random transaction.
func (g *recGen) next(n *net) *chain.Tx {
	prov := g.pick(g.providers)
	if g.chance(12) {
		prov = g.pick(g.all)
	}
	pat := g.pick(g.patients)
	if g.chance(12) {
		pat = g.pick(g.all)
	}
	switch g.rng.IntN(18) {
	case 0:
		l := n.licence(prov.Public(), n.lic, genesisTime+1_000_000_000_000)
		return g.tx(prov, chain.TxRegisterProvider, &chain.RegisterProvider{Licence: l, EncryptionKey: encKey(prov)})
	case 1:
		return g.tx(pat, chain.TxRegisterPatient, enrolment(nil, pat, encKey(pat)))
	case 2, 3, 4:
		var anchors []chain.RecordAnchor
		for range 1 + g.rng.IntN(3) {
			anchors = append(anchors, g.anchor())
		}
		if a := anchors[0]; a.Version > 1 && !g.chance(3) {
			// An amendment, mostly by the author of the version it supersedes.
			for _, r := range g.records {
				if r.ID == a.Supersedes {
					prov = g.keyOf(r.Author)
				}
			}
		}
		return g.tx(prov, chain.TxAnchorRecords, &chain.AnchorRecords{Records: anchors})
	case 5, 6, 7:
		var expires int64
		if g.chance(2) {
			expires = g.time + int64(g.rng.IntN(40_000)) - 2_000 // some already past
		}
		purpose := randomPurposes[g.rng.IntN(2)]
		if g.chance(40) {
			purpose = ""
		}
		return g.tx(pat, chain.TxConsentGrant, &chain.ConsentGrant{
			Grantee: prov.Public().Address(), Scope: g.scope(), Purpose: purpose, ExpiresMs: expires,
		})
	case 8, 9:
		id := g.freshID("consent")
		if len(g.consents) > 0 && !g.chance(6) {
			c := g.consents[g.rng.IntN(len(g.consents))]
			id = c.ID
			if !g.chance(4) {
				pat = g.keyOf(c.Patient) // who may revoke it
			}
		}
		return g.tx(pat, chain.TxConsentRevoke, &chain.ConsentRevoke{Consent: id})
	case 10:
		return g.tx(prov, chain.TxEmergencyAccess, g.emergency(prov, n))
	case 11, 12, 13:
		var entries []chain.AccessEntry
		g.holder = &prov
		defer func() { g.holder = nil }()
		for range 1 + g.rng.IntN(3) {
			e := chain.AccessEntry{Request: g.request(), Outcome: chain.AccessServed}
			if g.chance(2) {
				e.Outcome, e.Reason = chain.AccessRefused, "no consent"
			}
			entries = append(entries, e)
			if g.chance(6) {
				entries = append(entries, e) // repeated within the transaction
			}
		}
		return g.tx(prov, chain.TxAccessLog, &chain.AccessLog{Entries: entries})
	case 14:
		patAddr := pat.Public().Address()
		return g.tx(pat, chain.TxRecordErase, &chain.RecordErase{Records: g.recordIDs(func(r *RecordState) bool {
			return r.Patient == patAddr && !r.Erased
		})})
	case 15:
		return g.tx(prov, chain.TxEraseAck, &chain.EraseAck{Records: g.recordIDs(func(r *RecordState) bool { return r.Erased })})
	default:
		return g.tx(prov, chain.TxAccessReceipt, g.receipts(prov))
	}
}

func randomRecordBlocks(t *testing.T, seed uint64, nBlocks int, stats map[string]int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	a, b := newNet(t, 1), newNet(t, 1) // built by the Builder, applied by ApplyBlock
	g := &recGen{seed: seed, rng: rng, nonces: map[chain.PubKey]uint64{}, time: genesisTime, ciphertexts: map[chain.Hash]chain.Hash{}}
	for i := range 4 {
		g.providers = append(g.providers, testKey(t, fmt.Sprintf("random-provider-%d", i)))
	}
	for i := range 5 {
		g.patients = append(g.patients, testKey(t, fmt.Sprintf("random-patient-%d", i)))
	}
	g.all = append(append(slices.Clone(g.providers), g.patients...), testKey(t, "random-stranger"))
	logged := map[chain.Hash][]byte{} // request id -> its access record as first written

	height := uint64(0)
	for block := range nBlocks {
		g.records, g.consents = scanRecords(t, a.view), scanConsents(t, a.view)
		step := int64(1 + rng.IntN(20_000))
		if rng.IntN(8) == 0 {
			step = chain.EmergencyAccessMs // let emergency accesses lapse
		}
		g.time += step
		h := &chain.Header{Version: chain.HeaderVersion, ChainID: testChain, Height: height + 1, Time: g.time}
		bld := a.m.NewBuilder(a.view, h, nil)
		var accepted []*chain.Tx
		// Each transaction is generated after the previous one was judged, so nonces follow.
		add := func(tx *chain.Tx) {
			prefix := bld.Txs()
			if err := bld.Add(tx); err != nil {
				if rng.IntN(3) == 0 { // the same transaction at the same place fails the block
					_, aerr := a.m.ApplyBlock(a.view, h, append(prefix, tx), nil)
					var te *TxError
					require.Truef(t, errors.As(aerr, &te) && te.Index == len(prefix),
						"seed %d block %d: builder rejected (%v) but ApplyBlock said %v", seed, h.Height, err, aerr)
				}
				stats["rejected"]++
				return
			}
			stats["accepted "+tx.Kind.String()]++
			accepted = append(accepted, tx)
			g.nonces[tx.Signer] = tx.Nonce
		}
		if block == 0 {
			// Register most actors so that later blocks have something to work on.
			for _, k := range g.providers[:3] {
				add(g.tx(k, chain.TxRegisterProvider, &chain.RegisterProvider{
					Licence: a.licence(k.Public(), a.lic, genesisTime+1_000_000_000_000), EncryptionKey: encKey(k)}))
			}
			for _, k := range g.patients[:4] {
				add(g.tx(k, chain.TxRegisterPatient, enrolment(nil, k, encKey(k))))
			}
		}
		for range rng.IntN(14) {
			add(g.next(a))
		}
		built, err := bld.Finish()
		require.NoError(t, err, "seed %d block %d", seed, h.Height)
		require.NoError(t, built.Changes.Validate())
		applied, err := b.m.ApplyBlock(b.view, h, accepted, nil)
		require.NoError(t, err, "seed %d block %d: built block invalid", seed, h.Height)
		require.Truef(t, bytes.Equal(encodeChanges(built.Changes), encodeChanges(applied.Changes)), "seed %d block %d: change sets differ", seed, h.Height)
		if len(built.Results)+len(applied.Results) > 0 { // an empty block: nil from one, [] from the other
			require.Equal(t, built.Results, applied.Results, "seed %d block %d", seed, h.Height)
		}
		for _, res := range built.Results {
			for _, e := range res.Events {
				stats[e.Type]++
			}
		}
		a.view.commit(built.Changes)
		b.view.commit(applied.Changes)
		require.Equal(t, stateDigest(a.view), stateDigest(b.view), "seed %d block %d: states differ", seed, h.Height)
		height = h.Height

		throttled := map[string]bool{} // "request <short>" of refusals skipped over the window's limit
		for _, res := range built.Results {
			for _, e := range res.Events {
				if e.Type == EventAccessThrottled {
					throttled[strings.SplitN(e.Detail, ":", 2)[0]] = true
				}
			}
		}
		for _, tx := range accepted {
			if tx.Kind != chain.TxAccessLog {
				continue
			}
			body, err := chain.DecodePayload(tx.Kind, tx.Payload)
			require.NoError(t, err)
			for _, e := range body.(*chain.AccessLog).Entries {
				id := e.Request.ID()
				if _, ok := logged[id]; !ok {
					rec, err := Access(a.view, id)
					require.NoError(t, err)
					if rec == nil && throttled["request "+id.Short()] { // a refusal over the limit, maybe repeated as served in the same transaction
						continue
					}
					require.NotNil(t, rec, "seed %d block %d: request %s accepted but not logged", seed, h.Height, id.Short())
					require.Equal(t, e.Request.Requester.Address(), rec.Accessor)
					require.Equal(t, tx.Signer.Address(), rec.Holder)
					require.Equal(t, e.Request.Record, rec.Record)
					logged[id] = chain.Encode(rec)
				}
			}
		}
		where := fmt.Sprintf("seed %d block %d", seed, h.Height)
		checkRecordInvariants(t, where, a.view, g, logged, stats)
		checkAuditInvariants(t, where, a.view, g, stats)
		checkPatientLogInvariants(t, where, a.view)
	}
}

// stateDigest is a fingerprint of the whole state: the test twin of the state tree's root.
func stateDigest(v *memView) chain.Hash {
	keys := make([]string, 0, len(v.m))
	for k := range v.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		_ = binary.Write(h, binary.BigEndian, uint32(len(k)))
		h.Write([]byte(k))
		_ = binary.Write(h, binary.BigEndian, uint32(len(v.m[k])))
		h.Write(v.m[k])
	}
	return chain.Hash(h.Sum(nil))
}

func keysWithPrefix(v *memView, prefix string) []string {
	var keys []string
	for k := range v.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func scanRecords(t *testing.T, v *memView) []*RecordState {
	t.Helper()
	var out []*RecordState
	for _, k := range keysWithPrefix(v, prefixRecord) {
		var id chain.Hash
		copy(id[:], k[len(prefixRecord):])
		rec, err := Record(v, id)
		require.NoError(t, err)
		require.Equal(t, id, rec.ID, "record stored under another id")
		out = append(out, rec)
	}
	return out
}

func scanConsents(t *testing.T, v *memView) []*ConsentRecord {
	t.Helper()
	var out []*ConsentRecord
	for _, k := range keysWithPrefix(v, prefixConsent) {
		var id chain.Hash
		copy(id[:], k[len(prefixConsent):])
		c, err := Consent(v, id)
		require.NoError(t, err)
		require.Equal(t, id, c.ID, "consent stored under another id")
		out = append(out, c)
	}
	return out
}

func checkRecordInvariants(t *testing.T, where string, v *memView, g *recGen, logged map[chain.Hash][]byte, stats map[string]int) {
	t.Helper()
	records, consents := scanRecords(t, v), scanConsents(t, v)
	byID := make(map[chain.Hash]*RecordState, len(records))
	for _, r := range records {
		byID[r.ID] = r
	}
	registered := func(prefix string, a chain.Address) bool { _, ok := v.m[prefix+string(a[:])]; return ok }

	// Records: registered parties, linked version chains, one successor, erasure leaves nothing.
	successors := map[chain.Hash]int{}
	for _, r := range records {
		require.True(t, registered(prefixMember, r.Author), "%s: record %s author %s not a provider", where, r.ID.Short(), r.Author)
		require.True(t, registered(prefixMember, r.Patient), "%s: record %s patient %s not a patient", where, r.ID.Short(), r.Patient)
		require.NotZero(t, r.RecVersion)
		if r.RecVersion == 1 {
			require.True(t, r.Supersedes.IsZero(), "%s: record %s", where, r.ID.Short())
			require.Equal(t, r.ID, r.Root, "%s: record %s", where, r.ID.Short())
		} else {
			prev := byID[r.Supersedes]
			require.NotNil(t, prev, "%s: record %s supersedes missing %s", where, r.ID.Short(), r.Supersedes.Short())
			successors[prev.ID]++
			require.Equal(t, r.ID, prev.SupersededBy, "%s: record %s", where, r.ID.Short())
			require.Equal(t, prev.RecVersion+1, r.RecVersion)
			require.Equal(t, prev.Root, r.Root)
			require.Equal(t, prev.Patient, r.Patient)
		}
		if !r.SupersededBy.IsZero() {
			next := byID[r.SupersededBy]
			require.NotNil(t, next, "%s: record %s superseded by missing %s", where, r.ID.Short(), r.SupersededBy.Short())
			require.Equal(t, r.ID, next.Supersedes)
		}
		if r.Erased {
			require.Empty(t, r.ResourceType, "%s: erased record %s keeps its type", where, r.ID.Short())
			require.True(t, r.CiphertextHash.IsZero(), "%s: erased record %s keeps its ciphertext hash", where, r.ID.Short())
			require.Zero(t, r.Size, "%s: erased record %s keeps its size", where, r.ID.Short())
			require.False(t, r.AnchorHash.IsZero())
			require.True(t, slices.IsSortedFunc(r.Acks, compareAddr) && len(slices.CompactFunc(slices.Clone(r.Acks), func(x, y chain.Address) bool { return x == y })) == len(r.Acks))
			for _, ack := range r.Acks {
				require.True(t, registered(prefixMember, ack))
			}
		} else {
			require.NotEmpty(t, r.ResourceType)
			require.Empty(t, r.Acks)
			require.True(t, r.AnchorHash.IsZero())
		}
	}
	for id, n := range successors {
		require.Equal(t, 1, n, "%s: record %s has %d successors", where, id.Short(), n)
	}

	// Consent indexes: each pair lists exactly its non-revoked consents in grant order, and the
	// grantee index exactly the grantees with such a consent.
	type pair struct{ patient, grantee chain.Address }
	want := map[pair][]chain.Hash{}
	for _, c := range consents {
		if !c.Revoked {
			p := pair{c.Patient, c.Grantee}
			want[p] = append(want[p], c.ID)
		}
	}
	seenPairs := map[pair]bool{}
	for _, k := range keysWithPrefix(v, prefixGrants) {
		var p pair
		copy(p.patient[:], k[len(prefixGrants):])
		copy(p.grantee[:], k[len(prefixGrants)+20:])
		seenPairs[p] = true
		got, err := ConsentsBetween(v, p.patient, p.grantee)
		require.NoError(t, err)
		var gotIDs []chain.Hash
		for _, c := range got {
			require.False(t, c.Revoked, "%s: revoked consent %s still indexed", where, c.ID.Short())
			require.Equal(t, p, pair{c.Patient, c.Grantee}, "%s: consent %s indexed under another pair", where, c.ID.Short())
			gotIDs = append(gotIDs, c.ID)
		}
		require.ElementsMatch(t, want[p], gotIDs, "%s: pair index of %s -> %s", where, p.patient, p.grantee)
		require.True(t, slices.IsSortedFunc(got, func(x, y *ConsentRecord) int { return cmp.Compare(x.GrantedHeight, y.GrantedHeight) }),
			"%s: pair index of %s -> %s not in grant order", where, p.patient, p.grantee)
	}
	for p, ids := range want {
		require.True(t, seenPairs[p], "%s: %d consents from %s to %s not indexed", where, len(ids), p.patient, p.grantee)
	}
	wantGrantees := map[chain.Address][]chain.Address{}
	for p := range want {
		wantGrantees[p.patient] = append(wantGrantees[p.patient], p.grantee)
	}
	for _, k := range g.all {
		patient := k.Public().Address()
		got, err := Grantees(v, patient)
		require.NoError(t, err)
		exp := wantGrantees[patient]
		slices.SortFunc(exp, compareAddr)
		require.Equal(t, exp, got, "%s: grantees of %s", where, patient)
	}

	// CheckAccess agrees with a naive scan of every consent, at times around the block's.
	tip, now, err := Tip(v)
	require.NoError(t, err)
	require.NotZero(t, tip)
	for _, r := range records {
		var ofPatient []*ConsentRecord
		for _, c := range consents {
			if c.Patient == r.Patient {
				ofPatient = append(ofPatient, c)
			}
		}
		for range 3 {
			who := g.pick(g.all).Public().Address()
			if g.chance(4) {
				who = r.Author
			}
			at := now + int64(g.rng.IntN(60_000)) - 5_000
			if g.chance(10) {
				at = now + chain.EmergencyAccessMs
			}
			purpose := ""
			if !g.chance(3) {
				purpose = randomPurposes[g.rng.IntN(len(randomPurposes))]
			}
			emergency := g.chance(3)
			if len(ofPatient) > 0 && g.chance(2) {
				// Ask as the grantee of one of the patient's consents, mostly for what it allows,
				// sometimes exactly at or just before its expiry.
				c := ofPatient[g.rng.IntN(len(ofPatient))]
				who, emergency = c.Grantee, c.Emergency
				if !g.chance(4) {
					purpose = c.Purpose
				}
				if c.ExpiresMs != 0 && g.chance(2) {
					at = c.ExpiresMs - int64(g.rng.IntN(2))
				}
			}
			got, err := CheckAccess(v, at, who, r, purpose, emergency)
			if r.Erased {
				stats["erased"]++
				require.ErrorIs(t, err, ErrErased)
				require.Nil(t, got)
				continue
			}
			allowed := who == r.Author
			for _, c := range consents {
				if c.Patient == r.Patient && c.Grantee == who && !c.Revoked && (c.ExpiresMs == 0 || at < c.ExpiresMs) &&
					c.Emergency == emergency && (purpose == "" || c.Purpose == purpose) && c.Scope.Covers(r.Root, r.ResourceType) {
					allowed = true
				}
			}
			if !allowed {
				stats["no consent"]++
				require.ErrorIs(t, err, ErrNoConsent, "%s: record %s, %s at %d", where, r.ID.Short(), who, at)
				require.Nil(t, got)
				continue
			}
			require.NoError(t, err, "%s: record %s, %s at %d", where, r.ID.Short(), who, at)
			if who == r.Author {
				stats["access by author"]++
				require.Nil(t, got)
				continue
			}
			stats["access by consent"]++
			require.NotNil(t, got)
			require.False(t, got.Revoked, "%s: CheckAccess allowed revoked consent %s", where, got.ID.Short())
			require.True(t, got.ExpiresMs == 0 || at < got.ExpiresMs, "%s: CheckAccess allowed consent %s expiring at %d at time %d", where, got.ID.Short(), got.ExpiresMs, at)
			require.Equal(t, r.Patient, got.Patient)
			require.Equal(t, who, got.Grantee)
			require.Equal(t, emergency, got.Emergency)
			require.True(t, purpose == "" || got.Purpose == purpose)
			require.True(t, got.Scope.Covers(r.Root, r.ResourceType))
		}
	}

	// Access records: one per logged request id, under its id, never rewritten.
	access := keysWithPrefix(v, prefixAccess)
	require.Len(t, access, len(logged), "%s: access records vs distinct requests logged", where)
	for _, k := range access {
		var id chain.Hash
		copy(id[:], k[len(prefixAccess):])
		first, ok := logged[id]
		require.True(t, ok, "%s: access record %s for no logged request", where, id.Short())
		require.Equal(t, first, v.m[k], "%s: access record %s rewritten", where, id.Short())
		rec, err := Access(v, id)
		require.NoError(t, err)
		require.Equal(t, id, rec.RequestID)
		require.NotNil(t, byID[rec.Record], "%s: access record %s names unknown record", where, id.Short())
		require.True(t, registered(prefixMember, rec.Accessor) && registered(prefixMember, rec.Holder))
	}
}
