package node

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/medledger/medledger/chain/store"
)

func TestDefaultConfigTOMLDecodesToDefaults(t *testing.T) {
	c, err := ParseConfig("default", []byte(DefaultConfigTOML))
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(*c, want) {
		t.Fatalf("DefaultConfigTOML decodes to\n%+v\nwant\n%+v", *c, want)
	}
	// An empty file means every default.
	c, err = ParseConfig("empty", nil)
	if err != nil || !reflect.DeepEqual(*c, DefaultConfig()) {
		t.Fatalf("empty config: %+v, %v", c, err)
	}
	if p, _ := c.SyncPolicy(); p != store.SyncEveryCommit {
		t.Fatalf("default sync policy %v", p)
	}
}

func TestFormatConfigRoundTrips(t *testing.T) {
	c := DefaultConfig()
	c.Node.Name, c.Node.AuthorityKey = `node "7"`, ""
	c.P2P.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWa", "/ip4/127.0.0.1/tcp/2/p2p/12D3KooWb"}
	c.API.Listen, c.Store.Sync, c.Log.Format = "127.0.0.1:9", "none", "json"
	got, err := ParseConfig("formatted", FormatConfig(c))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, c) {
		t.Fatalf("round trip: got %+v, want %+v", *got, c)
	}
}

func TestConfigErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"unknown key", "[node]\nname = \"x\"\nnick = \"y\"\n", "cfg:3:1: unknown key \"node.nick\""},
		{"unknown section", "\n\n[nodes]\nname = \"x\"\n", "cfg:3:2: unknown key \"nodes\""},
		{"wrong type", "[api]\nmax_body_bytes = \"big\"\n", "cfg:2:"},
		{"syntax", "[api\n", "cfg:1:"},
		{"bad sync", "[store]\nsync = \"sometimes\"\n", `store.sync "sometimes"`},
		{"public api", "[api]\nlisten = \"0.0.0.0:26601\"\n", "loopback"},
		{"bad log level", "[log]\nlevel = \"loud\"\n", `log.level "loud"`},
		{"bad log format", "[log]\nformat = \"xml\"\n", `log.format "xml"`},
		{"no listen", "[p2p]\nlisten = []\n", "p2p.listen"},
		{"tiny mempool", "[mempool]\nmax_txs = 0\n", "mempool"},
		{"no idle timeout", "[staff]\nidle_timeout_minutes = 0\n", "staff: idle_timeout_minutes"},
		{"idle beyond session", "[staff]\nidle_timeout_minutes = 121\nsession_hours = 2\n", "staff: idle_timeout_minutes"},
		{"no sessions", "[staff]\nmax_sessions = 0\n", "staff:"},
		{"no audit files", "[audit]\nkeep_files = 0\n", "audit: max_file_mb and keep_files"},
		{"authority without sync", "[node]\nauthority_key = \"authority.key\"\n[store]\nsync = \"none\"\n", "an authority node must use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("cfg", []byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestStaffConfig(t *testing.T) {
	c, err := ParseConfig("cfg", []byte("[staff]\nidle_timeout_minutes = 5\nsession_hours = 8\nmax_sessions = 20\nmax_sessions_per_user = 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Staff.SessionConfig()
	if got.Idle != 5*time.Minute || got.Lifetime != 8*time.Hour || got.MaxTotal != 20 || got.MaxPerUser != 2 {
		t.Fatalf("session config %+v", got)
	}
	d := DefaultConfig().Staff.SessionConfig()
	if d.Idle != 15*time.Minute || d.Lifetime != 12*time.Hour {
		t.Fatalf("default session config %+v", d)
	}
}

func TestLoadConfigAndResolve(t *testing.T) {
	home := t.TempDir()
	if _, err := LoadConfig(home); err == nil {
		t.Fatal("missing config.toml loaded")
	}
	if err := os.WriteFile(Home(home).ConfigFile(), []byte("[node]\nauthority_key = \"/etc/k\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if Resolve(home, c.Node.AuthorityKey) != "/etc/k" || Resolve(home, c.P2P.Identity) != filepath.Join(home, "keys", "p2p.key") || Resolve(home, "") != "" {
		t.Fatal("paths do not resolve against home")
	}
}

func TestTokenCreatedOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.token")
	tok, err := LoadOrCreateToken(path, bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if tok != strings.Repeat("07", 32) {
		t.Fatalf("token %q", tok)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v", fi.Mode(), err)
	}
	again, err := LoadOrCreateToken(path, bytes.NewReader(nil))
	if err != nil || again != tok {
		t.Fatalf("second load %q, %v", again, err)
	}
}

func TestKeyFileRoundTripAndNoOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "authority.key")
	k := testKey(t, "k")
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	got, err := ReadKeyFile(path)
	if err != nil || got.Public() != k.Public() {
		t.Fatalf("read back %v, %v", got.Public(), err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	if err := os.WriteFile(path+"2", []byte("nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path + "2"); err == nil || !strings.Contains(err.Error(), "not a hex key seed") {
		t.Fatalf("bad key file: %v", err)
	}
}
