package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/node/staff"
)

// Config is a node's config.toml. Every field has a documented default (DefaultConfig and the
// comments of DefaultConfigTOML); relative paths resolve against the home directory.
type Config struct {
	Node    NodeSection    `toml:"node"`
	P2P     P2PSection     `toml:"p2p"`
	API     APISection     `toml:"api"`
	Store   StoreSection   `toml:"store"`
	Mempool MempoolSection `toml:"mempool"`
	Records RecordsSection `toml:"records"`
	Staff   StaffSection   `toml:"staff"`
	Audit   AuditSection   `toml:"audit"`
	Log     LogSection     `toml:"log"`
}

// StaffSection configures staff sessions (users are in HOME/users.json, `medledger users`).
type StaffSection struct {
	// IdleTimeoutMinutes ends a session after this long without a request (automatic logoff).
	IdleTimeoutMinutes int `toml:"idle_timeout_minutes"`
	// SessionHours ends a session this long after login, however busy.
	SessionHours int `toml:"session_hours"`
	// MaxSessions bounds the sessions of all users; MaxSessionsPerUser one user's (a login past
	// it ends that user's oldest session).
	MaxSessions        int `toml:"max_sessions"`
	MaxSessionsPerUser int `toml:"max_sessions_per_user"`
}

// AuditSection bounds the local audit log, HOME/audit.log.
type AuditSection struct {
	// MaxFileMB is the size at which audit.log is rotated to audit.log.1.
	MaxFileMB int `toml:"max_file_mb"`
	// KeepFiles is how many rotated files are kept (audit.log.1 … audit.log.N).
	KeepFiles int `toml:"keep_files"`
}

// SessionConfig is the [staff] section as the staff package takes it.
func (s StaffSection) SessionConfig() staff.SessionConfig {
	return staff.SessionConfig{
		Idle: time.Duration(s.IdleTimeoutMinutes) * time.Minute, Lifetime: time.Duration(s.SessionHours) * time.Hour,
		MaxTotal: s.MaxSessions, MaxPerUser: s.MaxSessionsPerUser,
	}
}

// RecordsSection configures the node's provider identity and its record blobs.
type RecordsSection struct {
	// ProviderKey is the provider signing key (hex Ed25519 seed) that authors records, signs
	// access requests and access logs; created at first start.
	ProviderKey string `toml:"provider_key"`
	// EncryptionKey is the provider's HPKE private key (hex), created at first start.
	EncryptionKey string `toml:"encryption_key"`
	// Licence is a licensing authority's attestation for the provider key (hex CBOR). When the
	// file exists and the provider is not yet registered, the node registers itself.
	Licence string `toml:"licence"`
	// BlobDir holds encrypted record blobs, key envelopes and the pending access journal.
	BlobDir string `toml:"blob_dir"`
	// Replicas is ignored, kept so that existing config files load: how many nodes hold each
	// record is the network's genesis parameter params.replicas (default 2), because every node
	// must compute the same holders (docs/records.md, Placement).
	Replicas int `toml:"replicas"`
}

// NodeSection names the node and its authority key.
type NodeSection struct {
	// Name appears in logs. Default "medledger".
	Name string `toml:"name"`
	// AuthorityKey is the file holding this node's authority signing key (hex Ed25519 seed).
	// Empty: the node is a full node that verifies and relays but never signs.
	AuthorityKey string `toml:"authority_key"`
	// MemoryLimitMB is the node's soft memory limit in MiB (Go's GOMEMLIMIT, which overrides
	// it): 0 derives it from the other settings (MemoryLimit, about 510 MiB by default).
	MemoryLimitMB int `toml:"memory_limit_mb"`
	// ClockOffsetFile, on a test network only, names a file whose duration is added to this
	// node's clock, so a test drives block time forward (testclock.go). Empty: the wall clock.
	ClockOffsetFile string `toml:"clock_offset_file"`
}

// P2PSection configures the libp2p host.
type P2PSection struct {
	// Listen are libp2p multiaddrs (TCP and QUIC).
	Listen []string `toml:"listen"`
	// Bootstrap are peers to dial at start, as multiaddrs ending in /p2p/<peer id>.
	Bootstrap []string `toml:"bootstrap"`
	// Identity is the file holding the libp2p identity key; created at first start.
	Identity string `toml:"identity"`
}

// APISection configures the HTTP API.
type APISection struct {
	// Listen is the API's TCP address; it must be a loopback address.
	Listen string `toml:"listen"`
	// MaxBodyBytes limits a request body (POST /v1/txs).
	MaxBodyBytes int64 `toml:"max_body_bytes"`
	// MaxBatchBytes limits the body of POST /v1/txs/batch.
	MaxBatchBytes int64 `toml:"max_batch_bytes"`
}

