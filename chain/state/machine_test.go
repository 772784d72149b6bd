package state

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

func TestGenesis(t *testing.T) {
	n := newNet(t, 4)
	next, after := n.sets()
	if next.Size() != 4 || !setsEqual(next, after) {
		t.Fatalf("genesis sets: next %d members, after equal %v", next.Size(), setsEqual(next, after))
	}
	lic, err := LicensingAuthorities(n.view)
	if err != nil || !lic.Contains(n.lic.Public()) || lic.Size() != 1 {
		t.Fatalf("licensing authorities %v, %v", lic, err)
	}
	h, tm, err := Tip(n.view)
	if err != nil || h != 0 || tm != genesisTime {
		t.Fatalf("tip %d %d %v", h, tm, err)
	}
	p, err := Params(n.view)
	if want := chain.DefaultParams(); err != nil || p.EnrolmentsPerWindow != 1<<30 || p.MaxBlockTxs != want.MaxBlockTxs {
		t.Fatalf("params %+v %v", p, err)
	}

	g := &chain.Genesis{Version: chain.GenesisVersion, ChainID: "other", TimeMs: 1, Authorities: []chain.Authority{{Key: n.auth[0].Public()}}, Params: chain.DefaultParams()}
	if _, err := New(testChain).Genesis(g); !errors.Is(err, ErrWrongChain) {
		t.Errorf("genesis for another chain: %v", err)
	}
	g.ChainID = testChain
	g.Authorities = nil
	if _, err := New(testChain).Genesis(g); err == nil {
		t.Errorf("genesis without authorities accepted")
	}
	if _, err := New(testChain).Genesis(nil); err == nil {
		t.Errorf("nil genesis accepted")
	}
	// Without licensing authorities the set is empty and no provider can register.
	g.Authorities = []chain.Authority{{Key: n.auth[0].Public()}}
	cs, err := New(testChain).Genesis(g)
	if err != nil {
		t.Fatal(err)
	}
	v := newMemView()
	v.commit(cs)
	if lic, err := LicensingAuthorities(v); err != nil || lic.Size() != 0 {
		t.Fatalf("empty licensing set: %v %v", lic, err)
	}
}

// TestTxRules covers the rules every transaction obeys, whatever its kind.
func TestTxRules(t *testing.T) {
	alice := testKey(t, "alice")
	other := chain.NewTx(alice, "other-chain", chain.TxRegisterPatient, 1, enrolment(t, alice, []byte{1}))
	badSig := chain.NewTx(alice, testChain, chain.TxRegisterPatient, 1, enrolment(t, alice, []byte{1}))
	badSig.Sig[0] ^= 1
	// A transaction signed for another chain, relabelled as ours: the signature names the chain.
	relabelled := chain.NewTx(alice, "other-chain", chain.TxRegisterPatient, 1, enrolment(t, alice, []byte{1}))
	relabelled.ChainID = testChain
	tests := []struct {
		name string
		tx   func(n *net) *chain.Tx
		want string
	}{
		{"ok", func(n *net) *chain.Tx { return n.patientTx(alice) }, ""},
		{"other chain", func(*net) *chain.Tx { return other }, "wrong chain"},
		{"signed for other chain", func(*net) *chain.Tx { return relabelled }, "invalid signature"},
		{"bad signature", func(*net) *chain.Tx { return badSig }, "invalid signature"},
		{"nonce zero", func(*net) *chain.Tx {
			return chain.NewTx(alice, testChain, chain.TxRegisterPatient, 0, enrolment(t, alice, []byte{1}))
		}, "nonce must start at 1"},
		{"nonce gap", func(*net) *chain.Tx {
			return chain.NewTx(alice, testChain, chain.TxRegisterPatient, 2, enrolment(t, alice, []byte{1}))
		}, "wrong nonce"},
		{"unknown kind", func(*net) *chain.Tx {
			return chain.NewTx(alice, testChain, 99, 1, enrolment(t, alice, []byte{1}))
		}, "unknown transaction kind"},
		{"payload of another kind", func(*net) *chain.Tx {
			return chain.NewTx(alice, testChain, chain.TxRegisterPatient, 1, []any{1, "two", 3})
		}, "decode"},
		{"bad version", func(*net) *chain.Tx {
			tx := &chain.Tx{Version: 9, ChainID: testChain, Kind: chain.TxRegisterPatient, Signer: alice.Public(), Nonce: 1, Payload: chain.Encode(enrolment(t, alice, []byte{1}))}
			tx.Sig = alice.Sign(chain.DomainTx, testChain, tx.SignedBytes())
			return tx
		}, "unknown version"},
		{"empty encryption key", func(*net) *chain.Tx {
			return chain.NewTx(alice, testChain, chain.TxRegisterPatient, 1, &chain.RegisterPatient{Enroller: chain.Address{1}})
		}, "encryption key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNet(t, 1)
			tx := tc.tx(n)
			errCheck := n.m.CheckTx(n.view, tx, n.time, nil)
			before := n.view.clone()
			_, errApply := n.try(tx)
			for _, err := range []error{errCheck, errApply} {
				if tc.want == "" && err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
			}
			if tc.want != "" && !mapsEqual(before.m, n.view.m) {
				t.Fatalf("failed block changed state")
			}
		})
	}
}

func mapsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func TestReplayRejected(t *testing.T) {
	n := newNet(t, 1)
	alice := testKey(t, "alice")
	tx := n.patientTx(alice)
	n.apply(tx)
	if nonce, err := Nonce(n.view, alice.Public().Address()); err != nil || nonce != 1 {
		t.Fatalf("nonce %d %v", nonce, err)
	}
	_, err := n.try(tx)
	if !errors.Is(err, ErrNonce) {
		t.Fatalf("replay: %v", err)
	}
	if err := n.m.CheckTx(n.view, tx, n.time, nil); !errors.Is(err, ErrNonce) {
		t.Fatalf("replay in CheckTx: %v", err)
	}
	// The same transaction twice in one block: the second is the replay.
	n2 := newNet(t, 1)
	tx2 := n2.patientTx(alice)
	_, err = n2.try(tx2, tx2)
	var te *TxError
	if !errors.As(err, &te) || te.Index != 1 || !errors.Is(err, ErrNonce) {
		t.Fatalf("in-block replay: %v", err)
	}
}

func TestRegisterPatient(t *testing.T) {
	n := newNet(t, 1)
	alice := testKey(t, "alice")
	out := n.apply(n.patientTx(alice))
	if len(out.Results) != 1 || out.Results[0].Kind != chain.TxRegisterPatient || out.Results[0].Events[0].Type != EventPatientRegistered {
		t.Fatalf("results %+v", out.Results)
	}
	p, err := Patient(n.view, alice.Public().Address())
	if err != nil || p == nil || p.Key != alice.Public() || p.RegisteredHeight != 1 || !bytes.Equal(p.EncryptionKey, encKey(alice)) {
		t.Fatalf("patient %+v %v", p, err)
	}
	if _, err := n.try(n.patientTx(alice)); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second registration: %v", err)
	}
	if p, err := Patient(n.view, testKey(t, "bob").Public().Address()); p != nil || err != nil {
		t.Fatalf("absent patient %v %v", p, err)
	}
	// A provider may also be a patient: the two registrations are independent.
	if p, err := Provider(n.view, alice.Public().Address()); p != nil || err != nil {
		t.Fatalf("absent provider %v %v", p, err)
	}
}

func TestRegisterProvider(t *testing.T) {
	doc := testKey(t, "doctor")
	stranger := testKey(t, "stranger")
	tests := []struct {
		name string
		lic  func(n *net) chain.Licence
		want string
	}{
		{"ok", func(n *net) chain.Licence { return n.licence(doc.Public(), n.lic, n.time+10_000) }, ""},
		{"subject is not signer", func(n *net) chain.Licence { return n.licence(stranger.Public(), n.lic, n.time+10_000) }, "not the signer"},
		{"issuer not licensing", func(n *net) chain.Licence { return n.licence(doc.Public(), stranger, n.time+10_000) }, "not a licensing authority"},
		{"expires at block time", func(n *net) chain.Licence { return n.licence(doc.Public(), n.lic, n.time+1000) }, "expired"},
		{"expired", func(n *net) chain.Licence { return n.licence(doc.Public(), n.lic, 5) }, "expired"},
		{"forged signature", func(n *net) chain.Licence {
			l := n.licence(doc.Public(), n.lic, n.time+10_000)
			l.NotAfter++ // extended after signing
			return l
		}, "invalid signature"},
		{"signed for other chain", func(n *net) chain.Licence {
			l := chain.Licence{Role: chain.RoleProvider, Subject: doc.Public(), NodeKey: nodeKeyOf(doc.Public()), Number: "MD-1", NotAfter: n.time + 10_000}
			l.Sign(n.lic, "other-chain")
			return l
		}, "invalid signature"},
		{"empty number", func(n *net) chain.Licence {
			l := chain.Licence{Role: chain.RoleProvider, Subject: doc.Public(), NodeKey: nodeKeyOf(doc.Public()), NotAfter: n.time + 10_000}
			l.Sign(n.lic, testChain)
			return l
		}, "licence number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNet(t, 1)
			before := n.view.clone()
			_, err := n.try(n.providerTx(doc, tc.lic(n)))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				p, err := Provider(n.view, doc.Public().Address())
				if err != nil || p == nil || p.Key != doc.Public() || p.Licence.Number != "MD-1234" || p.RegisteredHeight != 1 {
					t.Fatalf("provider %+v %v", p, err)
				}
				_, err = n.try(n.providerTx(doc, tc.lic(n)))
				if err == nil || !strings.Contains(err.Error(), "already registered") {
					t.Fatalf("second registration: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if !mapsEqual(before.m, n.view.m) {
				t.Fatal("failed block changed state")
			}
		})
	}
}

