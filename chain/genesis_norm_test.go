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
	for _, field := range []string{`"attestation_issuers":[],`, `"attestation_issuers":null,`} {
		g, err := ParseGenesisJSON([]byte(fmt.Sprintf(base, field)))
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, g.Hash())
	}
	for i := range hashes {
		if hashes[i] != hashes[0] {
			t.Fatalf("one genesis, several hashes: %v", hashes)
		}
	}
	g, _ := ParseGenesisJSON([]byte(fmt.Sprintf(base, "")))
	g.LicensingAuthorities, g.Issuers = nil, nil // as built in code
	if g.Hash() != hashes[0] {
		t.Fatal("a genesis built in code hashes unlike its JSON file")
	}
}
