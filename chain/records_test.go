package chain_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// validateCase is one Validate call: want is "" when the value must be accepted, otherwise a
// substring of the refusal.
type validateCase struct {
	name string
	v    interface{ Validate() error }
	want string
}

func runValidate(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// hashN returns n distinct non-zero ids, sorted.
func hashN(n int) []chain.Hash {
	ids := make([]chain.Hash, n)
	for i := range ids {
		ids[i] = testHash(fmt.Sprintf("id-%d", i))
	}
	return sortedHashes(ids...)
}

// typesN returns n distinct valid resource types, sorted.
func typesN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("Type%03d", i)
	}
	return out
}

func anchorWith(edit func(*chain.RecordAnchor)) *chain.RecordAnchor {
	a := testAnchor("a", 1, chain.ZeroHash)
	edit(&a)
	return &a
}

func TestRecordAnchorValidate(t *testing.T) {
	v2 := testAnchor("b", 2, testHash("record/a"))
	runValidate(t, []validateCase{
		{"version 1", anchorWith(func(*chain.RecordAnchor) {}), ""},
		{"version 2", &v2, ""},
		{"version 9", anchorWith(func(a *chain.RecordAnchor) { a.Version, a.Supersedes = 9, testHash("x") }), ""},
		{"zero id", anchorWith(func(a *chain.RecordAnchor) { a.ID = chain.ZeroHash }), "without an id"},
		{"zero patient", anchorWith(func(a *chain.RecordAnchor) { a.Patient = chain.Address{} }), "without a patient"},
		{"zero ciphertext hash", anchorWith(func(a *chain.RecordAnchor) { a.CiphertextHash = chain.ZeroHash }), "without a ciphertext hash"},
		{"size 0", anchorWith(func(a *chain.RecordAnchor) { a.Size = 0 }), "size 0"},
		{"version 0", anchorWith(func(a *chain.RecordAnchor) { a.Version = 0 }), "must start at 1"},
		{"version 0 superseding", anchorWith(func(a *chain.RecordAnchor) { a.Version, a.Supersedes = 0, testHash("x") }), "must start at 1"},
		{"version 1 superseding", anchorWith(func(a *chain.RecordAnchor) { a.Supersedes = testHash("x") }), "version 1 cannot supersede"},
		{"version 2 superseding nothing", anchorWith(func(a *chain.RecordAnchor) { a.Version = 2 }), "version 2 must name the version it supersedes"},
		{"superseding itself", anchorWith(func(a *chain.RecordAnchor) { a.Version, a.Supersedes = 2, a.ID }), "cannot supersede itself"},
		{"empty type", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "" }), "resource type must be 1..64 bytes"},
		{"type of max length", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = strings.Repeat("A", chain.MaxResourceTypeLen) }), ""},
		{"type too long", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = strings.Repeat("A", chain.MaxResourceTypeLen+1) }), "resource type must be 1..64 bytes"},
		{"type with digits", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Type09az" }), ""},
		{"type with dash", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Obs-ervation" }), "not a FHIR type name"},
		{"type with space", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Obs ervation" }), "not a FHIR type name"},
		{"type with underscore", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Obs_ervation" }), "not a FHIR type name"},
		{"type with NUL", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Obs\x00" }), "not a FHIR type name"},
		{"type with non-ASCII letter", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Obsérvation" }), "not a FHIR type name"},
		{"type with invalid UTF-8", anchorWith(func(a *chain.RecordAnchor) { a.ResourceType = "Obs\xff" }), "not a FHIR type name"},
	})
}

func TestAnchorRecordsValidate(t *testing.T) {
	anchors := func(n int) []chain.RecordAnchor {
		out := make([]chain.RecordAnchor, n)
		for i := range out {
			out[i] = testAnchor(fmt.Sprint(i), 1, chain.ZeroHash)
		}
		return out
	}
	bad := anchors(3)
	bad[1].Size = 0
	dup := anchors(3)
	dup[2] = dup[0]
	runValidate(t, []validateCase{
		{"one", &chain.AnchorRecords{Records: anchors(1)}, ""},
		{"max", &chain.AnchorRecords{Records: anchors(chain.MaxAnchorsPerTx)}, ""},
		{"none", &chain.AnchorRecords{}, "must hold 1..64 records, got 0"},
		{"empty list", &chain.AnchorRecords{Records: []chain.RecordAnchor{}}, "got 0"},
		{"too many", &chain.AnchorRecords{Records: anchors(chain.MaxAnchorsPerTx + 1)}, "got 65"},
		{"invalid anchor", &chain.AnchorRecords{Records: bad}, "record 1: chain: record anchor with size 0"},
		{"same id twice", &chain.AnchorRecords{Records: dup}, "anchored twice in one transaction"},
	})
}

func TestConsentScopeValidate(t *testing.T) {
	scope := func(kind chain.ScopeKind, types []string, records []chain.Hash) *chain.ConsentScope {
		return &chain.ConsentScope{Kind: kind, Types: types, Records: records}
	}
	ids := hashN(3)
	runValidate(t, []validateCase{
		{"all", scope(chain.ScopeAll, nil, nil), ""},
		{"all with empty lists", scope(chain.ScopeAll, []string{}, []chain.Hash{}), ""},
		{"all with types", scope(chain.ScopeAll, []string{"Observation"}, nil), "scope all lists no types or records"},
		{"all with records", scope(chain.ScopeAll, nil, ids[:1]), "scope all lists no types or records"},

		{"types", scope(chain.ScopeTypes, []string{"Condition", "Observation"}, nil), ""},
		{"types max", scope(chain.ScopeTypes, typesN(chain.MaxScopeItems), nil), ""},
		{"types none", scope(chain.ScopeTypes, nil, nil), "scope types lists 1..64 types and no records"},
		{"types too many", scope(chain.ScopeTypes, typesN(chain.MaxScopeItems+1), nil), "scope types lists 1..64"},
		{"types with records", scope(chain.ScopeTypes, []string{"Observation"}, ids[:1]), "scope types lists 1..64 types and no records"},
		{"types unsorted", scope(chain.ScopeTypes, []string{"Observation", "Condition"}, nil), "sorted and distinct"},
		{"types duplicate", scope(chain.ScopeTypes, []string{"Condition", "Condition"}, nil), "sorted and distinct"},
		{"types sorted by bytes, not case", scope(chain.ScopeTypes, []string{"condition", "Observation"}, nil), "sorted and distinct"},
		{"types bad name", scope(chain.ScopeTypes, []string{"Condition", "Obs-ervation"}, nil), "not a FHIR type name"},
		{"types empty name", scope(chain.ScopeTypes, []string{""}, nil), "resource type must be"},
		{"types name too long", scope(chain.ScopeTypes, []string{strings.Repeat("T", chain.MaxResourceTypeLen+1)}, nil), "resource type must be"},

		{"records", scope(chain.ScopeRecords, nil, ids), ""},
		{"records max", scope(chain.ScopeRecords, nil, hashN(chain.MaxScopeItems)), ""},
		{"records none", scope(chain.ScopeRecords, nil, nil), "scope records lists 1..64 records and no types"},
		{"records too many", scope(chain.ScopeRecords, nil, hashN(chain.MaxScopeItems+1)), "scope records lists 1..64"},
		{"records with types", scope(chain.ScopeRecords, []string{"Observation"}, ids), "scope records lists 1..64 records and no types"},
		{"records zero id", scope(chain.ScopeRecords, nil, []chain.Hash{chain.ZeroHash, ids[0]}), "zero record id"},
		{"records unsorted", scope(chain.ScopeRecords, nil, []chain.Hash{ids[1], ids[0]}), "sorted and distinct"},
		{"records duplicate", scope(chain.ScopeRecords, nil, []chain.Hash{ids[0], ids[1], ids[1]}), "sorted and distinct"},

		{"kind 0", scope(0, nil, nil), "unknown scope kind 0"},
		{"kind 4", scope(4, nil, nil), "unknown scope kind 4"},
		{"kind 255 with types", scope(255, []string{"Observation"}, nil), "unknown scope kind 255"},
	})
}

func TestConsentScopeCovers(t *testing.T) {
	ids := hashN(4)
	all := chain.ConsentScope{Kind: chain.ScopeAll}
	types := chain.ConsentScope{Kind: chain.ScopeTypes, Types: []string{"Condition", "Observation"}}
	records := chain.ConsentScope{Kind: chain.ScopeRecords, Records: []chain.Hash{ids[0], ids[2]}}
	for _, tc := range []struct {
		name  string
		scope chain.ConsentScope
		root  chain.Hash
		typ   string
		want  bool
	}{
		{"all covers any type", all, ids[0], "Observation", true},
		{"all covers any record", all, ids[3], "Anything", true},
		{"all covers an erased record's empty type", all, ids[3], "", true},
		{"types covers the first type", types, ids[0], "Condition", true},
		{"types covers the last type", types, ids[3], "Observation", true},
		{"types ignores the record", types, chain.ZeroHash, "Observation", true},
		{"types refuses another type", types, ids[0], "MedicationRequest", false},
		{"types is case-sensitive", types, ids[0], "observation", false},
		{"types refuses a prefix", types, ids[0], "Observ", false},
		{"types refuses the empty type", types, ids[0], "", false},
		{"records covers a listed root", records, ids[0], "Observation", true},
		{"records covers the last listed root", records, ids[2], "Whatever", true},
		{"records refuses an unlisted root", records, ids[1], "Observation", false},
		{"records refuses a root after the list", records, ids[3], "Observation", false},
		{"records refuses the zero root", records, chain.ZeroHash, "Observation", false},
		{"unknown kind covers nothing", chain.ConsentScope{Kind: 9}, ids[0], "Observation", false},
		{"kind 0 covers nothing", chain.ConsentScope{Types: []string{"Observation"}, Records: ids}, ids[0], "Observation", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.scope.Covers(tc.root, tc.typ))
		})
	}
}

func TestConsentGrantValidate(t *testing.T) {
	grant := func(edit func(*chain.ConsentGrant)) *chain.ConsentGrant {
		g := &chain.ConsentGrant{Grantee: chain.Address{1}, Scope: chain.ConsentScope{Kind: chain.ScopeAll}, Purpose: "TREAT"}
		edit(g)
		return g
	}
	runValidate(t, []validateCase{
		{"until revoked", grant(func(*chain.ConsentGrant) {}), ""},
		{"expiring", grant(func(g *chain.ConsentGrant) { g.ExpiresMs = 1 }), ""},
		{"purpose of max length", grant(func(g *chain.ConsentGrant) { g.Purpose = strings.Repeat("P", chain.MaxPurposeLen) }), ""},
		{"purpose in UTF-8", grant(func(g *chain.ConsentGrant) { g.Purpose = "behandeling – ärztlich" }), ""},
		{"zero grantee", grant(func(g *chain.ConsentGrant) { g.Grantee = chain.Address{} }), "without a grantee"},
		{"empty purpose", grant(func(g *chain.ConsentGrant) { g.Purpose = "" }), "purpose must be 1..64 bytes of UTF-8"},
		{"purpose too long", grant(func(g *chain.ConsentGrant) { g.Purpose = strings.Repeat("P", chain.MaxPurposeLen+1) }), "purpose must be"},
		{"purpose too long in bytes", grant(func(g *chain.ConsentGrant) { g.Purpose = strings.Repeat("é", 33) }), "purpose must be"},
		{"purpose invalid UTF-8", grant(func(g *chain.ConsentGrant) { g.Purpose = "TREAT\xff" }), "purpose must be"},
		{"negative expiry", grant(func(g *chain.ConsentGrant) { g.ExpiresMs = -1 }), "expiry is negative"},
		{"invalid scope", grant(func(g *chain.ConsentGrant) { g.Scope = chain.ConsentScope{Kind: chain.ScopeTypes} }), "scope types lists"},
		{"zero scope", grant(func(g *chain.ConsentGrant) { g.Scope = chain.ConsentScope{} }), "unknown scope kind 0"},
	})
}

func TestConsentRevokeValidate(t *testing.T) {
	runValidate(t, []validateCase{
		{"ok", &chain.ConsentRevoke{Consent: testHash("c")}, ""},
		{"zero", &chain.ConsentRevoke{}, "revoke without a consent id"},
	})
}

func TestEmergencyAccessValidate(t *testing.T) {
	em := func(edit func(*chain.EmergencyAccess)) *chain.EmergencyAccess {
		e := &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: chain.Address{2}, Purpose: "ETREAT", ReasonCode: chain.ReasonLifeThreatening}
		edit(e)
		return e
	}
	runValidate(t, []validateCase{
		{"ok", em(func(*chain.EmergencyAccess) {}), ""},
		{"first reason", em(func(e *chain.EmergencyAccess) { e.ReasonCode = chain.ReasonUnableToConsent }), ""},
		{"last reason", em(func(e *chain.EmergencyAccess) { e.ReasonCode = chain.ReasonContinuityOfCare }), ""},
		{"co-signed", em(func(e *chain.EmergencyAccess) { e.CoSign(testKey(t, 5), chainA, testKey(t, 6).Public(), 7, 2) }), ""},
		{"version 1", em(func(e *chain.EmergencyAccess) { e.Version = 1 }), "emergency access version 1"},
		{"zero patient", em(func(e *chain.EmergencyAccess) { e.Patient = chain.Address{} }), "without a patient"},
		{"empty purpose", em(func(e *chain.EmergencyAccess) { e.Purpose = "" }), "purpose must be"},
		{"purpose too long", em(func(e *chain.EmergencyAccess) { e.Purpose = strings.Repeat("P", chain.MaxPurposeLen+1) }), "purpose must be"},
		{"purpose invalid UTF-8", em(func(e *chain.EmergencyAccess) { e.Purpose = "\xc3" }), "purpose must be"},
		{"no reason code", em(func(e *chain.EmergencyAccess) { e.ReasonCode = 0 }), "needs a reason code from the list (1..5), got 0"},
		{"reason code past the list", em(func(e *chain.EmergencyAccess) { e.ReasonCode = chain.ReasonContinuityOfCare + 1 }), "got 6"},
		{"co-signer without signature", em(func(e *chain.EmergencyAccess) { e.CoSigner = testKey(t, 5).Public() }), "go together"},
		{"signature without co-signer", em(func(e *chain.EmergencyAccess) { e.CoSig[0] = 1 }), "go together"},
	})
}

