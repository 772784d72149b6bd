package p2p

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/medledger/medledger/p2p/frame"
)

// FuzzDirectFrame: reading a direct frame never panics and never accepts a frame over the
// limit.
func FuzzDirectFrame(f *testing.F) {
	var good bytes.Buffer
	if err := frame.Write(&good, []byte("ok payload")); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(binary.AppendUvarint(nil, 1<<16+1))
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 16 // keep allocations small; the limit logic is the same
		r := bytes.NewReader(in)
		n, err := frame.ReadLen(r, limit)
		if err != nil {
			return
		}
		if n <= 0 || n > limit {
			t.Fatalf("frame length %d outside 1..%d", n, limit)
		}
	})
}
