package frame

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

const testProto = protocol.ID("/frame-test/1")

var errTestRate = errors.New("rate limited")

type penalty struct {
	peer peer.ID
	err  error
}

// serverPair connects a client to a host serving testProto with a Server built from cfg, whose
// handler echoes the request and reports each call on calls; penalties arrive on pens.
func serverPair(t *testing.T, cfg ServerConfig, h Handler) (client host.Host, server host.Host, srv *Server, pens chan penalty) {
	t.Helper()
	mn, err := mocknet.FullMeshConnected(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mn.Close() })
	hosts := mn.Hosts()
	pens = make(chan penalty, 16)
	cfg.Penalize = func(p peer.ID, err error) { pens <- penalty{p, err} }
	srv = NewServer(cfg)
	t.Cleanup(srv.Close)
	hosts[1].SetStreamHandler(testProto, func(st network.Stream) { srv.Serve(st, 64, h) })
	return hosts[0], hosts[1], srv, pens
}

func echo(_ context.Context, _ peer.ID, body []byte) []byte { return body }

// ask sends raw bytes on a new stream and returns the framed answer.
func ask(t *testing.T, c host.Host, to peer.ID, raw []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.NewStream(ctx, to, testProto)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Write(raw); err != nil {
		return nil, err
	}
	_ = st.CloseWrite()
	out, err := Read(st, 64)
	if err != nil {
		return nil, err
	}
	if _, err := st.Read(make([]byte, 1)); err != io.EOF {
		return nil, errors.New("more after the answer")
	}
	return out, nil
}

func frameOf(b []byte) []byte {
	var out []byte
	out = append(out, byte(len(b)))
	return append(out, b...)
}

func TestServerAnswersAndPenalizesSenderFaults(t *testing.T) {
	c, s, _, pens := serverPair(t, ServerConfig{Rate: 100, Burst: 100, Timeout: 5 * time.Second}, echo)
	out, err := ask(t, c, s.ID(), frameOf([]byte("ping")))
	if err != nil || string(out) != "ping" {
		t.Fatalf("answer %q, %v", out, err)
	}
	// A frame over the bound: reset, and the sender is penalized with a SenderFault.
	if _, err := ask(t, c, s.ID(), frameOf(make([]byte, 100))); err == nil {
		t.Fatal("an oversized frame was answered")
	}
	select {
	case p := <-pens:
		var fault *SenderFault
		if p.peer != c.ID() || !errors.As(p.err, &fault) {
			t.Fatalf("penalty %+v, want a SenderFault of the client", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no penalty for an oversized frame")
	}
}

func TestServerHandlerNilResets(t *testing.T) {
	c, s, _, pens := serverPair(t, ServerConfig{Rate: 100, Burst: 100, Timeout: 5 * time.Second},
		func(context.Context, peer.ID, []byte) []byte { return nil })
	if _, err := ask(t, c, s.ID(), frameOf([]byte("x"))); err == nil {
		t.Fatal("a request the handler refused was answered")
	}
	select {
	case p := <-pens:
		t.Fatalf("the server penalized %+v itself: that is the handler's to decide", p)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestServerRateLimit(t *testing.T) {
	for _, scored := range []bool{false, true} {
		cfg := ServerConfig{Rate: 1e-9, Burst: 1, Timeout: 5 * time.Second}
		if scored {
			cfg.RateLimited = errTestRate
		}
		c, s, _, pens := serverPair(t, cfg, echo)
		if _, err := ask(t, c, s.ID(), frameOf([]byte("a"))); err != nil {
			t.Fatal(err)
		}
		if _, err := ask(t, c, s.ID(), frameOf([]byte("b"))); err == nil {
			t.Fatal("a stream over the rate limit was answered")
		}
		select {
		case p := <-pens:
			if !scored || !errors.Is(p.err, errTestRate) {
				t.Fatalf("scored=%v: penalty %+v", scored, p)
			}
		case <-time.After(200 * time.Millisecond):
			if scored {
				t.Fatal("no penalty over the rate limit")
			}
		}
	}
}

func TestServerCloseResetsAndRefuses(t *testing.T) {
	entered := make(chan struct{})
	c, s, srv, _ := serverPair(t, ServerConfig{Rate: 100, Burst: 100, Timeout: time.Minute},
		func(ctx context.Context, _ peer.ID, _ []byte) []byte {
			close(entered)
			<-ctx.Done() // ends when the server closes
			return []byte("late")
		})
	errc := make(chan error, 1)
	go func() { _, err := ask(t, c, s.ID(), frameOf([]byte("slow"))); errc <- err }()
	<-entered
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-errc; err == nil {
		t.Fatal("the stream in flight was answered after Close")
	}
	if _, err := ask(t, c, s.ID(), frameOf([]byte("after"))); err == nil {
		t.Fatal("a stream after Close was answered")
	}
}