func TestEmergencyReasons(t *testing.T) {
	require.Len(t, chain.EmergencyReasons(), 5)
	for _, r := range chain.EmergencyReasons() {
		got, err := chain.ParseEmergencyReason(r.String())
		require.NoError(t, err)
		require.Equal(t, r, got)
		got, err = chain.ParseEmergencyReason(strconv.Itoa(int(r)))
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	require.Equal(t, "unable-to-consent", chain.ReasonUnableToConsent.String())
	require.Equal(t, "reason-0", chain.EmergencyReason(0).String())
	for _, bad := range []string{"", "0", "6", "unconscious", "Life-Threatening"} {
		_, err := chain.ParseEmergencyReason(bad)
		require.Error(t, err, bad)
	}
}

func TestEmergencyCoSignature(t *testing.T) {
	auth, prov, other := testKey(t, 5), testKey(t, 6), testKey(t, 7)
	e := chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: chain.Address{2}, Purpose: "ETREAT", ReasonCode: chain.ReasonLifeThreatening}
	require.ErrorContains(t, e.VerifyCoSig(chainA, prov.Public(), 7, 2), "not co-signed")
	e.CoSign(auth, chainA, prov.Public(), 7, 2)
	require.True(t, e.CoSigned())
	require.NoError(t, e.VerifyCoSig(chainA, prov.Public(), 7, 2))
	// Bound to the chain, the provider, the window, the ordinal and every field of the body.
	require.ErrorIs(t, e.VerifyCoSig(chainB, prov.Public(), 7, 2), chain.ErrBadSignature)
	require.ErrorIs(t, e.VerifyCoSig(chainA, other.Public(), 7, 2), chain.ErrBadSignature)
	require.ErrorIs(t, e.VerifyCoSig(chainA, prov.Public(), 8, 2), chain.ErrBadSignature)
	require.ErrorIs(t, e.VerifyCoSig(chainA, prov.Public(), 7, 3), chain.ErrBadSignature)
	for name, edit := range map[string]func(*chain.EmergencyAccess){
		"patient":   func(e *chain.EmergencyAccess) { e.Patient[0] ^= 1 },
		"purpose":   func(e *chain.EmergencyAccess) { e.Purpose = "TREAT" },
		"reason":    func(e *chain.EmergencyAccess) { e.ReasonCode = chain.ReasonPublicHealth },
		"co-signer": func(e *chain.EmergencyAccess) { e.CoSigner = other.Public() },
		"domain": func(e *chain.EmergencyAccess) {
			e.CoSig = auth.Sign(chain.DomainTx, chainA, e.CoSignedBytes(prov.Public(), 7, 2))
		},
	} {
		c := e
		edit(&c)
		require.ErrorIs(t, c.VerifyCoSig(chainA, prov.Public(), 7, 2), chain.ErrBadSignature, name)
	}
}

