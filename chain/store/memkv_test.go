package store

import (
	"fmt"
	"testing"
)

// TestMemKVUnsyncedIsBounded: under SyncNone memKV remembers a bounded amount of unsynced writes;
// the oldest become durable, as dirty pages do when the operating system writes them back.
func TestMemKVUnsyncedIsBounded(t *testing.T) {
	m := newMemKV(SyncNone)
	for i := range maxUnsynced + 100 {
		if err := m.Set(fmt.Appendf(nil, "k%06d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.unsynced) != maxUnsynced {
		t.Fatalf("%d unsynced writes remembered, want %d", len(m.unsynced), maxUnsynced)
	}
	lost := m.powerLossClone(nil)
	if v, _ := lost.Get([]byte("k000099")); v == nil {
		t.Fatal("the oldest writes did not become durable")
	}
	if v, _ := lost.Get([]byte("k000100")); v != nil {
		t.Fatal("a recent unsynced write survived the power loss")
	}

	m = newMemKV(SyncNone)
	big := make([]byte, 1<<20)
	for i := range 100 {
		if err := m.Set(fmt.Appendf(nil, "b%03d", i), big); err != nil {
			t.Fatal(err)
		}
	}
	if m.unsyncedBytes > maxUnsyncedBytes {
		t.Fatalf("%d unsynced bytes remembered, at most %d", m.unsyncedBytes, maxUnsyncedBytes)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(m.unsynced) != 0 || m.unsyncedBytes != 0 {
		t.Fatal("Sync left unsynced writes")
	}
}
