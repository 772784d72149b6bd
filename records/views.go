package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/index"
)

// RecordJSON describes one record version as the ledger knows it.
type RecordJSON struct {
	ID             chain.Hash      `json:"id"`
	ResourceType   string          `json:"resourceType"`
	Version        uint64          `json:"version"`
	Patient        chain.Address   `json:"patient"`
	Author         chain.Address   `json:"author"`
	Supersedes     *chain.Hash     `json:"supersedes,omitempty"`
	SupersededBy   *chain.Hash     `json:"superseded_by,omitempty"`
	CiphertextHash *chain.Hash     `json:"ciphertext_hash,omitempty"`
	Size           uint64          `json:"size,omitempty"`
	Height         uint64          `json:"height"`
	Time           string          `json:"time"`
	Erased         bool            `json:"erased"`
	ErasedHeight   uint64          `json:"erased_height,omitempty"`
	ErasureAcks    []chain.Address `json:"erasure_acks,omitempty"`
}

func recordJSON(rec *state.RecordState) RecordJSON {
	j := RecordJSON{ID: rec.ID, ResourceType: rec.ResourceType, Version: rec.RecVersion, Patient: rec.Patient, Author: rec.Author,
		Size: rec.Size, Height: rec.AnchoredHeight, Time: msTime(rec.AnchoredTime), Erased: rec.Erased, ErasedHeight: rec.ErasedHeight, ErasureAcks: rec.Acks}
	if !rec.Supersedes.IsZero() {
		j.Supersedes = &rec.Supersedes
	}
	if !rec.SupersededBy.IsZero() {
		j.SupersededBy = &rec.SupersededBy
	}
	if !rec.CiphertextHash.IsZero() {
		j.CiphertextHash = &rec.CiphertextHash
	}
	return j
}

func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// Page asks for one page of a patient list: the entries after the cursor a previous page
// returned (empty: from the first), at most Limit of them (0: index.DefaultPage; never more
// than index.MaxPage). A page's answer comes with the cursor of the next page, empty after the
// last. An unknown cursor is ErrBadRequest.
type Page struct {
	After string
	Limit int
}

// pageErr maps the index's cursor error to the service's.
func pageErr(err error) error {
	if errors.Is(err, index.ErrBadCursor) {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return err
}

// allPages collects every page of a patient list.
func allPages[T any](page func(p Page) ([]T, string, error)) ([]T, error) {
	var out []T
	p := Page{Limit: index.MaxPage}
	for {
		items, next, err := page(p)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		p.After = next
	}
}

// List returns a patient's records (every version, in anchor order) from the ledger, every page
// of ListPage.
func (r *Service) List(ctx context.Context, patient chain.Address) ([]RecordJSON, error) {
	out, err := allPages(func(p Page) ([]RecordJSON, string, error) { return r.ListPage(ctx, patient, p) })
	if out == nil && err == nil {
		out = []RecordJSON{}
	}
	return out, err
}

// ListPage returns one page of a patient's records in anchor order, and the next page's cursor.
func (r *Service) ListPage(ctx context.Context, patient chain.Address, p Page) ([]RecordJSON, string, error) {
	recs, next, err := r.idx.Records(patient, p.After, p.Limit)
	if err != nil {
		return nil, "", pageErr(err)
	}
	ids := make([]chain.Hash, len(recs))
	for i, ir := range recs {
		ids[i] = ir.ID
	}
	var out []RecordJSON
	err = r.query(ctx, func(view state.View) error {
		out, err = RecordsJSON(view, ids)
		return err
	})
	return out, next, err
}

// RecordsJSON describes the records ids name in view (the node's state, or a wallet's proved
// one); ids it does not hold are left out.
func RecordsJSON(view state.View, ids []chain.Hash) ([]RecordJSON, error) {
	out := make([]RecordJSON, 0, len(ids))
	for _, id := range ids {
		rec, err := state.Record(view, id)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			out = append(out, recordJSON(rec))
		}
	}
	return out, nil
}

// ConsentJSON is one consent (or emergency access) of a patient.
type ConsentJSON struct {
	ID            chain.Hash    `json:"id"`
	Patient       chain.Address `json:"patient"`
	Grantee       chain.Address `json:"grantee"`
	Scope         string        `json:"scope"`
	Types         []string      `json:"types,omitempty"`
	Records       []chain.Hash  `json:"records,omitempty"`
	Purpose       string        `json:"purpose"`
	GrantedHeight uint64        `json:"granted_height"`
	GrantedTime   string        `json:"granted_time"`
	Expires       string        `json:"expires,omitempty"`
	Emergency     bool          `json:"emergency"`
	// Reason is an emergency access's reason code (chain.EmergencyReason.String()).
	Reason          string `json:"reason,omitempty"`
	CoSigned        bool   `json:"co_signed,omitempty"`
	AfterRevocation bool   `json:"after_revocation,omitempty"`
	Revoked         bool   `json:"revoked"`
	RevokedHeight   uint64 `json:"revoked_height,omitempty"`
	Active          bool   `json:"active"`
}

// Consents returns every consent and emergency access of a patient, with whether each is in
// force at the last block's time (every page of ConsentsPage); nil if there is none.
func (r *Service) Consents(ctx context.Context, patient chain.Address) ([]ConsentJSON, error) {
	return allPages(func(p Page) ([]ConsentJSON, string, error) { return r.ConsentsPage(ctx, patient, p) })
}

// ConsentsPage returns one page of a patient's consents and emergency accesses in ledger order,
// and the next page's cursor.
func (r *Service) ConsentsPage(ctx context.Context, patient chain.Address, p Page) ([]ConsentJSON, string, error) {
	ids, next, err := r.idx.Consents(patient, p.After, p.Limit)
	if err != nil {
		return nil, "", pageErr(err)
	}
	var out []ConsentJSON
	err = r.query(ctx, func(view state.View) error {
		out, err = ConsentsJSON(view, ids)
		return err
	})
	return out, next, err
}