func TestAccessReceiptsValidate(t *testing.T) {
	q := testAccessRequest(t, testKey(t, 1), chainA, 1)
	badQ := q
	badQ.Holder = chain.PubKey{}
	rc := func(n int) []chain.AccessReceipt {
		return slices.Repeat([]chain.AccessReceipt{{Request: q, CiphertextHash: testHash("c")}}, n)
	}
	runValidate(t, []validateCase{
		{"one", &chain.AccessReceipts{Receipts: rc(1)}, ""},
		{"max", &chain.AccessReceipts{Receipts: rc(chain.MaxReceiptsPerTx)}, ""},
		{"none", &chain.AccessReceipts{}, "must hold 1..64 receipts, got 0"},
		{"too many", &chain.AccessReceipts{Receipts: rc(chain.MaxReceiptsPerTx + 1)}, "got 65"},
		{"no ciphertext", &chain.AccessReceipts{Receipts: []chain.AccessReceipt{{Request: q}}}, "receipt 0: chain: access receipt without a ciphertext hash"},
		{"bad request", &chain.AccessReceipts{Receipts: []chain.AccessReceipt{{Request: badQ, CiphertextHash: testHash("c")}}}, "without the holder"},
	})
}

func TestAccessRequestValidate(t *testing.T) {
	req := func(edit func(*chain.AccessRequest)) *chain.AccessRequest {
		r := testAccessRequest(t, testKey(t, 1), chainA, 1)
		edit(&r)
		return &r
	}
	runValidate(t, []validateCase{
		{"ok", req(func(*chain.AccessRequest) {}), ""},
		{"emergency", req(func(r *chain.AccessRequest) { r.Emergency = true }), ""},
		{"version 0", req(func(r *chain.AccessRequest) { r.Version = 0 }), "access request version 0"},
		{"version 1", req(func(r *chain.AccessRequest) { r.Version = 1 }), "access request version 1"},
		{"version 2", req(func(r *chain.AccessRequest) { r.Version = 2 }), "access request version 2"},
		{"version 4", req(func(r *chain.AccessRequest) { r.Version = 4 }), "access request version 4"},
		{"patient role", req(func(r *chain.AccessRequest) { r.Role = chain.AccessRolePatient }), ""},
		{"hyphenated role", req(func(r *chain.AccessRequest) { r.Role = "front-desk" }), ""},
		{"no role", req(func(r *chain.AccessRequest) { r.Role = "" }), "access role must be"},
		{"role too long", req(func(r *chain.AccessRequest) { r.Role = strings.Repeat("r", chain.MaxRoleLen+1) }), "access role must be"},
		{"a name, not a role", req(func(r *chain.AccessRequest) { r.Role = "Dr. Jane Smith" }), "only lower-case letters"},
		{"role invalid UTF-8", req(func(r *chain.AccessRequest) { r.Role = "nurse\xff" }), "only lower-case letters"},
		{"no requester node", req(func(r *chain.AccessRequest) { r.RequesterNode = chain.PubKey{} }), "without the requester's node key"},
		{"no holder", req(func(r *chain.AccessRequest) { r.Holder = chain.PubKey{} }), "without the holder it is addressed to"},
		{"empty chain id", req(func(r *chain.AccessRequest) { r.ChainID = "" }), "chain id must be"},
		{"chain id too long", req(func(r *chain.AccessRequest) { r.ChainID = strings.Repeat("c", chain.MaxChainIDLen+1) }), "chain id must be"},
		{"chain id invalid UTF-8", req(func(r *chain.AccessRequest) { r.ChainID = "chain\xff" }), "chain id must be"},
		{"zero record", req(func(r *chain.AccessRequest) { r.Record = chain.ZeroHash }), "without a record"},
		{"empty purpose", req(func(r *chain.AccessRequest) { r.Purpose = "" }), "purpose must be"},
		{"purpose too long", req(func(r *chain.AccessRequest) { r.Purpose = strings.Repeat("P", chain.MaxPurposeLen+1) }), "purpose must be"},
		{"purpose invalid UTF-8", req(func(r *chain.AccessRequest) { r.Purpose = "\x80" }), "purpose must be"},
	})
	err := req(func(r *chain.AccessRequest) { r.Version = 1 }).Validate()
	require.ErrorIs(t, err, chain.ErrUnknownVersion)
}