// StoreSection configures the Badger store in HOME/data.
type StoreSection struct {
	// Sync is "every-commit" (fsync each committed block: survives power loss) or "none"
	// (survives a process crash, not power loss). An authority must use "every-commit".
	Sync string `toml:"sync"`
	// KeepVersions is how many recent states the node keeps provable; older ones are pruned.
	// 0 keeps everything (an archive node, which answers proofs at any height).
	KeepVersions uint64 `toml:"keep_versions"`
}

// MempoolSection bounds the pending-transaction pool.
type MempoolSection struct {
	MaxTxs   int `toml:"max_txs"`
	MaxBytes int `toml:"max_bytes"`
	// MaxRegistrations bounds pending registrations by signers the ledger does not know yet
	// (patients being enrolled, practices registering); 0 means the default, 256.
	MaxRegistrations int `toml:"max_registrations"`
}

// LogSection configures the node's structured log on standard error.
type LogSection struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is "text" or "json".
	Format string `toml:"format"`
}

// Default ports: p2p TCP and QUIC on DefaultP2PPort, the API on DefaultP2PPort+1.
const DefaultP2PPort = 26600

// DefaultConfig returns the configuration a node runs with when config.toml leaves a key out.
func DefaultConfig() Config {
	return Config{
		Node: NodeSection{Name: "medledger", AuthorityKey: "keys/authority.key"},
		P2P: P2PSection{
			Listen:    []string{"/ip4/0.0.0.0/tcp/26600", "/ip4/0.0.0.0/udp/26600/quic-v1"},
			Bootstrap: []string{},
			Identity:  "keys/p2p.key",
		},
		API:   APISection{Listen: "127.0.0.1:26601", MaxBodyBytes: 1 << 20, MaxBatchBytes: 16 << 20},
		Store: StoreSection{Sync: "every-commit", KeepVersions: DefaultKeepVersions},
		// Five full blocks: enough to keep blocks full, small enough that under overload the
		// API refuses (503) instead of letting a backlog starve consensus of CPU.
		Mempool: MempoolSection{MaxTxs: 10_000, MaxBytes: 16 << 20},
		Records: RecordsSection{ProviderKey: "keys/provider.key", EncryptionKey: "keys/encryption.key", Licence: "keys/licence.hex", BlobDir: "blobs", Replicas: 2},
		Staff:   StaffSection{IdleTimeoutMinutes: 15, SessionHours: 12, MaxSessions: staff.DefaultMaxTotal, MaxSessionsPerUser: staff.DefaultMaxPerUser},
		Audit:   AuditSection{MaxFileMB: 10, KeepFiles: 10},
		Log:     LogSection{Level: "info", Format: "text"},
	}
}

// DefaultConfigTOML is the documented default config.toml; FormatConfig writes the same
// commented layout with other values.
var DefaultConfigTOML = string(FormatConfig(DefaultConfig()))

