package procnet_test

import (
	"bytes"
	"context"
	"encoding/json"
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

	var created struct {
		PatientID string `json:"patient_id"`
	}
	cliJSON(t, &created, "wallet", "new", "--dir", wallet)
	require.Len(t, created.PatientID, 40)
	refused(t, "wallet", "new", "--dir", wallet) // never overwrites a wallet

	var reg struct {
		PatientID string `json:"patient_id"`
	}
	cliJSON(t, &reg, "wallet", "register", "--dir", wallet, "--home", home0)
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
	out, errs, code := cli(t, "status", "--home", home2)
	require.Equal(t, 0, code, errs)
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, r.prov[2].String(), st.ProviderID)

	var grant struct {
		ConsentID string `json:"consent_id"`
	}
	cliJSON(t, &grant, "wallet", "grant", "--dir", wallet, "--home", home0, "--to", st.ProviderID, "--types", "Condition", "--expires", "30d")
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
			Height    uint64 `json:"height"`
			Time      string `json:"time"`
			Purpose   string `json:"purpose"`
			Emergency *bool  `json:"emergency"`
		} `json:"accesses"`
	}
	require.Eventually(t, func() bool {
		var a audit
		cliJSON(t, &a, "wallet", "audit", "--dir", wallet, "--home", home0)
		served := 0
		for _, x := range a.Accesses {
			if x.Record == cond && x.Accessor == st.ProviderID && x.Height > 0 && x.Time != "" && x.Purpose == "TREAT" && x.Emergency != nil {
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
	cliJSON(t, &revoked, "wallet", "revoke", "--dir", wallet, "--home", home0, "--to", st.ProviderID)
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
	cliJSON(t, &consents, "wallet", "consents", "--dir", wallet, "--home", home0)
	require.Len(t, consents.Consents, 1)
	require.True(t, consents.Consents[0].Revoked)

	var erased struct {
		Erased []string `json:"erased"`
	}
	cliJSON(t, &erased, "wallet", "erase", "--dir", wallet, "--home", home0, cond)
	require.Equal(t, []string{cond}, erased.Erased)
	require.Contains(t, refused(t, "records", "get", "--home", home0, cond), "erased")
}
