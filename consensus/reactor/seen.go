package reactor

import (
	"container/list"
	"sync"

	"github.com/medledger/medledger/chain"
)

// seenSet remembers the hashes of the most recently delivered payloads, least recently used
// first out. Validators consult it concurrently.
type seenSet struct {
	max int

	mu    sync.Mutex
	order *list.List // of chain.Hash, most recent at the front
	index map[chain.Hash]*list.Element
}

func newSeenSet(max int) *seenSet {
	return &seenSet{max: max, order: list.New(), index: make(map[chain.Hash]*list.Element, max)}
}

// has reports whether h was added and not yet evicted, and refreshes it.
func (s *seenSet) has(h chain.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.index[h]
	if ok {
		s.order.MoveToFront(e)
	}
	return ok
}

// add remembers h, evicting the least recently used hash beyond max.
func (s *seenSet) add(h chain.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.index[h]; ok {
		s.order.MoveToFront(e)
		return
	}
	s.index[h] = s.order.PushFront(h)
	if s.order.Len() > s.max {
		last := s.order.Back()
		s.order.Remove(last)
		delete(s.index, last.Value.(chain.Hash))
	}
}

func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}
