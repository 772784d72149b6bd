package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
)

// licence issue --role payer signs with the payers' registry genesis names and refuses any
// other key, naming the issuers genesis has; payer register takes only a payer's licence.
func TestLicenceIssuePayer(t *testing.T) {
	net := filepath.Join(t.TempDir(), "net")
	require.NoError(t, testnet.Init(net, 1, 42900))
	genesis := node.Home(testnet.NodeDir(net, 0)).GenesisFile()
	boot := "/ip4/127.0.0.1/tcp/42900/p2p/12D3KooWKa9pLJsyXWCvG6R3V8fxAo79WHsFmY6EtWHvEx33KmqG"
	home := filepath.Join(t.TempDir(), "payer")
	out, code := run(t, "init", "--home", home, "--genesis", genesis, "--bootstrap", boot, "--listen", "/ip4/127.0.0.1/tcp/42910", "--api", "127.0.0.1:42911")
	require.Equal(t, 0, code, out)
	keys, err := node.ReadHomeKeys(home)
	require.NoError(t, err)
	g, err := node.LoadGenesis(genesis)
	require.NoError(t, err)

	lic := filepath.Join(t.TempDir(), "payer.licence")
	out, code = run(t, "licence", "issue", "--role", "payer", "--key", testnet.PayersKeyFile(net), "--for-node", home, "--out", lic, "--json")
	require.Equal(t, 0, code, out)
	var ans licenceAnswer
	require.NoError(t, json.Unmarshal([]byte(out), &ans), out)
	require.Equal(t, chain.RolePayer, ans.Role)
	require.Equal(t, keys.ProviderID(), ans.MemberID)
	l, err := node.ReadLicenceFile(lic)
	require.NoError(t, err)
	require.Equal(t, chain.RolePayer, l.Role)
	require.Equal(t, g.Issuers[0].Key, l.Issuer)
	require.NoError(t, l.VerifySig(g.ChainID))

	// The licensing board may not license payers, nor the payers' registry providers; both
	// refusals name the issuers genesis has.
	out, code = run(t, "licence", "issue", "--role", "payer", "--key", testnet.LicensingKeyFile(net), "--for-node", home, "--out", lic+"2")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not an issuer of payer licences")
	require.Contains(t, out, `for payer "Testnet Payers Registry"`)
	require.Contains(t, out, `for provider "Testnet Licensing Board"`)
	out, code = run(t, "licence", "issue", "--key", testnet.PayersKeyFile(net), "--for-node", home, "--out", lic+"3")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not a licensing authority")
	// A role without issuers in this genesis, and one that carries no licence.
	out, code = run(t, "licence", "issue", "--role", "pharmacy", "--key", testnet.PayersKeyFile(net), "--for-node", home, "--out", lic+"4")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not an issuer of pharmacy licences")
	_, code = run(t, "licence", "issue", "--role", "patient", "--key", testnet.PayersKeyFile(net), "--for-node", home, "--out", lic+"5")
	require.Equal(t, 2, code)

	// payer register refuses a provider's licence, and provider register a payer's.
	prov := filepath.Join(t.TempDir(), "provider.licence")
	out, code = run(t, "licence", "issue", "--key", testnet.LicensingKeyFile(net), "--for-node", home, "--out", prov)
	require.Equal(t, 0, code, out)
	out, code = run(t, "payer", "register", "--home", home, "--licence", prov)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "for role provider, not payer")
	out, code = run(t, "provider", "register", "--home", home, "--licence", lic)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "for role payer, not provider")

	// The payer's licence installs; registering needs the node running.
	out, code = run(t, "payer", "register", "--home", home, "--licence", lic, "--timeout", "2s")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "start it")
	installed, err := node.ReadLicenceFile(filepath.Join(home, "keys", "licence.hex"))
	require.NoError(t, err)
	require.Equal(t, chain.Encode(l), chain.Encode(installed))
}
