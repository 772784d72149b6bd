package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
)

// Every kind of usage mistake exits 2, in every part of the command tree; success exits 0 and
// a failure that is not a usage mistake exits 1.
func TestUsageErrorsExit2(t *testing.T) {
	t.Setenv(homeEnv, filepath.Join(t.TempDir(), "no-such-home"))
	for _, args := range [][]string{
		{"frobnicate"},                     // unknown subcommand of the root
		{"testnet", "frobnicate"},          // unknown subcommand of a group
		{"testnet"},                        // a group without a subcommand
		{"wallet", "records"},              // a nested group without a subcommand
		{"status", "--bogus"},              // unknown flag
		{"block"},                          // missing argument
		{"block", "1", "2"},                // too many arguments
		{"authority", "vote"},              // missing argument of a new command
		{"licence", "issue", "--out", "x"}, // missing required flag
		{"init", "--genesis", "g.json"},    // missing --bootstrap
		{"init", "--bootstrap", "not-a-multiaddr", "--genesis", "g"}, // bad flag value
		{"authority", "propose", "--add", "a", "--remove", "b"},      // exclusive flags
		{"--log-level", "loud", "version"},                           // bad persistent flag value
	} {
		out, code := run(t, args...)
		require.Equal(t, 2, code, "medledger %s: %s", strings.Join(args, " "), out)
	}
	out, code := run(t, "version")
	require.Equal(t, 0, code, out)
	out, code = run(t, "status") // the default home does not exist: a failure, not a usage error
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "no-such-home")
}

func TestDefaultHome(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	userHome := func() (string, error) { return "/home/pat", nil }
	require.Equal(t, "/home/pat/.medledger", defaultHome(getenv, userHome))
	env[homeEnv] = "/srv/practice"
	require.Equal(t, "/srv/practice", defaultHome(getenv, userHome))
	delete(env, homeEnv)
	require.Equal(t, "", defaultHome(getenv, func() (string, error) { return "", errors.New("no home") }))

	// Every --home flag of the tree takes the default.
	dir := t.TempDir()
	t.Setenv(homeEnv, dir)
	count := 0
	var visit func(cmd *cobra.Command)
	visit = func(cmd *cobra.Command) {
		if f := cmd.Flags().Lookup("home"); f != nil {
			count++
			require.Equal(t, dir, f.DefValue, "%s --home", cmd.CommandPath())
			require.Equal(t, dir, f.Value.String(), "%s --home", cmd.CommandPath())
		}
		for _, c := range cmd.Commands() {
			visit(c)
		}
	}
	visit(rootCmd())
	require.Greater(t, count, 20, "commands with --home")
}

