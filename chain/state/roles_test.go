package state

import (
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// Helpers for membership transactions.

func (n *net) tx(k chain.PrivKey, kind chain.TxKind, body any) *chain.Tx {
	return chain.NewTx(k, testChain, kind, n.nonce(k), body)
}

func (n *net) licenceFor(role chain.Role, subject chain.PubKey, issuer chain.PrivKey, notAfter int64) chain.Licence {
	l := chain.Licence{Role: role, Subject: subject, NodeKey: nodeKeyOf(subject), Number: "L-1", Jurisdiction: "VT", NotAfter: notAfter}
	l.Sign(issuer, testChain)
	return l
}

func (n *net) memberTx(k chain.PrivKey, l chain.Licence) *chain.Tx {
	return n.tx(k, chain.TxRegisterMember, &chain.RegisterMember{Licence: l, EncryptionKey: encKey(k)})
}

func (n *net) revokeTx(issuer chain.PrivKey, subject chain.Address, role chain.Role) *chain.Tx {
	return n.tx(issuer, chain.TxRevokeAttestation, &chain.RevokeAttestation{Subject: subject, Role: role, Reason: chain.RevokeSuspended})
}

func (n *net) anchorBy(k chain.PrivKey, patient chain.Address, label string) *chain.Tx {
	a := chain.RecordAnchor{ID: chain.Sum256([]byte("rec/" + label)), Patient: patient, ResourceType: "Observation", Version: 1,
		CiphertextHash: chain.Sum256([]byte("ct/" + label)), Size: 10}
	return n.tx(k, chain.TxAnchorRecords, &chain.AnchorRecords{Records: []chain.RecordAnchor{a}})
}

func (n *net) mustFail(want string, txs ...*chain.Tx) {
	n.t.Helper()
	before := n.view.clone()
	_, err := n.try(txs...)
	if err == nil || !strings.Contains(err.Error(), want) {
		n.t.Fatalf("error %v, want one containing %q", err, want)
	}
	if !mapsEqual(before.m, n.view.m) {
		n.t.Fatal("a failed block changed state")
	}
	// The test's nonce book counted the failed transactions: give them back.
	for _, tx := range txs {
		for k := range n.nonces {
			if k == tx.Signer && tx.Kind.UsesNonce() {
				n.nonces[k]--
			}
		}
	}
}

func id(k chain.PrivKey) chain.Address { return k.Public().Address() }

// TestRegisterMemberRules: each rule of member registration, with its near miss.
func TestRegisterMemberRules(t *testing.T) {
	doc, other := testKey(t, "doc"), testKey(t, "other")
	pharmacyBoard, stranger := testKey(t, "pharmacy board"), testKey(t, "stranger")
	for _, tc := range []struct {
		name string
		tx   func(n *net) *chain.Tx
		want string
	}{
		{"provider", func(n *net) *chain.Tx {
			return n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1001))
		}, ""},
		{"expired by 1 ms at block time", func(n *net) *chain.Tx {
			return n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1000))
		}, "expired"},
		{"pharmacy by its board", func(n *net) *chain.Tx {
			return n.memberTx(doc, n.licenceFor(chain.RolePharmacy, doc.Public(), pharmacyBoard, n.time+1e6))
		}, ""},
		{"wrong issuer for the role", func(n *net) *chain.Tx { // the licensing authority admits providers only
			return n.memberTx(doc, n.licenceFor(chain.RolePharmacy, doc.Public(), n.lic, n.time+1e6))
		}, "not an issuer for role pharmacy"},
		{"wrong role for the issuer", func(n *net) *chain.Tx {
			return n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), pharmacyBoard, n.time+1e6))
		}, "not a licensing authority"},
		{"issuer of no role", func(n *net) *chain.Tx {
			return n.memberTx(doc, n.licenceFor(chain.RolePayer, doc.Public(), stranger, n.time+1e6))
		}, "not an issuer for role payer"},
		{"role changed after signing", func(n *net) *chain.Tx {
			l := n.licenceFor(chain.RolePharmacy, doc.Public(), n.lic, n.time+1e6)
			l.Role = chain.RoleProvider
			return n.memberTx(doc, l)
		}, "invalid signature"},
		{"node key changed after signing", func(n *net) *chain.Tx {
			l := n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e6)
			l.NodeKey = nodeKeyOf(other.Public())
			return n.memberTx(doc, l)
		}, "invalid signature"},
		{"node key already bound", func(n *net) *chain.Tx {
			l := chain.Licence{Role: chain.RoleProvider, Subject: doc.Public(), NodeKey: nodeKeyOf(n.enroller.Public()), Number: "L", NotAfter: n.time + 1e6}
			l.Sign(n.lic, testChain)
			return n.memberTx(doc, l)
		}, "already bound"},
		{"subject is not the signer", func(n *net) *chain.Tx {
			return n.memberTx(doc, n.licenceFor(chain.RoleProvider, other.Public(), n.lic, n.time+1e6))
		}, "not the signer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNet(t, 1)
			if tc.want != "" {
				n.mustFail(tc.want, tc.tx(n))
				return
			}
			n.apply(tc.tx(n))
			m, err := Member(n.view, id(doc))
			if err != nil || m == nil || !m.ActiveAt(n.time) || m.NodeKey != nodeKeyOf(doc.Public()) {
				t.Fatalf("member %+v %v", m, err)
			}
			if got, err := MemberByNode(n.view, nodeKeyOf(doc.Public())); err != nil || got == nil || got.ID != id(doc) {
				t.Fatalf("by node: %+v %v", got, err)
			}
			es, _ := Members(n.view, m.Role)
			if !containsEntry(es, id(doc)) {
				t.Fatalf("%s list %v lacks the member", m.Role, es)
			}
			// One registration per address, whatever the role.
			n.mustFail("already registered", n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e6)))
			n.mustFail("already registered", n.patientTx(doc))
		})
	}
}

