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
//	HOME/users.json           staff accounts (node/staff), mode 0600, written by `medledger users` (lock: users.json.lock)
//	HOME/audit.log            the local audit log of API requests (node/auditlog), mode 0600, rotated to audit.log.1 …
//	HOME/billing/             the billing book (billing_local.go): sponsor names, payment references, signed Contracts
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

// UsersFile is HOME/users.json, the staff accounts.
func (h Home) UsersFile() string { return filepath.Join(string(h), "users.json") }

// AuditLog is HOME/audit.log, the local audit log.
func (h Home) AuditLog() string { return filepath.Join(string(h), "audit.log") }

// AddrsFile is HOME/p2p.addrs: the node's libp2p multiaddrs, written at every start.
func (h Home) AddrsFile() string { return filepath.Join(string(h), "p2p.addrs") }

// KeysDir holds the node's key files.
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

// writeAddrs writes the node's libp2p multiaddrs, one a line, for wallets to dial: public
// information (anyone connecting learns it), so mode 0644.
func writeAddrs(path string, addrs []string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	return nil
}

// ReadLimited reads a whole file of at most limit bytes.
func ReadLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, limit %d", path, fi.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}
