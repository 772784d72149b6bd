package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medledger/medledger/chain"

	"github.com/medledger/medledger/chain/keyfile"
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
	if err := keyfile.WriteNew(path, data); err != nil {
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

// NodeKey returns the raw Ed25519 key a libp2p peer id embeds: a member node's key on the
// ledger, or a patient's signing key for a wallet.
func NodeKey(p peer.ID) (chain.PubKey, error) {
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return chain.PubKey{}, err
	}
	raw, err := pk.Raw()
	if err != nil {
		return chain.PubKey{}, err
	}
	var k chain.PubKey
	if len(raw) != len(k) {
		return chain.PubKey{}, fmt.Errorf("peer %s has a %d-byte key, not an Ed25519 key", p, len(raw))
	}
	copy(k[:], raw)
	return k, nil
}
