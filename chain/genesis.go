package chain

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// GenesisVersion is the genesis encoding version.
const GenesisVersion = 1

// AuthorityChangeDelay is how many heights after the block that decides an authority set change
// the new set takes over: a change decided by block H certifies blocks from H+AuthorityChangeDelay
// on. Two heights let header H+1 announce the next set before it signs anything.
const AuthorityChangeDelay = 2

// Params are the network's consensus parameters, fixed in genesis.
type Params struct {
	_ struct{} `cbor:",toarray"`
	// MaxBlockTxs and MaxBlockBytes bound one block.
	MaxBlockTxs   uint32 `json:"max_block_txs"`
	MaxBlockBytes uint32 `json:"max_block_bytes"`
	// Round timeouts: the base and the growth per round, in milliseconds.
	TimeoutProposeMs uint32 `json:"timeout_propose_ms"`
	TimeoutVoteMs    uint32 `json:"timeout_vote_ms"`
	TimeoutDeltaMs   uint32 `json:"timeout_delta_ms"`
	// BlockIntervalMs is the pause after a commit before the next height starts; with no
	// transactions the network still finalizes an empty block about this often.
	BlockIntervalMs uint32 `json:"block_interval_ms"`
	// MaxClockDriftMs is how far in the future of a validator's own clock a proposed block time
	// may be.
	MaxClockDriftMs uint32 `json:"max_clock_drift_ms"`
	// EnrolmentsPerWindow is how many patients one provider may enrol per EnrolmentWindowMs of
	// block time; 0 means DefaultEnrolmentsPerWindow (500), and 0 for the window means
	// DefaultEnrolmentWindowMs (24 hours). See EnrolmentQuota.
	EnrolmentsPerWindow uint32 `json:"enrolments_per_window,omitempty"`
	EnrolmentWindowMs   uint32 `json:"enrolment_window_ms,omitempty"`
	// Replicas is how many member nodes besides its author hold each record's ciphertext,
	// chosen by rendezvous hashing over the active providers (records/placement). Every node
	// must compute the same holders, so it is a network parameter; 0 means DefaultReplicas.
	Replicas uint32 `json:"replicas,omitempty"`
}

// DefaultReplicas is the number of holders besides the author when Params.Replicas is 0: with
// the author, three copies, so a record survives two member nodes lost at once. MaxReplicas
// bounds it (every push and every repair pass scales with it).
const (
	DefaultReplicas = 2
	MaxReplicas     = 16
)

// ReplicaCount returns the number of holders of a record besides its author, the default
// applied.
func (p *Params) ReplicaCount() int {
	if p.Replicas == 0 {
		return DefaultReplicas
	}
	return int(p.Replicas)
}

// Defaults of the enrolment rate bound: a practice enrols at most 500 patients a day, far above
// what one practice registers in a day and low enough that a compromised member cannot flood the
// ledger with patients.
const (
	DefaultEnrolmentsPerWindow = 500
	DefaultEnrolmentWindowMs   = 24 * 60 * 60 * 1000
)

// EnrolmentQuota returns the rate bound on patient enrolments per provider, defaults applied:
// at most n enrolments in each window of block time [k*windowMs, (k+1)*windowMs).
func (p *Params) EnrolmentQuota() (n uint32, windowMs int64) {
	n, windowMs = p.EnrolmentsPerWindow, int64(p.EnrolmentWindowMs)
	if n == 0 {
		n = DefaultEnrolmentsPerWindow
	}
	if windowMs == 0 {
		windowMs = DefaultEnrolmentWindowMs
	}
	return n, windowMs
}

// DefaultParams are the documented defaults for a new network.
func DefaultParams() Params {
	return Params{
		// A block must execute on every authority well within the propose timeout, or rounds
		// fail under load and the backlog makes the next block bigger still (the first bench
		// saw commits collapse this way). 2,000 transactions fit in under a second on a
		// shared 2-core machine running four nodes, and under 1 MiB the proposal travels by
		// gossip.
		MaxBlockTxs:      2_000,
		MaxBlockBytes:    1000 << 10,
		TimeoutProposeMs: 1000,
		TimeoutVoteMs:    500,
		TimeoutDeltaMs:   500,
		BlockIntervalMs:  1000,
		MaxClockDriftMs:  5000,
	}
}

// Validate checks the parameters against the hard limits.
func (p *Params) Validate() error {
	switch {
	case p.MaxBlockTxs == 0 || p.MaxBlockTxs > MaxBlockTxsLimit:
		return fmt.Errorf("chain: params: max_block_txs must be 1..%d", MaxBlockTxsLimit)
	case p.MaxBlockBytes < 1024 || p.MaxBlockBytes > MaxBlockBytes:
		return fmt.Errorf("chain: params: max_block_bytes must be 1024..%d", MaxBlockBytes)
	case p.TimeoutProposeMs == 0 || p.TimeoutVoteMs == 0:
		return fmt.Errorf("chain: params: timeouts must be positive")
	case p.Replicas > MaxReplicas:
		return fmt.Errorf("chain: params: replicas must be 0..%d", MaxReplicas)
	}
	return nil
}

