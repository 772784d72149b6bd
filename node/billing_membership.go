package node

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/fhir"
)

// Membership agreements and statements of the billing face (billing_api.go).

// MemberJSON is one member of an agreement draft: a patient and their tier, by label or index.
type MemberJSON struct {
	Patient chain.Address `json:"patient"`
	Tier    string        `json:"tier"`
}

// AgreementRequest is the body of POST /v1/billing/agreements.
type AgreementRequest struct {
	Plan       chain.Hash    `json:"plan"`
	Subscriber chain.Address `json:"subscriber"`
	// Members lists every member, the subscriber among them; empty: the subscriber alone, at the
	// plan's only tier.
	Members []MemberJSON `json:"members,omitempty"`
	// Sponsor is the name of an employer or other payer; the ledger gets an opaque id.
	Sponsor string `json:"sponsor,omitempty"`
	// Start is a date (2026-01-01, midnight UTC) or an RFC 3339 time; empty: now.
	Start string `json:"start,omitempty"`
}

// ChangeRequest is the body of POST /v1/billing/memberships/{id}/changes; an empty field keeps
// what the membership has now (members keep their tiers' labels under a new plan).
type ChangeRequest struct {
	Plan    chain.Hash   `json:"plan,omitzero"`
	Members []MemberJSON `json:"members,omitempty"`
}

// parseStart reads a start date or time.
func parseStart(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("start %q: want a date (2006-01-02) or an RFC 3339 time", s)
	}
	return t, nil
}

// offeredPlan returns this practice's unretired plan id; on failure it has answered.
func (a *API) offeredPlan(w http.ResponseWriter, id chain.Hash) (*state.PlanRecord, bool) {
	var pr *state.PlanRecord
	if err := a.view(func(v state.View, _ int64) (err error) { pr, err = state.Plan(v, id); return }); err != nil {
		a.internal(w, "plan", err)
		return nil, false
	}
	switch {
	case pr == nil || pr.Provider != a.self():
		writeError(w, http.StatusNotFound, fmt.Sprintf("no plan %s of this practice", id))
	case pr.Retired:
		writeError(w, http.StatusConflict, fmt.Sprintf("plan %s is retired", id))
	default:
		return pr, true
	}
	return nil, false
}

// memberTiers resolves members to the ledger's sorted form.
func memberTiers(p *chain.Plan, members []MemberJSON) ([]chain.MemberTier, error) {
	var out []chain.MemberTier
	for _, m := range members {
		t, err := tierIndex(p, m.Tier)
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Patient, err)
		}
		out = append(out, chain.MemberTier{Patient: m.Patient, Tier: t})
	}
	slices.SortFunc(out, func(x, y chain.MemberTier) int { return bytes.Compare(x.Patient[:], y.Patient[:]) })
	return out, nil
}

func memberIDs(ms []chain.MemberTier) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = localPatientID(m.Patient)
	}
	return out
}

