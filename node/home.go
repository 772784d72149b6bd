package node

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/keyfile"
)

// Home is a node's home directory:
//
//	HOME/config.toml          the node's configuration (FormatConfig)
//	HOME/genesis.json         the chain's genesis, identical on every node
//	HOME/keys/authority.key   authority signing key, hex Ed25519 seed, mode 0600 (absent on a full node)
//	HOME/keys/p2p.key         libp2p identity, created at first start
//	HOME/data/                the Badger store
//	HOME/api.token            API bearer token, 32 random bytes in hex, mode 0600, created at first start
type Home string

// ConfigFile is HOME/config.toml.
// LoadGenesis reads and validates a JSON genesis file. (Package chain stays free of I/O: the
// consensus core and the state machine depend on it and must be pure.)
func LoadGenesis(path string) (*chain.Genesis, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: read genesis: %w", err)
	}
	g, err := chain.ParseGenesisJSON(data)
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", path, err)
	}
	return g, nil
}

func (h Home) ConfigFile() string { return filepath.Join(string(h), "config.toml") }

// GenesisFile is HOME/genesis.json.
func (h Home) GenesisFile() string { return filepath.Join(string(h), "genesis.json") }

// DataDir is HOME/data, the Badger store.
func (h Home) DataDir() string { return filepath.Join(string(h), "data") }

// TokenFile is HOME/api.token.
func (h Home) TokenFile() string { return filepath.Join(string(h), "api.token") }

// KeysDir is HOME/keys.
func (h Home) KeysDir() string { return filepath.Join(string(h), "keys") }

// ReadKeyFile reads a signing key stored as a hex Ed25519 seed.
func ReadKeyFile(path string) (chain.PrivKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return chain.PrivKey{}, fmt.Errorf("node: read key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return chain.PrivKey{}, fmt.Errorf("node: %s is not a hex key seed: %w", path, err)
	}
	k, err := chain.PrivKeyFromSeed(seed)
	if err != nil {
		return chain.PrivKey{}, fmt.Errorf("node: %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k's seed in hex to path with mode 0600, creating the directory (0700).
// It refuses to overwrite an existing file.
func WriteKeyFile(path string, k chain.PrivKey) error {
	return writeSecret(path, hex.EncodeToString(k.Seed())+"\n")
}

func writeSecret(path, content string) error {
	if err := keyfile.WriteNew(path, []byte(content)); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// ReadToken reads the API token from path.
func ReadToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("node: read API token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 32 {
		return "", fmt.Errorf("node: API token in %s is too short (%d characters)", path, len(tok))
	}
	return tok, nil
}

// LoadOrCreateToken returns the API token in path, first creating it (32 bytes from rand, in
// hex, mode 0600) if the file does not exist.
func LoadOrCreateToken(path string, rand io.Reader) (string, error) {
	tok, err := ReadToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	raw := make([]byte, 32)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return "", fmt.Errorf("node: API token: %w", err)
	}
	tok = hex.EncodeToString(raw)
	if err := writeSecret(path, tok+"\n"); err != nil {
		return "", err
	}
	return tok, nil
}
