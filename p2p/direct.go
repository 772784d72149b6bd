package p2p

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medledger/medledger/p2p/frame"
)

// directProtocol names the direct stream protocol of network chainID.
func directProtocol(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/direct/1.0.0")
}

// Direct protocol limits.
const (
	// DefaultMaxDirectBytes is the direct protocol's frame limit when Config.MaxDirectBytes is 0.
	DefaultMaxDirectBytes = 1 << 20
	// directReadTimeout bounds reading one frame, directWriteTimeout writing one.
	directReadTimeout  = 30 * time.Second
	directWriteTimeout = 30 * time.Second
	// directRate and directBurst limit the streams one peer may open per second (a catching-up
	// node asks for one batch at a time; a big proposal or a re-send is one stream per round).
	directRate  = 50
	directBurst = 100
	// maxDirectSends bounds direct sends in flight, maxPeerSends those to one peer (so a slow
	// peer cannot hold every slot); more are dropped and counted.
	maxDirectSends = 64
	maxPeerSends   = 8
	// DirectHeadBytes is how much of a longer direct payload the head validator sees before the
	// rest is read: enough for a replica message's proposal and block header.
	DirectHeadBytes = 4 << 10
)

// HeadValidator judges a direct payload of size bytes, longer than DirectHeadBytes, from its
// first DirectHeadBytes, before the rest is read or memory is reserved for it. Reject and Ignore
// end the stream there (reset), with what they mean for a whole payload (a Reject strikes the
// sender); Accept means "cannot refuse it from its head": the rest is read and the Validator
// judges the whole payload.
type HeadValidator func(from peer.ID, head []byte, size int) Verdict

// HandleDirect sets the validator of payloads arriving over the direct protocol: one
// length-prefixed frame per stream, read after the per-peer rate limit, under a deadline, within
// the frame limit and with its memory reserved from the resource manager. What v accepts goes
// to the inbox (Delivery.Topic ""); a Reject resets the stream and strikes the sender. Until
// it is set, inbound streams are reset.
func (h *Host) HandleDirect(v Validator) { h.directV.Store(&v) }

// HandleDirectHead sets the head validator of direct payloads longer than DirectHeadBytes (see
// HeadValidator); until it is set, every payload is read whole.
func (h *Host) HandleDirectHead(v HeadValidator) { h.directHead.Store(&v) }

// handleStream serves one inbound direct stream: rate limit (before reading a byte), deadline,
// bounded length prefix, the head validator for a long payload (before the rest is read), memory
// reserved with the resource manager, then the validator. Any failure resets the stream; a
// malformed frame or a rejected payload also strikes the peer.
func (h *Host) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	v := h.directV.Load()
	if v == nil { // nobody to hand the payload to yet
		_ = s.Reset()
		return
	}
	if !h.limiter.Allow(from, h.now()) {
		h.stats.directRateLimited.Add(1)
		_ = s.Reset()
		return
	}
	if err := s.SetReadDeadline(h.now().Add(directReadTimeout)); err != nil {
		_ = s.Reset()
		return
	}
	var judgeHead func([]byte, int) bool
	headVerdict := Accept
	if hv := h.directHead.Load(); hv != nil {
		judgeHead = func(head []byte, size int) bool {
			headVerdict = (*hv)(from, head, size)
			return headVerdict == Accept
		}
	}
	body, err := frame.ReadJudged(s, h.maxDirect, DirectHeadBytes, judgeHead)
	if errors.Is(err, frame.ErrRefusedHead) {
		// Reset, not Close: the sender stops sending the rest.
		_ = s.Reset()
		h.stats.directHeadRefused.Add(1)
		if headVerdict == Ignore {
			h.stats.directIgnored.Add(1)
			return
		}
		h.stats.directRejected.Add(1)
		h.Penalize(from, Invalid(fmt.Errorf("p2p: invalid direct payload, refused from its first %d bytes", DirectHeadBytes)))
		return
	}
	if err != nil {
		_ = s.Reset()
		if fault := (*frame.SenderFault)(nil); errors.As(err, &fault) {
			h.stats.directRejected.Add(1)
			h.Penalize(from, Invalid(err))
		}
		return
	}
	verdict, value := (*v)(from, body)
	switch verdict {
	case Accept:
		_ = s.Close()
		h.deliver(Delivery{From: from, Size: len(body), Value: value}, body)
	case Ignore:
		_ = s.Close()
		h.stats.directIgnored.Add(1)
	default:
		_ = s.Reset()
		h.stats.directRejected.Add(1)
		h.Penalize(from, Invalid(fmt.Errorf("p2p: invalid direct payload of %d bytes", len(body))))
	}
}