func TestVersionFromBuildInfo(t *testing.T) {
	v := buildVersion(&debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/medledger/medledger", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "032f395bc5413cb7c8c086605d9d323bb96eca62"},
			{Key: "vcs.time", Value: "2026-12-05T14:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}, true)
	require.Equal(t, versionInfo{Module: "github.com/medledger/medledger", Version: "v0.3.0", Revision: "032f395bc5413cb7c8c086605d9d323bb96eca62",
		Time: "2026-12-05T14:00:00Z", Modified: true, GoVersion: "go1.26.8"}, v)
	require.Equal(t, "unknown", buildVersion(nil, false).Version)

	out, code := run(t, "version", "--json")
	require.Equal(t, 0, code, out)
	var got versionInfo
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, "github.com/medledger/medledger", got.Module)
	require.True(t, strings.HasPrefix(got.GoVersion, "go"), got.GoVersion)
}

// init writes a full node's home; licence issue signs a licence for it (from the home or from
// the licence request init printed); provider register refuses a licence for another home or
// from a key that is not the network's licensing authority, installs a good one, and says the
// node must run to register.
func TestInitLicenceRegisterWithoutANetwork(t *testing.T) {
	net := filepath.Join(t.TempDir(), "net")
	require.NoError(t, testnet.Init(net, 1, 42600))
	genesis := node.Home(testnet.NodeDir(net, 0)).GenesisFile()
	boot := "/ip4/127.0.0.1/tcp/42600/p2p/12D3KooWKa9pLJsyXWCvG6R3V8fxAo79WHsFmY6EtWHvEx33KmqG"
	home := filepath.Join(t.TempDir(), "practice")
	out, code := run(t, "init", "--home", home, "--genesis", genesis, "--bootstrap", boot, "--listen", "/ip4/127.0.0.1/tcp/42700", "--api", "127.0.0.1:42701", "--json")
	require.Equal(t, 0, code, out)
	var ia initAnswer
	require.NoError(t, json.Unmarshal([]byte(out), &ia), out)

	cfg, err := node.LoadConfig(home)
	require.NoError(t, err)
	require.Empty(t, cfg.Node.AuthorityKey, "a joining practice's node is a full node")
	require.Equal(t, []string{boot}, cfg.P2P.Bootstrap)
	for _, f := range []string{"genesis.json", "api.token", "keys/p2p.key", "keys/provider.key", "keys/encryption.key"} {
		_, err := os.Stat(filepath.Join(home, f))
		require.NoError(t, err, f)
	}
	_, err = os.Stat(filepath.Join(home, "keys", "authority.key"))
	require.True(t, errors.Is(err, os.ErrNotExist), "init wrote an authority key")
	keys, err := node.ReadHomeKeys(home)
	require.NoError(t, err)
	require.Equal(t, licenceRequest(keys), ia.LicenceRequest)
	require.Equal(t, keys.ProviderID(), ia.ProviderID)

	// A second init into the same home is refused: it would mix two identities.
	out, code = run(t, "init", "--home", home, "--genesis", genesis, "--bootstrap", boot)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not empty")

	lic := filepath.Join(t.TempDir(), "practice.licence")
	out, code = run(t, "licence", "issue", "--key", testnet.LicensingKeyFile(net), "--for-node", ia.LicenceRequest, "--genesis", genesis, "--out", lic, "--jurisdiction", "TESTNET")
	require.Equal(t, 0, code, out)
	l, err := node.ReadLicenceFile(lic)
	require.NoError(t, err)
	g, err := node.LoadGenesis(genesis)
	require.NoError(t, err)
	require.NoError(t, l.VerifySig(g.ChainID))
	require.Equal(t, keys.ProviderKey, l.Subject)
	require.Equal(t, keys.NodeKey, l.NodeKey)
	require.Greater(t, l.NotAfter, time.Now().Add(300*24*time.Hour).UnixMilli())

	// The request form needs the genesis; a key that is no licensing authority is refused.
	_, code = run(t, "licence", "issue", "--key", testnet.LicensingKeyFile(net), "--for-node", ia.LicenceRequest, "--out", lic+"2")
	require.Equal(t, 2, code)
	out, code = run(t, "licence", "issue", "--key", filepath.Join(testnet.NodeDir(net, 0), "keys", "authority.key"), "--for-node", home, "--out", lic+"3")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not a licensing authority")

	// A licence for another home is refused by that home, and not installed.
	other := filepath.Join(t.TempDir(), "other")
	_, code = run(t, "init", "--home", other, "--genesis", genesis, "--bootstrap", boot)
	require.Equal(t, 0, code)
	out, code = run(t, "provider", "register", "--home", other, "--licence", lic)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "this home's provider key")
	_, err = os.Stat(filepath.Join(other, "keys", "licence.hex"))
	require.True(t, errors.Is(err, os.ErrNotExist), "a licence for another home was installed")

	// The right home installs it, and says that the node must run to register.
	out, code = run(t, "provider", "register", "--home", home, "--licence", lic, "--timeout", "2s")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "start it")
	installed, err := node.ReadLicenceFile(filepath.Join(home, "keys", "licence.hex"))
	require.NoError(t, err)
	require.Equal(t, chain.Encode(l), chain.Encode(installed))
}

func TestCheckLicence(t *testing.T) {
	net := filepath.Join(t.TempDir(), "net")
	require.NoError(t, testnet.Init(net, 1, 42800))
	home := testnet.NodeDir(net, 0)
	g, err := node.LoadGenesis(node.Home(home).GenesisFile())
	require.NoError(t, err)
	hk, err := node.ReadHomeKeys(home)
	require.NoError(t, err)
	board, err := node.ReadKeyFile(testnet.LicensingKeyFile(net))
	require.NoError(t, err)
	now := time.Now()
	good := chain.Licence{Role: chain.RoleProvider, Subject: hk.ProviderKey, NodeKey: hk.NodeKey, Number: "N-1", NotAfter: now.Add(time.Hour).UnixMilli()}
	good.Sign(board, g.ChainID)
	require.NoError(t, checkLicence(&good, chain.RoleProvider, g, hk, now))
	for name, c := range map[string]struct {
		edit func(l *chain.Licence)
		want string
	}{
		"expired":        {func(l *chain.Licence) { l.NotAfter = now.Add(-time.Minute).UnixMilli(); l.Sign(board, g.ChainID) }, "expired"},
		"other node key": {func(l *chain.Licence) { l.NodeKey = hk.ProviderKey; l.Sign(board, g.ChainID) }, "node key"},
		"other chain":    {func(l *chain.Licence) { l.Sign(board, "another-chain") }, "not valid for chain"},
		"forged issuer":  {func(l *chain.Licence) { l.Number = "N-2" }, "not valid for chain"},
	} {
		l := good
		c.edit(&l)
		err := checkLicence(&l, chain.RoleProvider, g, hk, now)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), c.want, name)
	}
}

func TestLicenceRequestRoundTrip(t *testing.T) {
	k := node.HomeKeys{ProviderKey: chain.PubKey{1, 2, 3}, NodeKey: chain.PubKey{4, 5, 6}}
	p, n, err := parseLicenceRequest(licenceRequest(k))
	require.NoError(t, err)
	require.Equal(t, k.ProviderKey, p)
	require.Equal(t, k.NodeKey, n)
	for _, bad := range []string{"", "abc", "00:11", strings.Repeat("0", 64) + ":zz"} {
		_, _, err := parseLicenceRequest(bad)
		require.Error(t, err, bad)
	}
}