func containsEntry(es []RoleEntry, a chain.Address) bool {
	for _, e := range es {
		if e.ID == a {
			return true
		}
	}
	return false
}

// TestProviderLapsesByBlockTime: a licence expiring at T gives rights in a block at T-1 and none
// at T, without any transaction; ActiveProviders follows.
func TestProviderLapsesByBlockTime(t *testing.T) {
	n := newNet(t, 1)
	doc, alice := testKey(t, "doc"), testKey(t, "alice")
	expiry := n.time + 3000 // blocks at +1000, +2000, +3000
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, expiry)), n.patientTx(alice))
	n.time = expiry - 1 - 1000 // next block at expiry-1
	n.apply(n.anchorBy(doc, id(alice), "a"))
	if ps, _ := ActiveProviders(n.view, n.time); !slicesContains(ps, id(doc)) {
		t.Fatalf("active providers at %d: %v", n.time, ps)
	}
	n.time = expiry - 1000 // next block exactly at expiry
	n.mustFail("licence expired", n.anchorBy(doc, id(alice), "b"))
	n.mustFail("licence expired", n.enrolTx(testKey(t, "bob"), doc))
	n.mustFail("grantee provider "+id(doc).String()+"'s licence expired", n.tx(alice, chain.TxConsentGrant, &chain.ConsentGrant{
		Grantee: id(doc), Scope: chain.ConsentScope{Kind: chain.ScopeAll}, Purpose: "TREAT"}))
	if ps, _ := ActiveProviders(n.view, expiry); slicesContains(ps, id(doc)) {
		t.Fatal("lapsed provider still listed active")
	}
	if p, _ := ActiveProvider(n.view, id(doc), expiry); p != nil {
		t.Fatal("ActiveProvider returned a lapsed provider")
	}
}