// ConsentsJSON describes the consents ids name in view, each active or not at view's block
// time; ids it does not hold are left out.
func ConsentsJSON(view state.View, ids []chain.Hash) ([]ConsentJSON, error) {
	now, err := tipTime(view)
	if err != nil {
		return nil, err
	}
	var out []ConsentJSON
	for _, id := range ids {
		c, err := state.Consent(view, id)
		if err != nil {
			return nil, err
		}
		if c == nil {
			continue
		}
		j := ConsentJSON{ID: c.ID, Patient: c.Patient, Grantee: c.Grantee, Scope: c.Scope.Kind.String(), Types: c.Scope.Types, Records: c.Scope.Records,
			Purpose: c.Purpose, GrantedHeight: c.GrantedHeight, GrantedTime: msTime(c.GrantedTime), Emergency: c.Emergency,
			CoSigned: c.CoSigned, AfterRevocation: c.AfterRevocation, Revoked: c.Revoked, RevokedHeight: c.RevokedHeight}
		if c.Emergency {
			j.Reason = c.ReasonCode.String()
		}
		if c.ExpiresMs != 0 {
			j.Expires = msTime(c.ExpiresMs)
		}
		j.Active = !c.Revoked && (c.ExpiresMs == 0 || now < c.ExpiresMs)
		out = append(out, j)
	}
	return out, nil
}

// AccessJSON is one logged access to a patient's record, as its holder logged it, its requester
// received it, or both.
type AccessJSON struct {
	RequestID chain.Hash    `json:"request_id"`
	Record    chain.Hash    `json:"record"`
	Accessor  chain.Address `json:"accessor"`
	// Role is the role (a staff role of the requesting practice, or "patient" for the patient's
	// own read) the read was asked under, as the requester's signed request names it.
	Role      string        `json:"role"`
	Holder    chain.Address `json:"holder"`
	Height    uint64        `json:"height"`
	Time      string        `json:"time"`
	Purpose   string        `json:"purpose"`
	Emergency bool          `json:"emergency"`
	Outcome   string        `json:"outcome"`
	Reason    string        `json:"reason,omitempty"`
	// LoggedBy: "holder", "requester" (a receipt only) or "both"; then the flags of
	// state.AccessView, and an emergency read's break-glass flags.
	LoggedBy           string `json:"logged_by"`
	UnloggedByHolder   bool   `json:"unlogged_by_holder,omitempty"`
	RefusedButReceived bool   `json:"refused_but_received,omitempty"`
	CoSigned           bool   `json:"co_signed,omitempty"`
	AfterRevocation    bool   `json:"after_revocation,omitempty"`
	// EmergencyReason is the reason code of the break-glass access an emergency read was
	// made under.
	EmergencyReason string `json:"emergency_reason,omitempty"`
}

// Accesses returns every logged access (served and refused) to a patient's records (every page
// of AccessesPage).
func (r *Service) Accesses(ctx context.Context, patient chain.Address) ([]AccessJSON, error) {
	out, err := allPages(func(p Page) ([]AccessJSON, string, error) { return r.AccessesPage(ctx, patient, p) })
	if out == nil && err == nil {
		out = []AccessJSON{}
	}
	return out, err
}

// AccessesPage returns one page of the logged accesses to a patient's records, in the order the
// ledger first logged each, and the next page's cursor.
func (r *Service) AccessesPage(ctx context.Context, patient chain.Address, p Page) ([]AccessJSON, string, error) {
	refs, next, err := r.idx.Accesses(patient, p.After, p.Limit)
	if err != nil {
		return nil, "", pageErr(err)
	}
	ids := make([]chain.Hash, len(refs))
	for i, a := range refs {
		ids[i] = a.Request
	}
	out := []AccessJSON{}
	err = r.query(ctx, func(view state.View) error {
		out, err = AccessesJSON(view, patient, ids)
		return err
	})
	return out, next, err
}

// AccessesJSON describes the reads of patient's records that request ids name in view: the
// holder's entry, the requester's receipt, or both, with what they say together.
func AccessesJSON(view state.View, patient chain.Address, ids []chain.Hash) ([]AccessJSON, error) {
	views, err := state.AccessesOf(view, patient, ids)
	if err != nil {
		return nil, err
	}
	out := []AccessJSON{}
	for _, v := range views {
		j := AccessJSON{RequestID: v.RequestID, Record: v.Record, LoggedBy: v.LoggedBy(), UnloggedByHolder: v.UnloggedByHolder,
			RefusedButReceived: v.RefusedButReceived}
		if a := v.Entry; a != nil {
			j.Accessor, j.Role, j.Holder, j.Height, j.Time, j.Purpose, j.Emergency, j.Outcome, j.Reason = a.Accessor, a.Role, a.Holder, a.Height,
				msTime(a.Time), a.Purpose, a.Emergency, a.Outcome.String(), a.Reason
		} else {
			rc := v.Receipt
			j.Accessor, j.Role, j.Height, j.Time, j.Purpose, j.Emergency, j.Outcome = rc.Requester, rc.Role, rc.Height, msTime(rc.Time), rc.Purpose,
				rc.Emergency, chain.AccessServed.String()
		}
		if v.Emergency != nil {
			j.CoSigned, j.AfterRevocation, j.EmergencyReason = v.Emergency.CoSigned, v.Emergency.AfterRevocation, v.Emergency.ReasonCode.String()
		}
		out = append(out, j)
	}
	return out, nil
}
