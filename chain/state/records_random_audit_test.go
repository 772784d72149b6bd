package state

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// The audit and break-glass part of TestRandomRecordBlocks: generators for emergency accesses
// (co-signed or not, rightly or wrongly) and receipts, and the invariants they must keep.

func (g *recGen) noteCiphertext(a chain.RecordAnchor) {
	if _, ok := g.ciphertexts[a.ID]; !ok {
		g.ciphertexts[a.ID] = a.CiphertextHash
	}
}

// emergency returns a break-glass body by prov, co-signed about half the time: mostly by the
// authority for the right window and ordinal, sometimes by prov itself, a non-authority, or for
// the wrong ordinal.
func (g *recGen) emergency(prov chain.PrivKey, n *net) *chain.EmergencyAccess {
	e := &chain.EmergencyAccess{
		Version: chain.EmergencyAccessVersion, Patient: g.pick(g.patients).Public().Address(), Purpose: "ETREAT",
		ReasonCode: chain.EmergencyReason(1 + g.rng.IntN(5)),
	}
	if g.chance(20) {
		e.ReasonCode = 0
	}
	if g.chance(2) {
		return e
	}
	window, used, err := EmergencyAccessesIn(n.view, prov.Public().Address(), g.time)
	if err != nil {
		panic(err)
	}
	signer, ordinal := n.auth[0], used+1
	switch g.rng.IntN(8) {
	case 0:
		signer = prov
	case 1:
		signer = g.pick(g.all)
	case 2:
		ordinal++
	}
	e.CoSign(signer, testChain, prov.Public(), window, ordinal)
	return e
}

// receipts returns 1..3 receipts by prov, mostly of its own requests with the record's
// ciphertext.
func (g *recGen) receipts(prov chain.PrivKey) *chain.AccessReceipts {
	b := &chain.AccessReceipts{}
	for range 1 + g.rng.IntN(3) {
		var q chain.AccessRequest
		var own []chain.AccessRequest
		for _, r := range g.requests {
			if r.Requester == prov.Public() {
				own = append(own, r)
			}
		}
		switch {
		case len(own) > 0 && !g.chance(4):
			q = own[g.rng.IntN(len(own))] // mostly a request already logged (or to be)
		case len(g.requests) > 0 && g.chance(3):
			q = g.requests[g.rng.IntN(len(g.requests))] // maybe someone else's: refused
		default:
			q = g.request()
		}
		ct := g.ciphertexts[q.Record]
		if ct.IsZero() || g.chance(10) {
			ct = g.freshID("ciphertext") // not the record's: refused
		}
		rc := chain.AccessReceipt{Request: q, CiphertextHash: ct}
		b.Receipts = append(b.Receipts, rc)
		if g.chance(8) {
			b.Receipts = append(b.Receipts, rc)
		}
	}
	return b
}

