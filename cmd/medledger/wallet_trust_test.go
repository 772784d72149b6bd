package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
)

func TestParseTrustHeader(t *testing.T) {
	hash := strings.Repeat("0a", 32)
	h, got, err := parseTrustHeader(" 42:" + hash + "\n")
	require.NoError(t, err)
	require.Equal(t, uint64(42), h)
	require.Equal(t, hash, got.String())
	for _, bad := range []string{"", "42", ":" + hash, "1:" + hash, "x:" + hash, "42:abc", "42:" + hash + "00", "-3:" + hash} {
		_, _, err := parseTrustHeader(bad)
		require.Error(t, err, "%q", bad)
	}
}

// TestTrustedHeaderFile: no file, or another network's, starts from genesis; a damaged file is
// an error that says how to recover, never a silent restart from an unknown point.
func TestTrustedHeaderFile(t *testing.T) {
	g := &chain.Genesis{Version: chain.GenesisVersion, ChainID: "medledger-test"}
	dir := t.TempDir()
	v, err := loadTrusted(dir, g)
	require.NoError(t, err)
	require.Nil(t, v)
	v, err = loadTrusted("", g)
	require.NoError(t, err)
	require.Nil(t, v)

	path := filepath.Join(dir, trustedHeaderFile)
	require.NoError(t, os.WriteFile(path, []byte(`{"chain_id":"other","genesis_hash":"`+strings.Repeat("11", 32)+`","height":9}`), 0o600))
	v, err = loadTrusted(dir, g)
	require.NoError(t, err)
	require.Nil(t, v, "another network's header is not this one's")

	require.NoError(t, os.WriteFile(path, []byte(`{"genesis_hash":"`+g.Hash().String()+`","header":"zz"}`), 0o600))
	_, err = loadTrusted(dir, g)
	require.ErrorContains(t, err, "header")
	require.NoError(t, os.WriteFile(path, []byte("not json"), 0o600))
	_, err = loadTrusted(dir, g)
	require.ErrorContains(t, err, "delete it")
	require.NoError(t, os.WriteFile(path, make([]byte, maxTrustedHeaderBytes+1), 0o600))
	_, err = loadTrusted(dir, g)
	require.ErrorContains(t, err, "limit")
}
