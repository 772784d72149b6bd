package node

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
)

// The billing keys a payer's node shares with the providers it pays (docs/billing.md): one
// 32-byte key K per provider, in HOME/billing-keys/<provider>.key as hex, mode 0600 in a 0700
// directory. K is a secret (docs/security.md): with it anyone can fingerprint codes and learn
// which service a claim line is. The ledger holds only Sum256(K) and K sealed to the provider,
// so a payer that loses the file cannot recover it from the ledger: the next schedule it
// publishes for that provider carries a new key (and claims filed under the old one can no
// longer be verified by this node).

// billingKeysDir is the directory under a home that holds the payer's billing keys.
func billingKeysDir(h Home) string { return filepath.Join(string(h), "billing-keys") }

// billingKeyStore reads and creates the per-provider key files under dir.
type billingKeyStore struct{ dir string }

func (s billingKeyStore) path(provider chain.Address) string {
	return filepath.Join(s.dir, provider.String()+".key")
}

// get returns the key for provider, or nil, nil if there is none.
func (s billingKeyStore) get(provider chain.Address) ([]byte, error) {
	if s.dir == "" {
		return nil, errors.New("this node keeps no billing keys (no home directory)")
	}
	data, err := os.ReadFile(s.path(provider))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("billing key for %s: %w", provider, err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != billing.KeyLen {
		return nil, fmt.Errorf("billing key file %s is not %d hex bytes", s.path(provider), billing.KeyLen)
	}
	return key, nil
}

// getOrCreate returns the key for provider, making and storing a new one the first time. The
// file is written (and synced) before the key is used, so a schedule never commits a key this
// node has not kept.
func (s billingKeyStore) getOrCreate(provider chain.Address) (key []byte, created bool, err error) {
	if key, err = s.get(provider); err != nil || key != nil {
		return key, false, err
	}
	if key, err = billing.NewKey(); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("billing keys: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, ".key-*")
	if err != nil {
		return nil, false, fmt.Errorf("billing keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			// Link, not rename: a concurrent first schedule for the same provider keeps the
			// first key written and this call reads it back.
			if err = os.Link(tmp.Name(), s.path(provider)); errors.Is(err, fs.ErrExist) {
				key, err = s.get(provider)
				return key, false, err
			}
		}
	} else {
		tmp.Close()
	}
	if err != nil {
		return nil, false, fmt.Errorf("billing keys: %w", err)
	}
	return key, true, nil
}
