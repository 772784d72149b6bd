package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/wallet/keystore"
)

// What the wallet's commands and its page (wallet_ui.go) both do, written once.

// buildGrant is the consent a patient gives provider to (a provider id) over all their records,
// some resource types (comma-separated) or some records (comma-separated ids), for purpose,
// ending expires after now ("" for never). The errors name the command's flags, which the page's
// fields are named after.
func buildGrant(to, types, recs, purpose, expires string, now time.Time) (*chain.ConsentGrant, error) {
	grantee, err := chain.ParseAddress(strings.TrimSpace(to))
	if err != nil {
		return nil, fmt.Errorf("--to %q: want a provider id of 40 hex digits (medledger status shows a node's provider_id)", to)
	}
	g := &chain.ConsentGrant{Grantee: grantee, Purpose: purpose, Scope: chain.ConsentScope{Kind: chain.ScopeAll}}
	types, recs = strings.TrimSpace(types), strings.TrimSpace(recs)
	switch {
	case types != "" && recs != "":
		return nil, fmt.Errorf("--types and --records exclude each other")
	case types != "":
		g.Scope.Kind = chain.ScopeTypes
		for _, t := range strings.Split(types, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(g.Scope.Types, t) {
				g.Scope.Types = append(g.Scope.Types, t)
			}
		}
		slices.Sort(g.Scope.Types)
	case recs != "":
		g.Scope.Kind = chain.ScopeRecords
		for _, s := range strings.Split(recs, ",") {
			id, err := chain.ParseHash(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("--records: %q is not a record id", s)
			}
			if !slices.Contains(g.Scope.Records, id) {
				g.Scope.Records = append(g.Scope.Records, id)
			}
		}
		slices.SortFunc(g.Scope.Records, func(a, b chain.Hash) int { return slices.Compare(a[:], b[:]) })
	}
	if expires = strings.TrimSpace(expires); expires != "" {
		d, err := parseExpiry(expires)
		if err != nil {
			return nil, err
		}
		g.ExpiresMs = now.Add(d).UnixMilli()
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// revokeConsents withdraws one consent (consent, an id) or every unrevoked consent to a
// provider (to, a provider id), waiting for each to take effect; it returns the ids revoked and
// the height the last one was proved at.
func revokeConsents(ctx context.Context, s *ledgerSession, w *keystore.Wallet, to, consent string) ([]string, uint64, error) {
	var ids []chain.Hash
	switch {
	case consent != "":
		id, err := chain.ParseHash(strings.TrimSpace(consent))
		if err != nil {
			return nil, 0, fmt.Errorf("--consent %q: want a consent id of 64 hex digits", consent)
		}
		ids = append(ids, id)
	default:
		grantee, err := chain.ParseAddress(strings.TrimSpace(to))
		if err != nil {
			return nil, 0, fmt.Errorf("--to %q: want a provider id of 40 hex digits", to)
		}
		all, err := provedConsents(ctx, s, w)
		if err != nil {
			return nil, 0, err
		}
		for _, c := range all {
			if c.Grantee == grantee && !c.Revoked {
				ids = append(ids, c.ID)
			}
		}
		if len(ids) == 0 {
			return nil, 0, fmt.Errorf("no consent to provider %s to revoke", grantee)
		}
	}
	var revoked []string
	var height uint64
	for _, id := range ids {
		out, err := s.submit(ctx, w, chain.TxConsentRevoke, &chain.ConsentRevoke{Consent: id})
		if err != nil {
			return revoked, height, err
		}
		revoked = append(revoked, id.String())
		height = out.Height
	}
	return revoked, height, nil
}

// provedAccesses is every logged read of the patient's records, proved in ps.
func provedAccesses(ps *light.PatientState, w *keystore.Wallet) ([]records.AccessJSON, error) {
	return records.AccessesJSON(ps.View(), w.PatientID(), ps.IDs(state.LogAccess, state.LogReceipt))
}

// readOwnRecord fetches record id as the patient (the read is audited), checks it against the
// proved state ps and decrypts it here.
func readOwnRecord(ctx context.Context, s *ledgerSession, w *keystore.Wallet, ps *light.PatientState, id chain.Hash) ([]byte, error) {
	var rec *state.RecordState
	for _, it := range ps.Items {
		if it.Record != nil && it.Record.ID == id {
			rec = it.Record
		}
	}
	if rec == nil {
		return nil, fmt.Errorf("record %s is not one of yours on the ledger (proved at height %d)", id, ps.Header.Height-1)
	}
	return s.primary.ReadOwn(ctx, w.SigningKey(), w.EncryptionKey(), rec)
}