// FormatConfig renders c as a commented config.toml that documents every key.
func FormatConfig(c Config) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# MedLedger node configuration. Relative paths resolve against the home directory, which\n")
	p("# also holds genesis.json, data/ (the Badger store), api.token (the operator's API bearer\n")
	p("# token), users.json (staff accounts) and audit.log (the local audit log).\n\n")
	p("[node]\n")
	p("# Name shown in logs.\n")
	p("name = %s\n", quote(c.Node.Name))
	p("# This node's authority signing key (hex Ed25519 seed, mode 0600). Leave empty (\"\") for a\n")
	p("# full node that verifies and relays blocks but never signs. Default \"keys/authority.key\".\n")
	p("authority_key = %s\n", quote(c.Node.AuthorityKey))
	p("# Soft memory limit in MiB, a ceiling: the garbage collector works harder as the node nears it.\n")
	p("# 0 derives it: twice the store's, caches' and mempool's sizes (about 510 MiB). GOMEMLIMIT wins.\n")
	p("memory_limit_mb = %d\n", c.Node.MemoryLimitMB)
	p("# Test networks only (chains made by `medledger testnet init`): a file holding a duration added\n")
	p("# to this node's clock, to drive block time forward (`medledger testnet clock`). Default \"\".\n")
	p("clock_offset_file = %s\n\n", quote(c.Node.ClockOffsetFile))
	p("[p2p]\n")
	p("# libp2p listen multiaddrs, TCP and QUIC. Default port %d on all interfaces.\n", DefaultP2PPort)
	p("listen = %s\n", quoteList(c.P2P.Listen))
	p("# Peers dialled at start: multiaddrs ending in /p2p/<peer id>. Default none.\n")
	p("bootstrap = %s\n", quoteList(c.P2P.Bootstrap))
	p("# libp2p identity key, created at first start. Default \"keys/p2p.key\".\n")
	p("identity = %s\n\n", quote(c.P2P.Identity))
	p("[api]\n")
	p("# HTTP API address; loopback only. Clients send the token in api.token as\n")
	p("# \"Authorization: Bearer <token>\". Default \"127.0.0.1:%d\".\n", DefaultP2PPort+1)
	p("listen = %s\n", quote(c.API.Listen))
	p("# Largest request body accepted, in bytes (POST /v1/txs). Default 1048576 (1 MiB).\n")
	p("max_body_bytes = %d\n", c.API.MaxBodyBytes)
	p("# Largest body of POST /v1/txs/batch, in bytes. Default 16777216 (16 MiB).\n")
	p("max_batch_bytes = %d\n\n", c.API.MaxBatchBytes)
	p("[store]\n")
	p("# \"every-commit\": fsync each committed block (survives power loss; default).\n")
	p("# \"none\": no fsync (survives a process crash, not power loss; faster).\n")
	p("sync = %s\n", quote(c.Store.Sync))
	p("# Recent states kept provable; older ones are pruned, so the store does not grow with every\n")
	p("# version of the state. 0 keeps every state (an archive node). Default %d.\n", DefaultKeepVersions)
	p("keep_versions = %d\n\n", c.Store.KeepVersions)
	p("[mempool]\n")
	p("# Pending-transaction limits; submissions beyond them get 503. Defaults 10000 and 16777216 (16 MiB).\n")
	p("max_txs = %d\n", c.Mempool.MaxTxs)
	p("max_bytes = %d\n", c.Mempool.MaxBytes)
	p("# Pending registrations by signers the ledger does not know yet (enrolments, new practices):\n")
	p("# a separate small quota, so that strangers cannot fill the pool. 0 means the default 256.\n")
	p("max_registrations = %d\n\n", c.Mempool.MaxRegistrations)
	p("[records]\n")
	p("# Provider signing key (hex Ed25519 seed): authors records, signs access requests and audit\n")
	p("# entries. Created at first start. Default \"keys/provider.key\".\n")
	p("provider_key = %s\n", quote(c.Records.ProviderKey))
	p("# Provider HPKE (ML-KEM-768+X25519) private key, created at first start. Default \"keys/encryption.key\".\n")
	p("encryption_key = %s\n", quote(c.Records.EncryptionKey))
	p("# Licence attestation for the provider key (hex CBOR, from the licensing authority). When present\n")
	p("# and the provider is not registered, the node registers itself. Default \"keys/licence.hex\".\n")
	p("licence = %s\n", quote(c.Records.Licence))
	p("# Encrypted record blobs, key envelopes and the pending-access journal. Default \"blobs\".\n")
	p("blob_dir = %s\n", quote(c.Records.BlobDir))
	p("# Ignored: the genesis params.replicas decides how many nodes hold each record.\n")
	p("replicas = %d\n\n", c.Records.Replicas)
	p("[staff]\n")
	p("# Staff users log in with POST /v1/login (users are in users.json: `medledger users`).\n")
	p("# A session ends after idle_timeout_minutes without a request (automatic logoff; default 15)\n")
	p("# and session_hours after login (default 12). A node restart ends every session.\n")
	p("idle_timeout_minutes = %d\n", c.Staff.IdleTimeoutMinutes)
	p("session_hours = %d\n", c.Staff.SessionHours)
	p("# Open sessions of all users (default %d) and of one user (default %d; a login beyond it ends\n", staff.DefaultMaxTotal, staff.DefaultMaxPerUser)
	p("# that user's oldest session).\n")
	p("max_sessions = %d\n", c.Staff.MaxSessions)
	p("max_sessions_per_user = %d\n\n", c.Staff.MaxSessionsPerUser)
	p("[audit]\n")
	p("# The local audit log, audit.log: one JSON line per API request. It is rotated to audit.log.1\n")
	p("# at max_file_mb (default 10) and keep_files rotated files are kept (default 10).\n")
	p("max_file_mb = %d\n", c.Audit.MaxFileMB)
	p("keep_files = %d\n\n", c.Audit.KeepFiles)
	p("[log]\n")
	p("# debug, info, warn or error. Default \"info\".\n")
	p("level = %s\n", quote(c.Log.Level))
	p("# \"text\" or \"json\". Default \"text\".\n")
	p("format = %s\n", quote(c.Log.Format))
	return b.Bytes()
}

func quote(s string) string { return strconv.Quote(s) }

func quoteList(xs []string) string {
	if len(xs) == 0 {
		return "[]"
	}
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "\n  " + quote(x) + ","
	}
	return "[" + strings.Join(q, "") + "\n]"
}

// MaxConfigBytes bounds config.toml.
const MaxConfigBytes = 1 << 20

