package replica

import (
	"errors"
	"fmt"
	"testing"

	"github.com/medledger/medledger/chain"
)

var registered = Member{Registered: true}

func admit(m *Mempool, tx *chain.Tx, who Member, height uint64) (chain.Hash, error) {
	return m.Add(tx, Admission{Member: who, Height: height})
}

func TestMempoolAdmission(t *testing.T) {
	m := NewMempool(chainID, MempoolConfig{MaxTxs: 100, NonceWindow: 4, MaxRegistrations: 2})
	a := key(t, 100)
	tx1 := patientTx(t, a, 1)
	if _, err := admit(m, tx1, registered, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tx   *chain.Tx
		who  Member
		want error
	}{
		{"same transaction again", tx1, registered, ErrDuplicateTx},
		{"used nonce", patientTx(t, key(t, 103), 1), Member{Registered: true, Nonce: 1}, ErrStaleNonce},
		{"another transaction with a pending nonce", regTx(t, a, 1, len([]byte{9})), registered, ErrDuplicateTx},
		{"nonce beyond the window", patientTx(t, a, 6), registered, ErrNonceGap},
		{"unregistered signer, not a registration", chain.NewTx(key(t, 104), chainID, chain.TxConsentRevoke, 1, &chain.ConsentRevoke{Consent: chain.Hash{1}}), Member{}, ErrNotMember},
		{"unregistered signer, registration with nonce 2", patientTx(t, key(t, 105), 2), Member{}, ErrNotMember},
	}
	for _, c := range cases {
		if _, err := admit(m, c.tx, c.who, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	bad := patientTx(t, a, 2)
	bad.Sig[0] ^= 1
	if _, err := admit(m, bad, registered, 0); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	// The window also caps the signer's pending transactions.
	for n := uint64(2); n <= 4; n++ {
		if _, err := admit(m, patientTx(t, a, n), registered, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.NextNonce(a.Public(), 0); got != 5 {
		t.Fatalf("next nonce %d, want 5", got)
	}
	// Registrations by unknown signers share a small quota.
	for i := range 2 {
		if _, err := admit(m, patientTx(t, key(t, byte(110+i)), 1), Member{}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admit(m, patientTx(t, key(t, 120), 1), Member{}, 0); !errors.Is(err, ErrRegistrationsFull) {
		t.Fatalf("registration beyond quota: %v", err)
	}
	if !m.Verified(tx1.Hash()) || m.Len() != 6 {
		t.Fatalf("%d pending", m.Len())
	}
}

// A transaction behind a nonce gap is kept (within the window) but never offered to a block and
// never makes the chain busy; it expires.
func TestMempoolGapNoncesNeverExecutableAndExpire(t *testing.T) {
	m := NewMempool(chainID, MempoolConfig{TTLBlocks: 10})
	a := key(t, 1)
	for n := uint64(3); n <= 5; n++ {
		if _, err := admit(m, patientTx(t, a, n), Member{Registered: true, Nonce: 1}, 7); err != nil {
			t.Fatal(err)
		}
	}
	if m.Executable() || len(m.Pending(100)) != 0 {
		t.Fatal("transactions behind a gap count as executable")
	}
	nonce := func(chain.PubKey) (uint64, error) { return 1, nil }
	if d := m.Update(Commit{Height: 16, Nonce: nonce}); len(d) != 0 {
		t.Fatalf("dropped %d before their time", len(d))
	}
	d := m.Update(Commit{Height: 17, Nonce: nonce})
	if len(d) != 3 || m.Len() != 0 {
		t.Fatalf("after TTL: dropped %d, %d left", len(d), m.Len())
	}
	// Filling the gap makes the run executable, in nonce order.
	for _, n := range []uint64{3, 2} {
		if _, err := admit(m, patientTx(t, a, n), Member{Registered: true, Nonce: 1}, 20); err != nil {
			t.Fatal(err)
		}
	}
	got := m.Pending(10)
	if !m.Executable() || len(got) != 2 || got[0].Nonce != 2 || got[1].Nonce != 3 {
		t.Fatalf("pending %v", got)
	}
}

// After a commit the mempool drops what the block used, re-checks the new heads, and drops a
// head that can no longer execute together with the signer's later nonces, so the signer can
// use the nonce again.
func TestMempoolUpdateRechecksAndFreesTheNonce(t *testing.T) {
	m := NewMempool(chainID, MempoolConfig{})
	a, b := key(t, 1), key(t, 2)
	txA1, txA2, txA3 := patientTx(t, a, 1), patientTx(t, a, 2), patientTx(t, a, 3)
	txB1, txB2 := patientTx(t, b, 1), patientTx(t, b, 2)
	for _, tx := range []*chain.Tx{txA1, txA2, txA3, txB1, txB2} {
		if _, err := admit(m, tx, registered, 0); err != nil {
			t.Fatal(err)
		}
	}
	refuse := txA2.Hash()
	nonces := map[chain.PubKey]uint64{a.Public(): 1}
	d := m.Update(Commit{Height: 1, Txs: []*chain.Tx{txA1},
		Nonce: func(k chain.PubKey) (uint64, error) { return nonces[k], nil },
		Check: func(tx *chain.Tx) error {
			if tx.Hash() == refuse {
				return fmt.Errorf("%w: no longer valid", ErrRefusedByState)
			}
			return nil
		}})
	if len(d) != 2 || d[0].Hash != txA2.Hash() || d[1].Hash != txA3.Hash() {
		t.Fatalf("dropped %+v", d)
	}
	if got := m.NextNonce(a.Public(), 1); got != 2 {
		t.Fatalf("signer's next nonce %d, want 2 (reused)", got)
	}
	if m.Len() != 2 || !m.Executable() {
		t.Fatalf("%d left", m.Len())
	}
	// A block that used b's nonce 1 with another transaction: b's pending nonce 1 is stale.
	other := regTx(t, b, 1, len([]byte{7}))
	nonces[b.Public()] = 1
	d = m.Update(Commit{Height: 2, Txs: []*chain.Tx{other}, Nonce: func(k chain.PubKey) (uint64, error) { return nonces[k], nil }})
	if len(d) != 1 || d[0].Hash != txB1.Hash() || !errors.Is(d[0].Reason, ErrStaleNonce) {
		t.Fatalf("dropped %+v", d)
	}
	if got := m.Pending(10); len(got) != 1 || got[0] != txB2 {
		t.Fatalf("pending %v", got)
	}
}

// Bounds: per-signer bytes, and the pool's total.
func TestMempoolBounds(t *testing.T) {
	tx := patientTx(t, key(t, 1), 1)
	size := len(tx.Encode())
	m := NewMempool(chainID, MempoolConfig{MaxBytes: 3*size + size/2, MaxSignerBytes: 2*size + 1})
	a := key(t, 1)
	for n := uint64(1); n <= 2; n++ {
		if _, err := admit(m, patientTx(t, a, n), registered, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admit(m, patientTx(t, a, 3), registered, 0); !errors.Is(err, ErrSignerFull) {
		t.Fatalf("signer bytes: %v", err)
	}
	if _, err := admit(m, patientTx(t, key(t, 2), 1), registered, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := admit(m, patientTx(t, key(t, 3), 1), registered, 0); !errors.Is(err, ErrMempoolFull) {
		t.Fatalf("total bytes: %v", err)
	}
}

// Evidence carries no nonce and is pending once per offence, whoever reports it; the block that
// punishes the offence takes every report of it out of the pool, and nobody's nonce moves.
func TestMempoolEvidenceOncePerOffence(t *testing.T) {
	offender, a, b := key(t, 1), key(t, 2), key(t, 3)
	v1 := chain.Vote{Type: chain.Prevote, Height: 3, BlockHash: chain.Hash{1}}
	v2 := chain.Vote{Type: chain.Prevote, Height: 3, BlockHash: chain.Hash{2}}
	v1.Sign(offender, chainID)
	v2.Sign(offender, chainID)
	ev := chain.NewEvidence(v1, v2)
	byA := chain.NewTx(a, chainID, chain.TxEvidence, 0, ev)
	byB := chain.NewTx(b, chainID, chain.TxEvidence, 0, ev)
	m := NewMempool(chainID, MempoolConfig{})
	authority := Member{Registered: true, Certifying: true}
	if _, err := admit(m, byA, Member{Registered: true}, 0); !errors.Is(err, ErrNotMember) {
		t.Fatalf("evidence by a non-authority: %v", err)
	}
	if _, err := admit(m, byA, authority, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := admit(m, byB, authority, 0); !errors.Is(err, ErrDuplicateTx) {
		t.Fatalf("second report of one offence: %v", err)
	}
	if !m.Executable() || m.NextNonce(a.Public(), 4) != 5 {
		t.Fatal("evidence must be executable and leave the reporter's nonces alone")
	}
	// Another node's report of the same offence is what the block carried.
	d := m.Update(Commit{Height: 1, Txs: []*chain.Tx{byB}, Nonce: func(chain.PubKey) (uint64, error) { return 0, nil }})
	if len(d) != 1 || d[0].Hash != byA.Hash() || m.Len() != 0 {
		t.Fatalf("dropped %+v, %d left", d, m.Len())
	}
}
