package chain_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

func TestRoleText(t *testing.T) {
	for r := chain.RolePatient; r <= chain.RoleReviewBoard; r++ {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back chain.Role
		if err := json.Unmarshal(b, &back); err != nil || back != r {
			t.Fatalf("%s: %s -> %v %v", r, b, back, err)
		}
		// The canonical encoding is the number, not the name.
		if enc := chain.Encode(r); len(enc) != 1 || enc[0] != byte(r) {
			t.Fatalf("%s encodes as %x", r, enc)
		}
	}
	if b, _ := json.Marshal(chain.RoleResearchSponsor); string(b) != `"research-sponsor"` {
		t.Fatalf("JSON %s", b)
	}
	var r chain.Role
	if err := json.Unmarshal([]byte(`"authority"`), &r); err == nil {
		t.Fatal(`"authority" parsed as a role: it is not one`)
	}
	if _, err := json.Marshal(chain.Role(9)); err == nil {
		t.Fatal("unknown role marshalled")
	}
}

func TestLicenceVersionAndRole(t *testing.T) {
	l := testLicence(t, chainA)
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	v1 := l
	v1.Version = 1
	if err := v1.Validate(); !errors.Is(err, chain.ErrUnknownVersion) {
		t.Fatalf("version 1 licence: %v", err)
	}
	for name, edit := range map[string]func(*chain.Licence){
		"patient role": func(l *chain.Licence) { l.Role = chain.RolePatient },
		"no role":      func(l *chain.Licence) { l.Role = 0 },
		"no node key":  func(l *chain.Licence) { l.NodeKey = chain.PubKey{} },
	} {
		c := l
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Every field is signed, the role and the node key included.
	for name, edit := range map[string]func(*chain.Licence){
		"role":     func(l *chain.Licence) { l.Role = chain.RolePharmacy },
		"node key": func(l *chain.Licence) { l.NodeKey = testKey(t, 99).Public() },
	} {
		c := l
		edit(&c)
		if err := c.VerifySig(chainA); err == nil {
			t.Errorf("%s changed after signing: signature still verifies", name)
		}
	}
}

func TestGenesisIssuers(t *testing.T) {
	k1, k2 := testKey(t, 40).Public(), testKey(t, 41).Public()
	for _, tc := range []struct {
		name    string
		issuers []chain.Issuer
		want    string
	}{
		{"none", nil, ""},
		{"sorted", chain.SortIssuers([]chain.Issuer{{Role: chain.RoleReviewBoard, Key: k1}, {Role: chain.RolePayer, Key: k2}, {Role: chain.RolePayer, Key: k1}}), ""},
		{"patient issuer", []chain.Issuer{{Role: chain.RolePatient, Key: k1}}, "only attested roles"},
		{"provider issuer", []chain.Issuer{{Role: chain.RoleProvider, Key: k1}}, "licensing_authorities"},
		{"unknown role", []chain.Issuer{{Role: 42, Key: k1}}, "only attested roles"},
		{"twice", []chain.Issuer{{Role: chain.RolePayer, Key: k1}, {Role: chain.RolePayer, Key: k1}}, "not sorted"},
		{"unsorted", []chain.Issuer{{Role: chain.RoleReviewBoard, Key: k1}, {Role: chain.RolePayer, Key: k1}}, "not sorted"},
		{"no key", []chain.Issuer{{Role: chain.RolePayer}}, "without a key"},
	} {
		g := testGenesis(t)
		g.Issuers = tc.issuers
		err := g.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