func slicesContains(as []chain.Address, a chain.Address) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// TestRevokeAttestation: only an issuer of the role revokes; the revoked provider cannot anchor;
// a stranger cannot revoke.
func TestRevokeAttestation(t *testing.T) {
	n := newNet(t, 1)
	doc, alice, stranger, pharmacyBoard := testKey(t, "doc"), testKey(t, "alice"), testKey(t, "stranger"), testKey(t, "pharmacy board")
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)), n.patientTx(alice))
	n.mustFail("not an issuer for role provider", n.revokeTx(stranger, id(doc), chain.RoleProvider))
	n.mustFail("not an issuer for role provider", n.revokeTx(pharmacyBoard, id(doc), chain.RoleProvider))
	n.mustFail("not an issuer for role pharmacy", n.revokeTx(n.lic, id(doc), chain.RolePharmacy))
	n.mustFail("is a provider, not a pharmacy", n.revokeTx(pharmacyBoard, id(doc), chain.RolePharmacy))
	n.mustFail("no member", n.revokeTx(n.lic, id(stranger), chain.RoleProvider))
	// The issuer is not a member, yet its transaction is admitted (CheckTx) and executes.
	rv := n.revokeTx(n.lic, id(doc), chain.RoleProvider)
	if err := n.m.CheckTx(n.view, rv, n.time, nil); err != nil {
		t.Fatalf("issuer's revocation refused by CheckTx: %v", err)
	}
	n.apply(rv)
	m, _ := Member(n.view, id(doc))
	if !m.Revoked || m.ActiveAt(n.time) || m.RevokedTime != n.time {
		t.Fatalf("revoked member %+v", m)
	}
	n.mustFail("revoked", n.anchorBy(doc, id(alice), "x"))
	n.mustFail("already revoked", n.revokeTx(n.lic, id(doc), chain.RoleProvider))
	if es, _ := Members(n.view, chain.RoleProvider); containsEntry(es, id(doc)) {
		t.Fatal("revoked provider still listed")
	}
	// The node key stays bound (a revoked member's node is known, and refused, by admission).
	if got, _ := MemberByNode(n.view, nodeKeyOf(doc.Public())); got == nil || got.ActiveAt(n.time) {
		t.Fatalf("revoked member by node: %+v", got)
	}
}

// TestEnrolment: patients need an active provider's co-signature over their keys, and a provider
// enrols at most the genesis bound per window.
func TestEnrolment(t *testing.T) {
	n := newNet(t, 1)
	doc, alice, bob := testKey(t, "doc"), testKey(t, "alice"), testKey(t, "bob")
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)))
	cases := []struct {
		name string
		body func() *chain.RegisterPatient
		want string
	}{
		{"no enroller", func() *chain.RegisterPatient {
			return &chain.RegisterPatient{EncryptionKey: encKey(alice), Enroller: id(bob)}
		}, "is not a registered provider"},
		{"enroller is a patient", func() *chain.RegisterPatient {
			return chain.NewEnrolment(bob, id(bob), testChain, alice.Public(), encKey(alice))
		}, "not a registered provider"},
		{"co-signed for another key", func() *chain.RegisterPatient {
			return chain.NewEnrolment(doc, id(doc), testChain, bob.Public(), encKey(alice))
		}, "invalid signature"},
		{"co-signed for another encryption key", func() *chain.RegisterPatient {
			b := chain.NewEnrolment(doc, id(doc), testChain, alice.Public(), encKey(bob))
			b.EncryptionKey = encKey(alice)
			return b
		}, "invalid signature"},
		{"co-signed by someone else in the provider's name", func() *chain.RegisterPatient {
			return chain.NewEnrolment(bob, id(doc), testChain, alice.Public(), encKey(alice))
		}, "invalid signature"},
		{"co-signed for another chain", func() *chain.RegisterPatient {
			return chain.NewEnrolment(doc, id(doc), "other", alice.Public(), encKey(alice))
		}, "invalid signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tx := chain.NewTx(alice, testChain, chain.TxRegisterPatient, 1, tc.body())
			// Mempool admission runs CheckTx on registrations: junk is neither kept nor relayed.
			if err := n.m.CheckTx(n.view, tx, n.time, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckTx: %v, want %q", err, tc.want)
			}
		})
	}
	n.apply(n.enrolTx(alice, doc))
	if p, _ := Patient(n.view, id(alice)); p == nil || p.Enroller != id(doc) {
		t.Fatalf("patient %+v", p)
	}
}