func TestAccessEntryAndLogValidate(t *testing.T) {
	q := testAccessRequest(t, testKey(t, 1), chainA, 1)
	badQ := q
	badQ.Record = chain.ZeroHash
	entry := func(edit func(*chain.AccessEntry)) *chain.AccessEntry {
		e := &chain.AccessEntry{Request: q, Outcome: chain.AccessRefused, Reason: "no consent"}
		edit(e)
		return e
	}
	entries := func(n int) []chain.AccessEntry {
		out := make([]chain.AccessEntry, n)
		for i := range out {
			out[i] = chain.AccessEntry{Request: q, Outcome: chain.AccessServed}
		}
		return out
	}
	withBad := entries(3)
	withBad[2].Outcome = 0
	runValidate(t, []validateCase{
		{"refused", entry(func(*chain.AccessEntry) {}), ""},
		{"served", entry(func(e *chain.AccessEntry) { e.Outcome, e.Reason = chain.AccessServed, "" }), ""},
		{"reason of max length", entry(func(e *chain.AccessEntry) { e.Reason = strings.Repeat("r", chain.MaxReasonLen) }), ""},
		{"served with a reason", entry(func(e *chain.AccessEntry) { e.Outcome, e.Reason = chain.AccessServed, "why" }), "a served access has no refusal reason"},
		{"outcome 0", entry(func(e *chain.AccessEntry) { e.Outcome = 0 }), "unknown access outcome 0"},
		{"outcome 3", entry(func(e *chain.AccessEntry) { e.Outcome = 3 }), "unknown access outcome 3"},
		{"reason too long", entry(func(e *chain.AccessEntry) { e.Reason = strings.Repeat("r", chain.MaxReasonLen+1) }), "access reason must be at most 256 bytes of UTF-8"},
		{"reason invalid UTF-8", entry(func(e *chain.AccessEntry) { e.Reason = "\xff" }), "access reason must be"},
		{"invalid request", entry(func(e *chain.AccessEntry) { e.Request = badQ }), "without a record"},

		{"log of one", &chain.AccessLog{Entries: entries(1)}, ""},
		{"log of max", &chain.AccessLog{Entries: entries(chain.MaxAccessEntriesPerTx)}, ""},
		{"empty log", &chain.AccessLog{}, "access log must hold 1..128 entries, got 0"},
		{"log too long", &chain.AccessLog{Entries: entries(chain.MaxAccessEntriesPerTx + 1)}, "got 129"},
		{"log with invalid entry", &chain.AccessLog{Entries: withBad}, "access entry 2: chain: unknown access outcome 0"},
	})
}

