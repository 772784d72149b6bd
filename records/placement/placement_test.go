package placement

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/medledger/medledger/chain"
)

func keys(n int, seed uint64) []chain.PubKey {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]chain.PubKey, n)
	for i := range out {
		for j := range out[i] {
			out[i][j] = byte(rng.Uint32())
		}
	}
	return out
}

func recordID(i int) chain.Hash { return chain.Hash(sha256.Sum256([]byte(fmt.Sprint("record", i)))) }

func TestHoldersIgnoreInputOrderAndAuthor(t *testing.T) {
	ms := keys(20, 1)
	id := recordID(7)
	author := ms[3]
	a := Holders(id, author, ms, 3)
	shuffled := slices.Clone(ms)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	shuffled = append(shuffled, ms[5], ms[5]) // duplicates change nothing
	b := Holders(id, author, shuffled, 3)
	if !slices.Equal(a, b) {
		t.Fatalf("placement depends on input order: %v vs %v", a, b)
	}
	if len(a) != 3 || slices.Contains(a, author) {
		t.Fatalf("want 3 holders without the author, got %v", a)
	}
	for i := 1; i < len(a); i++ {
		if a[i-1] == a[i] {
			t.Fatalf("duplicate holder %v", a)
		}
	}
}

func TestHoldersFewCandidates(t *testing.T) {
	ms := keys(2, 2)
	if got := Holders(recordID(1), ms[0], ms, 5); len(got) != 1 || got[0] != ms[1] {
		t.Fatalf("two members, author excluded: want [other], got %v", got)
	}
	if got := Holders(recordID(1), ms[0], nil, 2); len(got) != 0 {
		t.Fatalf("no candidates: got %v", got)
	}
}

// A member joining moves only the records whose top scores it takes: about replicas/n of the
// records gain it, and no record changes any other holder.
func TestJoinMovesFewRecords(t *testing.T) {
	ms := keys(30, 3)
	joiner := keys(1, 4)[0]
	var author chain.PubKey // no member is the zero key
	moved := 0
	const records, replicas = 3000, 2
	for i := range records {
		id := recordID(i)
		before := Holders(id, author, ms, replicas)
		after := Holders(id, author, append(slices.Clone(ms), joiner), replicas)
		if slices.Equal(before, after) {
			continue
		}
		moved++
		if !slices.Contains(after, joiner) {
			t.Fatalf("record %d changed holders without the joiner: %v -> %v", i, before, after)
		}
	}
	want := records * replicas / 31
	if moved < want/2 || moved > want*2 {
		t.Fatalf("joining moved %d of %d records, want about %d", moved, records, want)
	}
}

func TestAssignedSlack(t *testing.T) {
	ms := keys(10, 5)
	id := recordID(3)
	author := ms[0]
	ranked := Holders(id, author, ms, 9)
	if !Assigned(id, author, author, ms, 2, 0) {
		t.Fatal("the author is always assigned")
	}
	if !Assigned(id, author, ranked[1], ms, 2, 0) || Assigned(id, author, ranked[2], ms, 2, 0) {
		t.Fatal("exact placement: the first two are assigned, the third is not")
	}
	if !Assigned(id, author, ranked[2], ms, 2, 1) || Assigned(id, author, ranked[3], ms, 2, 1) {
		t.Fatal("slack 1 admits exactly one more")
	}
	stranger := keys(1, 77)[0]
	if Assigned(id, author, stranger, ms, 2, 5) {
		t.Fatal("a key outside the candidates is never assigned")
	}
}
