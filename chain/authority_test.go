package chain_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

// naiveQuorum is the definition: the smallest k with 3k > 2n.
func naiveQuorum(n int) int {
	k := 0
	for 3*k <= 2*n {
		k++
	}
	return k
}

func TestQuorumOf(t *testing.T) {
	for n := 1; n <= 300; n++ {
		q := chain.QuorumOf(n)
		if want := naiveQuorum(n); q != want {
			t.Fatalf("QuorumOf(%d) = %d, want %d", n, q, want)
		}
		if q > n {
			t.Fatalf("QuorumOf(%d) = %d exceeds the set", n, q)
		}
		// Any two quorums intersect in more than the faulty members tolerated.
		f := (n - 1) / 3
		if 2*q-n <= f {
			t.Fatalf("n=%d: quorums intersect in %d <= f=%d", n, 2*q-n, f)
		}
	}
	for _, tc := range []struct{ n, q, f int }{{1, 1, 0}, {2, 2, 0}, {3, 3, 0}, {4, 3, 1}, {5, 4, 1}, {6, 5, 1}, {7, 5, 2}, {10, 7, 3}, {100, 67, 33}} {
		s, _ := testSet(t, tc.n)
		if s.Size() != tc.n || s.Quorum() != tc.q || s.MaxFaulty() != tc.f {
			t.Fatalf("n=%d: quorum %d faulty %d, want %d %d", tc.n, s.Quorum(), s.MaxFaulty(), tc.q, tc.f)
		}
	}
}

