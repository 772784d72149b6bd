package p2p

import (
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/p2p/frame"
)

// directProtocol names the direct stream protocol of network chainID.
func directProtocol(chainID string) protocol.ID {
	return protocol.ID("/medledger/" + chainID + "/direct/1.0.0")
}

// Direct protocol limits.
const (
	// MaxDirectMessageBytes bounds one frame: the largest replica message (a full block, or a
	// sync batch).
	MaxDirectMessageBytes = replica.MaxMessageBytes
	// directReadTimeout bounds reading one frame, directWriteTimeout writing one.
	directReadTimeout  = 30 * time.Second
	directWriteTimeout = 30 * time.Second
	// directRate and directBurst limit the streams one peer may open per second (a catching-up
	// node asks for one batch at a time; a big proposal is one stream per round).
	directRate  = 50
	directBurst = 100
)

// handleDirect is the typed core of the direct protocol: given the body of one frame, it returns
// the message to deliver or why the sender is at fault. Every kind may arrive directly (sync
// requests and responses, proposals too large for gossip, anything Send was asked to carry), and
// the kinds that carry a signature must verify under chainID.
func handleDirect(chainID string, body []byte) (*replica.Message, error) {
	m, err := replica.DecodeMessage(body)
	if err != nil {
		return nil, err
	}
	if err := checkSignatures(chainID, m); err != nil {
		return nil, err
	}
	return m, nil
}

// handleStream serves one inbound direct stream: rate limit (before reading a byte), deadline,
// bounded length prefix, memory reserved with the resource manager, then handleDirect. Any
// failure resets the stream; a malformed frame or message also strikes the peer.
func (h *Host) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	if !h.limiter.Allow(from, h.now()) {
		h.stats.directRateLimited.Add(1)
		_ = s.Reset()
		return
	}
	if err := s.SetReadDeadline(h.now().Add(directReadTimeout)); err != nil {
		_ = s.Reset()
		return
	}
	m, err := h.readDirect(s)
	if err != nil {
		_ = s.Reset()
		var fault *peerFault
		if errors.As(err, &fault) {
			h.stats.directRejected.Add(1)
			h.Penalize(replica.PeerID(from.String()), fault.err)
		}
		return
	}
	_ = s.Close()
	h.deliver(from, m)
}

// peerFault marks errors that are the remote peer's fault (not a timeout or a local limit).
type peerFault struct{ err error }

func (f *peerFault) Error() string { return f.err.Error() }
func (f *peerFault) Unwrap() error { return f.err }

func (h *Host) readDirect(s network.Stream) (*replica.Message, error) {
	body, err := frame.Read(s, MaxDirectMessageBytes)
	if err != nil {
		if fault := (*frame.SenderFault)(nil); errors.As(err, &fault) {
			return nil, &peerFault{err}
		}
		return nil, err
	}
	m, err := handleDirect(h.chainID, body)
	if err != nil {
		return nil, &peerFault{err}
	}
	return m, nil
}
