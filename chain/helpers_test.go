package chain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/medledger/medledger/chain"
)

const (
	chainA = "medledger-test-a"
	chainB = "medledger-test-b"
)

// testKey returns a deterministic signing key: the i-th key of every test run is the same.
func testKey(t testing.TB, i int) chain.PrivKey {
	t.Helper()
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(i))
	seed := sha256.Sum256(append([]byte("chain-test-key"), buf[:]...))
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testHash(s string) chain.Hash { return chain.Sum256([]byte(s)) }

func testTx(t testing.TB, key chain.PrivKey, chainID string, nonce uint64) *chain.Tx {
	t.Helper()
	return chain.NewTx(key, chainID, chain.TxRegisterPatient, nonce, testEnrolment(t, key.Public(), chainID))
}

// testEnrolment is a patient registration for patient co-signed by the provider testKey(t, 10).
func testEnrolment(t testing.TB, patient chain.PubKey, chainID string) *chain.RegisterPatient {
	t.Helper()
	doc := testKey(t, 10)
	return chain.NewEnrolment(doc, doc.Public().Address(), chainID, patient, []byte("patient-encryption-key"))
}

func testLicence(t testing.TB, chainID string) chain.Licence {
	t.Helper()
	l := chain.Licence{Role: chain.RoleProvider, Subject: testKey(t, 10).Public(), NodeKey: testKey(t, 15).Public(), Number: "MD-12345", Jurisdiction: "NL-ZH", NotAfter: 1_900_000_000_000}
	l.Sign(testKey(t, 11), chainID)
	return l
}

func testVote(t testing.TB, key chain.PrivKey, typ chain.VoteType, height uint64, round uint32, block chain.Hash) chain.Vote {
	t.Helper()
	v := chain.Vote{Type: typ, Height: height, Round: round, BlockHash: block}
	v.Sign(key, chainA)
	return v
}

func testProposal(t testing.TB, key chain.PrivKey) *chain.Proposal {
	t.Helper()
	p := &chain.Proposal{Height: 7, Round: 2, POLRound: 1, BlockHash: testHash("block")}
	p.Sign(key, chainA)
	return p
}

func testHeader(t testing.TB, height uint64) *chain.Header {
	t.Helper()
	h := &chain.Header{
		Version: chain.HeaderVersion, ChainID: chainA, Height: height, Time: 1_700_000_000_123,
		TxRoot: chain.TxRoot(nil), StateRoot: testHash("state"),
		AuthoritiesHash: testHash("set"), NextAuthoritiesHash: testHash("next set"),
		Proposer: testKey(t, 1).Public(),
	}
	if height > 1 {
		h.PrevHash = testHash("prev")
	}
	return h
}

func testBlock(t testing.TB, ntx int) *chain.Block {
	t.Helper()
	b := &chain.Block{Version: chain.BlockVersion, Header: *testHeader(t, 5)}
	for i := range ntx {
		b.Txs = append(b.Txs, testTx(t, testKey(t, i%4), chainA, uint64(i+1)))
	}
	b.Header.TxRoot = chain.TxRoot(b.Txs)
	return b
}

func testSet(t testing.TB, n int) (*chain.AuthoritySet, []chain.PrivKey) {
	t.Helper()
	keys := make([]chain.PrivKey, n)
	members := make([]chain.Authority, n)
	for i := range keys {
		keys[i] = testKey(t, 100+i)
		members[i] = chain.Authority{Key: keys[i].Public(), Name: "authority"}
	}
	s, err := chain.NewAuthoritySet(members)
	if err != nil {
		t.Fatal(err)
	}
	return s, keys
}

// testCert builds a certificate for block at height signed by the first k keys.
func testCert(t testing.TB, keys []chain.PrivKey, k int, height uint64, block chain.Hash) *chain.CommitCert {
	t.Helper()
	c := &chain.CommitCert{Version: chain.CertVersion, Height: height, Round: 3, BlockHash: block}
	msg := chain.VoteSignedBytes(chain.Precommit, height, 3, block)
	for _, key := range keys[:k] {
		c.Sigs = append(c.Sigs, chain.CommitSig{Authority: key.Public(), Sig: key.Sign(chain.DomainVote, chainA, msg)})
	}
	return c
}

func testGenesis(t testing.TB) *chain.Genesis {
	t.Helper()
	set, _ := testSet(t, 4)
	return &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: chainA, TimeMs: 1_700_000_000_000,
		Authorities:          set.Authorities,
		LicensingAuthorities: []chain.Authority{{Key: testKey(t, 11).Public(), Name: "medical board"}},
		Issuers:              []chain.Issuer{{Role: chain.RolePayer, Key: testKey(t, 18).Public(), Name: "payers' registry"}},
		Params:               chain.DefaultParams(),
		Members:              []chain.GenesisMember{{Licence: testLicence(t, chainA), EncryptionKey: []byte{1, 2, 3}}},
	}
}

