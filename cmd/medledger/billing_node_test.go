package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/wallet/envelope"
)

// The billing commands against a real one-authority node (node.Open wires the billing API and
// HOME/billing/): publish, draft, the patient signs, enrol, statement unpaid, pay, paid.
func TestBillingCLIAgainstANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	dir := filepath.Join(t.TempDir(), "net")
	require.NoError(t, testnet.Init(dir, 1, testnet.DefaultBasePort))
	home := testnet.NodeDir(dir, 0)
	cfg, err := node.LoadConfig(home)
	require.NoError(t, err)
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.API.Listen = "127.0.0.1:0"
	require.NoError(t, os.WriteFile(node.Home(home).ConfigFile(), node.FormatConfig(*cfg), 0o644))
	n, err := node.Open(home, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("node did not stop")
		}
	})
	// The CLI finds the node by its config: the port it got.
	cfg.API.Listen = n.APIAddr()
	require.NoError(t, os.WriteFile(node.Home(home).ConfigFile(), node.FormatConfig(*cfg), 0o644))
	bg := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := nodeStatus(bg, home)
		if err == nil && st.ProviderRegistered {
			break
		}
		require.True(t, time.Now().Before(deadline), "provider not registered: %v", err)
		time.Sleep(100 * time.Millisecond)
	}

	// A patient enrolled by this practice, as `medledger wallet register` does.
	st, err := nodeStatus(bg, home)
	require.NoError(t, err)
	pk, err := chain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ek, err := envelope.GenerateKey(rand.Reader)
	require.NoError(t, err)
	req, err := json.Marshal(node.EnrolRequest{PatientKey: pk.Public(), EncryptionKey: hex.EncodeToString(ek.Public().Bytes())})
	require.NoError(t, err)
	data, err := apiDo(bg, home, http.MethodPost, "/v1/enrolments", req, "application/json", time.Minute)
	require.NoError(t, err)
	var en node.EnrolmentJSON
	require.NoError(t, json.Unmarshal(data, &en))
	var sig chain.Signature
	raw, err := hex.DecodeString(en.EnrollerSig)
	require.NoError(t, err)
	copy(sig[:], raw)
	_, err = submitSignedTx(bg, home, pk, st.ChainID, chain.TxRegisterPatient, &chain.RegisterPatient{EncryptionKey: ek.Public().Bytes(), Enroller: en.Enroller, EnrollerSig: sig})
	require.NoError(t, err)
	patient := pk.Public().Address().String()

	out, code := run(t, "billing", "plans", "publish", "--home", home, "--label", "Adult monthly", "--currency", "USD", "--tier", "adult=99.00", "--grace-days", "7", "--json")
	require.Equal(t, 0, code, out)
	var plan node.PlanJSON
	require.NoError(t, json.Unmarshal([]byte(out), &plan))
	file := filepath.Join(t.TempDir(), "agreement.json")
	out, code = run(t, "billing", "agreement", "draft", "--home", home, "--plan", plan.ID.String(), "--subscriber", patient, "--sponsor", "Acme", "--out", file)
	require.Equal(t, 0, code, out)

	// The patient signs (the wallet's part), keeping the file's bytes.
	data, err = os.ReadFile(file)
	require.NoError(t, err)
	af, err := billing.ParseAgreementFile(data)
	require.NoError(t, err)
	require.NoError(t, af.Sign(pk))
	signed, err := json.Marshal(af)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, signed, 0o600))

	out, code = run(t, "billing", "enrol", "--home", home, "--signed", file, "--json")
	require.Equal(t, 0, code, out)
	var m node.MembershipJSON
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	require.Equal(t, "99.00", m.Statement.Balance)
	require.Equal(t, "Acme", m.SponsorName)

	out, code = run(t, "billing", "pay", "--home", home, "--membership", m.ID.String(), "--amount", "99.00", "--reference", "ch_123")
	require.Equal(t, 0, code, out)
	out, code = run(t, "billing", "statement", "--home", home, "--membership", m.ID.String())
	require.Equal(t, 0, code, out)
	require.Regexp(t, `1\s+\S+\s+\S+\s+99.00\s+99.00\s+paid`, out)
	require.Contains(t, out, "balance 0.00 USD")
	out, code = run(t, "billing", "memberships", "--home", home, "--patient", patient)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, m.ID.String())
	out, code = run(t, "billing", "statement", "--home", home, "--membership", m.ID.String(), "--fhir")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `"resourceType": "Bundle"`)

	// What never reaches the ledger is in HOME/billing/.
	refs, err := os.ReadFile(filepath.Join(node.Home(home).BillingDir(), "payments.jsonl"))
	require.NoError(t, err)
	require.Contains(t, string(refs), "ch_123")
}