// TestEnrolmentRateBound: the bound is per provider and per window of block time; bound + 1 is
// refused, and the next window starts afresh.
func TestEnrolmentRateBound(t *testing.T) {
	n := newNet(t, 1)
	p, _ := Params(n.view)
	p.EnrolmentsPerWindow, p.EnrolmentWindowMs = 3, 10_000
	n.view.m[string(keyParams)] = chain.Encode(&paramsRecord{Version: RecordVersion, ChainID: testChain, Params: p})
	doc := testKey(t, "doc")
	// Genesis time is a multiple of the window: blocks 1..9 fall in one window.
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)))
	var pats []*chain.Tx
	for i := range 3 {
		pats = append(pats, n.enrolTx(testKey(t, "p"+string(rune('a'+i))), doc))
	}
	n.apply(pats...)
	if used, limit, _ := Enrolments(n.view, id(doc), n.time); used != 3 || limit != 3 {
		t.Fatalf("enrolments %d of %d", used, limit)
	}
	n.mustFail("already enrolled 3 patients", n.enrolTx(testKey(t, "pd"), doc))
	// Another provider is not held by doc's count.
	n.apply(n.enrolTx(testKey(t, "pe"), n.enroller))
	n.time += 10_000 // the next window
	n.apply(n.enrolTx(testKey(t, "pf"), doc))
	if used, _, _ := Enrolments(n.view, id(doc), n.time); used != 1 {
		t.Fatalf("new window: %d used", used)
	}
}