// ParseConfig decodes a config.toml over DefaultConfig. Unknown keys are errors naming their
// line and column; name labels errors (usually the file's path).
func ParseConfig(name string, data []byte) (*Config, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("node: %s is %d bytes, limit %d", name, len(data), MaxConfigBytes)
	}
	c := DefaultConfig()
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, configError(name, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("node: %s: %w", name, err)
	}
	return &c, nil
}

func configError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var msgs []string
		for _, e := range strict.Errors {
			row, col := e.Position()
			msgs = append(msgs, fmt.Sprintf("%s:%d:%d: unknown key %q", name, row, col, strings.Join(e.Key(), ".")))
		}
		return fmt.Errorf("node: %s", strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Errorf("node: %s:%d:%d: %s", name, row, col, de.Error())
	}
	return fmt.Errorf("node: %s: %w", name, err)
}

// Validate checks values that decoding cannot.
func (c *Config) Validate() error {
	if len(c.P2P.Listen) == 0 {
		return fmt.Errorf("p2p.listen: at least one address is required")
	}
	if c.P2P.Identity == "" {
		return fmt.Errorf("p2p.identity: a key file is required")
	}
	host, port, err := net.SplitHostPort(c.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen %q: %w", c.API.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("api.listen %q: bad port", c.API.Listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("api.listen %q: the API listens on a loopback address only (127.0.0.1, ::1 or localhost)", c.API.Listen)
	}
	if c.API.MaxBodyBytes < 1024 || c.API.MaxBatchBytes < c.API.MaxBodyBytes {
		return fmt.Errorf("api: max_body_bytes must be at least 1024 and max_batch_bytes at least max_body_bytes")
	}
	if _, err := c.SyncPolicy(); err != nil {
		return err
	}
	if c.Node.MemoryLimitMB != 0 && c.Node.MemoryLimitMB < minMemoryLimitMB {
		return fmt.Errorf("node.memory_limit_mb %d: want 0 (derived) or at least %d", c.Node.MemoryLimitMB, minMemoryLimitMB)
	}
	if c.Node.AuthorityKey != "" && c.Store.Sync != "every-commit" {
		// Without a sync on every commit a power loss can leave the store unreadable, and with
		// it the record of what this authority signed: it could then sign twice.
		return fmt.Errorf("store.sync %q: an authority node must use \"every-commit\"", c.Store.Sync)
	}
	if c.Mempool.MaxTxs < 1 || c.Mempool.MaxBytes < 1024 || c.Mempool.MaxRegistrations < 0 {
		return fmt.Errorf("mempool: max_txs must be positive, max_bytes at least 1024 and max_registrations not negative")
	}
	if c.Records.ProviderKey == "" || c.Records.EncryptionKey == "" || c.Records.BlobDir == "" {
		return fmt.Errorf("records: provider_key, encryption_key and blob_dir are required")
	}
	if c.Records.Replicas < 0 || c.Records.Replicas > 16 {
		return fmt.Errorf("records.replicas %d: want 0..16", c.Records.Replicas)
	}
	if s := c.Staff; s.IdleTimeoutMinutes < 1 || s.SessionHours < 1 || s.IdleTimeoutMinutes > 60*s.SessionHours || s.MaxSessions < 1 || s.MaxSessionsPerUser < 1 {
		return fmt.Errorf("staff: idle_timeout_minutes and session_hours must be positive (the idle timeout at most the session), max_sessions and max_sessions_per_user positive")
	}
	if c.Audit.MaxFileMB < 1 || c.Audit.KeepFiles < 1 {
		return fmt.Errorf("audit: max_file_mb and keep_files must be positive")
	}
	if _, err := c.Log.Handler(io.Discard); err != nil {
		return err
	}
	return nil
}

// DefaultKeepVersions is the default number of recent states a node keeps: about a day at one
// block a second.
const DefaultKeepVersions = 100_000

// SyncPolicy maps store.sync to the store's policy.
func (c *Config) SyncPolicy() (store.SyncPolicy, error) {
	switch c.Store.Sync {
	case "every-commit":
		return store.SyncEveryCommit, nil
	case "none":
		return store.SyncNone, nil
	}
	return 0, fmt.Errorf("store.sync %q: want \"every-commit\" or \"none\"", c.Store.Sync)
}

// Handler returns the slog handler the [log] section describes, writing to w.
func (l LogSection) Handler(w io.Writer) (slog.Handler, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: want debug, info, warn or error", l.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.Format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("log.format %q: want \"text\" or \"json\"", l.Format)
}

// Resolve returns path made absolute against home; an empty path stays empty.
func Resolve(home, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(home, path)
}

// LoadConfig reads and validates HOME/config.toml.
func LoadConfig(home string) (*Config, error) {
	path := Home(home).ConfigFile()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("node: read %s: %w", path, err)
	}
	return ParseConfig(path, data)
}
