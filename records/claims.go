package records

import (
	"context"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// What the node's claim endpoints (node/claims_api.go) need of the record service: its ledger
// view, its signed submissions and its encryption key, which opens the billing key a payer
// sealed to this provider. The key never leaves the service.

// ChainID is the chain this service signs for.
func (r *Service) ChainID() string { return r.chainID }

// View runs f with the committed state.
func (r *Service) View(ctx context.Context, f func(view state.View) error) error {
	return r.query(ctx, f)
}

// SubmitTx signs body with this node's member key under the next free nonce, submits it and
// waits for it to commit: the ledger's refusal comes back as the error (wrapping the state
// rule's sentinel where the executor gave one).
func (r *Service) SubmitTx(ctx context.Context, kind chain.TxKind, body any) (chain.Hash, uint64, error) {
	return r.submit(ctx, kind, body, true)
}

// OpenBillingKey opens the billing key of payer's schedule for this provider with this node's
// encryption key, checked against the schedule's commitment.
func (r *Service) OpenBillingKey(s *chain.PayerSchedule, payer chain.Address) ([]byte, error) {
	return billing.OpenScheduleKey(s, r.chainID, payer, r.keys.Encryption)
}