func TestRecordListsValidate(t *testing.T) {
	ids := hashN(3)
	for _, mk := range []struct {
		what string
		new  func([]chain.Hash) interface{ Validate() error }
	}{
		{"erase", func(h []chain.Hash) interface{ Validate() error } { return &chain.RecordErase{Records: h} }},
		{"erase acknowledgement", func(h []chain.Hash) interface{ Validate() error } { return &chain.EraseAck{Records: h} }},
	} {
		t.Run(mk.what, func(t *testing.T) {
			runValidate(t, []validateCase{
				{"one", mk.new(ids[:1]), ""},
				{"sorted", mk.new(ids), ""},
				{"max", mk.new(hashN(chain.MaxEraseRecords)), ""},
				{"none", mk.new(nil), mk.what + " must name 1..256 records, got 0"},
				{"too many", mk.new(hashN(chain.MaxEraseRecords + 1)), "got 257"},
				{"zero id", mk.new([]chain.Hash{chain.ZeroHash, ids[0]}), mk.what + " names a zero record id"},
				{"unsorted", mk.new([]chain.Hash{ids[0], ids[2], ids[1]}), mk.what + " records must be sorted and distinct"},
				{"duplicate", mk.new([]chain.Hash{ids[0], ids[0]}), "sorted and distinct"},
			})
		})
	}
}

