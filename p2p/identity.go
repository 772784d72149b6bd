package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxIdentityFileBytes bounds the key file read: a marshalled Ed25519 key is 68 bytes.
const maxIdentityFileBytes = 4 << 10

// LoadOrCreateIdentity reads the libp2p private key at path, or creates an Ed25519 key there
// (file mode 0600, directory 0700) if the file does not exist. The file holds the key in
// libp2p's protobuf encoding (crypto.MarshalPrivateKey).
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	if path == "" {
		return nil, errors.New("p2p: identity file path is empty")
	}
	data, err := readBounded(path, maxIdentityFileBytes)
	switch {
	case err == nil:
		key, err := crypto.UnmarshalPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("p2p: identity %s: %w", path, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("p2p: identity: %w", err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate identity: %w", err)
	}
	data, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: marshal identity: %w", err)
	}
	if err := writeNew(path, data); err != nil {
		// Another process may have created it first: use theirs.
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateIdentity(path)
		}
		return nil, fmt.Errorf("p2p: write identity: %w", err)
	}
	return key, nil
}

// PeerIDFromIdentity returns the peer id of the key at path, creating the key if absent.
func PeerIDFromIdentity(path string) (string, error) {
	key, err := LoadOrCreateIdentity(path)
	if err != nil {
		return "", err
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("p2p: peer id: %w", err)
	}
	return id.String(), nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, an identity is at most %d", path, st.Size(), limit)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, err
	}
	return data, nil
}

// writeNew writes data to a temporary file, syncs it and links it at path, failing with
// fs.ErrExist if path exists: a crash leaves either no key or a whole one, never half a key.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".identity-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