// TestRotateKeys: a member keeps its id; the old signing key is refused afterwards; the new key
// needs a proof of possession and must be fresh; authorities do not rotate signing keys.
func TestRotateKeys(t *testing.T) {
	n := newNet(t, 1)
	doc, doc2, alice, alice2, stranger := testKey(t, "doc"), testKey(t, "doc2"), testKey(t, "alice"), testKey(t, "alice2"), testKey(t, "stranger")
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)), n.patientTx(alice))

	// A proof by another key, or for another member, is refused.
	bad := chain.NewSigningKeyRotation(doc.Public(), doc2, testChain)
	bad.Proof = chain.NewSigningKeyRotation(alice.Public(), doc2, testChain).Proof
	n.mustFail("proof of possession", n.tx(doc, chain.TxRotateKeys, bad))
	// A key that already signed on the ledger is not fresh.
	n.mustFail("used on the ledger before", n.tx(doc, chain.TxRotateKeys, chain.NewSigningKeyRotation(doc.Public(), alice, testChain)))
	// A stranger has nothing to rotate.
	n.mustFail("is not a member", n.tx(stranger, chain.TxRotateKeys, &chain.RotateKeys{EncryptionKey: []byte{1}}))
	// Node key: not one bound to another member; patients have none.
	n.mustFail("already bound", n.tx(doc, chain.TxRotateKeys, &chain.RotateKeys{NodeKey: nodeKeyOf(n.enroller.Public())}))
	n.mustFail("patient has no node key", n.tx(alice, chain.TxRotateKeys, &chain.RotateKeys{NodeKey: nodeKeyOf(alice.Public())}))

	newNode := nodeKeyOf(doc2.Public())
	rot := chain.NewSigningKeyRotation(doc.Public(), doc2, testChain)
	rot.NodeKey, rot.EncryptionKey = newNode, []byte("new-enc")
	n.apply(n.tx(doc, chain.TxRotateKeys, rot), n.tx(alice, chain.TxRotateKeys, chain.NewSigningKeyRotation(alice.Public(), alice2, testChain)))

	m, _ := Member(n.view, id(doc))
	if m.Key != doc2.Public() || m.NodeKey != newNode || string(m.EncryptionKey) != "new-enc" {
		t.Fatalf("rotated member %+v", m)
	}
	if got, _ := MemberByNode(n.view, newNode); got == nil || got.ID != id(doc) {
		t.Fatal("new node key not bound")
	}
	if got, _ := MemberByNode(n.view, nodeKeyOf(doc.Public())); got != nil {
		t.Fatal("old node key still bound")
	}
	if got, _ := MemberByKey(n.view, doc.Public()); got != nil {
		t.Fatal("old signing key still names the member")
	}
	// The old keys are refused for everything, registration included; the new ones act as the
	// member (anchoring for a patient keeps the patient's and author's ids).
	n.mustFail("rotated away", n.anchorBy(doc, id(alice), "old"))
	n.mustFail("rotated away", n.tx(alice, chain.TxConsentRevoke, &chain.ConsentRevoke{Consent: chain.Hash{1}}))
	n.apply(n.anchorBy(doc2, id(alice), "new"))
	rec, _ := Record(n.view, chain.Sum256([]byte("rec/new")))
	if rec == nil || rec.Author != id(doc) || rec.Patient != id(alice) {
		t.Fatalf("record %+v", rec)
	}
	n.apply(n.tx(alice2, chain.TxConsentGrant, &chain.ConsentGrant{Grantee: id(doc), Scope: chain.ConsentScope{Kind: chain.ScopeAll}, Purpose: "TREAT"}))
	if s, _ := Signer(n.view, doc.Public()); s.Registered {
		t.Fatalf("retired key still admitted: %+v", s)
	}
	if s, _ := Signer(n.view, doc2.Public()); !s.Registered || s.Member != id(doc) || s.Nonce != 1 {
		t.Fatalf("new key: %+v", s)
	}
	// A rotated-in key cannot register anew.
	n.mustFail("already signs for member", n.memberTx(doc2, n.licenceFor(chain.RoleProvider, doc2.Public(), n.lic, n.time+1e9)))

	// An authority's signing key does not rotate (remove it and add it again instead).
	auth := n.auth[0]
	n.apply(n.memberTx(auth, n.licenceFor(chain.RoleProvider, auth.Public(), n.lic, n.time+1e9)))
	n.mustFail("is an authority key", n.tx(auth, chain.TxRotateKeys, chain.NewSigningKeyRotation(auth.Public(), testKey(t, "auth2"), testChain)))
}

// TestRotatedKeyAccessRequest: an access request signed by a rotated-away key names nobody.
func TestRotatedKeyAccessRequest(t *testing.T) {
	n := newNet(t, 1)
	doc, doc2, alice := testKey(t, "doc"), testKey(t, "doc2"), testKey(t, "alice")
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)), n.patientTx(alice))
	n.apply(n.anchorBy(doc, id(alice), "r"))
	n.apply(n.tx(doc, chain.TxRotateKeys, chain.NewSigningKeyRotation(doc.Public(), doc2, testChain)))
	req := chain.AccessRequest{Role: "clinician", Record: chain.Sum256([]byte("rec/r")), RequesterNode: nodeKeyOf(doc.Public()), Holder: nodeKeyOf(n.enroller.Public()),
		Purpose: "TREAT", IssuedMs: n.time, Nonce: 1}
	req.Sign(doc, testChain)
	log := &chain.AccessLog{Entries: []chain.AccessEntry{{Request: req, Outcome: chain.AccessServed}}}
	n.mustFail("was rotated away", n.tx(n.enroller, chain.TxAccessLog, log))
	req.Sign(doc2, testChain)
	log = &chain.AccessLog{Entries: []chain.AccessEntry{{Request: req, Outcome: chain.AccessServed}}}
	n.apply(n.tx(n.enroller, chain.TxAccessLog, log))
	if a, _ := Access(n.view, req.ID()); a == nil || a.Accessor != id(doc) {
		t.Fatalf("access %+v", a)
	}
}

