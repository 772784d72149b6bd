package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	p2pcrypto "github.com/libp2p/go-libp2p/core/crypto"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/p2p"
)

// HomeKeys are the public identities of a node home: what a licensing authority needs to issue
// the practice's licence (the provider key is the licence's subject, the node key its libp2p
// identity) and what peers see.
type HomeKeys struct {
	ChainID string
	// ProviderKey signs the practice's transactions; its address is the provider id.
	ProviderKey chain.PubKey
	// NodeKey is the libp2p identity's Ed25519 public key; PeerID is its libp2p peer id.
	NodeKey chain.PubKey
	PeerID  string
}

// ProviderID is the provider's ledger address.
func (k HomeKeys) ProviderID() chain.Address { return k.ProviderKey.Address() }

// CreateHome writes a new node home into dir, which must be empty or absent: config.toml (cfg),
// genesis.json (a copy of genesis, validated), the libp2p identity, the provider signing and
// encryption keys and api.token. It writes no authority key: cfg.Node.AuthorityKey names one
// only for a home that will sign blocks, and that key is written by whoever holds it.
func CreateHome(dir string, cfg Config, genesis []byte) (HomeKeys, error) {
	g, err := chain.ParseGenesisJSON(genesis)
	if err != nil {
		return HomeKeys{}, fmt.Errorf("node: genesis: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return HomeKeys{}, fmt.Errorf("node: config: %w", err)
	}
	if err := ensureEmptyDir(dir); err != nil {
		return HomeKeys{}, err
	}
	h := Home(dir)
	if err := os.MkdirAll(h.KeysDir(), 0o700); err != nil {
		return HomeKeys{}, fmt.Errorf("node: %w", err)
	}
	if err := os.WriteFile(h.GenesisFile(), genesis, 0o644); err != nil {
		return HomeKeys{}, fmt.Errorf("node: %w", err)
	}
	if err := os.WriteFile(h.ConfigFile(), FormatConfig(cfg), 0o644); err != nil {
		return HomeKeys{}, fmt.Errorf("node: %w", err)
	}
	if _, err := LoadOrCreateToken(h.TokenFile(), rand.Reader); err != nil {
		return HomeKeys{}, err
	}
	keys, err := ReadHomeKeys(dir)
	if err != nil {
		return HomeKeys{}, err
	}
	keys.ChainID = g.ChainID
	return keys, nil
}

// ReadHomeKeys returns the public identities of the home at dir, creating the provider keys
// and the libp2p identity where its config.toml names files that do not exist yet (as a node's
// first start does). ChainID is read from its genesis.json.
func ReadHomeKeys(dir string) (HomeKeys, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return HomeKeys{}, err
	}
	g, err := LoadGenesis(Home(dir).GenesisFile())
	if err != nil {
		return HomeKeys{}, err
	}
	pk, err := LoadOrCreateProviderKeys(Resolve(dir, cfg.Records.ProviderKey), Resolve(dir, cfg.Records.EncryptionKey))
	if err != nil {
		return HomeKeys{}, err
	}
	idPath := Resolve(dir, cfg.P2P.Identity)
	nodeKey, err := NodeKeyOfIdentity(idPath)
	if err != nil {
		return HomeKeys{}, err
	}
	pid, err := p2p.PeerIDFromIdentity(idPath)
	if err != nil {
		return HomeKeys{}, err
	}
	return HomeKeys{ChainID: g.ChainID, ProviderKey: pk.Signing.Public(), NodeKey: nodeKey, PeerID: pid}, nil
}

// NodeKeyOfIdentity returns the raw Ed25519 public key of the libp2p identity at path (creating
// it if absent): what a licence names as the member's node key.
func NodeKeyOfIdentity(path string) (chain.PubKey, error) {
	k, err := p2p.LoadOrCreateIdentity(path)
	if err != nil {
		return chain.PubKey{}, err
	}
	if k.Type() != p2pcrypto.Ed25519 {
		return chain.PubKey{}, fmt.Errorf("node: identity %s is a %s key, not Ed25519", path, k.Type())
	}
	raw, err := k.GetPublic().Raw()
	if err != nil {
		return chain.PubKey{}, err
	}
	var pk chain.PubKey
	if len(raw) != len(pk) {
		return chain.PubKey{}, fmt.Errorf("node: identity %s: public key of %d bytes", path, len(raw))
	}
	copy(pk[:], raw)
	return pk, nil
}

// ensureEmptyDir creates dir (0700) or checks that it is an empty directory, so that a new home
// never mixes with an old one's keys or store.
func ensureEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("node: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("node: %s is not empty; choose a new directory or remove it first", dir)
	}
	return nil
}
