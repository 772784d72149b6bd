package procnet_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// TestPayerJoinsByCLI is a payer (an insurer) joining a running four-authority testnet with the
// commands a person types: medledger init, licence issue --role payer with the testnet's
// payers' registry key, payer register. The payer's node is let in by the members, syncs to the
// head, submits a transaction of its own, and the ledger lists it as an active payer and not a
// provider; records a practice imports afterwards are replicated to providers only.
func TestPayerJoinsByCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	nw := procnettest.New(t, 4)
	procnettest.StartAll(t, nw)
	top, err := nw.WaitHeight(context.Background(), 0, 2, startTimeout)
	require.NoError(t, err)

	start := time.Now()
	py := joinPayer(t, nw, "")
	ini := struct{ ProviderID, API string }{py.id, py.api}
	home := py.home
	require.Greater(t, py.height, top.Height)
	t.Logf("FIGURE a payer joined and registered %s after init, at height %d", time.Since(start).Round(100*time.Millisecond), py.height)
	// The payers' registry signs; the licensing board's key is refused for a payer.
	require.Contains(t, refused(t, "licence", "issue", "--role", "payer", "--key", testnet.LicensingKeyFile(nw.Dir), "--for-node", home, "--out", filepath.Join(t.TempDir(), "x.licence")),
		"not an issuer of payer licences")
	reg := struct{ Height uint64 }{py.height}

	status := func() node.StatusJSON {
		t.Helper()
		var st node.StatusJSON
		require.NoError(t, getJSON(context.Background(), "http://"+ini.API, home, "/v1/status", &st))
		return st
	}
	st := status()
	require.NotNil(t, st.Role)
	require.Equal(t, chain.RolePayer, *st.Role)
	require.False(t, st.ProviderRegistered, "a payer's node is not a provider")

	// The ledger (as an authority sees it) lists an active payer, not a provider.
	account := func(i int, id string) node.AccountJSON {
		t.Helper()
		code, out, err := nw.Do(context.Background(), i, http.MethodGet, "/v1/accounts/"+id, nil, true)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, string(out))
		var a node.AccountJSON
		require.NoError(t, json.Unmarshal(out, &a))
		return a
	}
	acct := account(0, ini.ProviderID)
	require.NotNil(t, acct.Role)
	require.Equal(t, chain.RolePayer, *acct.Role)
	require.True(t, acct.Active)
	require.False(t, acct.Provider)

	// The payer submits a transaction of its own through its node (re-stating its encryption
	// key), and it commits: its node is a member whose gossip the others relay.
	keys, err := node.LoadOrCreateProviderKeys(filepath.Join(home, "keys", "provider.key"), filepath.Join(home, "keys", "encryption.key"))
	require.NoError(t, err)
	var mine node.AccountJSON
	require.NoError(t, getJSON(context.Background(), "http://"+ini.API, home, "/v1/accounts/"+ini.ProviderID, &mine))
	tx := chain.NewTx(keys.Signing, st.ChainID, chain.TxRotateKeys, mine.NextNonce, &chain.RotateKeys{EncryptionKey: keys.Encryption.Public().Bytes()})
	var acc node.TxAccepted
	require.NoError(t, postJSON(context.Background(), "http://"+ini.API, home, "/v1/txs?wait=commit", map[string]string{"tx": hex.EncodeToString(tx.Encode())}, &acc))
	require.Greater(t, acc.Height, reg.Height)
	require.Equal(t, mine.NextNonce, account(1, ini.ProviderID).Nonce)

	// A practice imports a bundle; providers hold the replicas, the payer none. The payer's
	// node follows the head all the while (same block hash as node0 at node0's height).
	wallet, pass := filepath.Join(t.TempDir(), "bob"), filepath.Join(t.TempDir(), "bob.pass")
	require.NoError(t, os.WriteFile(pass, []byte("bob's long passphrase\n"), 0o600))
	var patient struct {
		PatientID string `json:"patient_id"`
	}
	cliJSON(t, &patient, "wallet", "new", "--dir", wallet, "--passphrase-file", pass)
	cliJSON(t, &patient, "wallet", "register", "--dir", wallet, "--passphrase-file", pass, "--home", nw.Home(0))
	var imported struct {
		Records []struct {
			ID string `json:"id"`
		} `json:"records"`
	}
	cliJSON(t, &imported, "records", "import", "--home", nw.Home(0), "--patient", patient.PatientID, "../../node/fhir/testdata/real/ips-bundle-minimal.json")
	n := len(imported.Records)
	require.Greater(t, n, 2)
	require.NoError(t, procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, "every record replicated to two providers", func(context.Context) (bool, error) {
		held := 0
		for i := 1; i < 4; i++ {
			held += blobCount(t, nw.Home(i))
		}
		return held >= 2*n, nil
	}))
	require.Zero(t, blobCount(t, home), "the payer's node holds a replica")

	h := status().Height
	head, err := nw.WaitHeight(context.Background(), 0, h, stepTimeout)
	require.NoError(t, err)
	require.NoError(t, procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, "the payer at node0's head", func(ctx context.Context) (bool, error) {
		var b node.BlockJSON
		if err := getJSON(ctx, "http://"+ini.API, home, fmt.Sprintf("/v1/blocks/%d", head.Height), &b); err != nil {
			return false, nil
		}
		return b.Hash.String() == head.LastBlockHash, nil
	}))
}