// testPayloads returns one valid body of every transaction kind.
func testPayloads(t testing.TB) map[chain.TxKind]any {
	t.Helper()
	a := testVote(t, testKey(t, 100), chain.Precommit, 9, 0, testHash("x"))
	b := testVote(t, testKey(t, 100), chain.Precommit, 9, 0, testHash("y"))
	return map[chain.TxKind]any{
		chain.TxRegisterProvider: &chain.RegisterProvider{Licence: testLicence(t, chainA), EncryptionKey: make([]byte, 1216)},
		chain.TxRegisterPatient:  testEnrolment(t, testKey(t, 13).Public(), chainA),
		chain.TxAuthorityPropose: &chain.AuthorityPropose{Action: chain.AuthorityAdd, Subject: chain.Authority{Key: testKey(t, 12).Public(), Name: "st. elsewhere"}},
		chain.TxAuthorityVote:    &chain.AuthorityVote{Proposal: testHash("proposal")},
		chain.TxEvidence:         chain.NewEvidence(a, b),
		chain.TxAnchorRecords: &chain.AnchorRecords{Records: []chain.RecordAnchor{
			testAnchor("v1", 1, chain.ZeroHash),
			testAnchor("v2", 2, testHash("record/v1")),
		}},
		chain.TxConsentGrant: &chain.ConsentGrant{
			Grantee: testKey(t, 10).Public().Address(), Purpose: "TREAT", ExpiresMs: 1_800_000_000_000,
			Scope: chain.ConsentScope{Kind: chain.ScopeTypes, Types: []string{"Condition", "Observation"}},
		},
		chain.TxConsentRevoke:   &chain.ConsentRevoke{Consent: testHash("consent")},
		chain.TxEmergencyAccess: &chain.EmergencyAccess{Version: chain.EmergencyAccessVersion, Patient: testKey(t, 13).Public().Address(), Purpose: "ETREAT", ReasonCode: chain.ReasonUnableToConsent},
		chain.TxAccessLog: &chain.AccessLog{Entries: []chain.AccessEntry{
			{Request: testAccessRequest(t, testKey(t, 10), chainA, 1), Outcome: chain.AccessServed},
			{Request: testAccessRequest(t, testKey(t, 14), chainA, 2), Outcome: chain.AccessRefused, Reason: "no consent"},
		}},
		chain.TxRecordErase:       &chain.RecordErase{Records: sortedHashes(testHash("record/v1"), testHash("record/v2"))},
		chain.TxEraseAck:          &chain.EraseAck{Records: sortedHashes(testHash("record/v1"))},
		chain.TxRevokeAttestation: &chain.RevokeAttestation{Subject: testKey(t, 10).Public().Address(), Role: chain.RoleProvider, Reason: chain.RevokeSuspended},
		chain.TxRotateKeys: func() *chain.RotateKeys {
			r := chain.NewSigningKeyRotation(testKey(t, 10).Public(), testKey(t, 16), chainA)
			r.NodeKey, r.EncryptionKey = testKey(t, 17).Public(), []byte{9, 9}
			return r
		}(),
		chain.TxLeave: &chain.Leave{},
		chain.TxAccessReceipt: &chain.AccessReceipts{Receipts: []chain.AccessReceipt{
			{Request: testAccessRequest(t, testKey(t, 10), chainA, 3), CiphertextHash: testHash("ciphertext/v1")},
		}},
	}
}

// testAnchor returns a valid anchor of record label at version v (supersedes is zero for v 1).
func testAnchor(label string, v uint64, supersedes chain.Hash) chain.RecordAnchor {
	return chain.RecordAnchor{
		ID: testHash("record/" + label), Patient: chain.Address{0xaa, 1}, ResourceType: "Observation", Version: v,
		Supersedes: supersedes, CiphertextHash: testHash("ciphertext/" + label), Size: 1000 + v,
	}
}

// testAccessRequest returns a request for record "record/v1" signed by key for chainID.
func testAccessRequest(t testing.TB, key chain.PrivKey, chainID string, nonce uint64) chain.AccessRequest {
	t.Helper()
	r := chain.AccessRequest{Role: "clinician", Record: testHash("record/v1"), RequesterNode: testKey(t, 50).Public(), Holder: testKey(t, 51).Public(),
		Purpose: "TREAT", IssuedMs: 1_700_000_000_456, Nonce: nonce}
	r.Sign(key, chainID)
	return r
}

// sortedHashes returns ids sorted bytewise, as record lists must be.
func sortedHashes(ids ...chain.Hash) []chain.Hash {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b chain.Hash) int { return bytes.Compare(a[:], b[:]) })
	return ids
}
