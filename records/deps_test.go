package records

import (
	"testing"

	"github.com/medledger/medledger/testnet/purecheck"
)

// The record service is a layer below the node assembly and the API, and reaches the ledger
// only through Ledger: it links neither the replica nor the store. (node/fhir, the FHIR
// library, is not the assembly; it is to move to its own folder.)
func TestImportRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const m = "github.com/medledger/medledger/"
	for _, dir := range []string{".", "blobstore", "journal", "exchange"} {
		purecheck.CheckImports(t, dir, m+"node", m+"node/home/...", m+"api/...", m+"cmd/...", m+"testnet/...",
			m+"consensus/...", m+"chain/store/...")
	}
}
