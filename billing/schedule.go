package billing

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
)

// Fee is what a payer allows for one service code, in clear (the payer's side only).
type Fee struct {
	Code         string
	AllowedCents uint64
}

// ScheduleInput is a payer's schedule for one provider, in clear.
type ScheduleInput struct {
	ChainID  string
	Payer    chain.Address
	Provider chain.Address
	// ProviderEncryptionKey is the provider's registered EncryptionKey: the billing key is
	// sealed to it.
	ProviderEncryptionKey []byte
	Currency              string // ISO 4217
	CoinsurancePct        uint8
	Fees                  []Fee
	// Plans are the provider's membership plans as published on the ledger. Retired plans
	// belong here too: memberships already in them go on.
	Plans []chain.Plan
}

// BuildSchedule makes the PayerSchedule transaction body for in under key: the fee codes and
// each plan's covered codes fingerprinted and sorted as chain requires, the key committed and
// sealed to the provider. Plans that cover no code are left out (nothing to exclude). The
// result passes chain's Validate.
func BuildSchedule(key []byte, in ScheduleInput) (*chain.PayerSchedule, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("billing: a billing key is %d bytes, got %d", KeyLen, len(key))
	}
	if len(in.Fees) > chain.MaxFeeEntries {
		return nil, fmt.Errorf("billing: %d fees, a schedule holds at most %d", len(in.Fees), chain.MaxFeeEntries)
	}
	fees := make([]chain.FeeEntry, 0, len(in.Fees))
	seen := make(map[string]bool, len(in.Fees))
	for i, f := range in.Fees {
		c := NormaliseCode(f.Code)
		if err := CheckCode(c); err != nil {
			return nil, fmt.Errorf("billing: fee %d: %w", i, err)
		}
		if seen[c] {
			return nil, fmt.Errorf("billing: fee for code %s given twice", c)
		}
		seen[c] = true
		if f.AllowedCents > chain.MaxClaimCents {
			return nil, fmt.Errorf("billing: fee for %s above %s", c, FormatCents(chain.MaxClaimCents))
		}
		fees = append(fees, chain.FeeEntry{Code: CodeFingerprint(key, c), AllowedCents: f.AllowedCents})
	}
	slices.SortFunc(fees, func(a, b chain.FeeEntry) int { return slices.Compare(a.Code[:], b.Code[:]) })

	var excl []chain.PlanExclusion
	for _, p := range in.Plans {
		if len(p.Covered) == 0 {
			continue
		}
		codes := make([]chain.Hash, 0, len(p.Covered))
		for _, c := range p.Covered {
			codes = append(codes, CodeFingerprint(key, c))
		}
		slices.SortFunc(codes, func(a, b chain.Hash) int { return slices.Compare(a[:], b[:]) })
		codes = slices.Compact(codes)
		excl = append(excl, chain.PlanExclusion{Plan: p.ID, Codes: codes})
	}
	slices.SortFunc(excl, func(a, b chain.PlanExclusion) int { return slices.Compare(a.Plan[:], b.Plan[:]) })
	for i := 1; i < len(excl); i++ {
		if excl[i].Plan == excl[i-1].Plan {
			return nil, fmt.Errorf("billing: plan %s given twice", excl[i].Plan.Short())
		}
	}
	if len(excl) > chain.MaxExcludedPlans {
		return nil, fmt.Errorf("billing: the provider has %d plans with covered codes, a schedule excludes at most %d", len(excl), chain.MaxExcludedPlans)
	}

	env, err := SealKey(key, in.ProviderEncryptionKey, KeyContext{ChainID: in.ChainID, Payer: in.Payer, Provider: in.Provider})
	if err != nil {
		return nil, err
	}
	s := &chain.PayerSchedule{
		Provider:       in.Provider,
		Currency:       in.Currency,
		KeyCommit:      KeyCommit(key),
		KeyEnvelope:    env,
		Fees:           fees,
		Excluded:       excl,
		CoinsurancePct: in.CoinsurancePct,
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("billing: schedule: %w", err)
	}
	return s, nil
}

// MaxFeeCSVBytes bounds a fee schedule file: 1024 entries of a code and an amount fit in far
// less.
const MaxFeeCSVBytes = 256 << 10

// ParseFeeCSV reads a fee schedule: one "code,allowed" record a line, the amount a decimal with
// at most two places ("75.00"). A first line whose first field is "code" (any case) is a header.
// Blank lines are skipped. Errors name the line; a repeated code names both lines.
func ParseFeeCSV(r io.Reader) ([]Fee, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFeeCSVBytes+1))
	if err != nil {
		return nil, fmt.Errorf("billing: fee schedule: %w", err)
	}
	if len(data) > MaxFeeCSVBytes {
		return nil, fmt.Errorf("billing: fee schedule larger than %d bytes", MaxFeeCSVBytes)
	}
	cr := csv.NewReader(strings.NewReader(string(data)))
	cr.FieldsPerRecord = -1 // counted here, for a clearer message
	cr.TrimLeadingSpace = true
	var fees []Fee
	lineOf := map[string]int{}
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("billing: fee schedule: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first && strings.EqualFold(strings.TrimSpace(rec[0]), "code") {
			continue
		}
		if len(rec) != 2 {
			return nil, fmt.Errorf("billing: fee schedule line %d: %d fields, want code,allowed", line, len(rec))
		}
		code := NormaliseCode(rec[0])
		if err := CheckCode(code); err != nil {
			return nil, fmt.Errorf("billing: fee schedule line %d: %w", line, err)
		}
		cents, err := ParseAmount(rec[1])
		if err != nil {
			return nil, fmt.Errorf("billing: fee schedule line %d: %w", line, err)
		}
		if prev, dup := lineOf[code]; dup {
			return nil, fmt.Errorf("billing: fee schedule line %d: code %s already on line %d", line, code, prev)
		}
		lineOf[code] = line
		if len(fees) == chain.MaxFeeEntries {
			return nil, fmt.Errorf("billing: fee schedule line %d: more than %d fees", line, chain.MaxFeeEntries)
		}
		fees = append(fees, Fee{Code: code, AllowedCents: cents})
	}
	if len(fees) == 0 {
		return nil, errors.New("billing: fee schedule has no fees")
	}
	return fees, nil
}

// FeeFor returns the allowed amount of a code under a schedule, looked up by fingerprint.
func FeeFor(key []byte, s *chain.PayerSchedule, code string) (uint64, bool) {
	fp := CodeFingerprint(key, code)
	i, ok := slices.BinarySearchFunc(s.Fees, fp, func(e chain.FeeEntry, h chain.Hash) int { return slices.Compare(e.Code[:], h[:]) })
	if !ok {
		return 0, false
	}
	return s.Fees[i].AllowedCents, true
}