func (a *API) draftAgreement(w http.ResponseWriter, r *http.Request) {
	var req AgreementRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	pr, ok := a.offeredPlan(w, req.Plan)
	if !ok {
		return
	}
	now := a.billing.now().UTC().Truncate(time.Second)
	start, err := parseStart(req.Start, now)
	// The ledger takes a start from a day before the enrolment's block to a year after it.
	if err == nil && (start.Before(now.Truncate(24*time.Hour)) || start.After(now.Add(time.Duration(chain.MaxMembershipStartAhead-chain.DayMs)*time.Millisecond))) {
		err = fmt.Errorf("start %s: want from today to within a year", start.Format(time.DateOnly))
	}
	if err == nil && len(req.Members) == 0 {
		if len(pr.Plan.Tiers) != 1 {
			err = fmt.Errorf("plan %s has %d tiers: list the members with theirs", req.Plan, len(pr.Plan.Tiers))
		}
		req.Members = []MemberJSON{{Patient: req.Subscriber, Tier: "0"}}
	}
	var members []chain.MemberTier
	if err == nil {
		members, err = memberTiers(&pr.Plan, req.Members)
	}
	var price uint64
	if err == nil {
		price, err = state.PriceOf(&pr.Plan, members)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	ag := &chain.MembershipAgreement{Plan: req.Plan, Subscriber: req.Subscriber, Members: members, StartMs: start.UnixMilli()}
	if _, err := rand.Read(ag.ID[:]); err != nil {
		a.internal(w, "agreement", err)
		return
	}
	if req.Sponsor != "" {
		if normSponsor(req.Sponsor) == "" || len(req.Sponsor) > 200 {
			writeError(w, http.StatusBadRequest, "sponsor: want a name of 1..200 bytes")
			return
		}
		if ag.Sponsor, err = a.billing.book.noteSponsor(req.Sponsor); err != nil {
			a.internal(w, "billing book", err)
			return
		}
	}
	contract, err := billing.ContractResource(billing.MembershipInfo{ID: ag.ID, Plan: pr.Plan, PriceCents: price, Members: memberIDs(members),
		Subscriber: localPatientID(req.Subscriber), Provider: a.self(), Signed: now, Start: start})
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	ag.Contract = billing.ContractHash(contract)
	if err := ag.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	f := &billing.AgreementFile{Kind: billing.AgreementEnrol, ChainID: a.info.ChainID, Practice: a.self(), Plan: pr.Plan, PriceCents: price,
		Agreement: ag, Subscriber: req.Subscriber, Contract: contract}
	if err := f.Check(); err != nil {
		a.internal(w, "agreement", err)
		return
	}
	writeAgreementFile(w, f)
}

func (a *API) draftChange(w http.ResponseWriter, r *http.Request) {
	id, ok := hashParam(w, r, "membership")
	if !ok {
		return
	}
	var req ChangeRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	var m *state.MembershipRecord
	var at int64
	if err := a.view(func(v state.View, t int64) (err error) { at = t; m, err = state.Membership(v, id); return }); err != nil {
		a.internal(w, "membership", err)
		return
	}
	if m == nil || m.Provider != a.self() {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no membership %s at this practice", id))
		return
	}
	if m.EndMs != 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("membership %s is cancelled", id))
		return
	}
	seg := m.SegmentAt(at)
	if req.Plan.IsZero() {
		req.Plan = seg.Plan
	}
	pr, ok := a.offeredPlan(w, req.Plan)
	if !ok {
		return
	}
	var err error
	if len(req.Members) == 0 {
		// Keep the members, each at the tier of the same label under the (new) plan.
		var old *state.PlanRecord
		if err = a.view(func(v state.View, _ int64) (err error) { old, err = state.Plan(v, seg.Plan); return }); err == nil && old == nil {
			err = fmt.Errorf("plan %s of membership %s missing (state corrupt?)", seg.Plan.Short(), id.Short())
		}
		if err != nil {
			a.internal(w, "plan", err)
			return
		}
		for _, mt := range seg.Members {
			req.Members = append(req.Members, MemberJSON{Patient: mt.Patient, Tier: old.Plan.Tiers[mt.Tier].Label})
		}
	}
	members, err := memberTiers(&pr.Plan, req.Members)
	var price uint64
	if err == nil {
		price, err = state.PriceOf(&pr.Plan, members)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	contract, err := billing.ContractResource(billing.MembershipInfo{ID: id, Plan: pr.Plan, PriceCents: price, Members: memberIDs(members),
		Subscriber: localPatientID(m.Subscriber), Provider: a.self(), Signed: a.billing.now().UTC().Truncate(time.Second),
		Start: time.UnixMilli(m.StartMs)})
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	ch := &chain.MembershipChange{Membership: id, Plan: req.Plan, Members: members, Contract: billing.ContractHash(contract)}
	f := &billing.AgreementFile{Kind: billing.AgreementChange, ChainID: a.info.ChainID, Practice: a.self(), Plan: pr.Plan, PriceCents: price,
		Change: ch, Subscriber: m.Subscriber, Contract: contract}
	if err := f.Check(); err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	writeAgreementFile(w, f)
}

// MemberTierJSON is a member and the tier the practice priced them at.
type MemberTierJSON struct {
	Patient   chain.Address `json:"patient"`
	Tier      int           `json:"tier"`
	TierLabel string        `json:"tier_label,omitempty"`
}

