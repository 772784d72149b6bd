package state

import (
	"bytes"
	"errors"
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medledger/medledger/chain"
	"pgregory.net/rapid"
)

var seedFlag = flag.Uint64("state.seed", 0, "seed for TestRandomBlocks (0: a new one, printed)")

// TestRandomBlocks drives random mixes of valid and invalid transactions through the Builder and
// checks that: the built block applies with ApplyBlock to the same bytes; each rejected
// transaction also makes ApplyBlock fail at its position; execution is deterministic; and nonces
// and registrations match a naive model.
func TestRandomBlocks(t *testing.T) {
	seeds := []uint64{1, 2, 3} // regression seeds; add failing ones here
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	seeds = append(seeds, s)
	for _, seed := range seeds {
		t.Logf("seed %d (rerun with -state.seed=%d)", seed, seed)
		randomBlocks(t, seed)
		if t.Failed() {
			return
		}
	}
}

func randomBlocks(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	n := newNet(t, 4)
	users := make([]chain.PrivKey, 8)
	for i := range users {
		users[i] = testKey(t, "user-"+string(rune('a'+i)))
	}
	signers := append(append([]chain.PrivKey{}, users...), n.auth...)
	model := map[chain.PubKey]uint64{} // accepted nonces
	patients := map[chain.PubKey]bool{}
	var proposals []chain.Hash
	for block := 0; block < 20; block++ {
		h := n.header()
		b := n.m.NewBuilder(n.view, h, nil)
		for range rng.IntN(15) {
			k := signers[rng.IntN(len(signers))]
			nonce := model[k.Public()] + 1
			if rng.IntN(6) == 0 {
				nonce = uint64(rng.IntN(4)) // mostly wrong
			}
			var tx *chain.Tx
			switch rng.IntN(5) {
			case 0, 1:
				tx = chain.NewTx(k, testChain, chain.TxRegisterPatient, nonce, enrolment(t, k, []byte{byte(rng.IntN(256))}))
			case 2:
				l := n.licence(k.Public(), n.lic, n.time+int64(rng.IntN(3000)))
				tx = chain.NewTx(k, testChain, chain.TxRegisterProvider, nonce, &chain.RegisterProvider{Licence: l, EncryptionKey: []byte{1}})
			case 3:
				act := chain.AuthorityAction(1 + rng.IntN(2))
				subj := signers[rng.IntN(len(signers))].Public()
				tx = chain.NewTx(k, testChain, chain.TxAuthorityPropose, nonce, &chain.AuthorityPropose{Action: act, Subject: chain.Authority{Key: subj}})
			case 4:
				id := chain.Sum256([]byte{byte(rng.IntN(256))})
				if len(proposals) > 0 && rng.IntN(4) > 0 {
					id = proposals[rng.IntN(len(proposals))]
				}
				tx = chain.NewTx(k, testChain, chain.TxAuthorityVote, nonce, &chain.AuthorityVote{Proposal: id})
			}
			if rng.IntN(10) == 0 {
				tx.Sig[rng.IntN(64)] ^= 1 << rng.IntN(8)
			}
			prefix := b.Txs()
			if err := b.Add(tx); err != nil {
				// The same transaction at the same place makes the whole block invalid.
				_, aerr := n.m.ApplyBlock(n.view, h, append(prefix, tx), nil)
				var te *TxError
				if !errors.As(aerr, &te) || te.Index != len(prefix) {
					t.Fatalf("seed %d block %d: builder rejected (%v) but ApplyBlock said %v", seed, h.Height, err, aerr)
				}
				continue
			}
			model[k.Public()] = tx.Nonce
			if tx.Kind == chain.TxRegisterPatient {
				patients[k.Public()] = true
			}
			if tx.Kind == chain.TxAuthorityPropose {
				proposals = append(proposals, tx.Hash())
			}
		}
		built, err := b.Finish()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, verified := range []VerifiedSet{nil, verifyAll{}} {
			again, err := n.m.ApplyBlock(n.view.clone(), h, b.Txs(), verified)
			if err != nil {
				t.Fatalf("seed %d block %d: built block invalid: %v", seed, h.Height, err)
			}
			if !bytes.Equal(encodeChanges(built.Changes), encodeChanges(again.Changes)) {
				t.Fatalf("seed %d block %d: builder and ApplyBlock disagree", seed, h.Height)
			}
		}
		n.apply(b.Txs()...)
	}
	for _, k := range signers {
		got, err := Nonce(n.view, k.Public().Address())
		if err != nil || got != model[k.Public()] {
			t.Fatalf("seed %d: nonce of %s is %d, model %d (%v)", seed, k.Public().Short(), got, model[k.Public()], err)
		}
		p, err := Patient(n.view, k.Public().Address())
		if err != nil || (p != nil) != patients[k.Public()] {
			t.Fatalf("seed %d: patient %s registered %v, model %v", seed, k.Public().Short(), p != nil, patients[k.Public()])
		}
	}
}

