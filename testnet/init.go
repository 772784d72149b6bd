package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
)

// DefaultBasePort is the first port of a testnet: node i uses DefaultBasePort+10*i for libp2p
// (TCP and QUIC) and DefaultBasePort+10*i+1 for its API.
const DefaultBasePort = node.DefaultP2PPort

// MaxAuthorities bounds the size of a generated testnet.
const MaxAuthorities = 100

// LicenceValidity is how long the provider licences testnet init issues stay valid.
const LicenceValidity = 2 * 365 * 24 * time.Hour

// NodeDir is the home directory of node i in a testnet directory.
func NodeDir(dir string, i int) string { return filepath.Join(dir, "node"+strconv.Itoa(i)) }

// LicensingKeyFile is the testnet's licensing-authority key, which signs provider licences.
func LicensingKeyFile(dir string) string { return filepath.Join(dir, "licensing.key") }

// Ports returns node i's libp2p port (TCP and UDP/QUIC) and API port.
func Ports(basePort, i int) (p2pPort, apiPort int) {
	return basePort + 10*i, basePort + 10*i + 1
}

// EnrolmentsPerWindow is a testnet's bound on the patients one provider enrols per day: far
// above a real practice's (chain.DefaultEnrolmentsPerWindow), because demos and benchmarks enrol
// synthetic patients in bulk through a handful of nodes.
const EnrolmentsPerWindow = 1_000_000

// Init writes an n-authority testnet into dir, which must be empty or absent: DIR/node0 …
// DIR/node<n-1>, each a node home (config.toml, genesis.json, keys/authority.key, keys/p2p.key)
// on 127.0.0.1 ports from basePort on (see Ports), every node bootstrapping from all the others,
// and DIR/licensing.key, the key of the genesis licensing authority. The chain id is
// "medledger-testnet-<random hex>".
func Init(dir string, n, basePort int) error {
	return initNet(dir, n, basePort, rand.Reader, time.Now())
}