// InvoiceJSON is one invoice the ledger derives for a membership period.
type InvoiceJSON struct {
	ID         string    `json:"id"`
	Period     int       `json:"period"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Due        time.Time `json:"due"`
	Days       int64     `json:"days"`
	BilledDays int64     `json:"billed_days"`
	Amount     string    `json:"amount"`
	Paid       string    `json:"paid"`
	Status     string    `json:"status"` // unpaid, partly-paid, paid
}

// StatementJSON is a membership's account at the head block's time.
type StatementJSON struct {
	At           time.Time     `json:"at"`
	Status       string        `json:"status"` // pending, active, past-due, cancelled
	Invoices     []InvoiceJSON `json:"invoices"`
	TotalDue     string        `json:"total_due"`
	TotalPaid    string        `json:"total_paid"`
	Balance      string        `json:"balance"` // negative: a credit
	PaidThrough  *time.Time    `json:"paid_through,omitempty"`
	NextInvoice  *time.Time    `json:"next_invoice,omitempty"`
	PastDueSince *time.Time    `json:"past_due_since,omitempty"`
}

// MembershipJSON is a membership as the ledger knows it, the plan and members in force at the
// statement's time, and its statement.
type MembershipJSON struct {
	ID             chain.Hash       `json:"id"`
	Provider       chain.Address    `json:"provider"`
	Subscriber     chain.Address    `json:"subscriber"`
	Sponsor        *chain.Hash      `json:"sponsor,omitempty"`
	SponsorName    string           `json:"sponsor_name,omitempty"` // from this node's billing book
	Plan           chain.Hash       `json:"plan"`
	PlanLabel      string           `json:"plan_label,omitempty"`
	Members        []MemberTierJSON `json:"members"`
	Price          string           `json:"price"` // per period, all members
	Currency       string           `json:"currency"`
	Period         string           `json:"period"`
	Start          time.Time        `json:"start"`
	End            *time.Time       `json:"end,omitempty"`
	Contract       chain.Hash       `json:"contract"`
	EnrolledHeight uint64           `json:"enrolled_height"`
	Statement      StatementJSON    `json:"statement"`
}

// MembershipsJSON is the answer of GET /v1/billing/memberships.
type MembershipsJSON struct {
	Memberships []MembershipJSON `json:"memberships"`
}

// invoiceID names a derived invoice: the membership's id (its first 40 hex digits, so the
// FHIR id stays within 64 characters) and the period's number.
func invoiceID(m chain.Hash, period int) string { return m.String()[:40] + "-" + strconv.Itoa(period) }

func optTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func (a *API) membershipJSON(v state.View, m *state.MembershipRecord, at int64) (MembershipJSON, error) {
	seg := m.SegmentAt(at)
	out := MembershipJSON{ID: m.ID, Provider: m.Provider, Subscriber: m.Subscriber, Plan: seg.Plan, Price: billing.FormatCents(seg.PriceCents),
		Currency: m.Currency, Period: m.Period.String(), Start: time.UnixMilli(m.StartMs).UTC(), End: optTime(m.EndMs),
		Contract: seg.Contract, EnrolledHeight: m.EnrolledHeight, Members: []MemberTierJSON{}}
	if !m.Sponsor.IsZero() {
		s := m.Sponsor
		out.Sponsor, out.SponsorName = &s, a.billing.book.sponsorName(s)
	}
	pr, err := state.Plan(v, seg.Plan)
	if err != nil {
		return out, err
	}
	for _, mt := range seg.Members {
		j := MemberTierJSON{Patient: mt.Patient, Tier: int(mt.Tier)}
		if pr != nil && int(mt.Tier) < len(pr.Plan.Tiers) {
			j.TierLabel = pr.Plan.Tiers[mt.Tier].Label
		}
		out.Members = append(out.Members, j)
	}
	if pr != nil {
		out.PlanLabel = pr.Plan.Label
	}
	st := m.Statement(at)
	out.Statement = StatementJSON{At: time.UnixMilli(st.AtMs).UTC(), Status: st.Status.String(), Invoices: []InvoiceJSON{},
		TotalDue: billing.FormatCents(st.TotalDueCents), TotalPaid: billing.FormatCents(st.TotalPaidCents), Balance: formatSigned(st.BalanceCents),
		PaidThrough: optTime(st.PaidThroughMs), NextInvoice: optTime(st.NextInvoiceMs), PastDueSince: optTime(st.PastDueSinceMs)}
	for _, in := range st.Invoices {
		out.Statement.Invoices = append(out.Statement.Invoices, InvoiceJSON{ID: invoiceID(m.ID, in.Period), Period: in.Period,
			Start: time.UnixMilli(in.StartMs).UTC(), End: time.UnixMilli(in.EndMs).UTC(), Due: time.UnixMilli(in.DueMs).UTC(),
			Days: in.Days, BilledDays: in.BilledDays, Amount: billing.FormatCents(in.AmountCents), Paid: billing.FormatCents(in.PaidCents),
			Status: in.Status.String()})
	}
	return out, nil
}

// answerMembership answers membership id of this practice: its JSON, or with ?format=fhir a
// FHIR Bundle (collection) of its Account, its latest Contract (when this node kept it) and one
// Invoice per derived invoice.
func (a *API) answerMembership(w http.ResponseWriter, r *http.Request, id chain.Hash, code int) {
	var out MembershipJSON
	var m *state.MembershipRecord
	var plan *state.PlanRecord
	var at int64
	err := a.view(func(v state.View, t int64) (err error) {
		at = t
		if m, err = state.Membership(v, id); err != nil || m == nil || m.Provider != a.self() {
			return err
		}
		if plan, err = state.Plan(v, m.SegmentAt(t).Plan); err != nil {
			return err
		}
		out, err = a.membershipJSON(v, m, t)
		return err
	})
	switch {
	case err != nil:
		a.internal(w, "membership", err)
		return
	case m == nil || m.Provider != a.self():
		writeError(w, http.StatusNotFound, fmt.Sprintf("no membership %s at this practice", id))
		return
	}
	if r.URL.Query().Get("format") != "fhir" {
		writeJSON(w, code, out)
		return
	}
	if plan == nil {
		a.internal(w, "membership", fmt.Errorf("plan %s of membership %s missing", out.Plan.Short(), id.Short()))
		return
	}
	bundle, err := a.membershipBundle(m, &plan.Plan, at)
	if err != nil {
		a.internal(w, "membership bundle", err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(code)
	_, _ = w.Write(append(bundle, '\n'))
}

func (a *API) membershipBundle(m *state.MembershipRecord, plan *chain.Plan, at int64) ([]byte, error) {
	seg := m.SegmentAt(at)
	info := billing.MembershipInfo{ID: m.ID, Plan: *plan, PriceCents: seg.PriceCents, Members: memberIDs(seg.Members),
		Subscriber: localPatientID(m.Subscriber), Provider: m.Provider, Signed: time.UnixMilli(m.EnrolledTime),
		Start: time.UnixMilli(m.StartMs), Cancelled: m.EndMs != 0 && m.EndMs <= at}
	if m.EndMs != 0 {
		info.End = time.UnixMilli(m.EndMs)
	}
	b := fhirBundle{ResourceType: "Bundle", Type: "collection", Timestamp: fhirInstant(time.UnixMilli(at))}
	add := func(typ, id string, res []byte) {
		b.Entry = append(b.Entry, bundleEntry{FullURL: "urn:medledger:" + typ + ":" + id, Resource: res})
	}
	acct, err := billing.AccountResource(info)
	if err != nil {
		return nil, err
	}
	add("Account", m.ID.String(), acct)
	if c := a.billing.book.contract(m.ID); c != nil {
		add("Contract", m.ID.String(), c)
	}
	for _, in := range m.Statement(at).Invoices {
		status := "issued"
		if in.Status == state.InvoicePaid {
			status = "balanced"
		}
		id := invoiceID(m.ID, in.Period)
		res, err := billing.InvoiceResource(billing.InvoiceInfo{ID: id, Membership: m.ID, Provider: m.Provider,
			Subscriber: localPatientID(m.Subscriber), Issued: time.UnixMilli(in.DueMs), PeriodStart: time.UnixMilli(in.StartMs),
			PeriodEnd: time.UnixMilli(in.EndMs), Currency: m.Currency, AmountCents: in.AmountCents, PaidCents: in.PaidCents, Status: status})
		if err != nil {
			return nil, err
		}
		add("Invoice", id, res)
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	// What the node writes must be valid FHIR R4: a failure here is this node's bug.
	a.billing.vOnce.Do(func() { a.billing.v, a.billing.vErr = fhir.NewValidator() })
	if a.billing.vErr != nil {
		return nil, a.billing.vErr
	}
	if err := a.billing.v.Check(data); err != nil {
		return nil, fmt.Errorf("membership bundle is not valid FHIR: %w", err)
	}
	return data, nil
}

func (a *API) getMembership(w http.ResponseWriter, r *http.Request) {
	if id, ok := hashParam(w, r, "membership"); ok {
		a.answerMembership(w, r, id, http.StatusOK)
	}
}

func (a *API) listMemberships(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("patient") {
		a.listBookMemberships(w, r)
		return
	}
	p, err := chain.ParseAddress(r.URL.Query().Get("patient"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "patient: want ?patient=<patient id, 40 hex digits>")
		return
	}
	requestInfoOf(r).patient = p.String()
	out := MembershipsJSON{Memberships: []MembershipJSON{}}
	err = a.view(func(v state.View, at int64) error {
		ms, err := state.MembershipsAt(v, a.self(), p)
		if err != nil {
			return err
		}
		for _, m := range ms {
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
	writeJSON(w, http.StatusOK, out)
}

// writeAgreementFile answers a drafted file without HTML escaping: json.Marshal would rewrite a
// Contract holding "&", "<" or ">" (a plan named "Mom & Kids") and break the hash the agreement
// names.
func writeAgreementFile(w http.ResponseWriter, f *billing.AgreementFile) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the agreement file failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
