package state

import (
	"bytes"
	"testing"

	"github.com/medledger/medledger/chain"
)

func TestOverlaySnapshotRevert(t *testing.T) {
	base := newMemView()
	base.m["a"] = []byte("base-a")
	base.m["b"] = []byte("base-b")
	o := NewOverlay(base)
	o.Set([]byte("a"), []byte("a1"))
	snap := o.Snapshot()
	o.Set([]byte("a"), []byte("a2")) // overwrites a pending write: Revert must restore a1
	o.Delete([]byte("b"))
	o.Set([]byte("c"), []byte("c1"))
	if v, _ := o.Get([]byte("b")); v != nil {
		t.Fatal("deleted key still visible")
	}
	o.Revert(snap)
	for k, want := range map[string]string{"a": "a1", "b": "base-b", "c": ""} {
		v, err := o.Get([]byte(k))
		if err != nil || string(v) != want {
			t.Fatalf("%s = %q, want %q (%v)", k, v, want, err)
		}
	}
	cs := o.ChangeSet()
	if len(cs.Changes) != 1 || string(cs.Changes[0].Key) != "a" || cs.Validate() != nil {
		t.Fatalf("change set %+v", cs)
	}
	bad := ChangeSet{Changes: []Change{{Key: []byte("b")}, {Key: []byte("a")}}}
	if bad.Validate() == nil {
		t.Fatal("unsorted change set accepted")
	}
	if len(base.m) != 2 || !bytes.Equal(base.m["a"], []byte("base-a")) {
		t.Fatal("overlay wrote through to its base")
	}
}

func TestCheckHeaderAuthorities(t *testing.T) {
	n := newNet(t, 4)
	prop := n.proposeTx(n.auth[0], chain.AuthorityRemove, n.auth[3].Public())
	n.apply(prop, n.voteTx(n.auth[1], prop.Hash()), n.voteTx(n.auth[2], prop.Hash()))
	next, after := n.sets()
	h := n.header()
	h.AuthoritiesHash, h.NextAuthoritiesHash = next.Hash(), after.Hash()
	if err := CheckHeaderAuthorities(n.view, h); err != nil {
		t.Fatal(err)
	}
	if next.Hash() == after.Hash() {
		t.Fatal("test needs a pending change")
	}
	h.AuthoritiesHash, h.NextAuthoritiesHash = after.Hash(), next.Hash()
	if err := CheckHeaderAuthorities(n.view, h); err == nil {
		t.Fatal("swapped set hashes accepted")
	}
}