func TestAuthoritySet(t *testing.T) {
	var members []chain.Authority
	for i := range 7 {
		members = append(members, chain.Authority{Key: testKey(t, i).Public(), Name: "a"})
	}
	s, err := chain.NewAuthoritySet(members)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < s.Size(); i++ {
		if bytes.Compare(s.Authorities[i-1].Key[:], s.Authorities[i].Key[:]) >= 0 {
			t.Fatal("not sorted by key")
		}
	}
	// Order of the input does not matter, and the input is not modified.
	rev := make([]chain.Authority, len(members))
	for i, m := range members {
		rev[len(members)-1-i] = m
	}
	before := append([]chain.Authority(nil), rev...)
	s2, err := chain.NewAuthoritySet(rev)
	if err != nil || s2.Hash() != s.Hash() {
		t.Fatalf("set depends on input order: %v", err)
	}
	for i := range rev {
		if rev[i] != before[i] {
			t.Fatal("NewAuthoritySet modified its argument")
		}
	}
	for i, a := range s.Authorities {
		if s.Index(a.Key) != i || !s.Contains(a.Key) {
			t.Fatalf("Index(%s) = %d, want %d", a.Key.Short(), s.Index(a.Key), i)
		}
	}
	if s.Contains(testKey(t, 50).Public()) || s.Index(testKey(t, 50).Public()) != -1 {
		t.Fatal("non-member found")
	}
	// Names are part of the hash.
	renamed := append([]chain.Authority(nil), members...)
	renamed[0].Name = "b"
	s3, _ := chain.NewAuthoritySet(renamed)
	if s3.Hash() == s.Hash() {
		t.Fatal("hash ignores names")
	}
	if s.Hash() != chain.Sum256(chain.Encode(s)) {
		t.Fatal("set hash is not the hash of its encoding")
	}

	for _, tc := range []struct {
		name    string
		members []chain.Authority
	}{
		{"empty", nil},
		{"duplicate", append(append([]chain.Authority(nil), members...), chain.Authority{Key: members[3].Key, Name: "other name"})},
		{"too many", func() []chain.Authority {
			var m []chain.Authority
			for i := range chain.MaxAuthorities + 1 {
				m = append(m, chain.Authority{Key: testKey(t, 1000+i).Public()})
			}
			return m
		}()},
		{"long name", []chain.Authority{{Key: members[0].Key, Name: strings.Repeat("n", chain.MaxNameLen+1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := chain.NewAuthoritySet(tc.members); err == nil {
				t.Fatal("accepted")
			}
			// The same list, encoded without going through NewAuthoritySet, does not decode.
			if got, err := chain.DecodeAuthoritySet(chain.Encode(&chain.AuthoritySet{Authorities: tc.members})); err == nil || got != nil {
				t.Fatalf("decoded: %v", err)
			}
		})
	}
	// An unsorted encoding does not decode.
	if _, err := chain.DecodeAuthoritySet(chain.Encode(&chain.AuthoritySet{Authorities: rev})); err == nil {
		t.Fatal("unsorted set decoded")
	}
	// The largest set decodes.
	var big []chain.Authority
	for i := range chain.MaxAuthorities {
		big = append(big, chain.Authority{Key: testKey(t, 1000+i).Public(), Name: strings.Repeat("n", chain.MaxNameLen)})
	}
	bs, err := chain.NewAuthoritySet(big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain.DecodeAuthoritySet(chain.Encode(bs)); err != nil {
		t.Fatalf("largest set: %v", err)
	}
}

func TestAuthoritySetWithWithout(t *testing.T) {
	s, keys := testSet(t, 3)
	newcomer := chain.Authority{Key: testKey(t, 60).Public(), Name: "new"}
	s4, err := s.With(newcomer)
	if err != nil || s4.Size() != 4 || !s4.Contains(newcomer.Key) || s.Size() != 3 {
		t.Fatalf("With: %v", err)
	}
	if _, err := s4.With(newcomer); err == nil {
		t.Fatal("added twice")
	}
	s3, err := s4.Without(newcomer.Key)
	if err != nil || s3.Hash() != s.Hash() || s4.Size() != 4 {
		t.Fatalf("Without: %v", err)
	}
	if _, err := s.Without(newcomer.Key); err == nil {
		t.Fatal("removed a non-member")
	}
	one, _ := testSet(t, 1)
	if _, err := one.Without(one.Authorities[0].Key); err == nil {
		t.Fatal("emptied the set")
	}
	_ = keys
}

func TestProposerRotation(t *testing.T) {
	s, _ := testSet(t, 4)
	n := uint64(s.Size())
	counts := map[chain.PubKey]int{}
	for h := uint64(1); h <= 4*n; h++ {
		p := s.Proposer(h, 0)
		counts[p]++
		if p != s.Authorities[h%n].Key {
			t.Fatalf("height %d: proposer %s, want index %d", h, p.Short(), h%n)
		}
		// Each new round moves to the next authority; after n rounds the first is back.
		for r := uint32(0); r < uint32(2*n); r++ {
			if got, want := s.Proposer(h, r), s.Authorities[(h+uint64(r))%n].Key; got != want {
				t.Fatalf("height %d round %d: %s, want %s", h, r, got.Short(), want.Short())
			}
		}
		if s.Proposer(h, 1) == s.Proposer(h, 0) {
			t.Fatal("round change did not change the proposer")
		}
	}
	for _, a := range s.Authorities {
		if counts[a.Key] != 4 {
			t.Fatalf("%s proposed %d of %d heights", a.Key.Short(), counts[a.Key], 4*n)
		}
	}
	// No overflow surprise at the top of the range.
	_ = s.Proposer(^uint64(0), ^uint32(0))
}

func TestCommitCert(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 7, 10, 13} {
		set, keys := testSet(t, n)
		block := testHash("block")
		q := set.Quorum()
		for k := 0; k <= n; k++ {
			err := testCert(t, keys, k, 5, block).Verify(chainA, set, 5, block)
			if (err == nil) != (k >= q) {
				t.Fatalf("n=%d with %d signatures: %v (quorum %d)", n, k, err, q)
			}
		}
	}
	set, keys := testSet(t, 7)
	block := testHash("block")
	good := testCert(t, keys, 5, 5, block)
	if err := good.Verify(chainA, set, 5, block); err != nil {
		t.Fatal(err)
	}
	if got := good.Signers(); len(got) != 5 || got[0] != keys[0].Public() {
		t.Fatal("Signers")
	}
	if err := good.Verify(chainB, set, 5, block); !errors.Is(err, chain.ErrBadSignature) {
		t.Fatalf("certificate verified for another chain: %v", err)
	}
	enc := good.Encode()
	if got, err := chain.DecodeCommitCert(enc); err != nil || got.Verify(chainA, set, 5, block) != nil {
		t.Fatalf("decoded certificate: %v", err)
	}

	outsider := testKey(t, 77)
	for _, tc := range []struct {
		name   string
		edit   func(c *chain.CommitCert)
		height uint64
		hash   chain.Hash
		bad    bool // wrapped ErrBadSignature
	}{
		{"duplicate signer makes up the count", func(c *chain.CommitCert) { c.Sigs = append(c.Sigs[:4], c.Sigs[0]) }, 5, block, false},
		{"duplicate signer beyond quorum", func(c *chain.CommitCert) { c.Sigs = append(c.Sigs, c.Sigs[0]) }, 5, block, false},
		{"non-member", func(c *chain.CommitCert) {
			msg := chain.VoteSignedBytes(chain.Precommit, 5, c.Round, block)
			c.Sigs = append(c.Sigs[:4], chain.CommitSig{Authority: outsider.Public(), Sig: outsider.Sign(chain.DomainVote, chainA, msg)})
		}, 5, block, false},
		{"bad signature", func(c *chain.CommitCert) { c.Sigs[2].Sig[0] ^= 1 }, 5, block, true},
		{"bad signature beyond quorum", func(c *chain.CommitCert) { c.Sigs[4].Sig[63] ^= 0x80 }, 5, block, true},
		{"signature swapped between signers", func(c *chain.CommitCert) { c.Sigs[0].Sig, c.Sigs[1].Sig = c.Sigs[1].Sig, c.Sigs[0].Sig }, 5, block, true},
		{"prevotes instead of precommits", func(c *chain.CommitCert) {
			msg := chain.VoteSignedBytes(chain.Prevote, 5, c.Round, block)
			for i := range c.Sigs {
				c.Sigs[i].Sig = keys[i].Sign(chain.DomainVote, chainA, msg)
			}
		}, 5, block, true},
		{"other round", func(c *chain.CommitCert) { c.Round++ }, 5, block, true},
		{"wrong height", func(c *chain.CommitCert) {}, 6, block, false},
		{"wrong hash", func(c *chain.CommitCert) {}, 5, testHash("other"), false},
		{"relabelled height", func(c *chain.CommitCert) { c.Height = 6 }, 6, block, true},
		{"relabelled hash", func(c *chain.CommitCert) { c.BlockHash = testHash("other") }, 5, testHash("other"), true},
		{"version", func(c *chain.CommitCert) { c.Version = 2 }, 5, block, false},
		{"no signatures", func(c *chain.CommitCert) { c.Sigs = nil }, 5, block, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCert(t, keys, 5, 5, block)
			tc.edit(c)
			err := c.Verify(chainA, set, tc.height, tc.hash)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, chain.ErrBadSignature) != tc.bad {
				t.Fatalf("ErrBadSignature=%v, want %v: %v", !tc.bad, tc.bad, err)
			}
		})
	}
	// A certificate for the nil block never finalizes anything, however many sign it.
	nilCert := testCert(t, keys, 7, 5, chain.ZeroHash)
	if err := nilCert.Verify(chainA, set, 5, chain.ZeroHash); err == nil {
		t.Fatal("certificate for the nil block accepted")
	}
	// Signed by another set: the same number of valid signatures, none from members.
	_, others := testSet(t, 14)
	if err := testCert(t, others[7:], 7, 5, block).Verify(chainA, set, 5, block); err == nil {
		t.Fatal("certificate from another set accepted")
	}
}

func TestCommitCertDecodeLimits(t *testing.T) {
	block := testHash("block")
	c := &chain.CommitCert{Version: chain.CertVersion, Height: 5, BlockHash: block}
	for i := range chain.MaxAuthorities + 1 {
		c.Sigs = append(c.Sigs, chain.CommitSig{Authority: chain.PubKey(testHash(string(rune(i))))})
	}
	if _, err := chain.DecodeCommitCert(c.Encode()); !errors.Is(err, chain.ErrTooLarge) {
		t.Fatalf("%d signatures: %v, want ErrTooLarge", len(c.Sigs), err)
	}
	c.Sigs = c.Sigs[:chain.MaxAuthorities]
	c.Height, c.Round = ^uint64(0), ^uint32(0)
	if _, err := chain.DecodeCommitCert(c.Encode()); err != nil {
		t.Fatalf("largest certificate: %v", err)
	}
}
