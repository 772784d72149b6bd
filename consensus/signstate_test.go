package consensus

import (
	"bytes"
	"testing"

	"github.com/medledger/medledger/chain"
)

// signedThrough drives node 0 as the proposer of height 1 round 3 through proposal, prevote and
// precommit, and returns every sign state it emitted.
func signedThrough(t *testing.T) (*Engine, []chain.PrivKey, *chain.AuthoritySet, []*SignState) {
	t.Helper()
	e, keys, set := soloEngine(t, 0)
	e.Start(genesisTime)
	var states []*SignState
	drain := func() Ready {
		rd := e.Ready()
		if rd.SignState != nil {
			states = append(states, rd.SignState)
		}
		return rd
	}
	drain()
	for e.Round() < 3 {
		e.HandleTimeout(Timeout{Height: 1, Round: e.Round(), Step: StepPrecommit}, genesisTime)
		drain()
	}
	b := testBlock(1, 7)
	e.Propose(b, genesisTime) // node 0 proposes round 3: (1+3)%4 == 0
	drain()
	for _, i := range []int{1, 2} {
		e.HandleVote(signedVote(keys[i], chain.Prevote, 1, 3, b.Hash()), genesisTime)
	}
	drain()
	if r, lb := e.Locked(); r != 3 || lb == nil || lb.Hash() != b.Hash() {
		t.Fatalf("not locked on the block in round 3: %d", r)
	}
	return e, keys, set, states
}

