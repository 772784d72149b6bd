package state

import (
	"fmt"

	"github.com/medledger/medledger/chain"
)

// Point reads of schedules, coverage and claims, for the node and the wallet.

// ActivePayer returns the payer registered at a if it is active at block time timeMs, or nil, nil.
func ActivePayer(view View, a chain.Address, timeMs int64) (*MemberRecord, error) {
	m, err := memberOfRole(view, a, chain.RolePayer)
	if err != nil || !m.ActiveAt(timeMs) {
		return nil, err
	}
	return m, nil
}

// Schedule returns payer's schedule for provider, or nil, nil.
func Schedule(view View, payer, provider chain.Address) (*ScheduleRecord, error) {
	var r ScheduleRecord
	found, err := get(view, scheduleKey(payer, provider), "payer schedule", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// Coverage returns the coverage with id, or nil, nil.
func Coverage(view View, id chain.Hash) (*CoverageRecord, error) {
	var r CoverageRecord
	found, err := get(view, coverageKey(id), "coverage", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// Coverages returns payer's coverages of patient that claims may still use, in creation order
// (ended ones included: CoversDay says which days they cover).
func Coverages(view View, payer, patient chain.Address) ([]*CoverageRecord, error) {
	idx, err := readCoverageIndex(view, payer, patient)
	if err != nil {
		return nil, err
	}
	var out []*CoverageRecord
	for _, id := range idx.IDs {
		c, err := Coverage(view, id)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("state: indexed coverage %s missing (state corrupt?)", id.Short())
		}
		out = append(out, c)
	}
	return out, nil
}

// Claim returns the claim with id, or nil, nil.
func Claim(view View, id chain.Hash) (*ClaimRecord, error) {
	var r ClaimRecord
	found, err := get(view, claimKey(id), "claim", &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

// ClaimWithPrint returns the id of provider's claim with duplicate print p (chain.ClaimDupPrint),
// or zero: what a node asks before filing.
func ClaimWithPrint(view View, provider chain.Address, p chain.Fingerprint) (chain.Hash, error) {
	var r claimDupRecord
	if _, err := get(view, claimDupKey(provider, p), "claim duplicate print", &r); err != nil {
		return chain.Hash{}, err
	}
	return r.Claim, nil
}

// ClaimVolume is a provider's claim history as the volume rule sees it.
type ClaimVolume struct {
	Day     uint32 // the last day with a claim
	Count   uint32 // claims filed on Day
	Average uint64 // per past day, in VolumeScale units
	Days    uint32 // days of history before Day
}

// ProviderClaimVolume returns provider's claim history (zero if it never filed).
func ProviderClaimVolume(view View, provider chain.Address) (ClaimVolume, error) {
	var r claimVolumeRecord
	if _, err := get(view, claimVolKey(provider), "claim volume", &r); err != nil {
		return ClaimVolume{}, err
	}
	return ClaimVolume{Day: r.Day, Count: r.Count, Average: r.Average, Days: r.Days}, nil
}

func readCoverageIndex(view View, payer, patient chain.Address) (*coverageIndex, error) {
	r := &coverageIndex{Version: RecordVersion}
	if _, err := get(view, coveragesKey(payer, patient), "coverage index", r); err != nil {
		return nil, err
	}
	if len(r.IDs) > chain.MaxCoveragePerPair {
		return nil, fmt.Errorf("state: stored coverage index has %d entries, limit %d", len(r.IDs), chain.MaxCoveragePerPair)
	}
	return r, nil
}
