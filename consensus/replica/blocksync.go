package replica

import (
	"fmt"
	"slices"
)

// Block sync limits.
const (
	// MaxSyncBatch bounds how many blocks one sync response carries, and maxSyncReplyBytes
	// their total size, well inside MaxMessageBytes.
	MaxSyncBatch      = 32
	maxSyncReplyBytes = 8 << 20
	// maxSyncCandidates bounds the peers remembered as being ahead.
	maxSyncCandidates = 64
	// syncBadForMs is how long a peer that sent a bad sync response is not asked again.
	syncBadForMs = 60_000
)

// blockSync decides whom to ask for committed blocks and when. A replica learns that peers are
// ahead from their messages for later heights; it asks one of them at a time, at most once per
// interval unless the last answer was full (then at once: a node hundreds of heights behind
// streams batches), and never a peer whose last answer was invalid, for a while. Answers from a
// peer that was not asked recently are ignored (a late or duplicated answer is no offence, but
// nobody can make a replica execute blocks it did not ask for).
type blockSync struct {
	intervalMs int64
	ahead      map[PeerID]uint64 // peer -> highest height it showed us
	bad        map[PeerID]int64  // peer -> not asked again before
	pending    map[PeerID]int64  // peer -> when it was asked, until it answers
	asked      PeerID            // the peer asked last
	lastAsk    int64
	rotate     int
	dirty      bool // pending changed since awaiting was last called
}

// maxPendingSync bounds the requests awaiting an answer.
const maxPendingSync = 8

func newBlockSync(intervalMs int64) *blockSync {
	return &blockSync{intervalMs: intervalMs, ahead: make(map[PeerID]uint64), bad: make(map[PeerID]int64), pending: make(map[PeerID]int64)}
}

// sawAhead records that peer showed a message for height h, above the one being decided.
func (s *blockSync) sawAhead(peer PeerID, h uint64) {
	if _, ok := s.ahead[peer]; !ok && len(s.ahead) >= maxSyncCandidates {
		// Forget the candidate showing the lowest height.
		var low PeerID
		first := true
		for p, ph := range s.ahead {
			if first || ph < s.ahead[low] || (ph == s.ahead[low] && p < low) {
				low, first = p, false
			}
		}
		delete(s.ahead, low)
	}
	s.ahead[peer] = max(s.ahead[peer], h)
}

// highest is the highest height a remembered peer showed (0: none).
func (s *blockSync) highest() uint64 {
	var h uint64
	for _, ph := range s.ahead {
		h = max(h, ph)
	}
	return h
}

