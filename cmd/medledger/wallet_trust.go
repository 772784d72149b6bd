package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/records/blobstore"
	"github.com/medledger/medledger/sync/light"
)

// Where a wallet's verification starts. By default from genesis the first time, and after that
// from the newest header it verified, which it keeps in WALLET/trusted-header.json: later
// commands verify only the headers since, and a node that serves a view below that header
// (stale, or rolled back) is caught even when it is the only node asked. --trust-header
// HEIGHT:HASH starts instead from a header the user confirmed out of band (a practice's
// notice, another device), for a wallet that has never verified this chain.

// trustedHeaderFile is the wallet's newest verified header, in the wallet directory.
const trustedHeaderFile = "trusted-header.json"

// trustedHeader is that file: the header and the authority set that certifies the next one,
// for the network whose genesis hash it names.
type trustedHeader struct {
	ChainID     string     `json:"chain_id"`
	GenesisHash chain.Hash `json:"genesis_hash"`
	Height      uint64     `json:"height"`
	Hash        chain.Hash `json:"hash"`
	Header      string     `json:"header"`   // canonical CBOR, hex
	NextSet     string     `json:"next_set"` // canonical CBOR, hex
}

// maxTrustedHeaderBytes bounds the file read (a header and a full authority set, in hex).
const maxTrustedHeaderBytes = 1 << 20

// loadTrusted returns a verifier at the header dir's wallet verified last on g's network, or
// nil if it has none for this network.
func loadTrusted(dir string, g *chain.Genesis) (*light.Verifier, error) {
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(dir, trustedHeaderFile)
	data, err := node.ReadLimited(path, maxTrustedHeaderBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var t trustedHeader
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to verify from genesis again)", path, err)
	}
	if t.GenesisHash != g.Hash() {
		return nil, nil // another network's
	}
	hb, err := hex.DecodeString(t.Header)
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	h, err := chain.DecodeHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sb, err := hex.DecodeString(t.NextSet)
	if err != nil {
		return nil, fmt.Errorf("%s: next set: %w", path, err)
	}
	set, err := chain.DecodeAuthoritySet(sb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if h.Height != t.Height || h.Hash() != t.Hash {
		return nil, fmt.Errorf("%s: the header is not the one it names (delete the file to verify from genesis again)", path)
	}
	v, err := light.NewVerifierAt(g, h, set)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// saveTrusted keeps v's header as dir's newest verified one, unless the file already holds a
// higher one of the same network.
func saveTrusted(dir string, g *chain.Genesis, v *light.Verifier) error {
	if dir == "" || v.Height() < 2 {
		return nil
	}
	if old, err := loadTrusted(dir, g); err == nil && old != nil && old.Height() >= v.Height() {
		return nil
	}
	h := v.Header()
	data, err := json.MarshalIndent(trustedHeader{
		ChainID: g.ChainID, GenesisHash: g.Hash(), Height: h.Height, Hash: h.Hash(),
		Header: hex.EncodeToString(chain.Encode(h)), NextSet: hex.EncodeToString(chain.Encode(v.NextSet())),
	}, "", "  ")
	if err != nil {
		return err
	}
	return blobstore.WriteFileAtomic(dir, trustedHeaderFile, append(data, '\n'))
}

// parseTrustHeader parses --trust-header HEIGHT:HASH.
func parseTrustHeader(s string) (uint64, chain.Hash, error) {
	hs, hashHex, ok := strings.Cut(strings.TrimSpace(s), ":")
	height, err := strconv.ParseUint(hs, 10, 64)
	if !ok || err != nil || height < 2 {
		return 0, chain.Hash{}, fmt.Errorf("--trust-header %q: want HEIGHT:HASH, a height above 1 and the header's 64-hex-digit hash", s)
	}
	hash, err := chain.ParseHash(hashHex)
	if err != nil {
		return 0, chain.Hash{}, fmt.Errorf("--trust-header %q: %w", s, err)
	}
	return height, hash, nil
}