func TestApplyBlockErrorNamesTx(t *testing.T) {
	n := newNet(t, 1)
	a, b, c := testKey(t, "a"), testKey(t, "b"), testKey(t, "c")
	bad := n.patientTx(b)
	bad.Sig[5] ^= 0x40
	txs := []*chain.Tx{n.patientTx(a), bad, n.patientTx(c)}
	_, err := n.m.ApplyBlock(n.view, n.header(), txs, nil)
	var te *TxError
	if !errors.As(err, &te) || te.Index != 1 || te.Hash != bad.Hash() || te.Kind != chain.TxRegisterPatient || !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("error %v", err)
	}
	if !strings.HasPrefix(err.Error(), "state: transaction 1 ") || strings.Count(err.Error(), "state:") != 1 {
		t.Errorf("message %q", err)
	}
	// A nil transaction is named too, and nothing panics.
	_, err = n.m.ApplyBlock(n.view, n.header(), []*chain.Tx{txs[0], nil}, nil)
	if !errors.As(err, &te) || te.Index != 1 {
		t.Fatalf("nil tx: %v", err)
	}
}

func TestHeaderChecks(t *testing.T) {
	n := newNet(t, 1)
	cases := map[string]func(h *chain.Header) *chain.Header{
		"nil header":     func(*chain.Header) *chain.Header { return nil },
		"other chain":    func(h *chain.Header) *chain.Header { h.ChainID = "x"; return h },
		"skipped height": func(h *chain.Header) *chain.Header { h.Height++; return h },
		"same height":    func(h *chain.Header) *chain.Header { h.Height--; return h },
		"time not after": func(h *chain.Header) *chain.Header { h.Time = genesisTime; return h },
	}
	for name, mod := range cases {
		if _, err := n.m.ApplyBlock(n.view, mod(n.header()), nil, nil); err == nil || !strings.HasPrefix(err.Error(), "state: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := n.m.ApplyBlock(newMemView(), n.header(), nil, nil); err == nil {
		t.Error("uninitialised state accepted")
	}
	if _, err := n.m.ApplyBlock(failView{}, n.header(), nil, nil); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("storage error: %v", err)
	}
	if _, err := New("other").ApplyBlock(n.view, &chain.Header{ChainID: "other", Height: 1, Time: genesisTime + 1}, nil, nil); !errors.Is(err, ErrWrongChain) {
		t.Errorf("state of another chain: %v", err)
	}
	// An empty block advances the tip and nothing else.
	out := n.apply()
	if len(out.Changes.Changes) != 1 || string(out.Changes.Changes[0].Key) != string(keyTip) || out.NextAuthorities != nil {
		t.Fatalf("empty block changes %+v", out.Changes)
	}
}

