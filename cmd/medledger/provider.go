package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

func providerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "provider", Short: "Register this node's practice as a licensed provider"}
	cmd.AddCommand(memberRegisterCmd(chain.RoleProvider))
	return cmd
}

// apiStartWait is how long register waits for a node's API that does not answer yet.
const apiStartWait = 30 * time.Second

// registerPoll is how often register looks whether the registration committed.
const registerPoll = time.Second

// refusedByLedger reports an API answer that retrying cannot change (400, 422).
func refusedByLedger(err error) bool {
	s := err.Error()
	return strings.HasSuffix(s, "(HTTP 422)") || strings.HasSuffix(s, "(HTTP 400)")
}

// nodeStatus GETs the node's status.
func nodeStatus(ctx context.Context, home string) (node.StatusJSON, error) {
	var st node.StatusJSON
	data, err := apiGet(ctx, home, "/v1/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return st, nil
}

// submitTimeout bounds one POST /v1/txs?wait=commit.
const submitTimeout = 70 * time.Second

// submitSigned signs body with key under the signer's next nonce (as the node counts it),
// submits it through the node's API as its operator and waits for it to commit.
func submitSigned(ctx context.Context, home string, key chain.PrivKey, chainID string, kind chain.TxKind, body any) error {
	_, err := submitSignedTx(ctx, home, key, chainID, kind, body)
	return err
}

// submitSignedTx is submitSigned answering the committed transaction.
func submitSignedTx(ctx context.Context, home string, key chain.PrivKey, chainID string, kind chain.TxKind, body any) (node.TxAccepted, error) {
	var acct node.AccountJSON
	data, err := apiGet(ctx, home, "/v1/accounts/"+key.Public().Address().String())
	if err != nil {
		return node.TxAccepted{}, err
	}
	if err := json.Unmarshal(data, &acct); err != nil {
		return node.TxAccepted{}, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	tx := chain.NewTx(key, chainID, kind, acct.NextNonce, body)
	req, err := json.Marshal(map[string]string{"tx": hex.EncodeToString(tx.Encode())})
	if err != nil {
		return node.TxAccepted{}, err
	}
	if data, err = apiDo(ctx, home, http.MethodPost, "/v1/txs?wait=commit", req, "application/json", submitTimeout); err != nil {
		return node.TxAccepted{}, fmt.Errorf("%s: %w", kind, err)
	}
	var out node.TxAccepted
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return out, nil
}
