package billing

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
)

// MaxCoverageJSON bounds a FHIR Coverage read here.
const MaxCoverageJSON = 256 << 10

// CoverageFromFHIR reads a payer's FHIR R4 Coverage (validated against the schema like a claim)
// into the CoverageSet the payer files: its period's start and end dates become FromDay and ToDay
// (the dates written, as for a claim's service day; no end: open-ended), and a cancelled
// Coverage is an End. id and patient are the ledger's names (the Coverage names the patient by
// a local reference, returned as written). The Coverage itself stays off the ledger.
func CoverageFromFHIR(data []byte, id chain.Hash, patient chain.Address) (*chain.CoverageSet, string, error) {
	if len(data) > MaxCoverageJSON {
		return nil, "", fmt.Errorf("billing: coverage of %d bytes, more than %d", len(data), MaxCoverageJSON)
	}
	v, err := fhir.Shared()
	if err != nil {
		return nil, "", err
	}
	if err := v.Check(data); err != nil {
		return nil, "", fmt.Errorf("billing: coverage: %w", err)
	}
	var c struct {
		ResourceType string   `json:"resourceType"`
		Status       string   `json:"status"`
		Beneficiary  *fhirRef `json:"beneficiary"`
		Period       *struct {
			Start string `json:"start"`
			End   string `json:"end"`
		} `json:"period"`
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil {
		return nil, "", fmt.Errorf("billing: coverage: %w", err)
	}
	if c.ResourceType != "Coverage" {
		return nil, "", fmt.Errorf("billing: a %s, not a Coverage", c.ResourceType)
	}
	ref := ""
	if c.Beneficiary != nil {
		ref = c.Beneficiary.Reference
	}
	cs := &chain.CoverageSet{ID: id, Patient: patient, End: c.Status == "cancelled"}
	if c.Period == nil || c.Period.Start == "" {
		return nil, ref, fmt.Errorf("billing: coverage without period.start: the ledger needs a first day")
	}
	if cs.FromDay, err = ServiceDay(c.Period.Start); err != nil {
		return nil, ref, fmt.Errorf("billing: coverage start: %w", err)
	}
	if c.Period.End != "" {
		if cs.ToDay, err = ServiceDay(c.Period.End); err != nil {
			return nil, ref, fmt.Errorf("billing: coverage end: %w", err)
		}
	}
	if cs.End {
		// Ending names the coverage only: the ledger ends it from the block's day.
		cs.FromDay, cs.ToDay = 0, 0
	}
	if err := cs.Validate(); err != nil {
		return nil, ref, fmt.Errorf("billing: coverage: %w", err)
	}
	return cs, ref, nil
}
