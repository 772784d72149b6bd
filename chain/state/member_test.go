package state

import (
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// TestMember: who may submit what, and the last nonce, as a mempool sees it.
func TestMember(t *testing.T) {
	n := newNet(t, 1)
	alice, doc, outsider := testKey(t, "alice"), testKey(t, "doc"), testKey(t, "outsider")
	newcomer := testKey(t, "newcomer")
	n.apply(
		n.evidenceTx(n.auth[0], n.equivocation(n.auth[0], 1, 0)), // uses no nonce; the last authority stays
		n.patientTx(alice),
		n.providerTx(doc, n.licence(doc.Public(), n.lic, genesisTime+1e9)),
		n.proposeTx(n.auth[0], chain.AuthorityAdd, newcomer.Public()), // in set(3), not set(2)
	)
	for _, tc := range []struct {
		name string
		key  chain.PrivKey
		want MemberInfo
	}{
		{"patient", alice, MemberInfo{Registered: true, Patient: true, Nonce: 1}},
		{"provider", doc, MemberInfo{Registered: true, Provider: true, Nonce: 1}},
		{"authority", n.auth[0], MemberInfo{Registered: true, Authority: true, Certifying: true, Nonce: 1}},
		{"scheduled authority", newcomer, MemberInfo{Registered: true, Authority: true}},
		{"outsider", outsider, MemberInfo{}},
	} {
		got, err := Member(n.view, tc.key.Public())
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v", tc.name, got, err, tc.want)
		}
	}
	n.apply()
	if got, _ := Member(n.view, newcomer.Public()); !got.Certifying || !got.Registered {
		t.Errorf("newcomer not certifying at height 3: %+v", got)
	}
	if _, err := Member(failView{}, alice.Public()); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("storage error: %v", err)
	}
}
