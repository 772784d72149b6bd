package procnet_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
	"github.com/medledger/medledger/testnet/procnet/procnettest"
)

// TestRevokedAuthorityLeavesTheSet: the licensing authority revokes node3's licence, and that
// is all anyone does. The state machine files a removal proposal for the authority whose
// licence is no longer active, the honest authorities' nodes vote for it by themselves, and
// node3 leaves the authority set; the chain keeps committing with the other three, and node3's
// node, no longer a member, is disconnected.
func TestRevokedAuthorityLeavesTheSet(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process network: skipped with -short")
	}
	nw := procnettest.New(t, 4)
	procnettest.StartAll(t, nw)
	if _, err := nw.WaitHeight(context.Background(), 0, 2, startTimeout); err != nil {
		t.Fatal(err)
	}
	g, err := nw.Genesis()
	require.NoError(t, err)
	auth3, err := node.ReadKeyFile(filepath.Join(nw.Home(3), "keys", "authority.key"))
	require.NoError(t, err)
	board, err := node.ReadKeyFile(testnet.LicensingKeyFile(nw.Dir))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	var acct struct {
		NextNonce uint64 `json:"next_nonce"`
	}
	_, out, err := nw.Do(ctx, 0, http.MethodGet, "/v1/accounts/"+board.Public().Address().String(), nil, true)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(out, &acct))
	// Testnet nodes' provider key is their authority key: the ledger links the two.
	revoke := chain.NewTx(board, g.ChainID, chain.TxRevokeAttestation, acct.NextNonce,
		&chain.RevokeAttestation{Subject: auth3.Public().Address(), Role: chain.RoleProvider, Reason: chain.RevokeSuspended})
	req, _ := json.Marshal(map[string]string{"tx": hex.EncodeToString(revoke.Encode())})
	code, _, out, err := nw.Request(ctx, 0, http.MethodPost, "/v1/txs?wait=commit", "application/json", req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, string(out))
	var at struct {
		Height uint64 `json:"height"`
	}
	require.NoError(t, json.Unmarshal(out, &at))
	revoked := time.Now()
	t.Logf("node3's licence revoked at height %d", at.Height)

	honest := []int{0, 1, 2}
	seen := map[uint64]time.Time{}
	var removed time.Duration
	err = procnet.WaitFor(context.Background(), 60*time.Second, 100*time.Millisecond, "node3 removed from every honest node's authority set",
		removedFrom(nw, honest, auth3.Public(), seen, revoked, &removed))
	require.NoError(t, err)
	t.Logf("FIGURE licence revoked to authority removed on all three honest nodes, with no human vote: %s", removed.Round(10*time.Millisecond))

	// The chain goes on with three; node3's node is no longer a member of anyone.
	st, err := statusOf(context.Background(), nw, 0)
	require.NoError(t, err)
	_, err = nw.WaitHeight(context.Background(), 0, st.Height+3, stepTimeout)
	require.NoError(t, err, "the chain stopped after the removal")
	peer3 := procnetPeer(t, nw, 3)
	err = procnet.WaitFor(context.Background(), 30*time.Second, 250*time.Millisecond, "node3 disconnected by the honest nodes", func(ctx context.Context) (bool, error) {
		for _, i := range honest {
			s, err := statusOf(ctx, nw, i)
			if err != nil {
				return false, err
			}
			if slices.Contains(s.Peers, peer3) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err)
}

// procnetPeer is node i's libp2p peer id, from its status.
func procnetPeer(t *testing.T, nw *procnet.Network, i int) string {
	t.Helper()
	s, err := statusOf(context.Background(), nw, i)
	require.NoError(t, err)
	return s.NodeID
}
