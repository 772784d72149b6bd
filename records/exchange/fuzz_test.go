package exchange

import (
	"bytes"
	"testing"

	"github.com/medledger/medledger/chain"
)

// FuzzDecodeRequest: no input makes the request decoder (or the server's checks after it) panic,
// and whatever it accepts is canonical and of a known kind.
func FuzzDecodeRequest(f *testing.F) {
	record := chain.Sum256([]byte("record"))
	key := signingKey(f, 1)
	fetch := chain.Encode(&Request{Version: MessageVersion, Kind: KindFetch, Fetch: chain.Encode(accessRequest(f, key, record, 1))})
	sl := sealed(f, record, "body", 1)
	push := chain.Encode(&Request{Version: MessageVersion, Kind: KindPush, Push: pushRequest(f, key, record, sl)})
	envOnly := &PushRequest{Record: record, CiphertextHash: sl.CiphertextHash(), Envelopes: sl.Envelopes}
	envOnly.Sign(key, testChain)
	f.Add(fetch)
	f.Add(push)
	f.Add(chain.Encode(&Request{Version: MessageVersion, Kind: KindPush, Push: envOnly}))
	f.Add(chain.Encode(&Request{Version: MessageVersion, Kind: KindFetch}))
	f.Add(chain.Encode(&Request{Version: MessageVersion, Kind: KindPull, Pull: &PullRequest{Version: MessageVersion, Record: record, CiphertextHash: sl.CiphertextHash()}}))
	f.Add([]byte{0x85, 0x01, 0x02, 0xf6, 0xf6, 0x87})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			return
		}
		if !bytes.Equal(chain.Encode(r), data) {
			t.Fatal("accepted a non-canonical request")
		}
		switch r.Kind {
		case KindFetch:
			if len(data) > MaxFetchRequestBytes {
				t.Fatalf("accepted a fetch of %d bytes", len(data))
			}
			if ar, err := chain.DecodeAccessRequest(r.Fetch); err == nil {
				_ = ar.VerifySig(testChain)
			}
		case KindPush:
			_ = r.Push.VerifySig(testChain)
			_ = r.Push.CheckCiphertext()
		case KindPull:
			if len(data) > MaxPullRequestBytes {
				t.Fatalf("accepted a pull of %d bytes", len(data))
			}
		default:
			t.Fatalf("accepted kind %d", r.Kind)
		}
	})
}

// FuzzDecodeResponses: no response makes the client's decoders panic.
func FuzzDecodeResponses(f *testing.F) {
	f.Add(chain.Encode(&FetchResponse{Version: MessageVersion, Status: StatusOK, Ciphertext: []byte{1}}))
	f.Add(chain.Encode(&FetchResponse{Version: MessageVersion, Status: StatusRefused, Reason: "no"}))
	f.Add(chain.Encode(&PushResponse{Version: MessageVersion, Status: StatusOK}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := decodeFetchResponse(data); err == nil && !bytes.Equal(chain.Encode(r), data) {
			t.Fatal("accepted a non-canonical fetch response")
		}
		if r, err := decodePushResponse(data); err == nil && !bytes.Equal(chain.Encode(r), data) {
			t.Fatal("accepted a non-canonical push response")
		}
	})
}
