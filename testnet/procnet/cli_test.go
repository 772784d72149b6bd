package procnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// cli runs the medledger binary and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, procnettest.Binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

// cliJSON runs a command with --json, requires success and decodes its one JSON document.
func cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, errs, code := cli(t, append(args, "--json")...)
	require.Equal(t, 0, code, "%v: %s", args, errs)
	dec := json.NewDecoder(strings.NewReader(out))
	require.NoError(t, dec.Decode(v), "%v printed %q", args, out)
	require.False(t, dec.More(), "%v printed more than one JSON document: %q", args, out)
}

// refused runs a command that must fail: non-zero exit, one line on stderr.
func refused(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, args...)
	require.NotEqual(t, 0, code, "%v should fail; printed %q", args, out)
	line := strings.TrimRight(errs, "\n")
	require.NotEmpty(t, line)
	require.NotContains(t, line, "\n", "%v: the reason is one line", args)
	return line
}

// TestCLIStory drives the fixed command names and their --json shapes against four node
// processes: wallet new/register/grant/revoke/consents/audit/erase and records
// import/list/get/export.
func TestCLIStory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	r := startRecordNet(t)
	home0, home2 := r.nw.Home(0), r.nw.Home(2)
	wallet := filepath.Join(t.TempDir(), "alice")
	pass := filepath.Join(t.TempDir(), "alice.pass") // the wallet passphrase, first line
	require.NoError(t, os.WriteFile(pass, []byte("alice's long passphrase\n"), 0o600))

	var created struct {
		PatientID string `json:"patient"`
		Mnemonic  string `json:"mnemonic"`
	}
	cliJSON(t, &created, "wallet", "new", "--dir", wallet, "--passphrase-file", pass)
	require.Len(t, created.PatientID, 40)
	require.Len(t, strings.Fields(created.Mnemonic), 24)
	refused(t, "wallet", "new", "--dir", wallet, "--passphrase-file", pass) // never overwrites a wallet
	refused(t, "wallet", "register", "--dir", wallet, "--home", home0)      // encrypted: needs the passphrase

	// Every wallet command runs with home0's operator token moved away, so that none can use it:
	// the practice enrols the patient through a front-desk staff member's session, and every
	// other command talks to the network itself (the wallet protocol, with the patient's key).
	tokenFile := filepath.Join(home0, "api.token")
	walletJSON := func(v any, args ...string) {
		t.Helper()
		require.NoError(t, os.Rename(tokenFile, tokenFile+".away"))
		defer func() { require.NoError(t, os.Rename(tokenFile+".away", tokenFile)) }()
		cliJSON(t, v, args...)
	}
	deskPass := filepath.Join(t.TempDir(), "desk.pass")
	require.NoError(t, os.WriteFile(deskPass, []byte("front desk password, long\n"), 0o600))
	_, errs, code := cli(t, "users", "add", "--home", home0, "--name", "desk", "--role", "front-desk", "--password-file", deskPass)
	require.Equal(t, 0, code, errs)
	out, errs, code := cli(t, "login", "--home", home0, "--name", "desk", "--password-file", deskPass)
	require.Equal(t, 0, code, errs)
	session := filepath.Join(t.TempDir(), "desk.session")
	require.NoError(t, os.WriteFile(session, []byte(out), 0o600))
	var reg struct {
		PatientID string `json:"patient_id"`
	}
	walletJSON(&reg, "wallet", "register", "--dir", wallet, "--passphrase-file", pass, "--home", home0, "--session-file", session)
	require.Equal(t, created.PatientID, reg.PatientID)

	type recs struct {
		Records []struct {
			ID           string `json:"id"`
			ResourceType string `json:"resourceType"`
		} `json:"records"`
	}
	var imported recs
	cliJSON(t, &imported, "records", "import", "--home", home0, "--patient", reg.PatientID, "../../node/fhir/testdata/bundle-collection.json")
	require.Len(t, imported.Records, 3)
	var cond string
	for _, rec := range imported.Records {
		require.Len(t, rec.ID, 64)
		require.NotEmpty(t, rec.ResourceType)
		if rec.ResourceType == "Condition" {
			cond = rec.ID
		}
	}
	require.NotEmpty(t, cond)
	var listed recs
	cliJSON(t, &listed, "records", "list", "--home", home0, "--patient", reg.PatientID)
	require.Equal(t, imported.Records, listed.Records)

	// Bad input and refusals: non-zero exit, one line on stderr.
	require.Contains(t, refused(t, "records", "import", "--home", home0, "--patient", reg.PatientID, "../../node/fhir/testdata/does-not-exist.json"), "does-not-exist")
	require.Contains(t, refused(t, "records", "import", "--home", home0, "--patient", "nothex", "x.json"), "patient")
	// "not found" until node2 has the anchors' block, then refused for want of consent.
	require.Eventually(t, func() bool {
		return strings.Contains(refused(t, "records", "get", "--home", home2, cond), "no consent")
	}, stepTimeout, 200*time.Millisecond)

	var st struct {
		ProviderID string `json:"provider_id"`
	}
	out, errs, code = cli(t, "status", "--home", home2)
	require.Equal(t, 0, code, errs)
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, r.prov[2].String(), st.ProviderID)

	var grant struct {
		ConsentID string `json:"consent_id"`
	}
	walletJSON(&grant, "wallet", "grant", "--dir", wallet, "--passphrase-file", pass, "--home", home0, "--to", st.ProviderID, "--types", "Condition", "--expires", "30d")
	require.Len(t, grant.ConsentID, 64)
	var got map[string]any
	require.Eventually(t, func() bool {
		out, _, code := cli(t, "records", "get", "--home", home2, cond, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &got) == nil
	}, stepTimeout, 200*time.Millisecond)
	require.Equal(t, "Condition", got["resourceType"])

	type audit struct {
		Accesses []struct {
			Record    string `json:"record"`
			Accessor  string `json:"accessor"`
			Role      string `json:"role"`
			Height    uint64 `json:"height"`
			Time      string `json:"time"`
			Purpose   string `json:"purpose"`
			Emergency *bool  `json:"emergency"`
		} `json:"accesses"`
	}
	require.Eventually(t, func() bool {
		var a audit
		walletJSON(&a, "wallet", "audit", "--dir", wallet, "--passphrase-file", pass, "--home", home0)
		served := 0
		for _, x := range a.Accesses {
			// Read with node2's operator token: the ledger names that role, never a person.
			if x.Record == cond && x.Accessor == st.ProviderID && x.Role == "operator" && x.Height > 0 && x.Time != "" && x.Purpose == "TREAT" && x.Emergency != nil {
				served++
			}
		}
		return served >= 2 // the refused attempt and the read
	}, stepTimeout, 300*time.Millisecond)

	// Export: a FHIR Bundle that validates, with the records, the Consent and the AuditEvents.
	out, errs, code = cli(t, "records", "export", "--home", home0, "--patient", reg.PatientID)
	require.Equal(t, 0, code, errs)
	v, err := fhir.NewValidator()
	require.NoError(t, err)
	res, err := v.Parse([]byte(out))
	require.NoError(t, err)
	types := map[string]int{}
	for _, x := range res {
		types[x.ResourceType]++
	}
	require.Equal(t, 1, types["Condition"])
	require.Equal(t, 1, types["Consent"])
	require.GreaterOrEqual(t, types["AuditEvent"], 2)

	var revoked struct {
		Revoked []string `json:"revoked"`
	}
	walletJSON(&revoked, "wallet", "revoke", "--dir", wallet, "--passphrase-file", pass, "--home", home0, "--to", st.ProviderID)
	require.Equal(t, []string{grant.ConsentID}, revoked.Revoked)
	require.Eventually(t, func() bool {
		_, errs, code := cli(t, "records", "get", "--home", home2, cond)
		return code != 0 && strings.Contains(errs, "revoked")
	}, stepTimeout, 200*time.Millisecond)

	var consents struct {
		Consents []struct {
			ID      string `json:"id"`
			Revoked bool   `json:"revoked"`
		} `json:"consents"`
	}
	walletJSON(&consents, "wallet", "consents", "--dir", wallet, "--passphrase-file", pass, "--home", home0)
	require.Len(t, consents.Consents, 1)
	require.True(t, consents.Consents[0].Revoked)

	// The record list, from two other nodes by their multiaddrs: proved, and cross-checked.
	peers := func(home string) string {
		b, err := os.ReadFile(filepath.Join(home, "p2p.addrs"))
		require.NoError(t, err)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "/127.0.0.1/tcp/") {
				return l
			}
		}
		t.Fatalf("%s/p2p.addrs has no loopback TCP address: %s", home, b)
		return ""
	}
	var verifiedList struct {
		Records []struct {
			ID string `json:"id"`
		} `json:"records"`
		Verified struct {
			Height   uint64   `json:"height"`
			Nodes    []string `json:"nodes"`
			Warnings []string `json:"warnings"`
		} `json:"verified"`
	}
	walletJSON(&verifiedList, "wallet", "records", "list", "--dir", wallet, "--passphrase-file", pass,
		"--peer", peers(r.nw.Home(1)), "--peer", peers(home2), "--genesis", filepath.Join(home0, "genesis.json"))
	require.Len(t, verifiedList.Records, len(imported.Records))
	require.Len(t, verifiedList.Verified.Nodes, 2)
	require.NotZero(t, verifiedList.Verified.Height)

	// The patient reads their own record and exports their whole record, as themselves: fetched
	// over the wallet protocol, checked against the proved anchor, decrypted in the wallet.
	var own map[string]any
	walletJSON(&own, "wallet", "records", "get", "--dir", wallet, "--passphrase-file", pass, "--home", home0, cond)
	require.Equal(t, "Condition", own["resourceType"])
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	walletJSON(&bundle, "wallet", "records", "export", "--dir", wallet, "--passphrase-file", pass, "--home", home0)
	require.Equal(t, "Bundle", bundle.ResourceType)
	kinds := map[string]int{}
	for _, e := range bundle.Entry {
		kinds[e.Resource["resourceType"].(string)]++
	}
	require.Equal(t, 1, kinds["Condition"], "%v", kinds)
	require.Equal(t, 1, kinds["Consent"], "%v", kinds)
	require.GreaterOrEqual(t, kinds["AuditEvent"], 2, "%v", kinds)
	// Those reads are audited like any other, with the patient as the accessor.
	require.Eventually(t, func() bool {
		var a audit
		walletJSON(&a, "wallet", "audit", "--dir", wallet, "--passphrase-file", pass, "--home", home0)
		own := 0
		for _, x := range a.Accesses {
			if x.Record == cond && x.Accessor == reg.PatientID && x.Role == "patient" && x.Purpose == "PATRQT" {
				own++
			}
		}
		return own >= 2 // get and export
	}, stepTimeout, 300*time.Millisecond)

	var erased struct {
		Erased []string `json:"erased"`
	}
	walletJSON(&erased, "wallet", "erase", "--dir", wallet, "--passphrase-file", pass, "--home", home0, cond)
	require.Equal(t, []string{cond}, erased.Erased)
	require.Contains(t, refused(t, "records", "get", "--home", home0, cond), "erased")

	// A lost device: the patient moves to new keys. The patient id stays; the old wallet can
	// no longer act; the new one reads a record sealed before the rotation (its author's node
	// wraps it to the new key).
	wallet2 := filepath.Join(t.TempDir(), "alice-new")
	var rotated struct {
		Patient string `json:"patient"`
		Height  uint64 `json:"height"`
	}
	walletJSON(&rotated, "wallet", "rotate", "--dir", wallet, "--passphrase-file", pass, "--new-dir", wallet2, "--new-passphrase-file", pass, "--home", home0)
	require.Equal(t, reg.PatientID, rotated.Patient)
	require.NotZero(t, rotated.Height)
	require.NoError(t, os.Rename(tokenFile, tokenFile+".away"))
	_, errs, code = cli(t, "wallet", "grant", "--dir", wallet, "--passphrase-file", pass, "--home", home0, "--to", st.ProviderID)
	require.NoError(t, os.Rename(tokenFile+".away", tokenFile))
	require.NotEqual(t, 0, code, "the retired wallet granted")
	t.Logf("the retired wallet is refused: %s", strings.TrimSpace(errs))
	var other string
	for _, rec := range imported.Records {
		if rec.ID != cond {
			other = rec.ID
		}
	}
	var again map[string]any
	walletJSON(&again, "wallet", "records", "get", "--dir", wallet2, "--passphrase-file", pass, "--home", home0, other)
	require.NotEmpty(t, again["resourceType"])
	var after struct {
		Consents []struct {
			ID string `json:"id"`
		} `json:"consents"`
	}
	walletJSON(&after, "wallet", "consents", "--dir", wallet2, "--passphrase-file", pass, "--home", home0)
	require.Len(t, after.Consents, 1, "the rotated wallet sees the same patient's consents")

	walletLiars(t, r, wallet2, pass, peers(r.nw.Home(1)))
}