// TestLeave: a member that leaves loses every right and its node key; an authority cannot leave
// while in the set.
func TestLeave(t *testing.T) {
	n := newNet(t, 1)
	doc, alice := testKey(t, "doc"), testKey(t, "alice")
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)), n.patientTx(alice))
	n.apply(n.tx(doc, chain.TxLeave, &chain.Leave{}), n.tx(alice, chain.TxLeave, &chain.Leave{}))
	n.mustFail("left at height", n.anchorBy(n.enroller, id(alice), "x"))
	n.mustFail("left at height", n.enrolTx(testKey(t, "bob"), doc))
	n.mustFail("already left", n.tx(doc, chain.TxLeave, &chain.Leave{}))
	if got, _ := MemberByNode(n.view, nodeKeyOf(doc.Public())); got != nil {
		t.Fatal("a member that left keeps its node key")
	}
	if s, _ := Signer(n.view, doc.Public()); s.Registered {
		t.Fatal("a member that left is still admitted")
	}
	n.mustFail("already registered", n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)))
	n.apply(n.memberTx(n.auth[0], n.licenceFor(chain.RoleProvider, n.auth[0].Public(), n.lic, n.time+1e9)))
	n.mustFail("must be removed from the set", n.tx(n.auth[0], chain.TxLeave, &chain.Leave{}))
}

// TestAutomaticRemovalProposal: an authority whose provider registration lapses gets one removal
// proposal, filed by the block itself; it executes when the others vote, and is refiled only
// after it expires.
func TestAutomaticRemovalProposal(t *testing.T) {
	n := newNet(t, 4)
	lapsing := n.auth[1]
	expiry := n.time + 3500
	var regs []*chain.Tx
	for _, k := range n.auth {
		notAfter := n.time + 1e9
		if k.Public() == lapsing.Public() {
			notAfter = expiry
		}
		regs = append(regs, n.memberTx(k, n.licenceFor(chain.RoleProvider, k.Public(), n.lic, notAfter)))
	}
	n.apply(regs...)
	n.apply()
	if ps, _ := OpenAutomaticProposals(n.view); len(ps) != 0 {
		t.Fatalf("proposals before any lapse: %d", len(ps))
	}
	// Blocks run to the lapse; the first block at or after expiry files the proposal.
	var filed *Outcome
	for n.time+1000 < expiry {
		n.apply()
	}
	filed = n.apply()
	if len(filed.BlockEvents) != 1 || filed.BlockEvents[0].Type != EventAutoProposal {
		t.Fatalf("block events %+v", filed.BlockEvents)
	}
	ps, err := OpenAutomaticProposals(n.view)
	if err != nil || len(ps) != 1 || !ps[0].Automatic || ps[0].Subject.Key != lapsing.Public() || ps[0].Action != chain.AuthorityRemove || len(ps[0].Voters) != 0 {
		t.Fatalf("open automatic proposals %+v %v", ps, err)
	}
	// Filed once: more blocks file nothing new.
	if out := n.apply(); len(out.BlockEvents) != 0 {
		t.Fatalf("filed again: %+v", out.BlockEvents)
	}
	// Three of four votes pass it (quorum 3); the lapsed authority's own vote is not needed.
	pid := ps[0].ID
	n.apply(n.voteTx(n.auth[0], pid), n.voteTx(n.auth[2], pid))
	if p, _ := AuthorityProposal(n.view, pid); p.Status != ProposalOpen {
		t.Fatalf("passed with two votes: %s", p.Status)
	}
	n.apply(n.voteTx(n.auth[3], pid))
	p, _ := AuthorityProposal(n.view, pid)
	if p.Status != ProposalPassed {
		t.Fatalf("status %s", p.Status)
	}
	if _, after := n.sets(); after.Contains(lapsing.Public()) {
		t.Fatal("lapsed authority still scheduled")
	}
	if ps, _ := OpenAutomaticProposals(n.view); len(ps) != 0 {
		t.Fatalf("closed proposal still listed: %+v", ps)
	}
	// Out of the pending set, nothing more is filed.
	for range 3 {
		if out := n.apply(); len(out.BlockEvents) != 0 {
			t.Fatalf("filed after removal: %+v", out.BlockEvents)
		}
	}
}