func TestAccessRequestSignature(t *testing.T) {
	key, other := testKey(t, 1), testKey(t, 2)
	q := chain.AccessRequest{Role: "clinician", Record: testHash("r"), RequesterNode: testKey(t, 8).Public(), Holder: testKey(t, 9).Public(),
		Purpose: "TREAT", IssuedMs: 1_700_000_000_000, Nonce: 42}
	q.Sign(key, chainA)
	require.Equal(t, uint8(chain.AccessRequestVersion), q.Version)
	require.Equal(t, chainA, q.ChainID)
	require.Equal(t, key.Public(), q.Requester)
	require.NoError(t, q.Validate())
	require.NoError(t, q.VerifySig(chainA))

	// Another chain's holder refuses it, and relabelling it for that chain breaks the signature.
	require.ErrorContains(t, q.VerifySig(chainB), `access request for chain "medledger-test-a", this is "medledger-test-b"`)
	moved := q
	moved.ChainID = chainB
	require.ErrorContains(t, moved.VerifySig(chainB), "access request signature")
	// Signed with the same key for chain B, it is a different request.
	resigned := q
	resigned.Sign(key, chainB)
	require.NoError(t, resigned.VerifySig(chainB))
	require.NotEqual(t, q.Sig, resigned.Sig)

	// Every field is covered by the signature.
	for _, tc := range []struct {
		name string
		edit func(*chain.AccessRequest)
	}{
		{"version", func(r *chain.AccessRequest) { r.Version = 2 }},
		{"role", func(r *chain.AccessRequest) { r.Role = "operator" }},
		{"requester node", func(r *chain.AccessRequest) { r.RequesterNode = other.Public() }},
		{"holder", func(r *chain.AccessRequest) { r.Holder = other.Public() }},
		{"record", func(r *chain.AccessRequest) { r.Record[31] ^= 1 }},
		{"requester", func(r *chain.AccessRequest) { r.Requester = other.Public() }},
		{"purpose", func(r *chain.AccessRequest) { r.Purpose = "RESEARCH" }},
		{"emergency", func(r *chain.AccessRequest) { r.Emergency = true }},
		{"issued", func(r *chain.AccessRequest) { r.IssuedMs++ }},
		{"nonce", func(r *chain.AccessRequest) { r.Nonce++ }},
		{"signature", func(r *chain.AccessRequest) { r.Sig[0] ^= 0x80 }},
		{"signature by another key", func(r *chain.AccessRequest) {
			r.Sig = other.Sign(chain.DomainAccess, chainA, r.SignedBytes())
		}},
		{"signature in another domain", func(r *chain.AccessRequest) {
			r.Sig = key.Sign(chain.DomainTx, chainA, r.SignedBytes())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := q
			tc.edit(&r)
			require.ErrorContains(t, r.VerifySig(chainA), "access request signature")
			require.NotEqual(t, q.ID(), r.ID(), "a changed request keeps its id")
		})
	}

	// The id is the hash of the full encoding: it survives a round trip and changes with the
	// nonce (and so with nothing else held equal, two requests for one record differ).
	require.Equal(t, chain.Sum256(chain.Encode(&q)), q.ID())
	dec, err := chain.DecodeAccessRequest(chain.Encode(&q))
	require.NoError(t, err)
	require.Equal(t, q.ID(), dec.ID())
	require.NoError(t, dec.VerifySig(chainA))
	again := q
	again.Nonce++
	again.Sign(key, chainA)
	require.NotEqual(t, q.ID(), again.ID())
	same := chain.AccessRequest{Role: "clinician", Record: q.Record, RequesterNode: q.RequesterNode, Holder: q.Holder, Purpose: q.Purpose, IssuedMs: q.IssuedMs, Nonce: q.Nonce}
	same.Sign(key, chainA)
	require.Equal(t, q.ID(), same.ID(), "Ed25519 signatures are deterministic, so the same request has the same id")
}

