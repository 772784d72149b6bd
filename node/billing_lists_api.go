package node

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records"
)

// The lists behind the practice's billing and claims pages (node/webui): every membership this
// node enrolled, the payments it recorded, the claims it filed (billing_index.go says why these
// come from the billing book), and a patient's imported billing history.

// maxPaymentPage bounds a page of payments.
const maxPaymentPage = 200

// listBookMemberships is GET /v1/billing/memberships without ?patient: every membership this
// node enrolled, each with its statement at the head block's time, the most recently enrolled
// first.
func (a *API) listBookMemberships(w http.ResponseWriter, r *http.Request) {
	ids, err := a.billing.book.memberships()
	if err != nil {
		a.internal(w, "memberships", err)
		return
	}
	out := MembershipsJSON{Memberships: []MembershipJSON{}}
	err = a.view(func(v state.View, at int64) error {
		for _, id := range ids {
			m, err := state.Membership(v, id)
			if err != nil {
				return err
			}
			if m == nil || m.Provider != a.self() {
				continue // a book ahead of a resynced chain
			}
			j, err := a.membershipJSON(v, m, at)
			if err != nil {
				return err
			}
			out.Memberships = append(out.Memberships, j)
		}
		return nil
	})
	if err != nil {
		a.internal(w, "memberships", err)
		return
	}
	slices.SortStableFunc(out.Memberships, func(x, y MembershipJSON) int {
		switch {
		case x.EnrolledHeight > y.EnrolledHeight:
			return -1
		case x.EnrolledHeight < y.EnrolledHeight:
			return 1
		}
		return bytes.Compare(x.ID[:], y.ID[:])
	})
	writeJSON(w, http.StatusOK, out)
}

// PaymentsJSON is the answer of GET /v1/billing/payments.
type PaymentsJSON struct {
	Payments []PaymentJSON `json:"payments"`
}

// listPayments is GET /v1/billing/payments?membership=ID&limit=N: the payments and refunds this
// node recorded (its book has their clear references), newest first, only those with a part
// for membership when it is given.
func (a *API) listPayments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var only *chain.Hash
	if s := q.Get("membership"); s != "" {
		h, err := chain.ParseHash(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("membership %q: want 64 hex digits", s))
			return
		}
		only = &h
	}
	limit := maxPaymentPage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPaymentPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1..%d", s, maxPaymentPage))
			return
		}
		limit = n
	}
	out := PaymentsJSON{Payments: []PaymentJSON{}}
	err := a.view(func(v state.View, _ int64) error {
		for _, bp := range a.billing.book.recordedPayments() {
			if len(out.Payments) == limit {
				return nil
			}
			p, err := state.Payment(v, bp.ID)
			if err != nil {
				return err
			}
			if p == nil || p.Provider != a.self() {
				continue
			}
			if only != nil && !slices.ContainsFunc(p.Splits, func(s state.PaidSplit) bool { return s.Membership == *only }) {
				continue
			}
			out.Payments = append(out.Payments, a.paymentJSON(p))
		}
		return nil
	})
	if err != nil {
		a.internal(w, "payments", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// filedClaims is GET /v1/claims/filed?from=N&limit=N: the claims this node filed, newest first,
// each as the ledger holds it now; from is a position in that list.
func (a *API) filedClaims(w http.ResponseWriter, r *http.Request) {
	from, limit, err := claimPageParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := ClaimsJSON{Claims: []ClaimJSON{}}
	var ids []chain.Hash
	if a.billing != nil {
		if ids, err = a.billing.book.filedClaims(); err != nil {
			a.internal(w, "claims", err)
			return
		}
	}
	if from >= uint64(len(ids)) {
		writeJSON(w, http.StatusOK, out)
		return
	}
	page := ids[from:]
	if len(page) > limit {
		page = page[:limit]
		out.Next = strconv.FormatUint(from+uint64(limit), 10)
	}
	err = a.records.View(r.Context(), func(view state.View) error {
		for _, id := range page {
			c, err := state.Claim(view, id)
			if err != nil {
				return err
			}
			if c != nil && c.Provider == a.self() {
				out.Claims = append(out.Claims, claimJSON(c))
			}
		}
		return nil
	})
	if err != nil {
		a.internal(w, "claims", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// BillingHistoryJSON is the answer of GET /v1/patients/{patient}/billing-history.
type BillingHistoryJSON struct {
	Patient chain.Address `json:"patient"`
	// Purpose is the purpose of use every read was made and audited for: always HPAYMT.
	Purpose string                `json:"purpose"`
	Items   []records.BillingItem `json:"items"`
	// NotRead counts the patient's older financial records left unread (records.MaxBillingReads).
	NotRead int `json:"not_read,omitempty"`
}

// billingHistory is the patient's financial records (Claim, ExplanationOfBenefit, Coverage …
// imported from other systems) as records.Service.BillingHistory summarises them. Each is a
// read of the record, audited on the ledger, for payment (HPAYMT): a summary of amounts is
// for billing, not treatment, so the purpose is fixed rather than the caller's. Records this
// node may not read for payment are left out, not refused.
func (a *API) billingHistory(w http.ResponseWriter, r *http.Request) {
	patient, ok := a.patientParam(w, r)
	if !ok {
		return
	}
	items, notRead, err := a.records.BillingHistory(r.Context(), patient, state.PurposePayment, string(requestInfoOf(r).role))
	if err != nil {
		a.recordError(w, "billing history", err)
		return
	}
	writeJSON(w, http.StatusOK, BillingHistoryJSON{Patient: patient, Purpose: state.PurposePayment, Items: items, NotRead: notRead})
}
