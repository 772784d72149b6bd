package chain

import (
	"fmt"
	"testing"
)

func TestGenesisHashIgnoresHowEmptyLicensingIsSpelled(t *testing.T) {
	k, _ := PrivKeyFromSeed(make([]byte, 32))
	base := `{"version":1,"chain_id":"x","genesis_time_ms":1,"authorities":[{"key":"` + k.Public().String() + `","name":"a"}],%s"params":{"max_block_txs":10,"max_block_bytes":4096,"timeout_propose_ms":1,"timeout_vote_ms":1,"timeout_delta_ms":1,"block_interval_ms":1,"max_clock_drift_ms":1}}`
	var hashes []Hash
	for _, field := range []string{``, `"licensing_authorities":[],`, `"licensing_authorities":null,`} {
		g, err := ParseGenesisJSON([]byte(fmt.Sprintf(base, field)))
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, g.Hash())
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Fatalf("one genesis, several hashes: %v", hashes)
	}
}
