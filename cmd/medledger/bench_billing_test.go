package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/billing"
)

// The bench's claims are valid FHIR Claims with the code sets the duplicate rule needs distinct,
// and its encounter Bundles are well-formed JSON with one Encounter per claim.
func TestBenchClaimDocs(t *testing.T) {
	seen := map[string]bool{}
	for set := range claimCodeSets {
		c, err := billing.ParseClaim(claimDoc("c-1", "claim-00001", "2026-12-05", set))
		require.NoError(t, err, "set %d", set)
		require.Equal(t, "Patient/claim-00001", c.PatientRef)
		key := ""
		for _, code := range c.Codes() {
			key += code + ","
		}
		require.False(t, seen[key], "code set %d repeats %s", set, key)
		seen[key] = true
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	require.NoError(t, json.Unmarshal(encounterBundle("claim-00001", 3, time.Now()), &b))
	require.Len(t, b.Entry, 4)
	require.Equal(t, "Patient", b.Entry[0].Resource.ResourceType)
	require.Equal(t, "Encounter", b.Entry[3].Resource.ResourceType)
}