// request returns the peer to ask for blocks from height from, if it is time to ask.
func (s *blockSync) request(from uint64, now int64, urgent bool) (PeerID, bool) {
	if !urgent && now-s.lastAsk < s.intervalMs {
		return "", false
	}
	var peers []PeerID
	for p, h := range s.ahead {
		if h >= from && now >= s.bad[p] {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return "", false
	}
	slices.Sort(peers)
	s.rotate++
	p := peers[s.rotate%len(peers)]
	if urgent && s.asked != "" && slices.Contains(peers, s.asked) {
		p = s.asked // the peer that just answered in full has more
	}
	s.asked, s.lastAsk = p, now
	if _, ok := s.pending[p]; !ok && len(s.pending) >= maxPendingSync {
		for q, at := range s.pending {
			if now-at > s.timeout() {
				delete(s.pending, q)
				s.dirty = true
			}
		}
		if len(s.pending) >= maxPendingSync {
			return "", false
		}
	}
	if _, ok := s.pending[p]; !ok {
		s.dirty = true
	}
	s.pending[p] = now
	return p, true
}

func (s *blockSync) timeout() int64 { return 10*s.intervalMs + 10_000 }

// answer reports whether a sync response from peer answers a request this replica made and is
// still waiting on, and marks it answered.
func (s *blockSync) answer(peer PeerID, now int64) bool {
	at, ok := s.pending[peer]
	if ok {
		delete(s.pending, peer)
		s.dirty = true
	}
	return ok && now-at <= s.timeout()
}

// awaiting returns the peers asked for blocks that have not answered yet, if that changed
// since the last call (nil, false otherwise).
func (s *blockSync) awaiting() (map[PeerID]bool, bool) {
	if !s.dirty {
		return nil, false
	}
	s.dirty = false
	out := make(map[PeerID]bool, len(s.pending))
	for p := range s.pending {
		out[p] = true
	}
	return out, true
}

// failed marks peer as having sent an invalid answer.
func (s *blockSync) failed(peer PeerID, now int64) {
	s.bad[peer] = now + syncBadForMs
	delete(s.ahead, peer)
	if s.asked == peer {
		s.asked = ""
	}
	for p, until := range s.bad {
		if until < now {
			delete(s.bad, p)
		}
	}
}

// serveSync answers a sync request with up to MaxSyncBatch committed blocks from height from,
// stopping before the reply outgrows what a peer will decode.
func (r *Replica) serveSync(to PeerID, from uint64, out *Output) error {
	var reply Message
	reply.Version = MessageVersion
	size := 0
	for h := from; h <= r.store.Height() && len(reply.SyncBlocks) < MaxSyncBatch; h++ {
		b, err := r.store.Block(h)
		if err != nil {
			return fmt.Errorf("replica: serve sync: %w", err)
		}
		c, err := r.store.Cert(h)
		if err != nil {
			return fmt.Errorf("replica: serve sync: %w", err)
		}
		// The first block always goes, and any block fits alone (chain.MaxBlockBytes).
		size += len(b.Encode()) + len(c.Encode())
		if len(reply.SyncBlocks) > 0 && size > maxSyncReplyBytes {
			break
		}
		reply.SyncBlocks = append(reply.SyncBlocks, b)
		reply.SyncCerts = append(reply.SyncCerts, c)
	}
	if len(reply.SyncBlocks) > 0 {
		out.Unicast = append(out.Unicast, Addressed{To: to, Msg: &reply})
	}
	return nil
}

// askForBlocks sends a sync request if one is due.
func (r *Replica) askForBlocks(now int64, urgent bool, out *Output) {
	from := r.engine.Height()
	if p, ok := r.sync.request(from, now, urgent); ok {
		out.Unicast = append(out.Unicast, Addressed{To: p, Msg: &Message{Version: MessageVersion, SyncFrom: from}})
	}
}

// applySync commits blocks a peer sent with their certificates. A certificate from more than two
// thirds of the height's authority set is all the proof a replica needs; the header must still
// match this replica's chain, and the block is executed before it is stored.
func (r *Replica) applySync(from PeerID, m *Message, now int64, out *Output) error {
	if !r.sync.answer(from, now) {
		return nil
	}
	applied := 0
	for i, b := range m.SyncBlocks {
		h := b.Header.Height
		if h < r.engine.Height() {
			continue
		}
		if h > r.engine.Height() {
			break // a gap: the next request fills it
		}
		cert := m.SyncCerts[i]
		if err := cert.Verify(r.consensusID, r.current, h, b.Hash()); err != nil {
			r.sync.failed(from, now)
			return fmt.Errorf("%w: sync block %d: %w", ErrInvalid, h, err)
		}
		if err := r.validateHeader(&b.Header, now, false); err != nil {
			r.sync.failed(from, now)
			return fmt.Errorf("%w: sync block %d: %w", ErrInvalid, h, err)
		}
		if err := r.commit(b, cert, now, out); err != nil {
			return err
		}
		applied++
	}
	if applied > 0 && (len(m.SyncBlocks) == MaxSyncBatch || r.sync.ahead[from] > r.engine.Height()) {
		// The peer has more: ask again at once rather than wait for the interval.
		r.askForBlocks(now, true, out)
	}
	return nil
}
