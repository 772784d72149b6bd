package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// PayersKeyFile is the key of the testnet's payers' registry, the genesis issuer of payer
// licences (insurers and other parties that pay claims).
func PayersKeyFile(dir string) string { return filepath.Join(dir, "payers.key") }

// PayersRegistryName is the name genesis gives the testnet's payers' registry.
const PayersRegistryName = "Testnet Payers Registry"

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
// DIR/licensing.key, the key of the genesis licensing authority, and DIR/payers.key, the key of
// the genesis payers' registry (the issuer of payer licences). The chain id is
// "medledger-testnet-<random hex>".
func Init(dir string, n, basePort int) error {
	return InitWith(dir, Options{Authorities: n, BasePort: basePort})
}

// Options shape a testnet. Authorities and BasePort are required.
type Options struct {
	Authorities int
	BasePort    int
	// FullNodes adds practice full nodes after the authorities (node<n> …): licensed providers
	// that genesis registers (so the members admit them from the first block) but that hold no
	// authority key; they sync, import and serve records, and vote on nothing.
	FullNodes int
	// StartingIP, if set, gives node i the IPv4 address StartingIP+i: it listens there (p2p and
	// API) and the others bootstrap from there. For containers on a network of fixed addresses.
	StartingIP string
	// HostnamePrefix, if set (and StartingIP is not), names node i HostnamePrefix+i: it listens
	// on every interface and the others bootstrap from /dns4/<name>/…. For containers on a
	// network with a DNS (compose's).
	HostnamePrefix string
	// TestClock points every node's [node] clock_offset_file at DIR/clock-offset (ClockFile),
	// written as 0s: `medledger testnet clock` then drives the network's block time forward.
	TestClock bool
}

// ClockFile is the clock-offset file a testnet made with Options.TestClock shares.
func ClockFile(dir string) string { return filepath.Join(dir, "clock-offset") }

// Host is the address or name node i is reached at.
func (o Options) Host(i int) (string, error) {
	_, dial, _, err := o.host(i)
	if err != nil {
		return "", err
	}
	_, name, _ := strings.Cut(strings.TrimPrefix(dial, "/"), "/")
	return name, nil
}

// host is where node i listens and is reached, as multiaddr prefixes, and its API host: always
// the loopback address (node config refuses any other; in a container it is the container's).
func (o Options) host(i int) (listen, dial, api string, err error) {
	switch {
	case o.StartingIP != "":
		ip, err := nthIP(o.StartingIP, i)
		if err != nil {
			return "", "", "", err
		}
		return "/ip4/" + ip, "/ip4/" + ip, "127.0.0.1", nil
	case o.HostnamePrefix != "":
		return "/ip4/0.0.0.0", "/dns4/" + o.HostnamePrefix + strconv.Itoa(i), "127.0.0.1", nil
	}
	return "/ip4/127.0.0.1", "/ip4/127.0.0.1", "127.0.0.1", nil
}

// nthIP returns the IPv4 address i after start.
func nthIP(start string, i int) (string, error) {
	a, err := netip.ParseAddr(start)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("testnet: starting IP %q: want an IPv4 address", start)
	}
	for range i {
		a = a.Next()
		if !a.IsValid() || a.As4()[3] == 255 {
			return "", fmt.Errorf("testnet: starting IP %s leaves no address for node %d", start, i)
		}
	}
	return a.String(), nil
}

// InitWith writes a testnet shaped by o into dir, as Init does.
func InitWith(dir string, o Options) error {
	return initNet(dir, o, rand.Reader, time.Now())
}

