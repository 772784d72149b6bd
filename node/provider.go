package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/wallet/envelope"
)

// LoadOrCreateProviderKeys reads the provider keys from signingPath and encryptionPath, creating
// either (mode 0600) when it does not exist yet.
func LoadOrCreateProviderKeys(signingPath, encryptionPath string) (*records.Keys, error) {
	sk, err := ReadKeyFile(signingPath)
	if errors.Is(err, fs.ErrNotExist) {
		if sk, err = chain.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		if err = WriteKeyFile(signingPath, sk); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	ek, err := readEncryptionKey(encryptionPath)
	if errors.Is(err, fs.ErrNotExist) {
		if ek, err = envelope.GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("node: encryption key: %w", err)
		}
		if err = writeSecret(encryptionPath, hex.EncodeToString(ek.Bytes())+"\n"); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return &records.Keys{Signing: sk, Encryption: ek}, nil
}

func readEncryptionKey(path string) (*envelope.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: read encryption key: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("node: %s is not a hex key: %w", path, err)
	}
	k, err := envelope.ParsePrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", path, err)
	}
	return k, nil
}

// maxLicenceFileBytes bounds a licence file.
const maxLicenceFileBytes = 4096

// WriteLicenceFile stores a licence attestation as hex CBOR (mode 0600, never overwriting).
func WriteLicenceFile(path string, l *chain.Licence) error {
	return writeSecret(path, hex.EncodeToString(chain.Encode(l))+"\n")
}

// ReadLicenceFile reads a licence written by WriteLicenceFile; a missing file is fs.ErrNotExist.
func ReadLicenceFile(path string) (*chain.Licence, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > maxLicenceFileBytes {
		return nil, fmt.Errorf("node: licence %s is %d bytes, limit %d", path, len(data), maxLicenceFileBytes)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("node: licence %s is not hex: %w", path, err)
	}
	var l chain.Licence
	if err := chain.DecodeCanonical("licence", raw, maxLicenceFileBytes, &l); err != nil {
		return nil, fmt.Errorf("node: licence %s: %w", path, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("node: licence %s: %w", path, err)
	}
	return &l, nil
}

// licenceTicket returns the licence at path in its canonical encoding, the ticket a node
// presents to peers that do not know it as a member yet (a new practice joining); nil if there
// is no licence file.
func licenceTicket(path string) ([]byte, error) {
	l, err := ReadLicenceFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return chain.Encode(l), nil
}
