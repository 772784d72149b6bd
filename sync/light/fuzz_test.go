package light

import (
	"testing"

	"github.com/medledger/medledger/chain"
)

// FuzzDecode feeds hostile bytes to what a wallet and a node decode from each other: nothing
// panics, and what decodes keeps the limits.
func FuzzDecode(f *testing.F) {
	f.Add(chain.Encode(&Request{Version: WireVersion, Kind: KindStatus}))
	f.Add(chain.Encode(&Request{Version: WireVersion, Kind: KindHeaders, From: 1, Count: 3}))
	f.Add(chain.Encode(&Request{Version: WireVersion, Kind: KindProve, Height: 4, Keys: [][]byte{[]byte("meta/tip")}}))
	f.Add(chain.Encode(&Response{Version: WireVersion, Headers: []SignedHeader{{}}}))
	f.Add(chain.Encode(&Response{Version: WireVersion, Proofs: []Proof{{Key: []byte("k"), Exists: true}}}))
	f.Add([]byte{0x86, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := DecodeRequest(data); err == nil {
			if r.Kind == KindProve && (len(r.Keys) == 0 || len(r.Keys) > MaxKeys) {
				t.Fatalf("decoded %d keys", len(r.Keys))
			}
		}
		for _, req := range []*Request{{Kind: KindStatus}, {Kind: KindHeaders, From: 1, Count: 4}, {Kind: KindProve, Height: 3, Keys: [][]byte{[]byte("k")}}} {
			resp, err := DecodeResponse(data, req)
			if err != nil || resp.Status != StatusOK {
				continue
			}
			g := &chain.Genesis{Version: chain.GenesisVersion, ChainID: "fuzz", Authorities: []chain.Authority{{Key: chain.PubKey{1}, Name: "a"}}, Params: chain.DefaultParams()}
			v, err := NewVerifier(g)
			if err != nil {
				t.Fatal(err)
			}
			for i := range resp.Headers {
				_ = v.Accept(&resp.Headers[i])
			}
			for i := range resp.Proofs {
				_, _ = v.Value(&resp.Proofs[i], []byte("k"))
			}
		}
	})
}