// blobCount is the number of ciphertexts a node home holds.
func blobCount(t *testing.T, home string) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(home, "blobs", "blobs"))
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	n := 0
	for _, e := range es {
		if len(e.Name()) == 64 && !e.IsDir() {
			n++
		}
	}
	return n
}

// postJSON POSTs in as JSON to a node's API with its operator token and decodes the answer.
func postJSON(ctx context.Context, base, home, path string, in, out any) error {
	tok, err := os.ReadFile(filepath.Join(home, "api.token"))
	if err != nil {
		return err
	}
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e node.ErrorJSON
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %s: %s", path, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// payerNode is a payer's node that joined a testnet.
type payerNode struct {
	home, id, api string // its home, member id and API address
	height        uint64 // the height its registration committed at
}

// joinPayer makes a payer join nw with the commands a person types: medledger init, node,
// licence issue --role payer with the testnet's payers' registry key, payer register.
// clockFile, when not empty, is a --test-clock testnet's clock-offset file: the payer's node
// must run on the same clock as the authorities, or it refuses their blocks as from the future.
func joinPayer(t *testing.T, nw *procnet.Network, clockFile string) payerNode {
	t.Helper()
	base, err := procnet.FreeBasePort(1)
	require.NoError(t, err)
	peer0, err := p2p.PeerIDFromIdentity(filepath.Join(nw.Home(0), "keys", "p2p.key"))
	require.NoError(t, err)
	home := filepath.Join(t.TempDir(), "payer")
	var ini struct {
		ProviderID string `json:"provider_id"`
		API        string `json:"api"`
	}
	cliJSON(t, &ini, "init", "--home", home, "--genesis", filepath.Join(nw.Home(0), "genesis.json"),
		"--bootstrap", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", nw.P2PPort(0), peer0),
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", base), "--api", fmt.Sprintf("127.0.0.1:%d", base+1))
	if clockFile != "" {
		cfg := filepath.Join(home, "config.toml")
		b, err := os.ReadFile(cfg)
		require.NoError(t, err)
		set := strings.Replace(string(b), `clock_offset_file = ""`, fmt.Sprintf("clock_offset_file = %q", clockFile), 1)
		require.NotEqual(t, string(b), set, "config.toml has no empty clock_offset_file to set")
		require.NoError(t, os.WriteFile(cfg, []byte(set), 0o600))
	}
	startPractice(t, nw, home)

	lic := filepath.Join(t.TempDir(), "payer.licence")
	var issued struct {
		MemberID string `json:"member_id"`
		Role     string `json:"role"`
	}
	args := []string{"licence", "issue", "--role", "payer", "--key", testnet.PayersKeyFile(nw.Dir), "--for-node", home, "--out", lic}
	if clockFile != "" {
		args = append(args, "--valid-for", "730d") // the default year would lapse in a story's year of block time
	}
	cliJSON(t, &issued, args...)
	require.Equal(t, ini.ProviderID, issued.MemberID)
	require.Equal(t, "payer", issued.Role)
	var reg struct {
		MemberID string `json:"member_id"`
		Role     string `json:"role"`
		Height   uint64 `json:"height"`
	}
	cliJSON(t, &reg, "payer", "register", "--home", home, "--licence", lic, "--timeout", "3m")
	require.Equal(t, ini.ProviderID, reg.MemberID)
	require.Equal(t, "payer", reg.Role)
	return payerNode{home: home, id: ini.ProviderID, api: ini.API, height: reg.Height}
}