func initNet(dir string, o Options, rnd io.Reader, now time.Time) error {
	n, basePort := o.Authorities, o.BasePort
	if n < 1 || n > MaxAuthorities {
		return fmt.Errorf("testnet: %d authorities: want 1..%d", n, MaxAuthorities)
	}
	if o.FullNodes < 0 || n+o.FullNodes > MaxAuthorities {
		return fmt.Errorf("testnet: %d full nodes: want 0..%d beside %d authorities", o.FullNodes, MaxAuthorities-n, n)
	}
	total := n + o.FullNodes
	if _, last := Ports(basePort, total-1); basePort < 1024 || last > 65535 {
		return fmt.Errorf("testnet: base port %d: ports %d..%d must lie in 1024..65535", basePort, basePort, last)
	}
	if _, _, _, err := o.host(total - 1); err != nil {
		return err
	}
	if err := ensureEmpty(dir); err != nil {
		return err
	}
	idBytes := make([]byte, 6)
	if _, err := io.ReadFull(rnd, idBytes); err != nil {
		return fmt.Errorf("testnet: chain id: %w", err)
	}
	// keys[i] is node i's provider key; for an authority also its authority key.
	keys := make([]chain.PrivKey, total)
	auths := make([]chain.Authority, n)
	for i := range keys {
		k, err := chain.GenerateKey(rnd)
		if err != nil {
			return err
		}
		keys[i] = k
		if i < n {
			auths[i] = chain.Authority{Key: k.Public(), Name: "node" + strconv.Itoa(i)}
		}
	}
	board, err := chain.GenerateKey(rnd)
	if err != nil {
		return err
	}
	payers, err := chain.GenerateKey(rnd)
	if err != nil {
		return err
	}
	g := &chain.Genesis{
		Version: chain.GenesisVersion, ChainID: node.TestnetChainPrefix + hex.EncodeToString(idBytes),
		TimeMs:      now.UnixMilli(),
		Authorities: auths, LicensingAuthorities: []chain.Authority{{Key: board.Public(), Name: "Testnet Licensing Board"}},
		// A payer joins a running testnet with a licence from this registry (docs/joining.md).
		Issuers: []chain.Issuer{{Role: chain.RolePayer, Key: payers.Public(), Name: PayersRegistryName}},
		Params:  chain.DefaultParams(),
	}
	g.Params.EnrolmentsPerWindow = EnrolmentsPerWindow
	if err := g.Validate(); err != nil {
		return err
	}
	if err := node.WriteKeyFile(LicensingKeyFile(dir), board); err != nil {
		return err
	}
	if err := node.WriteKeyFile(PayersKeyFile(dir), payers); err != nil {
		return err
	}
	if o.TestClock {
		if err := node.WriteClockOffset(ClockFile(dir), 0); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
	}
	cfgs := make([]node.Config, total)
	peerIDs := make([]string, total)
	for i := range keys {
		home := node.Home(NodeDir(dir, i))
		c := node.DefaultConfig()
		p2pPort, apiPort := Ports(basePort, i)
		listen, _, apiHost, _ := o.host(i)
		c.Node.Name = "node" + strconv.Itoa(i)
		c.P2P.Listen = []string{
			fmt.Sprintf("%s/tcp/%d", listen, p2pPort),
			fmt.Sprintf("%s/udp/%d/quic-v1", listen, p2pPort),
		}
		c.API.Listen = fmt.Sprintf("%s:%d", apiHost, apiPort)
		if o.TestClock {
			c.Node.ClockOffsetFile = filepath.Join("..", filepath.Base(ClockFile(dir)))
		}
		if err := os.MkdirAll(string(home), 0o700); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
		if i < n {
			if err := node.WriteKeyFile(node.Resolve(string(home), c.Node.AuthorityKey), keys[i]); err != nil {
				return err
			}
		} else {
			c.Node.AuthorityKey = "" // a practice full node
		}
		cfgs[i] = c
		// Every testnet node is a licensed provider registered by genesis: the nodes must know
		// one another's node keys before the first block, since they admit only members. An
		// authority's provider key is its authority key, so the ledger links the authority to its licence:
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
		nodeKey, err := node.NodeKeyOfIdentity(node.Resolve(string(home), c.P2P.Identity))
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
				_, dial, _, _ := o.host(j)
				cfgs[i].P2P.Bootstrap = append(cfgs[i].P2P.Bootstrap, fmt.Sprintf("%s/tcp/%d/p2p/%s", dial, p, peerIDs[j]))
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
