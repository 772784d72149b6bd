package state

import (
	"fmt"
	"math"

	"github.com/medledger/medledger/chain"
)

// The expiry index lets records leave state at a known height without a scan: whoever writes a
// record that must go at height H appends its key to the index of H, and the block at H deletes
// every key listed there, and the index itself, when it finishes (after its transactions, so a
// record still serves the block at its last height).
//
// The index of one height is a run of pages expire/<H><page>, each listing at most
// maxExpiryPageKeys keys, so no record grows with the number of keys and appending one key
// rewrites one small page. Page 0 holds the number of pages.

// maxExpiryPageKeys bounds one page: a few KiB of keys, cheap to rewrite for every append.
const maxExpiryPageKeys = 64

// maxExpiryKeyLen bounds one listed key (the longest is a 66-byte rate key of a requester and
// a record).
const maxExpiryKeyLen = 80

// expiryRecord is one page of the keys to delete when a block finishes.
type expiryRecord struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Pages   uint32 // page 0: the number of pages of this height (at least 1); other pages: 0
	Keys    [][]byte
}

func (r *expiryRecord) check(height uint64, page uint32) error {
	if len(r.Keys) > maxExpiryPageKeys || (page == 0) != (r.Pages > 0) {
		return fmt.Errorf("state: stored expiry index %d page %d malformed (%d pages, %d keys)", height, page, r.Pages, len(r.Keys))
	}
	for _, k := range r.Keys {
		if len(k) == 0 || len(k) > maxExpiryKeyLen {
			return fmt.Errorf("state: stored expiry index %d page %d lists a key of %d bytes", height, page, len(k))
		}
	}
	return nil
}

func (e *executor) readExpiryPage(height uint64, page uint32) (*expiryRecord, bool, error) {
	var r expiryRecord
	found, err := get(e.o, expiryKey(height, page), "expiry index", &r)
	if err != nil || !found {
		return nil, false, err
	}
	if err := r.check(height, page); err != nil {
		return nil, false, err
	}
	return &r, true, nil
}

// expireAt schedules key for deletion when the block at height finishes. height must be above
// the executing block's, or the key would never be deleted.
func (e *executor) expireAt(height uint64, key []byte) error {
	if height <= e.h.Height {
		panic(fmt.Sprintf("state: expiry at %d scheduled by block %d", height, e.h.Height))
	}
	if len(key) > maxExpiryKeyLen {
		panic(fmt.Sprintf("state: expiring key of %d bytes", len(key)))
	}
	head, found, err := e.readExpiryPage(height, 0)
	if err != nil {
		return err
	}
	if !found {
		head = &expiryRecord{Version: RecordVersion, Pages: 1}
	}
	n := head.Pages - 1
	tail := head
	if n > 0 {
		if tail, found, err = e.readExpiryPage(height, n); err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("state: expiry index %d page %d of %d missing (state corrupt?)", height, n, head.Pages)
		}
	}
	if len(tail.Keys) >= maxExpiryPageKeys {
		if head.Pages == math.MaxUint32 {
			return fmt.Errorf("state: expiry index of height %d is full", height)
		}
		head.Pages++
		n++
		e.o.Set(expiryKey(height, 0), chain.Encode(head))
		tail = &expiryRecord{Version: RecordVersion}
	}
	tail.Keys = append(tail.Keys, key)
	e.o.Set(expiryKey(height, n), chain.Encode(tail))
	return nil
}

// expire deletes what the index schedules for the executing block, and the index.
func (e *executor) expire() error {
	h := e.h.Height
	head, found, err := e.readExpiryPage(h, 0)
	if err != nil || !found {
		return err
	}
	for p := uint32(0); p < head.Pages; p++ {
		page := head
		if p > 0 {
			if page, found, err = e.readExpiryPage(h, p); err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("state: expiry index %d page %d of %d missing (state corrupt?)", h, p, head.Pages)
			}
		}
		for _, k := range page.Keys {
			e.o.Delete(k)
		}
		e.o.Delete(expiryKey(h, p))
	}
	return nil
}
