package chain_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
)

func TestGenesisJSONRoundTrip(t *testing.T) {
	g := testGenesis(t)
	data := g.JSON()
	got, err := chain.ParseGenesisJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, g) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, g)
	}
	if got.Hash() != g.Hash() || !bytes.Equal(got.JSON(), data) {
		t.Fatal("hash or JSON changed in a round trip")
	}
	// Keys appear as hex, fields under their documented names.
	for _, want := range []string{`"chain_id": "` + chainA + `"`, `"key": "` + g.Authorities[0].Key.String() + `"`, `"max_block_txs": 2000`, `"genesis_time_ms"`, `"licensing_authorities"`} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("genesis JSON lacks %s:\n%s", want, data)
		}
	}
	set := got.AuthoritySet()
	want, err := chain.NewAuthoritySet(g.Authorities)
	if err != nil || set.Size() != 4 || set.Hash() != want.Hash() {
		t.Fatal("genesis authority set")
	}
}

func TestGenesisRejects(t *testing.T) {
	valid := string(testGenesis(t).JSON())
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(valid, old) {
			t.Fatalf("genesis JSON lacks %q", old)
		}
		return strings.Replace(valid, old, new, 1)
	}
	g := testGenesis(t)
	dup := testGenesis(t)
	dup.Authorities = append(dup.Authorities, dup.Authorities[0])
	noAuth := testGenesis(t)
	noAuth.Authorities = nil
	for _, tc := range []struct {
		name string
		data string
		want error
	}{
		{"unknown top-level field", replace(`"version": 1,`, `"version": 1, "extra": true,`), nil},
		{"unknown params field", replace(`"max_block_txs"`, `"block_gas": 1, "max_block_txs"`), nil},
		{"unknown authority field", replace(`"name": "authority"`, `"name": "authority", "weight": 2`), nil},
		{"trailing object", valid + `{"version": 1}`, nil},
		{"trailing garbage", valid + "x", nil},
		{"version 2", replace(`"version": 1`, `"version": 2`), chain.ErrUnknownVersion},
		{"empty chain id", replace(`"chain_id": "`+chainA+`"`, `"chain_id": ""`), nil},
		{"bad key", replace(g.Authorities[0].Key.String(), "00"), nil},
		{"duplicate authority", string(dup.JSON()), nil},
		{"no authorities", string(noAuth.JSON()), nil},
		{"zero block txs", replace(`"max_block_txs": 2000`, `"max_block_txs": 0`), nil},
		{"block txs over the hard limit", replace(`"max_block_txs": 2000`, `"max_block_txs": 100001`), nil},
		{"block bytes over the hard limit", replace(`"max_block_bytes": 1024000`, `"max_block_bytes": 16777217`), nil},
		{"zero propose timeout", replace(`"timeout_propose_ms": 1000`, `"timeout_propose_ms": 0`), nil},
		{"negative number", replace(`"max_block_txs": 2000`, `"max_block_txs": -1`), nil},
		{"not JSON", "version = 1", nil},
		{"too large", valid + strings.Repeat(" ", chain.MaxGenesisBytes), chain.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chain.ParseGenesisJSON([]byte(tc.data))
			if err == nil || got != nil {
				t.Fatalf("accepted: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q is not %v", err, tc.want)
			}
		})
	}
	// Trailing whitespace is fine.
	if _, err := chain.ParseGenesisJSON([]byte(valid + "\n\n  ")); err != nil {
		t.Fatal(err)
	}
}

func TestParamsValidate(t *testing.T) {
	p := chain.DefaultParams()
	if err := p.Validate(); err != nil {
		t.Fatalf("default params: %v", err)
	}
	p.MaxBlockTxs, p.MaxBlockBytes = chain.MaxBlockTxsLimit, chain.MaxBlockBytes
	if err := p.Validate(); err != nil {
		t.Fatalf("params at the hard limits: %v", err)
	}
	if p.ReplicaCount() != chain.DefaultReplicas {
		t.Fatalf("replicas 0 counts %d, want the default %d", p.ReplicaCount(), chain.DefaultReplicas)
	}
	p.Replicas = chain.MaxReplicas
	if err := p.Validate(); err != nil || p.ReplicaCount() != chain.MaxReplicas {
		t.Fatalf("replicas at the limit: %v, count %d", err, p.ReplicaCount())
	}
	p.Replicas++
	if err := p.Validate(); err == nil {
		t.Fatal("replicas above the limit validated")
	}
}
