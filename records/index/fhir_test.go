package index

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

// TestFHIRKeys: the FHIR keys of imported records are kept per patient, survive a reopen, are
// untouched by applying blocks, and a long key is kept by its hash.
func TestFHIRKeys(t *testing.T) {
	dir := t.TempDir()
	x, err := Open(dir, Options{})
	require.NoError(t, err)
	p1, p2 := chain.Address{1}, chain.Address{2}
	long := "Observation?code=" + strings.Repeat("x", 300)
	e := FHIREntry{Root: chain.Hash{1}, Latest: chain.Hash{2}, Content: [32]byte{3}, AssignedID: "abc"}
	require.NoError(t, x.PutFHIR(p1, map[string]FHIREntry{"Observation/o1": e, long: {Root: chain.Hash{4}, Latest: chain.Hash{4}}}))
	got, ok, err := x.FHIR(p1, "Observation/o1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, e, got)
	_, ok, err = x.FHIR(p2, "Observation/o1")
	require.NoError(t, err)
	require.False(t, ok, "another patient's key")
	require.NoError(t, x.Apply(1, chain.Hash{9}, []Event{{Kind: Anchor, ID: chain.Hash{7}, Patient: p1}}))
	require.NoError(t, x.Close())

	x, err = Open(dir, Options{})
	require.NoError(t, err)
	defer x.Close()
	got, ok, err = x.FHIR(p1, "Observation/o1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, e, got)
	got, ok, err = x.FHIR(p1, long)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, chain.Hash{4}, got.Root)
	require.Error(t, x.PutFHIR(p1, map[string]FHIREntry{"k": {AssignedID: strings.Repeat("i", 65)}}))
}
