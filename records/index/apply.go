package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/medledger/medledger/chain"
)

// ApplyBlock applies b's events (Events) at b's height.
func (x *Index) ApplyBlock(b *chain.Block) error {
	return x.Apply(b.Header.Height, b.Hash(), Events(b))
}

// Apply adds a block's events to the index and makes height (and the block's hash) the index's
// tip, in one Badger transaction when the block fits in one; a larger block is written in
// several, the tip in the last. A block at or below the tip is ignored. A block that was written
// only partly (a crash between its transactions) is applied again over what was written:
// entries are keyed by their place in the block, and a record or request is new to a block if
// the index first saw it at that block's height.
//
// As the in-memory index did: an anchor of a record already indexed is ignored; an access of a
// record not indexed (yet, at that point of the block) is ignored; a request is listed once,
// where the ledger first logged it (by its holder or its requester).
func (x *Index) Apply(height uint64, hash chain.Hash, evs []Event) error {
	if x.closed.Load() {
		return errors.New("index: closed")
	}
	s := x.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	t := *s.tip.Load()
	if height <= t.height {
		return nil
	}
	w := &writer{db: s.db, txn: s.db.NewTransaction(true), crashAfter: s.crashAfterParts}
	s.crashAfterParts = 0
	defer func() { w.txn.Discard() }()
	h8 := binary.BigEndian.AppendUint64(nil, height)
	inBlock := make(map[chain.Hash]Record) // anchors of this block so far
	seen := make(map[chain.Hash]bool)      // requests of this block so far
	count := t.count
	for i := range evs {
		e := &evs[i]
		pos := binary.BigEndian.AppendUint32(append([]byte(nil), h8...), uint32(i))
		switch e.Kind {
		case Anchor:
			if _, dup := inBlock[e.ID]; dup {
				continue
			}
			old, ok, err := getRecord(w.txn, e.ID)
			if err != nil {
				return err
			}
			if ok && old.Height < height {
				continue // anchored by an earlier block
			}
			r := Record{ID: e.ID, Patient: e.Patient, Author: e.Author, CiphertextHash: e.CiphertextHash, Height: height, Seq: count}
			count++
			inBlock[e.ID] = r
			seq := binary.BigEndian.AppendUint64(nil, r.Seq)
			rv := make([]byte, 0, recValLen)
			rv = append(append(append(append(rv, r.Patient[:]...), r.Author[:]...), r.CiphertextHash[:]...), h8...)
			rv = append(rv, seq...)
			pv := make([]byte, 0, patValLen)
			pv = append(append(append(append(pv, r.ID[:]...), r.Author[:]...), r.CiphertextHash[:]...), h8...)
			if err := w.set(key(tagRecord, r.ID[:]), rv); err != nil {
				return err
			}
			if err := w.set(key(tagOrder, seq), r.ID[:]); err != nil {
				return err
			}
			if err := w.set(key(tagPatient, r.Patient[:], seq), pv); err != nil {
				return err
			}
		case Consent:
			if err := w.set(key(tagConsent, e.Patient[:], pos), e.ID[:]); err != nil {
				return err
			}
		case Access:
			rec, ok := inBlock[e.Record]
			if !ok {
				var err error
				rec, ok, err = getRecord(w.txn, e.Record)
				if err != nil {
					return err
				}
				// A record first seen at this height but not yet in inBlock is anchored later
				// in this block (by a partial earlier attempt): not indexed at this point.
				ok = ok && rec.Height < height
			}
			if !ok || seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			first, err := get(w.txn, key(tagRequest, e.ID[:]))
			if err != nil {
				return err
			}
			if len(first) == 8 && binary.BigEndian.Uint64(first) < height {
				continue // logged by an earlier block
			}
			if err := w.set(key(tagRequest, e.ID[:]), h8); err != nil {
				return err
			}
			if err := w.set(key(tagAccess, rec.Patient[:], pos), append(append(make([]byte, 0, accValLen), e.ID[:]...), e.Record[:]...)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("index: unknown event kind %d", e.Kind)
		}
	}
	nt := tip{height: height, count: count, hash: hash}
	meta := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, metaLen), height), count)
	if err := w.set([]byte{tagMeta}, append(meta, hash[:]...)); err != nil {
		return err
	}
	if err := w.txn.Commit(); err != nil {
		return fmt.Errorf("index: commit block %d: %w", height, err)
	}
	s.tip.Store(&nt)
	return nil
}

// errCrash is the failure crashAfterParts injects.
var errCrash = errors.New("index: crash injected between two parts of a block")

// writer is a Badger write transaction that commits and starts another when it is full.
type writer struct {
	db         *bdb.DB
	txn        *bdb.Txn
	crashAfter int // tests: fail after this many parts (0: never)
}

func (w *writer) set(k, v []byte) error {
	err := w.txn.Set(k, v)
	if errors.Is(err, bdb.ErrTxnTooBig) {
		if err = w.txn.Commit(); err != nil {
			return fmt.Errorf("index: commit part of a block: %w", err)
		}
		if w.crashAfter--; w.crashAfter == 0 {
			return errCrash
		}
		w.txn = w.db.NewTransaction(true)
		err = w.txn.Set(k, v)
	}
	if err != nil {
		return fmt.Errorf("index: set: %w", err)
	}
	return nil
}

// key joins a tag and parts into a new key.
func key(tag byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 1, n)
	k[0] = tag
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}