// TestAutomaticProposalRefiledAfterExpiry: an automatic proposal nobody votes for expires with the
// expiry index and the next block files a new one.
func TestAutomaticProposalRefiledAfterExpiry(t *testing.T) {
	n := newNet(t, 4)
	lapsing := n.auth[2]
	n.apply(n.memberTx(lapsing, n.licenceFor(chain.RoleProvider, lapsing.Public(), n.lic, n.time+1500)))
	out := n.apply() // block time past the expiry
	if len(out.BlockEvents) != 1 {
		t.Fatalf("not filed: %+v", out.BlockEvents)
	}
	ps, _ := OpenAutomaticProposals(n.view)
	first := ps[0]
	n.setTip(first.ExpiresHeight - 1)
	if out := n.apply(); len(out.BlockEvents) != 0 { // the last voting height: still open
		t.Fatalf("refiled while open: %+v", out.BlockEvents)
	}
	if p, _ := AuthorityProposal(n.view, first.ID); p != nil {
		t.Fatal("expired proposal not deleted")
	}
	out = n.apply()
	if len(out.BlockEvents) != 1 {
		t.Fatalf("not refiled after expiry: %+v", out.BlockEvents)
	}
	if ps, _ := OpenAutomaticProposals(n.view); len(ps) != 1 || ps[0].ID == first.ID {
		t.Fatalf("open after refiling: %+v", ps)
	}
}

// countingCache is a SigCache that remembers passes and counts the checks it ran.
type countingCache struct {
	passed map[chain.Hash]bool
	ran    int
}

func (c *countingCache) Verify(key chain.Hash, check func() error) error {
	if c.passed[key] {
		return nil
	}
	c.ran++
	if err := check(); err != nil {
		return err
	}
	c.passed[key] = true
	return nil
}

// A SigCache spares repeated co-signature checks and never lets a bad one pass: the key names
// the enroller's key, the patient, the encryption key and the signature.
func TestEnrolmentThroughSigCache(t *testing.T) {
	n := newNet(t, 1)
	doc, alice, bob := testKey(t, "doc"), testKey(t, "alice"), testKey(t, "bob")
	n.apply(n.memberTx(doc, n.licenceFor(chain.RoleProvider, doc.Public(), n.lic, n.time+1e9)))
	cache := &countingCache{passed: map[chain.Hash]bool{}}
	m := n.m.WithSigCache(cache)
	good := chain.NewTx(alice, testChain, chain.TxRegisterPatient, 1, chain.NewEnrolment(doc, id(doc), testChain, alice.Public(), encKey(alice)))
	for range 3 {
		if err := m.CheckTx(n.view, good, n.time, nil); err != nil {
			t.Fatal(err)
		}
	}
	if cache.ran != 1 {
		t.Fatalf("the co-signature was verified %d times, want once", cache.ran)
	}
	// The same signature over another patient's keys, or with the encryption key swapped.
	stolen := chain.NewEnrolment(doc, id(doc), testChain, alice.Public(), encKey(alice))
	for _, tx := range []*chain.Tx{
		chain.NewTx(bob, testChain, chain.TxRegisterPatient, 1, stolen),
		chain.NewTx(alice, testChain, chain.TxRegisterPatient, 1, &chain.RegisterPatient{EncryptionKey: encKey(bob), Enroller: id(doc), EnrollerSig: stolen.EnrollerSig}),
	} {
		if err := m.CheckTx(n.view, tx, n.time, nil); err == nil || !strings.Contains(err.Error(), "invalid signature") {
			t.Fatalf("CheckTx of a reused co-signature: %v", err)
		}
	}
}