// TestArbitraryPayloadsNeverPanic: any signed transaction, whatever its kind and payload bytes,
// gets an answer from CheckTx and ApplyBlock, never a panic, and a rejected one changes nothing.
func TestArbitraryPayloadsNeverPanic(t *testing.T) {
	n := newNet(t, 2)
	k := testKey(t, "fuzzer")
	rapid.Check(t, func(rt *rapid.T) {
		kind := chain.TxKind(rapid.Uint16Range(0, 8).Draw(rt, "kind"))
		payload := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(rt, "payload")
		tx := &chain.Tx{Version: chain.TxVersion, ChainID: testChain, Kind: kind, Signer: k.Public(), Nonce: 1, Payload: payload}
		tx.Sig = k.Sign(chain.DomainTx, testChain, tx.SignedBytes())
		errCheck := n.m.CheckTx(n.view, tx, n.time, nil)
		out, errApply := n.m.ApplyBlock(n.view, n.header(), []*chain.Tx{tx}, nil)
		if (errCheck == nil) != (errApply == nil) {
			rt.Fatalf("CheckTx %v, ApplyBlock %v", errCheck, errApply)
		}
		if errApply == nil && len(out.Results) != 1 {
			rt.Fatalf("results %v", out.Results)
		}
	})
}

// TestCorruptStateNeverPanics: a damaged record in the store yields errors (or, by chance, a valid record), never a panic.
func TestCorruptStateNeverPanics(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := newNet(t, 2)
		alice := testKey(t, "alice")
		n.apply(n.patientTx(alice))
		next, _ := n.sets()
		keys := [][]byte{keyParams, keyTip, keyNext, keyAfter, keyLicensing, keyEpochs, authSetKey(next.Hash()), expiryKey(n.height+1, 0), nonceKey(alice.Public().Address()), memberKey(alice.Public().Address()),
			memberKey(n.enroller.Public().Address()), roleKey(chain.RoleProvider), keyIssuers, nodeIndexKey(nodeKeyOf(n.enroller.Public()))}
		key := keys[rapid.IntRange(0, len(keys)-1).Draw(rt, "key")]
		n.view.m[string(key)] = rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(rt, "garbage")
		_, _ = n.m.ApplyBlock(n.view, n.header(), []*chain.Tx{n.patientTx(testKey(t, "bob"))}, nil)
		_ = n.m.CheckTx(n.view, n.patientTx(alice), n.time, nil)
		_, _, _ = Authorities(n.view)
		_, _ = Patient(n.view, alice.Public().Address())
		_, _ = AuthoritySetAt(n.view, 1)
		_, _ = Signer(n.view, alice.Public())
		_, _ = MemberByNode(n.view, nodeKeyOf(n.enroller.Public()))
		_, _ = ActiveProviders(n.view, n.time)
	})
}