// SendDirect sends data to p over the direct protocol, in the background; false if it was
// dropped (too large, too many sends in flight, or the host is closing).
func (h *Host) SendDirect(p peer.ID, data []byte) bool {
	if p == h.self {
		return false
	}
	return h.send([]peer.ID{p}, data) == 1
}

// SendDirectAll sends data to every connected member over the direct protocol, in the
// background, and returns how many sends it started. For payloads gossip would drop as seen (a
// re-send) or cannot carry (over a topic's limit): consensus traffic, which candidates do not
// get (they get only what they ask for, with SendDirect).
func (h *Host) SendDirectAll(data []byte) int {
	ps := slices.DeleteFunc(h.host.Network().Peers(), func(p peer.ID) bool { return h.adm.class(p) != Member })
	return h.send(ps, data)
}

// sendBuf is one payload shared by the sends of one call; its bytes count against sendBytes
// once, until its last send ends.
type sendBuf struct {
	data []byte
	refs int
}

// sendLimits account direct sends in flight: by count in total and per peer, and by the bytes
// of the distinct payloads they carry.
type sendLimits struct {
	mu       sync.Mutex
	inFlight int
	perPeer  map[peer.ID]int
	bytes    int
	maxBytes int
}

// send starts one background write per peer in ps, within the limits, and returns how many
// it started.
func (h *Host) send(ps []peer.ID, data []byte) int {
	if len(data) > h.maxDirect {
		h.log.Error("p2p: payload too large to send", "bytes", len(data), "limit", h.maxDirect)
		return 0
	}
	l := &h.sends
	buf := &sendBuf{data: data}
	var started []peer.ID
	l.mu.Lock()
	if l.bytes+len(data) > l.maxBytes {
		l.mu.Unlock()
		h.stats.sendDropped.Add(uint64(len(ps)))
		return 0
	}
	for _, p := range ps {
		if p == h.self {
			continue
		}
		if l.inFlight >= maxDirectSends || l.perPeer[p] >= maxPeerSends || !h.track() {
			h.stats.sendDropped.Add(1)
			continue
		}
		l.inFlight++
		l.perPeer[p]++
		buf.refs++
		started = append(started, p)
	}
	if buf.refs > 0 {
		l.bytes += len(data)
	}
	l.mu.Unlock()
	for _, p := range started {
		go func() {
			defer h.wg.Done()
			defer h.sent(p, buf)
			if err := h.writeDirect(p, buf.data); err != nil {
				h.stats.sendFailed.Add(1)
				h.log.Debug("p2p: direct send", "to", p, "err", err)
			}
		}()
	}
	return len(started)
}

func (h *Host) sent(p peer.ID, buf *sendBuf) {
	l := &h.sends
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	if l.perPeer[p]--; l.perPeer[p] <= 0 {
		delete(l.perPeer, p)
	}
	if buf.refs--; buf.refs == 0 {
		l.bytes -= len(buf.data)
	}
}

func (h *Host) writeDirect(p peer.ID, data []byte) error {
	ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
	defer cancel()
	s, err := h.host.NewStream(ctx, p, h.direct)
	if err != nil {
		return err
	}
	if err := s.SetWriteDeadline(h.now().Add(directWriteTimeout)); err != nil {
		_ = s.Reset()
		return err
	}
	if err := frame.Write(s, data); err != nil {
		_ = s.Reset()
		return err
	}
	return s.Close()
}
