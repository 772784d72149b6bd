package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestReadLen(t *testing.T) {
	const limit = 1000
	cases := []struct {
		name  string
		in    []byte
		n     int
		err   error
		fault bool
	}{
		{"one byte", []byte{5}, 5, nil, false},
		{"at the limit", binary.AppendUvarint(nil, limit), limit, nil, false},
		{"over the limit", binary.AppendUvarint(nil, limit+1), 0, ErrTooLarge, true},
		{"huge", binary.AppendUvarint(nil, 1<<62), 0, ErrTooLarge, true},
		{"endless continuation", bytes.Repeat([]byte{0x80}, 20), 0, ErrTooLarge, true},
		{"zero", []byte{0}, 0, ErrEmpty, true},
		{"truncated", []byte{0x85}, 0, io.ErrUnexpectedEOF, true},
		{"nothing", nil, 0, io.EOF, false},
	}
	for _, c := range cases {
		n, err := ReadLen(bytes.NewReader(c.in), limit)
		var fault *SenderFault
		if n != c.n || !errors.Is(err, c.err) || errors.As(err, &fault) != c.fault {
			t.Errorf("%s: got %d, %v; want %d, %v (sender's fault: %v)", c.name, n, err, c.n, c.err, c.fault)
		}
	}
}

func TestWriteThenReadLen(t *testing.T) {
	for _, size := range []int{1, 127, 128, 64 << 10, 64<<10 + 1} {
		var buf bytes.Buffer
		body := bytes.Repeat([]byte{7}, size)
		if err := Write(&buf, body); err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(buf.Bytes())
		n, err := ReadLen(r, 1<<20)
		if err != nil || n != size || r.Len() != size {
			t.Fatalf("size %d: read length %d, %v, %d bytes left", size, n, err, r.Len())
		}
	}
}

func TestPeerLimits(t *testing.T) {
	l := NewPeerLimits(2, 3)
	p := peer.ID("peer")
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if !l.Allow(p, now) {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	if l.Allow(p, now) {
		t.Fatal("burst exceeded")
	}
	if !l.Allow(p, now.Add(500*time.Millisecond)) {
		t.Fatal("a token earned after half a second at 2/s was refused")
	}
	if l.Allow(p, now.Add(500*time.Millisecond)) {
		t.Fatal("more tokens than earned")
	}
	if !l.Allow(peer.ID("other"), now) {
		t.Fatal("another peer shares the bucket")
	}
}

// FuzzReadLen: the length prefix reader never accepts a length outside 1..limit.
func FuzzReadLen(f *testing.F) {
	f.Add([]byte{0x05})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		n, err := ReadLen(bytes.NewReader(data), limit)
		if err == nil && (n <= 0 || n > limit) {
			t.Fatalf("accepted length %d", n)
		}
	})
}