func initNet(dir string, n, basePort int, rnd io.Reader, now time.Time) error {
	if n < 1 || n > MaxAuthorities {
		return fmt.Errorf("testnet: %d authorities: want 1..%d", n, MaxAuthorities)
	}
	if _, last := Ports(basePort, n-1); basePort < 1024 || last > 65535 {
		return fmt.Errorf("testnet: base port %d: ports %d..%d must lie in 1024..65535", basePort, basePort, last)
	}
	if err := ensureEmpty(dir); err != nil {
		return err
	}
	idBytes := make([]byte, 6)
	if _, err := io.ReadFull(rnd, idBytes); err != nil {
		return fmt.Errorf("testnet: chain id: %w", err)
	}
	keys := make([]chain.PrivKey, n)
	auths := make([]chain.Authority, n)
	for i := range keys {
		k, err := chain.GenerateKey(rnd)
		if err != nil {
			return err
		}
		keys[i] = k
		auths[i] = chain.Authority{Key: k.Public(), Name: "node" + strconv.Itoa(i)}
	}
	board, err := chain.GenerateKey(rnd)
	if err != nil {
		return err
	}
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: "medledger-testnet-" + hex.EncodeToString(idBytes),
		TimeMs:      now.UnixMilli(),
		Authorities: auths, LicensingAuthorities: []chain.Authority{{Key: board.Public(), Name: "Testnet Licensing Board"}},
		Params: chain.DefaultParams(),
	}
	g.Params.EnrolmentsPerWindow = EnrolmentsPerWindow
	if err := g.Validate(); err != nil {
		return err
	}
	if err := node.WriteKeyFile(LicensingKeyFile(dir), board); err != nil {
		return err
	}
	cfgs := make([]node.Config, n)
	peerIDs := make([]string, n)
	for i := range keys {
		home := node.Home(NodeDir(dir, i))
		c := node.DefaultConfig()
		p2pPort, apiPort := Ports(basePort, i)
		c.Node.Name = "node" + strconv.Itoa(i)
		c.P2P.Listen = []string{
			fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p2pPort),
			fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", p2pPort),
		}
		c.API.Listen = fmt.Sprintf("127.0.0.1:%d", apiPort)
		cfgs[i] = c
		if err := os.MkdirAll(string(home), 0o700); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
		if err := node.WriteKeyFile(node.Resolve(string(home), c.Node.AuthorityKey), keys[i]); err != nil {
			return err
		}
		// Every testnet node is a licensed provider registered by genesis: the nodes must know
		// one another's node keys before the first block, since they admit only members. Its
		// provider key is its authority key, so the ledger links the authority to its licence:
		// an authority whose licence lapses or is revoked gets an automatic removal proposal.
		pk := keys[i]
		if err := node.WriteKeyFile(node.Resolve(string(home), c.Records.ProviderKey), pk); err != nil {
			return err
		}
		provider, err := node.LoadOrCreateProviderKeys(node.Resolve(string(home), c.Records.ProviderKey), node.Resolve(string(home), c.Records.EncryptionKey))
		if err != nil {
			return fmt.Errorf("testnet: node %d: %w", i, err)
		}
		// The licence binds the provider key to the node's libp2p identity (created here).
		nodeKey, err := nodeIdentityKey(node.Resolve(string(home), c.P2P.Identity))
		if err != nil {
			return fmt.Errorf("testnet: node %d: %w", i, err)
		}
		lic := chain.Licence{Role: chain.RoleProvider, Subject: pk.Public(), NodeKey: nodeKey, Number: fmt.Sprintf("TESTNET-%04d", i),
			Jurisdiction: "TESTNET", NotAfter: now.Add(LicenceValidity).UnixMilli()}
		lic.Sign(board, g.ChainID)
		if err := node.WriteLicenceFile(node.Resolve(string(home), c.Records.Licence), &lic); err != nil {
			return err
		}
		g.Members = append(g.Members, chain.GenesisMember{Licence: lic, EncryptionKey: provider.Encryption.Public().Bytes()})
		if peerIDs[i], err = p2p.PeerIDFromIdentity(node.Resolve(string(home), c.P2P.Identity)); err != nil {
			return fmt.Errorf("testnet: node %d: %w", i, err)
		}
	}
	if err := g.Validate(); err != nil {
		return err
	}
	for i := range cfgs {
		cfgs[i].P2P.Bootstrap = []string{}
		for j := range cfgs {
			if j != i {
				p, _ := Ports(basePort, j)
				cfgs[i].P2P.Bootstrap = append(cfgs[i].P2P.Bootstrap, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", p, peerIDs[j]))
			}
		}
		home := node.Home(NodeDir(dir, i))
		if err := os.WriteFile(home.GenesisFile(), g.JSON(), 0o644); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
		if err := os.WriteFile(home.ConfigFile(), node.FormatConfig(cfgs[i]), 0o644); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
	}
	return nil
}

// ensureEmpty creates dir (0700) or checks that it is an empty directory.
func ensureEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("testnet: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("testnet: %s is not empty; choose a new directory or remove it first", dir)
	}
	return nil
}

// nodeIdentityKey returns the raw Ed25519 public key of the libp2p identity at path (creating
// it if absent): what a licence names as the member's node key.
func nodeIdentityKey(path string) (chain.PubKey, error) {
	k, err := p2p.LoadOrCreateIdentity(path)
	if err != nil {
		return chain.PubKey{}, err
	}
	if k.Type() != p2pcrypto.Ed25519 {
		return chain.PubKey{}, fmt.Errorf("identity %s is a %s key, not Ed25519", path, k.Type())
	}
	raw, err := k.GetPublic().Raw()
	if err != nil {
		return chain.PubKey{}, err
	}
	var pk chain.PubKey
	if len(raw) != len(pk) {
		return chain.PubKey{}, fmt.Errorf("identity %s: public key of %d bytes", path, len(raw))
	}
	copy(pk[:], raw)
	return pk, nil
}