// Genesis is the network's starting point: its id, first authorities, the licensing authorities
// whose attestations admit providers, the issuers whose attestations admit the other attested
// roles (chain.Role), and parameters.
type Genesis struct {
	_                    struct{}    `cbor:",toarray"`
	Version              uint8       `json:"version"`
	ChainID              string      `json:"chain_id"`
	TimeMs               int64       `json:"genesis_time_ms"`
	Authorities          []Authority `json:"authorities"`
	LicensingAuthorities []Authority `json:"licensing_authorities"`
	// Issuers are the attestation issuers of roles other than provider and patient, sorted by
	// (role, key) (SortIssuers).
	Issuers []Issuer `json:"attestation_issuers"`
	Params  Params   `json:"params"`
	// Members are registered at height 0: the first members' node identities must be known
	// before any block, or their nodes could not admit one another (the network is closed to
	// everyone else). Genesis stands in for each subject's own registration signature.
	Members []GenesisMember `json:"members"`
}

// MaxGenesisMembers bounds the members a genesis registers.
const MaxGenesisMembers = 1024

// GenesisMember is a member registered by genesis: its attestation (which binds its signing key,
// role and node key, signed by an issuer genesis names) and its encryption key. In JSON both are
// hex: the licence in its canonical encoding.
type GenesisMember struct {
	_             struct{} `cbor:",toarray"`
	Licence       Licence
	EncryptionKey []byte
}

type genesisMemberJSON struct {
	Licence       string `json:"licence"`
	EncryptionKey string `json:"encryption_key"`
}

// MarshalJSON writes the member as hex fields.
func (m GenesisMember) MarshalJSON() ([]byte, error) {
	return json.Marshal(genesisMemberJSON{Licence: hex.EncodeToString(Encode(&m.Licence)), EncryptionKey: hex.EncodeToString(m.EncryptionKey)})
}

// UnmarshalJSON reads the member's hex fields; the licence must be canonically encoded.
func (m *GenesisMember) UnmarshalJSON(data []byte) error {
	var j genesisMemberJSON
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	raw, err := hex.DecodeString(j.Licence)
	if err != nil {
		return fmt.Errorf("member licence: %w", err)
	}
	var l Licence
	if err := decodeCanonical("genesis member licence", raw, MaxPayloadSize, &l); err != nil {
		return err
	}
	enc, err := hex.DecodeString(j.EncryptionKey)
	if err != nil {
		return fmt.Errorf("member encryption key: %w", err)
	}
	*m = GenesisMember{Licence: l, EncryptionKey: enc}
	return nil
}

// Validate checks the member's form (the state machine checks issuer, expiry and uniqueness).
func (m *GenesisMember) Validate() error {
	if err := m.Licence.Validate(); err != nil {
		return err
	}
	return validateEncryptionKey(m.EncryptionKey)
}

// Validate checks the genesis document.
func (g *Genesis) Validate() error {
	if err := checkVersion("genesis", g.Version, GenesisVersion); err != nil {
		return err
	}
	if err := validateChainID(g.ChainID); err != nil {
		return err
	}
	if _, err := NewAuthoritySet(g.Authorities); err != nil {
		return fmt.Errorf("chain: genesis authorities: %w", err)
	}
	if len(g.LicensingAuthorities) > 0 {
		if _, err := NewAuthoritySet(g.LicensingAuthorities); err != nil {
			return fmt.Errorf("chain: genesis licensing authorities: %w", err)
		}
	}
	if err := validateIssuers(g.Issuers); err != nil {
		return err
	}
	if len(g.Members) > MaxGenesisMembers {
		return fmt.Errorf("chain: genesis registers %d members, at most %d", len(g.Members), MaxGenesisMembers)
	}
	for i := range g.Members {
		if err := g.Members[i].Validate(); err != nil {
			return fmt.Errorf("chain: genesis member %d: %w", i, err)
		}
	}
	return g.Params.Validate()
}

// AuthoritySet is the first authority set.
func (g *Genesis) AuthoritySet() *AuthoritySet {
	s, err := NewAuthoritySet(g.Authorities)
	if err != nil {
		panic("chain: genesis not validated: " + err.Error())
	}
	return s
}

// Hash identifies the genesis document. An absent list and an empty one hash alike, so a genesis
// built in code and the same genesis read back from its JSON file have one hash.
func (g *Genesis) Hash() Hash {
	n := *g
	if n.LicensingAuthorities == nil {
		n.LicensingAuthorities = []Authority{}
	}
	if n.Issuers == nil {
		n.Issuers = []Issuer{}
	}
	if n.Members == nil {
		n.Members = []GenesisMember{}
	}
	return Sum256(Encode(&n))
}

// MaxGenesisBytes bounds a genesis file.
const MaxGenesisBytes = 1 << 20

// ParseGenesisJSON parses and validates a JSON genesis document, rejecting unknown fields.
func ParseGenesisJSON(data []byte) (*Genesis, error) {
	if len(data) > MaxGenesisBytes {
		return nil, fmt.Errorf("%w: genesis is %d bytes", ErrTooLarge, len(data))
	}
	var g Genesis
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("chain: parse genesis: %w", err)
	}
	// One document, nothing after it: a second object or stray text is an error, not ignored.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("chain: parse genesis: data after the genesis object")
	}
	// "licensing_authorities": [] and an absent field mean the same; give them one encoding,
	// so one genesis has one hash however its file spells it.
	if g.LicensingAuthorities == nil {
		g.LicensingAuthorities = []Authority{}
	}
	if g.Issuers == nil {
		g.Issuers = []Issuer{}
	}
	if g.Members == nil {
		g.Members = []GenesisMember{}
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &g, nil
}

// JSON returns the genesis as indented JSON for writing to disk.
func (g *Genesis) JSON() []byte {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		panic("chain: marshal genesis: " + err.Error())
	}
	return append(b, '\n')
}