func checkAuditInvariants(t *testing.T, where string, v *memView, g *recGen, stats map[string]int) {
	t.Helper()
	records := scanRecords(t, v)
	byID := make(map[chain.Hash]*RecordState, len(records))
	for _, r := range records {
		byID[r.ID] = r
	}
	registered := func(prefix string, a chain.Address) bool { _, ok := v.m[prefix+string(a[:])]; return ok }

	// Blob index: one entry per record, and a live record's ciphertext names it.
	require.Len(t, keysWithPrefix(v, prefixBlob), len(records), "%s: blob index entries vs records", where)
	for _, r := range records {
		if r.Erased {
			continue
		}
		owner, err := RecordOfCiphertext(v, r.CiphertextHash)
		require.NoError(t, err)
		require.Equal(t, r.ID, owner, "%s: ciphertext of record %s indexed to %s", where, r.ID.Short(), owner.Short())
	}

	// Receipts: by a provider, of its own request, for a known record; written once.
	height, _, err := Tip(v)
	require.NoError(t, err)
	if g.receiptBytes == nil {
		g.receiptBytes = map[chain.Hash][]byte{}
	}
	for _, k := range keysWithPrefix(v, prefixReceipt) {
		var id chain.Hash
		copy(id[:], k[len(prefixReceipt):])
		if first, ok := g.receiptBytes[id]; ok {
			require.Equal(t, first, v.m[k], "%s: receipt %s rewritten", where, id.Short())
		}
		g.receiptBytes[id] = v.m[k]
		rc, err := Receipt(v, id)
		require.NoError(t, err)
		require.Equal(t, id, rc.RequestID)
		require.True(t, registered(prefixMember, rc.Requester), "%s: receipt %s by a non-provider", where, id.Short())
		rec := byID[rc.Record]
		require.NotNil(t, rec, "%s: receipt %s names unknown record", where, id.Short())
		require.Equal(t, rec.Patient, rc.Patient)
		view, err := AccessOf(v, id)
		require.NoError(t, err)
		require.Equal(t, view.Entry == nil && height >= rc.Height+ReceiptGraceBlocks, view.UnloggedByHolder, "%s: request %s", where, id.Short())
		if view.Entry == nil {
			stats["receipt without entry"]++
			if view.UnloggedByHolder {
				stats["receipt unlogged by holder"]++
			}
		}
	}

	// Refusals: at most one per (requester, record) and MaxRefusalsPerPatientWindow per
	// (requester, patient) in each window.
	type recKey struct {
		who    chain.Address
		record chain.Hash
		window uint64
	}
	type patKey struct {
		who, patient chain.Address
		window       uint64
	}
	perRecord, perPatient := map[recKey]int{}, map[patKey]int{}
	for _, k := range keysWithPrefix(v, prefixAccess) {
		var id chain.Hash
		copy(id[:], k[len(prefixAccess):])
		a, err := Access(v, id)
		require.NoError(t, err)
		if a.Outcome != chain.AccessRefused {
			continue
		}
		w := Window(a.Time, RefusalWindowMs)
		perRecord[recKey{a.Accessor, a.Record, w}]++
		perPatient[patKey{a.Accessor, a.Patient, w}]++
		require.LessOrEqual(t, perRecord[recKey{a.Accessor, a.Record, w}], 1, "%s: two refusals of %s for record %s in one window", where, a.Accessor, a.Record.Short())
		require.LessOrEqual(t, perPatient[patKey{a.Accessor, a.Patient, w}], MaxRefusalsPerPatientWindow, "%s", where)
	}

	// Break-glass: per provider and window, at most MaxEmergencyPerWindow, and every one after
	// the first co-signed; AfterRevocation exactly when a consent of the pair was revoked before.
	consents := scanConsents(t, v)
	type provWindow struct {
		who    chain.Address
		window uint64
	}
	uncosigned, total := map[provWindow]int{}, map[provWindow]int{}
	for _, c := range consents {
		if !c.Emergency {
			continue
		}
		require.True(t, c.ReasonCode.Valid(), "%s: emergency %s without a valid reason code", where, c.ID.Short())
		pw := provWindow{c.Grantee, Window(c.GrantedTime, EmergencyWindowMs)}
		total[pw]++
		if c.CoSigned {
			stats["co-signed emergency"]++
		} else {
			uncosigned[pw]++
		}
		require.LessOrEqual(t, total[pw], MaxEmergencyPerWindow, "%s: %s over the emergency cap", where, c.Grantee)
		require.LessOrEqual(t, uncosigned[pw], 1, "%s: %s opened two emergency accesses without co-signature in a window", where, c.Grantee)
		revokedBefore, revokedAtOrBefore := false, false
		for _, o := range consents {
			if o.Patient == c.Patient && o.Grantee == c.Grantee && o.Revoked && o.ID != c.ID {
				revokedBefore = revokedBefore || o.RevokedHeight < c.GrantedHeight
				revokedAtOrBefore = revokedAtOrBefore || o.RevokedHeight <= c.GrantedHeight
			}
		}
		if c.AfterRevocation {
			stats["emergency after revocation"]++
			require.True(t, revokedAtOrBefore, "%s: emergency %s flagged after revocation, none revoked", where, c.ID.Short())
		} else {
			require.False(t, revokedBefore, "%s: emergency %s follows a revocation, not flagged", where, c.ID.Short())
		}
	}
}

// checkPatientLogInvariants: the patient logs name every record, consent, access entry and
// receipt in the state exactly once, in the log of the item's patient, and nothing else.
func checkPatientLogInvariants(t *testing.T, where string, v *memView) {
	t.Helper()
	type item struct {
		kind LogKind
		id   chain.Hash
	}
	want := map[item]chain.Address{}
	for _, r := range scanRecords(t, v) {
		want[item{LogRecord, r.ID}] = r.Patient
	}
	for _, c := range scanConsents(t, v) {
		want[item{LogConsent, c.ID}] = c.Patient
	}
	for _, k := range keysWithPrefix(v, prefixAccess) {
		var id chain.Hash
		copy(id[:], k[len(prefixAccess):])
		a, err := Access(v, id)
		require.NoError(t, err)
		want[item{LogAccess, id}] = a.Patient
	}
	for _, k := range keysWithPrefix(v, prefixReceipt) {
		var id chain.Hash
		copy(id[:], k[len(prefixReceipt):])
		rc, err := Receipt(v, id)
		require.NoError(t, err)
		want[item{LogReceipt, id}] = rc.Patient
	}
	got := map[item]chain.Address{}
	entries := 0
	for _, k := range keysWithPrefix(v, prefixLogHead) {
		var p chain.Address
		copy(p[:], k[len(prefixLogHead):])
		n, err := PatientLogLength(v, p)
		require.NoError(t, err)
		log, err := PatientLog(v, p, 0, int(n)+1)
		require.NoError(t, err)
		require.Len(t, log, int(n), "%s: patient %s's log", where, p)
		for i, e := range log {
			it := item{e.Kind, e.ID}
			_, dup := got[it]
			require.False(t, dup, "%s: %s %s logged twice", where, e.Kind, e.ID.Short())
			got[it] = p
			if i > 0 {
				require.GreaterOrEqual(t, e.Height, log[i-1].Height, "%s: patient %s's log out of order", where, p)
			}
		}
		entries += int(n)
	}
	require.Len(t, keysWithPrefix(v, prefixLogItem), entries, "%s: log entries beyond the logs' lengths", where)
	require.Equal(t, want, got, "%s: patient logs vs items in the state", where)
}
