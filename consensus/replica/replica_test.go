package replica

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus"
)

const chainID = "replica-test"

func key(t testing.TB, i byte) chain.PrivKey {
	t.Helper()
	seed := sha256.Sum256([]byte{i})
	k, err := chain.PrivKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// patientTx is a registration by k that needs nothing on the ledger before it: since patients
// need an enrolling provider, it registers k as a provider licensed by the test's licensing
// authority (key 200).
func patientTx(t testing.TB, k chain.PrivKey, nonce uint64) *chain.Tx {
	return regTx(t, k, nonce, 3)
}

// regTx is patientTx with an encryption key of encLen bytes.
func regTx(t testing.TB, k chain.PrivKey, nonce uint64, encLen int) *chain.Tx {
	node := sha256.Sum256(append([]byte("node/"), k.Public().String()...))
	l := chain.Licence{Role: chain.RoleProvider, Subject: k.Public(), NodeKey: node, Number: "T-1", NotAfter: 1 << 50}
	l.Sign(key(t, 200), chainID)
	return chain.NewTx(k, chainID, chain.TxRegisterMember, nonce, &chain.RegisterMember{Licence: l, EncryptionKey: make([]byte, encLen)})
}

func genesis(t testing.TB, n int) (*chain.Genesis, []chain.PrivKey) {
	var keys []chain.PrivKey
	var auths []chain.Authority
	for i := range n {
		k := key(t, byte(i))
		keys = append(keys, k)
		auths = append(auths, chain.Authority{Key: k.Public()})
	}
	g := &chain.Genesis{Version: chain.GenesisVersion, ChainID: chainID, TimeMs: 1_000, Authorities: auths, Params: chain.DefaultParams(),
		LicensingAuthorities: []chain.Authority{{Key: key(t, 200).Public(), Name: "licensing"}}}
	g.Params.EnrolmentsPerWindow = 1 << 30
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return g, keys
}

func TestMessageValidateRejectsMixedAndEmpty(t *testing.T) {
	k := key(t, 1)
	v := &chain.Vote{Type: chain.Prevote, Height: 1}
	v.Sign(k, chainID)
	cases := map[string]*Message{
		"empty":                     {Version: MessageVersion},
		"two kinds":                 {Version: MessageVersion, Vote: v, Tx: patientTx(t, k, 1)},
		"unknown version":           {Version: 9, Vote: v},
		"proposal without block":    {Version: MessageVersion, Proposal: &chain.Proposal{Version: chain.ProposalVersion, Height: 1, POLRound: -1, BlockHash: chain.Hash{1}}},
		"sync blocks without certs": {Version: MessageVersion, SyncBlocks: []*chain.Block{{}}},
	}
	for name, m := range cases {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := &Message{Version: MessageVersion, Vote: v}
	back, err := DecodeMessage(ok.Encode())
	if err != nil || back.Vote.Sig != v.Sig {
		t.Fatalf("round trip: %v", err)
	}
}

// TestBadInputIsThePeersFault: malformed or forged messages come back as ErrInvalid (score the
// sender) and never change the replica's state.
func TestBadInputIsThePeersFault(t *testing.T) {
	r, st, g, keys, _ := startReplica(t, 4)
	forged := &chain.Vote{Type: chain.Prevote, Height: 1}
	forged.Sign(keys[1], "another-chain")
	bad := patientTx(t, key(t, 50), 1)
	bad.Sig[5] ^= 0xff
	for name, m := range map[string]*Message{
		"vote signed for another chain": {Version: MessageVersion, Vote: forged},
		"tx with a bad signature":       {Version: MessageVersion, Tx: bad},
		"two kinds at once":             {Version: MessageVersion, Vote: forged, Tx: bad},
	} {
		if _, err := r.Handle("peer", m, g.TimeMs+1); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if r.Mempool().Len() != 0 || st.Height() != 0 {
		t.Fatal("bad input changed state")
	}
}

// TestSingleAuthorityCommitsItsOwnBlocks drives one replica alone (n=1) through heights with a
// transaction, checking the block, certificate and state root end to end.
func TestSingleAuthorityCommitsItsOwnBlocks(t *testing.T) {
	r, st, g, _, out := startReplica(t, 1)
	now := g.TimeMs
	tx := patientTx(t, key(t, 60), 1)
	if _, _, err := r.SubmitTx(tx, now); err != nil {
		t.Fatal(err)
	}
	drive(t, r, out.Timeouts, now, func() bool { return st.Height() >= 3 }, nil)
	h, _, err := st.TxLocation(tx.Hash())
	if err != nil || h == 0 {
		t.Fatalf("submitted transaction not committed: %v", err)
	}
	b2, _ := st.Block(2)
	b3, _ := st.Block(3)
	if b3.Header.PrevHash != b2.Hash() {
		t.Fatal("blocks not linked")
	}
	cert, _ := st.Cert(3)
	if err := cert.Verify(chain.ConsensusID(chainID, g.Hash()), g.AuthoritySet(), 3, b3.Hash()); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	k, _ := chain.PrivKeyFromSeed(make([]byte, 32))
	v := &chain.Vote{Type: chain.Precommit, Height: 3, Round: 1, BlockHash: chain.Hash{7}}
	v.Sign(k, chainID)
	f.Add((&Message{Version: MessageVersion, Vote: v}).Encode())
	f.Add((&Message{Version: MessageVersion, SyncFrom: 9}).Encode())
	f.Add((&Message{Version: MessageVersion, Tx: regTx(f, k, 1, 1)}).Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMessage(data)
		if err != nil {
			return
		}
		if string(m.Encode()) != string(data) {
			t.Fatal("accepted message does not re-encode to the same bytes")
		}
	})
}

// A sync reply stops adding blocks before it outgrows what a peer decodes, however many
// blocks are asked for.
func TestSyncReplyIsBoundedBySize(t *testing.T) {
	r, st, g, _, out := startReplicaWith(t, 1, func(c *Config) {
		c.Mempool.MaxRegistrations, c.Mempool.MaxRegistrationBytes = 1000, 8<<20
	})
	now := g.TimeMs
	// Fill blocks with large transactions: each block near 2 MB. They are patient
	// registrations enrolled by one provider, registered in the first block (providers are
	// bounded per network, patients are not).
	enroller := key(t, 201)
	if _, _, err := r.SubmitTx(regTx(t, enroller, 1, 3), now); err != nil {
		t.Fatal(err)
	}
	next := 0
	drive(t, r, out.Timeouts, now, func() bool { return st.Height() >= 12 }, func() {
		if p, err := state.Provider(st.State(), enroller.Public().Address()); err != nil || p == nil {
			return // not committed yet
		}
		for r.Mempool().Len() < 1000 {
			next++
			seed := sha256.Sum256([]byte(fmt.Sprint("signer", next)))
			k, _ := chain.PrivKeyFromSeed(seed[:])
			body := chain.NewEnrolment(enroller, enroller.Public().Address(), chainID, k.Public(), make([]byte, chain.MaxEncryptionKeyLen))
			big := chain.NewTx(k, chainID, chain.TxRegisterPatient, 1, body)
			if _, _, err := r.SubmitTx(big, now); errors.Is(err, ErrRegistrationsFull) {
				return // the quota of registrations by unknown signers; more next block
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	var reply Output
	err := r.serveSync("peer", 1, &reply)
	if err != nil || len(reply.Unicast) != 1 {
		t.Fatalf("no reply: %v", err)
	}
	m := reply.Unicast[0].Msg
	if n := len(m.Encode()); n > maxSyncReplyBytes+chain.MaxBlockBytes {
		t.Fatalf("sync reply is %d bytes", n)
	}
	if len(m.SyncBlocks) == 0 || len(m.SyncBlocks) >= 12 {
		t.Fatalf("reply carries %d blocks; want a size-bounded prefix", len(m.SyncBlocks))
	}
	if _, err := DecodeMessage(m.Encode()); err != nil {
		t.Fatal(err)
	}
}

// drive fires a lone replica's timeouts in order of their deadlines, calling before (if set)
// ahead of each, until done reports true.
func drive(t *testing.T, r *Replica, pending []consensus.Timeout, now int64, done func() bool, before func()) {
	t.Helper()
	driveWith(t, r, pending, now, done, before, nil)
}

// driveObserved is drive that shows every Output to observe and returns the time reached and
// the timeouts still armed, to continue from.
func driveObserved(t *testing.T, r *Replica, pending []consensus.Timeout, now int64, done func() bool, observe func(Output)) (int64, []consensus.Timeout) {
	t.Helper()
	return driveWith(t, r, pending, now, done, nil, observe)
}

func driveWith(t *testing.T, r *Replica, pending []consensus.Timeout, now int64, done func() bool, before func(), observe func(Output)) (int64, []consensus.Timeout) {
	t.Helper()
	type armed struct {
		at int64
		t  consensus.Timeout
	}
	var queue []armed
	for _, p := range pending {
		queue = append(queue, armed{now + p.DelayMs, p})
	}
	for steps := 0; !done(); steps++ {
		if len(queue) == 0 || steps > 10_000 {
			t.Fatal("no progress while driving timeouts")
		}
		if before != nil {
			before()
		}
		slices.SortStableFunc(queue, func(a, b armed) int { return cmp.Compare(a.at, b.at) })
		next := queue[0]
		queue = queue[1:]
		now = max(now, next.at)
		out, err := r.HandleTimeout(next.t, now)
		if err != nil {
			t.Fatal(err)
		}
		if observe != nil {
			observe(out)
		}
		for _, p := range out.Timeouts {
			queue = append(queue, armed{now + p.DelayMs, p})
		}
	}
	var left []consensus.Timeout
	for _, a := range queue {
		tm := a.t
		tm.DelayMs = max(0, a.at-now)
		left = append(left, tm)
	}
	return now, left
}

// startReplica starts node 0 of an n-authority genesis on a memory store, at genesis time.
func startReplica(t *testing.T, n int) (*Replica, *store.Memory, *chain.Genesis, []chain.PrivKey, Output) {
	t.Helper()
	return startReplicaWith(t, n, nil)
}

func startReplicaWith(t *testing.T, n int, mod func(*Config)) (*Replica, *store.Memory, *chain.Genesis, []chain.PrivKey, Output) {
	t.Helper()
	g, keys := genesis(t, n)
	st := store.NewMemory()
	cfg := Config{Genesis: g, Key: &keys[0]}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Start(g.TimeMs)
	if err != nil {
		t.Fatal(err)
	}
	return r, st, g, keys, out
}