func TestSignStateRoundTripAndStrictDecode(t *testing.T) {
	_, _, _, states := signedThrough(t)
	if len(states) < 2 { // proposal+prevote in one Ready, then precommit
		t.Fatalf("only %d sign states emitted", len(states))
	}
	last := states[len(states)-1]
	if last.Step != StepPrecommit || last.Round != 3 || last.Proposal == nil || last.Prevote == nil || last.Precommit == nil || len(last.Blocks) != 1 {
		t.Fatalf("last sign state %+v", last)
	}
	for _, s := range states {
		enc := EncodeSignState(s)
		got, err := DecodeSignState(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(EncodeSignState(got), enc) {
			t.Fatal("round trip changed the encoding")
		}
	}
	bad := func(name string, mut func(s *SignState)) {
		c := last.clone()
		mut(c)
		if _, err := DecodeSignState(chain.Encode(c)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	bad("version", func(s *SignState) { s.Version = 2 })
	bad("step", func(s *SignState) { s.Step = StepCommit })
	bad("lock without block", func(s *SignState) { s.Blocks = []*chain.Block{} })
	bad("lock round without hash", func(s *SignState) { s.LockedHash = chain.Hash{} })
	bad("precommit of another round", func(s *SignState) { v := *s.Precommit; v.Round = 2; s.Precommit = &v })
	bad("step without its vote", func(s *SignState) { s.Precommit = nil })
	bad("unreferenced block", func(s *SignState) { s.Blocks = append(s.Blocks, testBlock(1, 99)) })
	bad("nil blocks", func(s *SignState) { s.Blocks = nil })
	enc := EncodeSignState(last)
	if _, err := DecodeSignState(append(enc, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestCheckHRSNeverRegresses(t *testing.T) {
	s := SignState{Version: SignStateVersion, Height: 5, Round: 2, Step: StepPrevote, LockedRound: -1, ValidRound: -1,
		Prevote: &chain.Vote{Type: chain.Prevote, Height: 5, Round: 2, BlockHash: chain.Hash{1}}}
	cases := []struct {
		h    uint64
		r    uint32
		st   Step
		hash chain.Hash
		want signVerdict
	}{
		{4, 9, StepPrecommit, chain.Hash{}, signRefuse},
		{5, 1, StepPrecommit, chain.Hash{}, signRefuse},
		{5, 2, StepPropose, chain.Hash{1}, signRefuse},
		{5, 2, StepPrevote, chain.Hash{2}, signRefuse},
		{5, 2, StepPrevote, chain.Hash{}, signRefuse},
		{5, 2, StepPrevote, chain.Hash{1}, signRepeat},
		{5, 2, StepPrecommit, chain.Hash{}, signNew},
		{5, 3, StepPropose, chain.Hash{3}, signNew},
		{6, 0, StepPropose, chain.Hash{3}, signNew},
	}
	for _, c := range cases {
		if got := s.checkHRS(c.h, c.r, c.st, c.hash, -1); got != c.want {
			t.Errorf("checkHRS(%d/%d/%s %s) = %d, want %d", c.h, c.r, c.st, c.hash.Short(), got, c.want)
		}
	}
}

// A restarted engine resumes at the recorded round with its lock, re-sends exactly what it
// signed, and refuses to sign anything conflicting.
func TestRestartResumesRoundAndLock(t *testing.T) {
	_, keys, set, states := signedThrough(t)
	last, err := DecodeSignState(EncodeSignState(states[len(states)-1]))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{ChainID: testChain, Key: &keys[0], Params: testParams},
		Start{Height: 1, Authorities: set, LastBlockTime: genesisTime, Signed: last})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(genesisTime)
	rd := e.Ready()
	if e.Round() != 3 || e.Step() != StepPrecommit {
		t.Fatalf("resumed at round %d step %s", e.Round(), e.Step())
	}
	if r, b := e.Locked(); r != 3 || b == nil || b.Hash() != last.LockedHash {
		t.Fatalf("lock not restored: %d", r)
	}
	if rd.SignState != nil {
		t.Fatal("nothing new was signed, yet a sign state was emitted")
	}
	var resent int
	for _, m := range rd.Resends {
		switch {
		case m.Proposal != nil:
			if *m.Proposal != *last.Proposal {
				t.Fatal("re-sent a different proposal")
			}
			resent++
		case m.Vote != nil && m.Vote.Authority == keys[0].Public():
			if *m.Vote != *last.Prevote && *m.Vote != *last.Precommit {
				t.Fatalf("re-sent a different vote %+v", m.Vote)
			}
			resent++
		}
	}
	if resent != 3 {
		t.Fatalf("re-sent %d own messages, want proposal, prevote, precommit", resent)
	}
	// Nothing at round 3 can be signed again differently: a nil-prevote quorum does not produce
	// a second precommit.
	for _, i := range []int{1, 2, 3} {
		e.HandleVote(signedVote(keys[i], chain.Prevote, 1, 3, chain.ZeroHash), genesisTime)
	}
	for _, v := range votesIn(e.Ready()) {
		if v.Authority == keys[0].Public() && v.Round == 3 {
			t.Fatalf("signed again at round 3: %+v", v)
		}
	}
	// Round 4 with a new block and no POL: the restored lock makes it prevote nil.
	e.HandleTimeout(Timeout{Height: 1, Round: 3, Step: StepPrecommit}, genesisTime)
	e.Ready()
	b4 := testBlock(1, 44)
	e.HandleProposal(signedProposal(keys[1], 1, 4, -1, b4), b4, true, genesisTime)
	vs := votesIn(e.Ready())
	if len(vs) != 1 || vs[0].Round != 4 || !vs[0].BlockHash.IsZero() {
		t.Fatalf("round 4 votes %+v, want one nil prevote", vs)
	}
}

// An observer (no key) never emits a sign state or a message, whatever it is fed.
func TestObserverNeverSigns(t *testing.T) {
	keys, set := testKeys(4)
	e, err := New(Config{ChainID: testChain, Params: testParams}, Start{Height: 1, Authorities: set, LastBlockTime: genesisTime})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(genesisTime)
	b := testBlock(1, 0)
	e.HandleProposal(signedProposal(keys[1], 1, 0, -1, b), b, true, genesisTime)
	for _, i := range []int{1, 2, 3} {
		e.HandleVote(signedVote(keys[i], chain.Prevote, 1, 0, b.Hash()), genesisTime)
		e.HandleVote(signedVote(keys[i], chain.Precommit, 1, 0, b.Hash()), genesisTime)
	}
	rd := e.Ready()
	if rd.SignState != nil || len(rd.Messages) != 0 || rd.NeedBlock != nil {
		t.Fatalf("observer output %+v", rd)
	}
	if rd.Committed == nil {
		t.Fatal("observer did not commit")
	}
}

func FuzzDecodeSignState(f *testing.F) {
	keys, _ := testKeys(4)
	f.Add([]byte{})
	f.Add(EncodeSignState(&SignState{Version: 1, Height: 1, LockedRound: -1, ValidRound: -1}))
	v := signedVote(keys[0], chain.Prevote, 3, 1, chain.Hash{9})
	f.Add(EncodeSignState(&SignState{Version: 1, Height: 3, Round: 1, Step: StepPrevote, Prevote: v, LockedRound: -1, ValidRound: -1}))
	b := testBlock(2, 0)
	f.Add(EncodeSignState(&SignState{Version: 1, Height: 2, Step: StepNewHeight, LockedRound: -1, ValidRound: 4, ValidHash: b.Hash(), Blocks: []*chain.Block{b}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSignState(data)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeSignState(s), data) {
			t.Fatal("decoded sign state does not re-encode to its input")
		}
	})
}

// A sign state ahead of the start height (the store lost blocks the signer had voted past) turns
// the engine into a follower until it catches up: checkHRS refuses every signature below it.
func TestSignStateAheadOfStartRefusesToSign(t *testing.T) {
	keys, set := testKeys(4)
	v := signedVote(keys[1], chain.Precommit, 5, 0, chain.Hash{7})
	ahead := &SignState{Version: SignStateVersion, Height: 5, Step: StepPrecommit, Precommit: v, LockedRound: -1, ValidRound: -1, Blocks: []*chain.Block{}}
	e, err := New(Config{ChainID: testChain, Key: &keys[1], Params: testParams},
		Start{Height: 1, Authorities: set, LastBlockTime: genesisTime, Signed: ahead})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(genesisTime) // node 1 proposes height 1 round 0
	rd := e.Ready()
	if rd.NeedBlock == nil {
		t.Fatal("no block request")
	}
	e.Propose(testBlock(1, 0), genesisTime)
	e.HandleTimeout(Timeout{Height: 1, Round: 0, Step: StepPropose}, genesisTime)
	for _, i := range []int{0, 2, 3} {
		e.HandleVote(signedVote(keys[i], chain.Prevote, 1, 0, chain.ZeroHash), genesisTime)
	}
	rd = e.Ready()
	if len(rd.Messages) != 0 || rd.SignState != nil {
		t.Fatalf("signed below its record: %+v", rd)
	}
}

// Lock amnesia after catch-up: an authority whose store lost the blocks below its last signature
// starts below its sign state, catches up, and enters the height it had signed at. It must come
// back with that height's round, lock and valid value, and never prevote against its lock.
func TestCatchUpRestoresLockAtSignedHeight(t *testing.T) {
	keys, set := testKeys(4)
	// Node 0 prevoted and precommitted block b in round 3 of height 3, locking on it.
	const h = 3
	b := testBlock(h, 7)
	b.Header.PrevHash = chain.Hash{2}
	pv := signedVote(keys[0], chain.Prevote, h, 3, b.Hash())
	pc := signedVote(keys[0], chain.Precommit, h, 3, b.Hash())
	proofs := []*chain.Vote{pv, signedVote(keys[1], chain.Prevote, h, 3, b.Hash()), signedVote(keys[2], chain.Prevote, h, 3, b.Hash())}
	slicesSortVotes(proofs)
	rec := &SignState{Version: SignStateVersion, Height: h, Round: 3, Step: StepPrecommit, Prevote: pv, Precommit: pc,
		LockedRound: 3, LockedHash: b.Hash(), ValidRound: 3, ValidHash: b.Hash(), Blocks: []*chain.Block{b}, Proofs: proofs}
	if err := rec.validate(); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{ChainID: testChain, Key: &keys[0], Params: testParams},
		Start{Height: h - 2, Authorities: set, LastBlockTime: genesisTime, Signed: rec})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(genesisTime)
	e.Ready()
	// Block sync commits heights 1 and 2; the engine enters height 3.
	e.NewHeight(Start{Height: h - 1, Authorities: set, LastBlockTime: genesisTime + 10}, genesisTime+10)
	e.Ready()
	e.NewHeight(Start{Height: h, Authorities: set, LastBlockTime: genesisTime + 20}, genesisTime+20)
	if r, lb := e.Locked(); r != 3 || lb == nil || lb.Hash() != b.Hash() {
		t.Fatalf("entering height %d forgot the lock signed there: locked round %d", h, r)
	}
	rd := e.Ready()
	if rd.SignState != nil && (rd.SignState.LockedRound != 3 || rd.SignState.LockedHash != b.Hash()) {
		t.Fatalf("the persisted lock was overwritten: %+v", rd.SignState)
	}
	// Round 4 brings a new block with no proof of lock: the node must prevote nil.
	for e.Round() < 4 {
		e.HandleTimeout(Timeout{Height: h, Round: e.Round(), Step: StepPrecommit}, genesisTime+30)
		e.Ready()
	}
	b4 := testBlock(h, 44)
	prop := set.Proposer(h, 4)
	var pk chain.PrivKey
	for _, k := range keys {
		if k.Public() == prop {
			pk = k
		}
	}
	e.HandleProposal(signedProposal(pk, h, 4, -1, b4), b4, true, genesisTime+30)
	for _, v := range votesIn(e.Ready()) {
		if v.Authority == keys[0].Public() && v.Type == chain.Prevote && v.BlockHash == b4.Hash() {
			t.Fatalf("prevoted %s at round 4 against its lock on %s", b4.Hash().Short(), b.Hash().Short())
		}
	}
}

func slicesSortVotes(vs []*chain.Vote) {
	for i := range vs {
		for j := i + 1; j < len(vs); j++ {
			if string(vs[j].Authority[:]) < string(vs[i].Authority[:]) {
				vs[i], vs[j] = vs[j], vs[i]
			}
		}
	}
}

// The persisted record holds no blocks, only their hashes; with the blocks it decodes back to the
// same sign state, and a missing or substituted block is an error.
func TestSignRecordRoundTrip(t *testing.T) {
	_, _, _, states := signedThrough(t)
	last := states[len(states)-1]
	rec := EncodeSignRecord(last)
	if len(rec) > 2048 {
		t.Fatalf("record is %d bytes: blocks must not be in it", len(rec))
	}
	blocks := map[chain.Hash][]byte{}
	for _, b := range last.Blocks {
		blocks[b.Hash()] = b.Encode()
	}
	got, err := DecodeSignRecord(rec, blocks)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EncodeSignState(got), EncodeSignState(last)) {
		t.Fatal("record round trip changed the sign state")
	}
	if _, err := DecodeSignRecord(rec, nil); err == nil {
		t.Fatal("decoded without its block")
	}
	other := testBlock(1, 99)
	for h := range blocks {
		blocks[h] = other.Encode()
	}
	if _, err := DecodeSignRecord(rec, blocks); err == nil {
		t.Fatal("decoded with a substituted block")
	}
	if _, err := DecodeSignRecord(append(rec, 0), nil); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func FuzzDecodeSignRecord(f *testing.F) {
	keys, _ := testKeys(4)
	v := signedVote(keys[0], chain.Prevote, 3, 1, chain.Hash{9})
	f.Add(EncodeSignRecord(&SignState{Version: 1, Height: 3, Round: 1, Step: StepPrevote, Prevote: v, LockedRound: -1, ValidRound: -1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeSignRecord(data, nil)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeSignRecord(s), data) {
			t.Fatal("decoded sign record does not re-encode to its input")
		}
	})
}
