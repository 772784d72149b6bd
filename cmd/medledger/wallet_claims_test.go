package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/sync/light"
)

// provedStateOf is a patient state holding items, as if proved at a header of time atMs.
func provedStateOf(atMs int64, items ...*state.Item) *light.PatientState {
	return &light.PatientState{Header: chain.Header{Height: 10, Time: atMs}, Items: items}
}

func testClaim(patient chain.Address) *state.ClaimRecord {
	return &state.ClaimRecord{Version: state.RecordVersion, ID: chain.Sum256([]byte("claim")), Provider: addr(0xaa), Payer: addr(0xbb), Patient: patient,
		Encounter: chain.Sum256([]byte("enc")), Record: chain.Sum256([]byte("rec")), ServiceDay: uint32(utcMs(2026, time.April, 2) / chain.DayMs),
		Lines: []state.ClaimLineState{
			{Code: chain.Sum256([]byte("99213")), BilledCents: 15000, AllowedCents: 10000, PaidCents: 8000, PatientCents: 2000},
			{Code: chain.Sum256([]byte("81002")), BilledCents: 2000, Reason: chain.DenialReason(1)},
		},
		FiledHeight: 30, FiledTime: utcMs(2026, time.April, 3), Status: state.ClaimAdjudicated, Settled: state.ClaimAdjudicated}
}

func TestProvedClaims(t *testing.T) {
	p := addr(1)
	c := testClaim(p)
	other := &state.Item{Membership: testMembership(p, addr(2), 0)}
	claims := provedClaims([]*state.Item{other, {Claim: c}})
	require.Len(t, claims, 1)
	cj := claims[0]
	require.Equal(t, "2026-04-02", cj.ServiceDate)
	require.Equal(t, "adjudicated-by-rule", cj.Status)
	require.Equal(t, uint64(17000), cj.BilledCents)
	require.Equal(t, uint64(10000), cj.AllowedCents)
	require.Equal(t, uint64(8000), cj.PaidCents)
	require.Equal(t, uint64(2000), cj.PatientCents)
	require.Len(t, cj.Lines, 2)
	require.Empty(t, cj.Lines[0].Denial)
	require.NotEmpty(t, cj.Lines[1].Denial)
	require.Empty(t, cj.Flags)
	require.False(t, cj.OpenDispute)

	var buf bytes.Buffer
	require.NoError(t, printClaims(&buf, claims))
	for _, want := range []string{c.ID.String(), "2026-04-02", "adjudicated-by-rule", addr(0xbb).String(), addr(0xaa).String(), "170.00", "100.00", "80.00", "20.00"} {
		require.Contains(t, buf.String(), want)
	}
	require.NotContains(t, buf.String(), "!!")

	// Flagged, pended, then disputed by the patient: all of it shows.
	c.Flagged, c.VolumeToday, c.VolumeAverage, c.Status, c.Settled = true, 40, 3500, state.ClaimDisputed, state.ClaimPended
	c.Disputes = []state.ClaimDisputeEntry{{Reason: chain.DisputeWrongAmount, Height: 50, ResolvedHeight: 55}, {Reason: chain.DisputeNotReceived, Height: 60}}
	cj = provedClaims([]*state.Item{{Claim: c}})[0]
	require.True(t, cj.OpenDispute)
	require.Len(t, cj.Disputes, 2)
	require.True(t, cj.Disputes[0].Resolved)
	require.Contains(t, cj.Flags[0], "40 claims that day")
	buf.Reset()
	require.NoError(t, printClaims(&buf, []claimJSON{cj}))
	txt := buf.String()
	require.True(t, strings.HasPrefix(txt, "!! you dispute claim"), txt)
	require.Contains(t, txt, "wrong-amount (answered at 55); service-not-received (open)")
	data, err := json.Marshal(cj)
	require.NoError(t, err)
	for _, k := range []string{`"status":"disputed"`, `"settled":"pended"`, `"open_dispute":true`, `"patient_cents":2000`, `"service_date":"2026-04-02"`} {
		require.Contains(t, string(data), k)
	}

	buf.Reset()
	require.NoError(t, printClaims(&buf, provedClaims(nil)))
	require.Contains(t, buf.String(), "no claim was filed in your name")
}

func TestParseDisputeReason(t *testing.T) {
	for r := chain.DisputeNotReceived; r <= chain.DisputeOther; r++ {
		got, err := parseDisputeReason(r.String())
		require.NoError(t, err)
		require.Equal(t, r, got)
	}
	_, err := parseDisputeReason("because")
	require.ErrorContains(t, err, "service-not-received, wrong-service, wrong-amount, membership-covers, other")
	require.Equal(t, 2, exitCode(err))
}

// A dispute the ledger would refuse is refused before anything is signed (s is not touched).
func TestDisputeClaimChecksFirst(t *testing.T) {
	c := testClaim(addr(1))
	ps := provedStateOf(utcMs(2026, time.May, 1), &state.Item{Claim: c})
	_, err := disputeClaim(context.Background(), nil, ps, nil, chain.Hash{4}, chain.DisputeOther)
	require.ErrorContains(t, err, "not one filed in your name")
	c.Disputes = []state.ClaimDisputeEntry{{Reason: chain.DisputeOther, Height: 3}}
	_, err = disputeClaim(context.Background(), nil, ps, nil, c.ID, chain.DisputeOther)
	require.ErrorContains(t, err, "already disputed")
}