// walletLiars: lying nodes are caught. node3 stops, and a liar takes its home (its identity,
// its chain frozen where it stopped). Proving from older blocks, which is what hiding an access
// entry or showing a revoked consent as active takes, fails the proofs: alone the liar gets no
// answer accepted, beside an honest node it is named and not used. Serving an honest but old
// view is caught by the honest node's higher certified head, and by the header the wallet
// verified last time. "fresh" is the same wallet on a new device: no verified header kept yet.
func walletLiars(t *testing.T, r *recNet, wallet, pass, honest string) {
	home0 := r.nw.Home(0)
	genesis := filepath.Join(home0, "genesis.json")
	data, err := os.ReadFile(filepath.Join(wallet, "wallet.json"))
	require.NoError(t, err)
	newDevice := func() string {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "wallet.json"), data, 0o600))
		return dir
	}
	_, err = os.Stat(filepath.Join(wallet, "trusted-header.json"))
	require.NoError(t, err, "the wallet keeps the header it verified last")
	fresh := newDevice()

	require.NoError(t, r.nw.Stop(3))
	liar := procnettest.StartLiar(t, r.nw, 3, "stale-proofs")
	t.Logf("liar %s serves node3's chain to height %d with stale proofs", liar.Peer, liar.Height)
	line := refused(t, "wallet", "audit", "--dir", newDevice(), "--passphrase-file", pass, "--peer", liar.Addr(t), "--genesis", genesis)
	require.Contains(t, line, "proofs do not back")
	require.Contains(t, line, liar.Peer)

	type verified struct {
		Nodes    []string `json:"nodes"`
		Warnings []string `json:"warnings"`
	}
	var withHonest struct {
		Accesses []json.RawMessage `json:"accesses"`
		Verified verified          `json:"verified"`
	}
	cliJSON(t, &withHonest, "wallet", "audit", "--dir", fresh, "--passphrase-file", pass, "--peer", liar.Addr(t), "--peer", honest, "--genesis", genesis)
	require.NotEmpty(t, withHonest.Accesses)
	require.NotContains(t, withHonest.Verified.Nodes, liar.Peer)
	require.Len(t, withHonest.Verified.Nodes, 1)
	require.Contains(t, strings.Join(withHonest.Verified.Warnings, "\n"), liar.Peer+" answered with what its proofs do not back")

	// An honest but old view: a consent given after node3 stopped is missing from it; the
	// honest node's certified head shows the liar behind, and so does the header the wallet
	// verified last, even with the liar alone.
	liar.Close()
	liar = procnettest.StartLiar(t, r.nw, 3, "none")
	var grant struct {
		ConsentID string `json:"consent_id"`
	}
	cliJSON(t, &grant, "wallet", "grant", "--dir", wallet, "--passphrase-file", pass, "--peer", honest, "--genesis", genesis, "--to", r.prov[1].String())
	_, err = r.nw.WaitHeight(context.Background(), 1, liar.Height+8, stepTimeout)
	require.NoError(t, err)
	type consents struct {
		Consents []struct {
			ID string `json:"id"`
		} `json:"consents"`
		Verified verified `json:"verified"`
	}
	var stale, checked consents
	cliJSON(t, &stale, "wallet", "consents", "--dir", newDevice(), "--passphrase-file", pass, "--peer", liar.Addr(t), "--genesis", genesis)
	require.Len(t, stale.Consents, 1, "the liar's old view lacks the new consent")
	require.Contains(t, strings.Join(stale.Verified.Warnings, "\n"), "one node only")
	cliJSON(t, &checked, "wallet", "consents", "--dir", newDevice(), "--passphrase-file", pass, "--peer", liar.Addr(t), "--peer", honest, "--genesis", genesis)
	require.Len(t, checked.Consents, 2)
	require.Equal(t, grant.ConsentID, checked.Consents[1].ID)
	require.Contains(t, strings.Join(checked.Verified.Warnings, "\n"), "node "+liar.Peer+" serves a view")
	line = refused(t, "wallet", "consents", "--dir", wallet, "--passphrase-file", pass, "--peer", liar.Addr(t), "--genesis", genesis)
	require.Contains(t, line, "below the header already verified")

	// A new device may start from a recent header the patient confirmed (medledger status
	// prints it at the practice) instead of verifying from genesis.
	st, err := r.nw.Status(context.Background(), 1)
	require.NoError(t, err)
	var viaTrust consents
	cliJSON(t, &viaTrust, "wallet", "consents", "--dir", newDevice(), "--passphrase-file", pass, "--peer", honest, "--genesis", genesis,
		"--trust-header", fmt.Sprintf("%d:%s", st.Height, st.LastBlockHash))
	require.Len(t, viaTrust.Consents, 2)
	line = refused(t, "wallet", "consents", "--dir", newDevice(), "--passphrase-file", pass, "--peer", honest, "--genesis", genesis,
		"--trust-header", fmt.Sprintf("%d:%s", st.Height, strings.Repeat("ab", 32)))
	require.Contains(t, line, "not the trusted")
}
