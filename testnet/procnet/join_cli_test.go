package procnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/p2p"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// TestPracticeJoinsByCLI is a practice joining a running network with the commands a person
// types: medledger init writes a fresh full node's home, whose node starts before it holds a
// licence (the members refuse it); licence issue, with the testnet's licensing key, signs its
// licence; provider register installs it (the running node presents it and syncs) and waits for
// the registration. The practice enrols a patient and imports a FHIR bundle; another practice,
// an authority node, is refused the record until the patient consents, then reads it. Finally
// the authorities add the practice to the authority set with authority propose and vote.
func TestPracticeJoinsByCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	r := startRecordNet(t)
	nw := r.nw
	top, err := nw.WaitHeight(context.Background(), 0, 3, startTimeout)
	require.NoError(t, err)

	base, err := procnet.FreeBasePort(1)
	require.NoError(t, err)
	peer0, err := p2p.PeerIDFromIdentity(filepath.Join(nw.Home(0), "keys", "p2p.key"))
	require.NoError(t, err)
	home := filepath.Join(t.TempDir(), "practice")
	var ini struct {
		ProviderID     string `json:"provider_id"`
		PeerID         string `json:"peer_id"`
		LicenceRequest string `json:"licence_request"`
		API            string `json:"api"`
	}
	cliJSON(t, &ini, "init", "--home", home, "--genesis", filepath.Join(nw.Home(0), "genesis.json"),
		"--bootstrap", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", nw.P2PPort(0), peer0),
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", base), "--api", fmt.Sprintf("127.0.0.1:%d", base+1))
	require.Len(t, ini.ProviderID, 40)

	// The node starts without a licence: nobody lets it in.
	startPractice(t, nw, home)
	status := func() node.StatusJSON {
		t.Helper()
		var st node.StatusJSON
		require.NoError(t, getJSON(context.Background(), "http://"+ini.API, home, "/v1/status", &st))
		return st
	}
	require.NoError(t, procnet.WaitFor(context.Background(), startTimeout, 200*time.Millisecond, "the practice's API up", func(ctx context.Context) (bool, error) {
		var st node.StatusJSON
		return getJSON(ctx, "http://"+ini.API, home, "/v1/status", &st) == nil, nil
	}))
	require.False(t, status().ProviderRegistered)

	// The licensing authority signs the practice's licence; the practice installs it and registers.
	lic := filepath.Join(t.TempDir(), "practice.licence")
	var issued struct {
		ProviderID string `json:"provider_id"`
	}
	cliJSON(t, &issued, "licence", "issue", "--key", testnet.LicensingKeyFile(nw.Dir), "--for-node", home, "--out", lic)
	require.Equal(t, ini.ProviderID, issued.ProviderID)
	start := time.Now()
	var reg struct {
		ProviderID string `json:"provider_id"`
		Height     uint64 `json:"height"`
	}
	cliJSON(t, &reg, "provider", "register", "--home", home, "--licence", lic, "--timeout", "3m")
	require.Equal(t, ini.ProviderID, reg.ProviderID)
	require.Greater(t, reg.Height, top.Height)
	t.Logf("FIGURE a practice started without a licence registered %s after provider register, at height %d", time.Since(start).Round(100*time.Millisecond), reg.Height)
	st := status()
	require.True(t, st.ProviderRegistered)
	require.Equal(t, ini.ProviderID, st.ProviderID.String())
	// Registering again is a no-op answering the same id.
	cliJSON(t, &reg, "provider", "register", "--home", home, "--licence", lic)
	require.Equal(t, ini.ProviderID, reg.ProviderID)

	// The practice enrols a patient; enrolling the same patient again is refused at once, with
	// the ledger's reason.
	wallet := filepath.Join(t.TempDir(), "alice")
	pass := filepath.Join(t.TempDir(), "alice.pass")
	require.NoError(t, os.WriteFile(pass, []byte("alice's long passphrase\n"), 0o600))
	var created struct {
		PatientID string `json:"patient"`
	}
	cliJSON(t, &created, "wallet", "new", "--dir", wallet, "--passphrase-file", pass)
	var patient struct {
		PatientID string `json:"patient_id"`
	}
	cliJSON(t, &patient, "wallet", "register", "--dir", wallet, "--passphrase-file", pass, "--home", home)
	require.Equal(t, created.PatientID, patient.PatientID)
	require.Contains(t, refused(t, "wallet", "register", "--dir", wallet, "--passphrase-file", pass, "--home", home), "already registered")

	// It imports a real-world document (HL7 IPS: Composition, Patient, Practitioner,
	// Organization, Condition, medication and allergy) and holds the records.
	type recs struct {
		Records []struct {
			ID           string `json:"id"`
			ResourceType string `json:"resourceType"`
		} `json:"records"`
	}
	var imported recs
	cliJSON(t, &imported, "records", "import", "--home", home, "--patient", patient.PatientID, "../../node/fhir/testdata/real/ips-bundle-minimal.json")
	i := slices.IndexFunc(imported.Records, func(r struct {
		ID           string `json:"id"`
		ResourceType string `json:"resourceType"`
	}) bool {
		return r.ResourceType == "Condition"
	})
	require.GreaterOrEqual(t, i, 0, "no Condition among %v", imported.Records)
	cond := imported.Records[i].ID

	// node2's practice (an authority) may not read it until the patient consents, then reads it.
	require.Eventually(t, func() bool {
		return strings.Contains(refused(t, "records", "get", "--home", nw.Home(2), cond), "no consent")
	}, stepTimeout, 200*time.Millisecond)
	var grant struct {
		ConsentID string `json:"consent_id"`
	}
	cliJSON(t, &grant, "wallet", "grant", "--dir", wallet, "--passphrase-file", pass, "--home", home, "--to", r.prov[2].String(), "--types", "Condition", "--expires", "30d")
	require.Len(t, grant.ConsentID, 64)
	var got map[string]any
	require.Eventually(t, func() bool {
		out, _, code := cli(t, "records", "get", "--home", nw.Home(2), cond, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &got) == nil
	}, stepTimeout, 200*time.Millisecond)
	require.Equal(t, "Condition", got["resourceType"])

	// The authorities add the practice to the authority set: node0 proposes, node1 and node2
	// vote (with the proposer, more than two thirds of four).
	var prop struct {
		Proposal string `json:"proposal"`
	}
	cliJSON(t, &prop, "authority", "propose", "--home", nw.Home(0), "--add", ini.ProviderID, "--name", "practice")
	require.Len(t, prop.Proposal, 64)
	refused(t, "authority", "vote", "--home", home, prop.Proposal) // a full node has no authority key
	for _, i := range []int{1, 2} {
		var v map[string]any
		cliJSON(t, &v, "authority", "vote", "--home", nw.Home(i), prop.Proposal)
	}
	require.NoError(t, procnet.WaitFor(context.Background(), stepTimeout, 200*time.Millisecond, "the practice among the authorities", func(ctx context.Context) (bool, error) {
		var st node.StatusJSON
		if err := getJSON(ctx, "http://"+ini.API, home, "/v1/status", &st); err != nil {
			return false, nil
		}
		return slices.ContainsFunc(st.Authorities, func(a node.AuthorityJSON) bool {
			return a.Name == "practice" && a.Key.Address().String() == ini.ProviderID
		}), nil
	}))
	// A vote on a passed proposal is refused at once, with the reason.
	require.Contains(t, refused(t, "authority", "vote", "--home", nw.Home(3), prop.Proposal), "closed")

	// A wrong method on an existing route is 405 naming the allowed one.
	code, hdr, _, err := nw.Request(context.Background(), 0, http.MethodGet, "/v1/txs", "", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusMethodNotAllowed, code)
	require.Equal(t, "POST", hdr.Get("Allow"))
}

// startPractice runs medledger node on home until the test ends, logging to HOME/node.log
// (shown if the test fails).
func startPractice(t *testing.T, nw *procnet.Network, home string) {
	t.Helper()
	cmd := exec.Command(procnettest.Binary(t), "node", "--home", home)
	logf, err := os.Create(filepath.Join(home, "node.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procnet.ChildProcAttr()
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		_ = logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(home, "node.log"))
			t.Logf("---- practice node log: tail ----\n%s", tail(string(out), 6000))
			n0, _ := os.ReadFile(nw.LogPath(0))
			t.Logf("---- node0's p2p lines ----\n%s", tail(grepLines(string(n0), "p2p:"), 3000))
		}
	})
}
