package state

import (
	"fmt"
	"slices"

	"github.com/medledger/medledger/chain"
)

// The authority-set history: evidence is judged against the set that certified the votes' height,
// not against today's set, so state keeps, for every set that certified a height evidence may
// still name (the last MaxEvidenceAge heights), the height it took over from and its hash; the
// sets themselves are stored once each under their hash. Both are pruned as blocks pass.

// MaxAuthorityEpochs bounds the history. A set change is rare (a vote of more than two thirds of
// the authorities, or an offender removed), so 64 changes within MaxEvidenceAge heights is far
// beyond normal operation; if it happens the oldest epochs go first and evidence from before the
// oldest retained one is refused, as if it were too old.
const MaxAuthorityEpochs = 64

// AuthorityEpoch says that the set with hash SetHash certified every height from From up to the
// next epoch's From (exclusive); the last epoch's set certifies the next block.
type AuthorityEpoch struct {
	_       struct{} `cbor:",toarray"`
	From    uint64
	SetHash chain.Hash
}

type epochsRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Epochs  []AuthorityEpoch // oldest first, From strictly increasing
}

func readEpochs(view View) ([]AuthorityEpoch, error) {
	var r epochsRecord
	if err := mustGet(view, keyEpochs, "authority epochs", &r); err != nil {
		return nil, err
	}
	if len(r.Epochs) == 0 || len(r.Epochs) > MaxAuthorityEpochs {
		return nil, fmt.Errorf("state: stored authority epochs: %d epochs, want 1..%d", len(r.Epochs), MaxAuthorityEpochs)
	}
	for i := 1; i < len(r.Epochs); i++ {
		if r.Epochs[i].From <= r.Epochs[i-1].From {
			return nil, fmt.Errorf("state: stored authority epochs not in height order at %d", i)
		}
	}
	return r.Epochs, nil
}

func writeEpochs(o *Overlay, epochs []AuthorityEpoch) {
	o.Set(keyEpochs, chain.Encode(&epochsRecord{Version: RecordVersion, Epochs: epochs}))
}

// epochAt returns the epoch whose set certified height, or false when height is before the
// oldest retained epoch. Callers make sure height is not beyond the next block.
func epochAt(epochs []AuthorityEpoch, height uint64) (AuthorityEpoch, bool) {
	// The first epoch starting after height; the one before it is height's.
	i, _ := slices.BinarySearchFunc(epochs, height+1, func(e AuthorityEpoch, h uint64) int {
		switch {
		case e.From < h:
			return -1
		case e.From > h:
			return 1
		}
		return 0
	})
	if i == 0 {
		return AuthorityEpoch{}, false
	}
	return epochs[i-1], true
}

// readSetByHash reads a set of the history and checks that it is the one named.
func readSetByHash(view View, h chain.Hash) (*chain.AuthoritySet, error) {
	s, err := readSet(view, authSetKey(h), "authority set "+h.Short())
	if err != nil {
		return nil, err
	}
	if s.Hash() != h {
		return nil, fmt.Errorf("state: stored authority set %s has hash %s", h.Short(), s.Hash().Short())
	}
	return s, nil
}

// startEpochs writes the history of a new chain: the genesis set certifies from height 1.
func startEpochs(o *Overlay, set *chain.AuthoritySet) {
	writeSet(o, authSetKey(set.Hash()), set)
	writeEpochs(o, []AuthorityEpoch{{From: 1, SetHash: set.Hash()}})
}

// advanceEpochs runs in finish: if set(h+1) differs from set(h) a new epoch starts at h+1; then
// epochs no evidence in block h+1 can name any more, and epochs beyond MaxAuthorityEpochs, are
// dropped, with every stored set no retained epoch names. It writes nothing when nothing changes.
func (e *executor) advanceEpochs() error {
	epochs, err := readEpochs(e.o)
	if err != nil {
		return err
	}
	changed := false
	next := e.h.Height + 1
	if !setsEqual(e.cur, e.oldAfter) {
		h := e.oldAfter.Hash()
		stored, err := exists(e.o, authSetKey(h), "authority set")
		if err != nil {
			return err
		}
		if !stored {
			writeSet(e.o, authSetKey(h), e.oldAfter)
		}
		epochs = append(epochs, AuthorityEpoch{From: next, SetHash: h})
		changed = true
	}
	// Evidence in block next names heights from next-MaxEvidenceAge on; epoch 0 ends before
	// epochs[1].From.
	var dropped []AuthorityEpoch
	for len(epochs) > 1 && (len(epochs) > MaxAuthorityEpochs || (next > MaxEvidenceAge && epochs[1].From <= next-MaxEvidenceAge)) {
		dropped = append(dropped, epochs[0])
		epochs = epochs[1:]
	}
	for i, d := range dropped {
		named := func(x AuthorityEpoch) bool { return x.SetHash == d.SetHash }
		if !slices.ContainsFunc(epochs, named) && !slices.ContainsFunc(dropped[:i], named) {
			e.o.Delete(authSetKey(d.SetHash))
		}
	}
	if changed || len(dropped) > 0 {
		writeEpochs(e.o, slices.Clone(epochs))
	}
	return nil
}

// setAt returns the set that certified height (at most the executing block's); when height is
// older than the retained history it returns nil and the first height of the oldest epoch.
func (e *executor) setAt(height uint64) (*chain.AuthoritySet, uint64, error) {
	epochs, err := readEpochs(e.o)
	if err != nil {
		return nil, 0, err
	}
	ep, ok := epochAt(epochs, height)
	if !ok {
		return nil, epochs[0].From, nil
	}
	s, err := readSetByHash(e.o, ep.SetHash)
	return s, 0, err
}

// AuthoritySetAt returns the set that certified (or will certify) height, for heights from the
// oldest retained epoch (see MaxAuthorityEpochs) to H+2 after block H. Older heights, and later
// ones, are an error.
func AuthoritySetAt(view View, height uint64) (*chain.AuthoritySet, error) {
	tip, _, err := Tip(view)
	if err != nil {
		return nil, err
	}
	switch {
	case height == 0:
		return nil, fmt.Errorf("state: no authority set certifies height 0")
	case height == tip+2:
		return readSet(view, keyAfter, "authority set (after next)")
	case height > tip+2:
		return nil, fmt.Errorf("state: the set certifying height %d is not known at height %d", height, tip)
	}
	epochs, err := readEpochs(view)
	if err != nil {
		return nil, err
	}
	ep, ok := epochAt(epochs, height)
	if !ok {
		return nil, fmt.Errorf("state: height %d is older than the oldest retained authority set (from height %d)", height, epochs[0].From)
	}
	return readSetByHash(view, ep.SetHash)
}
