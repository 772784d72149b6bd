package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/testnet/procnet"
)

// memberHome is a node home for an organisation that joins a running procnet network after
// genesis: who it is (Name, Role) and who licenses it (IssuerKey, a key file of an issuer that
// the genesis names for Role).
type memberHome struct {
	Name      string
	Role      chain.Role
	IssuerKey string
	Number    string // the licence number
}

// write creates the home (no authority key): the network's genesis, a fresh signing key, a
// licence from the issuer naming it and the node's own libp2p key (its ticket in; the node
// registers itself with it once it is at the head) and node0 as bootstrap peer. It returns the
// member's id. As newPracticeHome in testnet/procnet/join_test.go.
func (m memberHome) write(nw *procnet.Network, home string) (chain.Address, error) {
	base, err := procnet.FreeBasePort(1)
	if err != nil {
		return chain.Address{}, err
	}
	c := node.DefaultConfig()
	c.Node.Name, c.Node.AuthorityKey = m.Name, ""
	c.P2P.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", base)}
	c.API.Listen = fmt.Sprintf("127.0.0.1:%d", base+1)
	peer0, err := p2p.PeerIDFromIdentity(filepath.Join(nw.Home(0), "keys", "p2p.key"))
	if err != nil {
		return chain.Address{}, err
	}
	c.P2P.Bootstrap = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", nw.P2PPort(0), peer0)}
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o700); err != nil {
		return chain.Address{}, err
	}
	if err := os.WriteFile(filepath.Join(home, "config.toml"), node.FormatConfig(c), 0o644); err != nil {
		return chain.Address{}, err
	}
	g, err := os.ReadFile(filepath.Join(nw.Home(0), "genesis.json"))
	if err != nil {
		return chain.Address{}, err
	}
	if err := os.WriteFile(filepath.Join(home, "genesis.json"), g, 0o644); err != nil {
		return chain.Address{}, err
	}
	gen, err := chain.ParseGenesisJSON(g)
	if err != nil {
		return chain.Address{}, err
	}
	key, err := chain.GenerateKey(rand.Reader)
	if err != nil {
		return chain.Address{}, err
	}
	if err := node.WriteKeyFile(node.Resolve(home, c.Records.ProviderKey), key); err != nil {
		return chain.Address{}, err
	}
	idKey, err := p2p.LoadOrCreateIdentity(node.Resolve(home, c.P2P.Identity))
	if err != nil {
		return chain.Address{}, err
	}
	raw, err := idKey.GetPublic().Raw()
	if err != nil {
		return chain.Address{}, err
	}
	var nodeKey chain.PubKey
	copy(nodeKey[:], raw)
	issuer, err := node.ReadKeyFile(m.IssuerKey)
	if err != nil {
		return chain.Address{}, err
	}
	lic := chain.Licence{Role: m.Role, Subject: key.Public(), NodeKey: nodeKey, Number: m.Number, Jurisdiction: "TESTNET",
		NotAfter: time.Now().Add(24 * time.Hour).UnixMilli()}
	lic.Sign(issuer, gen.ChainID)
	if err := node.WriteLicenceFile(node.Resolve(home, c.Records.Licence), &lic); err != nil {
		return chain.Address{}, err
	}
	return key.Public().Address(), nil
}
