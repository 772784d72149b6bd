package state

import (
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// TestSigner: who may submit what, and the last nonce, as a mempool sees it.
func TestSigner(t *testing.T) {
	n := newNet(t, 1)
	alice, doc, outsider := testKey(t, "alice"), testKey(t, "doc"), testKey(t, "outsider")
	newcomer, pharmacyBoard := testKey(t, "newcomer"), testKey(t, "pharmacy board")
	n.apply(
		n.evidenceTx(n.auth[0], n.equivocation(n.auth[0], 1, 0)), // uses no nonce; the last authority stays
		n.patientTx(alice),
		n.providerTx(doc, n.licence(doc.Public(), n.lic, genesisTime+1e9)),
		n.proposeTx(n.auth[0], chain.AuthorityAdd, newcomer.Public()), // in set(3), not set(2)
	)
	id := func(k chain.PrivKey) chain.Address { return k.Public().Address() }
	for _, tc := range []struct {
		name string
		key  chain.PrivKey
		want SignerInfo
	}{
		{"patient", alice, SignerInfo{Registered: true, Patient: true, Member: id(alice), Nonce: 1}},
		{"provider", doc, SignerInfo{Registered: true, Provider: true, Member: id(doc), Nonce: 1}},
		{"authority", n.auth[0], SignerInfo{Registered: true, Authority: true, Certifying: true, Member: id(n.auth[0]), Nonce: 1}},
		{"scheduled authority", newcomer, SignerInfo{Registered: true, Authority: true, Member: id(newcomer)}},
		{"licensing authority", n.lic, SignerInfo{Registered: true, Issuer: true, Member: id(n.lic)}},
		{"pharmacy board", pharmacyBoard, SignerInfo{Registered: true, Issuer: true, Member: id(pharmacyBoard)}},
		{"outsider", outsider, SignerInfo{Member: id(outsider)}},
	} {
		got, err := Signer(n.view, tc.key.Public())
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v", tc.name, got, err, tc.want)
		}
	}
	n.apply()
	if got, _ := Signer(n.view, newcomer.Public()); !got.Certifying || !got.Registered {
		t.Errorf("newcomer not certifying at height 3: %+v", got)
	}
	if _, err := Signer(failView{}, alice.Public()); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("storage error: %v", err)
	}
}