func TestBlockLimits(t *testing.T) {
	n := newNet(t, 1)
	p := chain.DefaultParams()
	p.MaxBlockTxs = 2
	n.view.m[string(keyParams)] = chain.Encode(&paramsRecord{Version: RecordVersion, ChainID: testChain, Params: p})
	k := testKey(t, "k")
	txs := []*chain.Tx{n.patientTx(testKey(t, "1")), n.patientTx(testKey(t, "2")), n.patientTx(k)}
	if _, err := n.m.ApplyBlock(n.view, n.header(), txs, nil); !errors.Is(err, ErrBlockFull) {
		t.Fatalf("over count: %v", err)
	}
	b := n.m.NewBuilder(n.view, n.header(), nil)
	for i, tx := range txs {
		err := b.Add(tx)
		if (i < 2) != (err == nil) || (i == 2 && !errors.Is(err, ErrBlockFull)) {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	p = chain.DefaultParams()
	p.MaxBlockBytes = 1024 + chain.MaxHeaderBytes + 64 + 100 // room for one small tx
	n.view.m[string(keyParams)] = chain.Encode(&paramsRecord{Version: RecordVersion, ChainID: testChain, Params: p})
	_, err := n.m.ApplyBlock(n.view, n.header(), txs[:2], nil)
	if err != nil {
		t.Fatalf("two small txs: %v", err)
	}
	big := chain.NewTx(k, testChain, chain.TxRegisterPatient, 1, enrolment(t, k, make([]byte, 2000)))
	if _, err := n.m.ApplyBlock(n.view, n.header(), []*chain.Tx{big}, nil); !errors.Is(err, ErrBlockFull) {
		t.Fatalf("over bytes: %v", err)
	}
	if err := n.m.NewBuilder(n.view, n.header(), nil).Add(big); !errors.Is(err, ErrBlockFull) {
		t.Fatalf("builder over bytes: %v", err)
	}
}

func TestCheckTx(t *testing.T) {
	n := newNet(t, 1)
	alice := testKey(t, "alice")
	tx1 := n.patientTx(alice)
	if err := n.m.CheckTx(n.view, tx1, n.time, nil); err != nil {
		t.Fatal(err)
	}
	// CheckTx writes nothing: the same tx passes again.
	if err := n.m.CheckTx(n.view, tx1, n.time, nil); err != nil {
		t.Fatal(err)
	}
	// A nonce ahead of state is ErrNonce, which a mempool can tell apart from bad transactions.
	tx2 := chain.NewTx(alice, testChain, chain.TxRegisterPatient, 2, enrolment(t, alice, []byte{1}))
	if err := n.m.CheckTx(n.view, tx2, n.time, nil); !errors.Is(err, ErrNonce) {
		t.Fatalf("nonce ahead: %v", err)
	}
	// VerifiedSet is trusted: a caller that vouches for a signature skips the check.
	forged := chain.NewTx(testKey(t, "bob"), testChain, chain.TxRegisterPatient, 1, enrolment(t, testKey(t, "bob"), []byte{1}))
	forged.Sig[0] ^= 1
	if err := n.m.CheckTx(n.view, forged, n.time, nil); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("forged: %v", err)
	}
	if err := n.m.CheckTx(n.view, forged, n.time, verifyAll{}); err != nil {
		t.Fatalf("vouched-for: %v", err)
	}
	if err := n.m.CheckTx(n.view, nil, n.time, nil); err == nil {
		t.Fatal("nil tx accepted")
	}
	if err := n.m.CheckTx(failView{}, tx1, n.time, nil); err == nil {
		t.Fatal("storage error hidden")
	}
	// blockTime decides licence expiry in the mempool.
	doc := testKey(t, "doc")
	ptx := n.providerTx(doc, n.licence(doc.Public(), n.lic, n.time+500))
	if err := n.m.CheckTx(n.view, ptx, n.time, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.m.CheckTx(n.view, ptx, n.time+500, nil); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired licence: %v", err)
	}
}

func TestFailedTxLeavesNoChange(t *testing.T) {
	n := newNet(t, 4)
	alice := testKey(t, "alice")
	// Each of these fails after the state machine has started work on it (nonce checked,
	// payload decoded): a proposal by a non-authority, a duplicate patient, a bad licence.
	bad := []*chain.Tx{}
	doc := testKey(t, "doc")
	empty, err := n.m.NewBuilder(n.view, n.header(), nil).Finish()
	if err != nil {
		t.Fatal(err)
	}
	b := n.m.NewBuilder(n.view, n.header(), nil)
	if err := b.Add(n.patientTx(alice)); err != nil {
		t.Fatal(err)
	}
	ref, err := n.m.ApplyBlock(n.view, n.header(), b.Txs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bad = append(bad,
		chain.NewTx(alice, testChain, chain.TxRegisterPatient, 2, enrolment(t, alice, []byte{1})),
		n.proposeTx(alice, chain.AuthorityAdd, alice.Public()),
		n.providerTx(doc, n.licence(doc.Public(), doc, n.time+1e6)),
	)
	for i, tx := range bad {
		if err := b.Add(tx); err == nil {
			t.Fatalf("bad tx %d accepted", i)
		}
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeChanges(out.Changes), encodeChanges(ref.Changes)) {
		t.Fatal("failed transactions left changes")
	}
	if bytes.Equal(encodeChanges(out.Changes), encodeChanges(empty.Changes)) {
		t.Fatal("test is vacuous")
	}
}

func TestApplyBlockDeterministic(t *testing.T) {
	n := newNet(t, 4)
	var txs []*chain.Tx
	for i := range 50 {
		k := testKey(t, "p"+string(rune('A'+i)))
		txs = append(txs, n.patientTx(k))
	}
	txs = append(txs, n.proposeTx(n.auth[0], chain.AuthorityAdd, testKey(t, "new").Public()))
	h := n.header()
	first, err := n.m.ApplyBlock(n.view, h, txs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, verified := range []VerifiedSet{nil, verifyAll{}} {
		for range 3 {
			again, err := New(testChain).ApplyBlock(n.view.clone(), h, txs, verified)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(encodeChanges(first.Changes), encodeChanges(again.Changes)) {
				t.Fatal("same block, different change set")
			}
		}
	}
	// Builder and ApplyBlock agree.
	b := n.m.NewBuilder(n.view, h, nil)
	for _, tx := range txs {
		if err := b.Add(tx); err != nil {
			t.Fatal(err)
		}
	}
	built, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeChanges(first.Changes), encodeChanges(built.Changes)) {
		t.Fatal("builder and ApplyBlock disagree")
	}
	if _, err := b.Finish(); err == nil {
		t.Fatal("second Finish accepted")
	}
	if err := b.Add(txs[0]); err == nil {
		t.Fatal("Add after Finish accepted")
	}
}

func TestApplyBlockOrderSensitive(t *testing.T) {
	n := newNet(t, 1)
	alice := testKey(t, "alice")
	t1 := n.patientTx(alice)
	t2 := chain.NewTx(alice, testChain, chain.TxRotateKeys, n.nonce(alice), &chain.RotateKeys{EncryptionKey: []byte{2}})
	if _, err := n.m.ApplyBlock(n.view, n.header(), []*chain.Tx{t1, t2}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := n.m.ApplyBlock(n.view, n.header(), []*chain.Tx{t2, t1}, nil)
	var te *TxError
	if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, ErrNonce) {
		t.Fatalf("reordered: %v", err)
	}
	// Two different senders in either order: both valid, same state (order only matters where
	// transactions interact).
	n2 := newNet(t, 1)
	a, b := n2.patientTx(testKey(t, "a")), n2.patientTx(testKey(t, "b"))
	o1, err1 := n2.m.ApplyBlock(n2.view, n2.header(), []*chain.Tx{a, b}, nil)
	o2, err2 := n2.m.ApplyBlock(n2.view, n2.header(), []*chain.Tx{b, a}, nil)
	if err1 != nil || err2 != nil || !bytes.Equal(encodeChanges(o1.Changes), encodeChanges(o2.Changes)) {
		t.Fatalf("independent txs: %v %v", err1, err2)
	}
	if o1.Results[0].Hash != a.Hash() || o2.Results[0].Hash != b.Hash() {
		t.Fatal("results not in block order")
	}
}

func TestBuilderSkipsBadTxs(t *testing.T) {
	n := newNet(t, 1)
	var good, all []*chain.Tx
	for i := range 10 {
		k := testKey(t, "b"+string(rune('0'+i)))
		tx := n.patientTx(k)
		switch i % 3 {
		case 0:
			good = append(good, tx)
		case 1:
			tx.Sig[1] ^= 1
		case 2:
			good = append(good, tx)
			all = append(all, tx) // duplicate: the copy is a replay
		}
		all = append(all, tx)
	}
	b := n.m.NewBuilder(n.view, n.header(), nil)
	rejected := 0
	for _, tx := range all {
		if err := b.Add(tx); err != nil {
			rejected++
		}
	}
	if b.Len() != len(good) || rejected != len(all)-len(good) {
		t.Fatalf("kept %d of %d, rejected %d", b.Len(), len(all), rejected)
	}
	for i, tx := range b.Txs() {
		if tx != good[i] {
			t.Fatalf("tx %d out of order", i)
		}
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	again, err := n.m.ApplyBlock(n.view, n.header(), good, nil)
	if err != nil || !bytes.Equal(encodeChanges(out.Changes), encodeChanges(again.Changes)) || len(out.Results) != len(good) {
		t.Fatalf("built block does not apply: %v", err)
	}
	// A builder on a bad header reports it everywhere.
	h := n.header()
	h.Height = 7
	bb := n.m.NewBuilder(n.view, h, nil)
	if bb.Add(good[0]) == nil {
		t.Fatal("builder on bad header accepted a tx")
	}
	if _, err := bb.Finish(); err == nil {
		t.Fatal("builder on bad header finished")
	}
}
