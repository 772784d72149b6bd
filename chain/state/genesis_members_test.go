package state

import (
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// Genesis registers its members as registration would: the first members' node keys are known
// at height 0, so their nodes can admit one another before any block.
func TestGenesisMembers(t *testing.T) {
	lic, doc, nurse, rogue := testKey(t, "licensing"), testKey(t, "doc"), testKey(t, "nurse"), testKey(t, "rogue board")
	auth := testKey(t, "authority-a")
	licence := func(subject chain.PrivKey, issuer chain.PrivKey, notAfter int64) chain.Licence {
		l := chain.Licence{Role: chain.RoleProvider, Subject: subject.Public(), NodeKey: nodeKeyOf(subject.Public()), Number: "G-1", NotAfter: notAfter}
		l.Sign(issuer, testChain)
		return l
	}
	genesis := func(members ...chain.GenesisMember) *chain.Genesis {
		return &chain.Genesis{
			Version: chain.GenesisVersion, ChainID: testChain, TimeMs: genesisTime,
			Authorities:          []chain.Authority{{Key: auth.Public(), Name: "a"}},
			LicensingAuthorities: []chain.Authority{{Key: lic.Public(), Name: "board"}},
			Params:               chain.DefaultParams(), Members: members,
		}
	}
	good := []chain.GenesisMember{
		{Licence: licence(doc, lic, genesisTime+1), EncryptionKey: encKey(doc)},
		{Licence: licence(nurse, lic, genesisTime+1e9), EncryptionKey: encKey(nurse)},
	}
	cs, err := New(testChain).Genesis(genesis(good...))
	if err != nil {
		t.Fatal(err)
	}
	v := newMemView()
	v.commit(cs)
	for _, k := range []chain.PrivKey{doc, nurse} {
		m, err := MemberByNode(v, nodeKeyOf(k.Public()))
		if err != nil || m == nil || m.ID != k.Public().Address() || !m.ActiveAt(genesisTime) {
			t.Fatalf("genesis member %s: %+v, %v", k.Public().Short(), m, err)
		}
	}
	if ps, err := ActiveProviders(v, genesisTime); err != nil || len(ps) != 2 {
		t.Fatalf("active providers at genesis: %v, %v", ps, err)
	}
	if ps, _ := ActiveProviders(v, genesisTime+1); len(ps) != 1 {
		t.Fatalf("a genesis licence lapses like any other: %v", ps)
	}
	for name, tc := range map[string]struct {
		members []chain.GenesisMember
		want    string
	}{
		"expired at genesis": {[]chain.GenesisMember{{Licence: licence(doc, lic, genesisTime), EncryptionKey: encKey(doc)}}, "expired"},
		"issuer not named":   {[]chain.GenesisMember{{Licence: licence(doc, rogue, genesisTime+1), EncryptionKey: encKey(doc)}}, "not a licensing authority"},
		"registered twice":   {[]chain.GenesisMember{good[0], good[0]}, "already registered"},
		"node key bound twice": {[]chain.GenesisMember{good[0], {Licence: func() chain.Licence {
			l := licence(nurse, lic, genesisTime+1)
			l.NodeKey = nodeKeyOf(doc.Public())
			l.Sign(lic, testChain)
			return l
		}(), EncryptionKey: encKey(nurse)}}, "already bound"},
		"forged licence": {[]chain.GenesisMember{{Licence: func() chain.Licence {
			l := licence(doc, lic, genesisTime+1)
			l.NotAfter++
			return l
		}(), EncryptionKey: encKey(doc)}}, "signature"},
	} {
		if _, err := New(testChain).Genesis(genesis(tc.members...)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}