// maxAccessRequest is the largest valid request: every variable field at its limit.
func maxAccessRequest(t testing.TB) chain.AccessRequest {
	q := chain.AccessRequest{Role: "clinician",
		Record: testHash("r"), RequesterNode: testKey(t, 8).Public(), Holder: testKey(t, 9).Public(),
		Purpose: strings.Repeat("é", chain.MaxPurposeLen/2), Emergency: true,
		IssuedMs: -1 << 63, Nonce: 1<<64 - 1,
	}
	q.Sign(testKey(t, 3), strings.Repeat("c", chain.MaxChainIDLen))
	return q
}

func TestDecodeAccessRequest(t *testing.T) {
	q := testAccessRequest(t, testKey(t, 1), chainA, 7)
	enc := chain.Encode(&q)
	got, err := chain.DecodeAccessRequest(enc)
	require.NoError(t, err)
	require.Equal(t, &q, got)

	// The limit admits the largest valid request.
	big := maxAccessRequest(t)
	bigEnc := chain.Encode(&big)
	require.LessOrEqual(t, len(bigEnc), chain.MaxAccessRequestBytes)
	got, err = chain.DecodeAccessRequest(bigEnc)
	require.NoError(t, err)
	require.Equal(t, &big, got)

	// The signature is not checked here: a holder checks it against the chain it serves.
	forged := q
	forged.Sig[5] ^= 1
	got, err = chain.DecodeAccessRequest(chain.Encode(&forged))
	require.NoError(t, err)
	require.Error(t, got.VerifySig(chainA))

	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	nonceAt := bytes.LastIndex(enc, []byte{0x07, 0x58, 0x40}) // nonce 7, then the signature's bstr header
	require.Positive(t, nonceAt)
	invalid := q
	invalid.Record = chain.ZeroHash
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, nil},
		{"oversize", make([]byte, chain.MaxAccessRequestBytes+1), chain.ErrTooLarge},
		{"oversize valid prefix", cat(enc, make([]byte, chain.MaxAccessRequestBytes)), chain.ErrTooLarge},
		{"trailing byte", cat(enc, []byte{0}), chain.ErrNonCanonical},
		{"trailing copy", cat(enc, enc), chain.ErrNonCanonical},
		{"truncated", enc[:len(enc)-1], nil},
		{"version in long form", cat(enc[:1], []byte{0x18, 0x02}, enc[2:]), chain.ErrNonCanonical},
		{"nonce in long form", cat(enc[:nonceAt], []byte{0x18, 0x07}, enc[nonceAt+1:]), chain.ErrNonCanonical},
		{"array length in long form", cat([]byte{0x98, enc[0] & 0x1f}, enc[1:]), chain.ErrNonCanonical},
		{"indefinite-length array", cat([]byte{0x9f}, enc[1:], []byte{0xff}), chain.ErrNonCanonical},
		{"tagged", cat([]byte{0xd8, 0x18}, enc), nil},
		{"one element short", cat([]byte{enc[0] - 1}, enc[1:]), nil},
		{"version 1", cat(enc[:1], []byte{0x01}, enc[2:]), chain.ErrUnknownVersion},
		{"invalid form", chain.Encode(&invalid), nil},
		{"a transaction", testTx(t, testKey(t, 1), chainA, 1).Encode(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chain.DecodeAccessRequest(tc.data)
			require.Error(t, err)
			require.Nil(t, got)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

var recordKinds = []chain.TxKind{
	chain.TxAnchorRecords, chain.TxConsentGrant, chain.TxConsentRevoke, chain.TxEmergencyAccess,
	chain.TxAccessLog, chain.TxRecordErase, chain.TxEraseAck,
}

func TestDecodePayloadRecordKinds(t *testing.T) {
	payloads := testPayloads(t)
	for _, kind := range recordKinds {
		t.Run(kind.String(), func(t *testing.T) {
			body, ok := payloads[kind]
			require.True(t, ok, "testPayloads lacks kind %d", kind)
			enc := chain.Encode(body)
			got, err := chain.DecodePayload(kind, enc)
			require.NoError(t, err)
			require.IsType(t, body, got)
			require.Equal(t, body, got)
			require.Equal(t, enc, chain.Encode(got))

			// Under a transaction, the body survives the transaction's own round trip.
			tx := chain.NewTx(testKey(t, 1), chainA, kind, 3, body)
			dtx, err := chain.DecodeTx(tx.Encode())
			require.NoError(t, err)
			got, err = chain.DecodePayload(dtx.Kind, dtx.Payload)
			require.NoError(t, err)
			require.Equal(t, body, got)
		})
	}
}

// TestDecodePayloadWrongKind: a body is refused under every other kind, except where two kinds
// share one shape (a single 32-byte id, which is also a valid encryption key, or a sorted id
// list): there the kind in the signed transaction is what gives the body its meaning.
func TestDecodePayloadWrongKind(t *testing.T) {
	sameShape := map[[2]chain.TxKind]bool{
		{chain.TxConsentRevoke, chain.TxAuthorityVote}: true,
		{chain.TxAuthorityVote, chain.TxConsentRevoke}: true,
		{chain.TxRecordErase, chain.TxEraseAck}:        true,
		{chain.TxEraseAck, chain.TxRecordErase}:        true,
		// A 32-byte id is also a valid encryption key.
		{chain.TxConsentRevoke, chain.TxRegisterPatient}: true,
		{chain.TxAuthorityVote, chain.TxRegisterPatient}: true,
	}
	payloads := testPayloads(t)
	var accepted [][2]chain.TxKind
	for from, body := range payloads {
		enc := chain.Encode(body)
		for to := chain.TxKind(0); to <= chain.TxEraseAck+1; to++ {
			if to == from {
				continue
			}
			got, err := chain.DecodePayload(to, enc)
			if err == nil {
				require.NotNil(t, got)
				accepted = append(accepted, [2]chain.TxKind{from, to})
				continue
			}
			require.Nil(t, got, "%s body under %s", from, to)
		}
	}
	for _, p := range accepted {
		require.True(t, sameShape[p], "a %s body decodes as %s", p[0], p[1])
	}
	// The same-shape pairs decode into the other kind's type, carrying the same id.
	got, err := chain.DecodePayload(chain.TxAuthorityVote, chain.Encode(payloads[chain.TxConsentRevoke]))
	require.NoError(t, err)
	require.Equal(t, &chain.AuthorityVote{Proposal: testHash("consent")}, got)

	// A record body of one kind is refused under each other record kind of a different shape.
	for _, from := range recordKinds {
		for _, to := range recordKinds {
			if from == to || sameShape[[2]chain.TxKind{from, to}] {
				continue
			}
			got, err := chain.DecodePayload(to, chain.Encode(payloads[from]))
			require.Error(t, err, "%s body under %s", from, to)
			require.Nil(t, got)
		}
	}
}

// TestRecordPayloadsStrict: a record body whose form is invalid is refused by DecodePayload even
// when its encoding is canonical, and limits are counted before decoding.
func TestRecordPayloadsStrict(t *testing.T) {
	q := testAccessRequest(t, testKey(t, 1), chainA, 1)
	ids := hashN(2)
	for _, tc := range []struct {
		name string
		kind chain.TxKind
		body any
	}{
		{"anchor version 0", chain.TxAnchorRecords, &chain.AnchorRecords{Records: []chain.RecordAnchor{*anchorWith(func(a *chain.RecordAnchor) { a.Version = 0 })}}},
		{"no anchors", chain.TxAnchorRecords, &chain.AnchorRecords{}},
		{"grant with unsorted types", chain.TxConsentGrant, &chain.ConsentGrant{Grantee: chain.Address{1}, Purpose: "TREAT",
			Scope: chain.ConsentScope{Kind: chain.ScopeTypes, Types: []string{"b", "a"}}}},
		{"revoke of nothing", chain.TxConsentRevoke, &chain.ConsentRevoke{}},
		{"emergency without reason", chain.TxEmergencyAccess, &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: chain.Address{1}, Purpose: "ETREAT"}},
		{"emergency of version 1", chain.TxEmergencyAccess, &chain.EmergencyAccess{Version: 1, Patient: chain.Address{1}, Purpose: "ETREAT", ReasonCode: 1}},
		{"receipt without ciphertext", chain.TxAccessReceipt, &chain.AccessReceipts{Receipts: []chain.AccessReceipt{{Request: q}}}},
		{"access entry outcome 0", chain.TxAccessLog, &chain.AccessLog{Entries: []chain.AccessEntry{{Request: q}}}},
		{"erase unsorted", chain.TxRecordErase, &chain.RecordErase{Records: []chain.Hash{ids[1], ids[0]}}},
		{"ack duplicate", chain.TxEraseAck, &chain.EraseAck{Records: []chain.Hash{ids[0], ids[0]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chain.DecodePayload(tc.kind, chain.Encode(tc.body))
			require.Error(t, err)
			require.Nil(t, got)
		})
	}
	// Served entries of ordinary requests fit MaxAccessEntriesPerTx to a payload; entries at every
	// field's limit do not: the byte limit binds first (the record service's journal flush, records/audit.go, batches by bytes too).
	served := slices.Repeat([]chain.AccessEntry{{Request: q, Outcome: chain.AccessServed}}, chain.MaxAccessEntriesPerTx)
	_, err := chain.DecodePayload(chain.TxAccessLog, chain.Encode(&chain.AccessLog{Entries: served}))
	require.NoError(t, err)
	big := chain.AccessEntry{Request: maxAccessRequest(t), Outcome: chain.AccessRefused, Reason: strings.Repeat("r", chain.MaxReasonLen)}
	full := &chain.AccessLog{Entries: slices.Repeat([]chain.AccessEntry{big}, chain.MaxAccessEntriesPerTx)}
	require.NoError(t, full.Validate())
	_, err = chain.DecodePayload(chain.TxAccessLog, chain.Encode(full))
	require.ErrorIs(t, err, chain.ErrTooLarge)
}
