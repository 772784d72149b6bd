package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
)

// The practice's billing face (docs/api.md, Billing; docs/billing.md): plans, membership
// agreements drafted here and signed in the patient's wallet, enrolments, payments, and
// statements derived by the ledger's rules at the head block's time. Transactions are signed
// with the node's provider key through the record service, so they share its nonce sequence.

// billingAPI is the state the billing endpoints need beyond the API's.
type billingAPI struct {
	book  *billingBook
	now   func() time.Time
	vOnce sync.Once
	v     *fhir.Validator
	vErr  error
}

// attachBilling adds the billing endpoints; book keeps sponsor names and payment references
// (HOME/billing/). It needs the record service (attachRecords) to sign and submit.
func (a *API) attachBilling(book *billingBook) {
	a.billing = &billingAPI{book: book, now: time.Now}
	a.handle("POST /v1/billing/plans", staff.PermBilling, a.publishPlan)
	a.handle("GET /v1/billing/plans", staff.PermBilling, a.listPlans)
	a.handle("GET /v1/billing/plans/{id}", staff.PermBilling, a.getPlan)
	a.handle("POST /v1/billing/plans/{id}/retire", staff.PermBilling, a.retirePlan)
	a.handle("POST /v1/billing/agreements", staff.PermBilling, a.draftAgreement)
	a.handle("POST /v1/billing/memberships", staff.PermBilling, a.enrolMembership)
	a.handle("GET /v1/billing/memberships", staff.PermBilling, a.listMemberships)
	a.handle("GET /v1/billing/memberships/{id}", staff.PermBilling, a.getMembership)
	a.handle("POST /v1/billing/memberships/{id}/changes", staff.PermBilling, a.draftChange)
	a.handle("POST /v1/billing/memberships/{id}/change", staff.PermBilling, a.changeMembership)
	a.handle("POST /v1/billing/memberships/{id}/cancel", staff.PermBilling, a.cancelMembership)
	a.handle("POST /v1/billing/payments", staff.PermBilling, a.recordPayment)
	a.handle("GET /v1/billing/payments", staff.PermBilling, a.listPayments)
	a.handle("GET /v1/billing/payments/{id}", staff.PermBilling, a.getPayment)
	a.handle("GET /v1/billing/sponsors", staff.PermBilling, a.listSponsors)
	a.handle("GET /v1/billing/sponsors/{name}", staff.PermBilling, a.getSponsor)
	a.handle("GET /v1/patients/{patient}/billing-history", staff.PermBilling, a.billingHistory)
}

// TierJSON is a plan tier; Price is a decimal ("99.00").
type TierJSON struct {
	Label string `json:"label"`
	Price string `json:"price"`
}

// PlanRequest is the body of POST /v1/billing/plans.
type PlanRequest struct {
	Label      string     `json:"label"`
	Currency   string     `json:"currency"`
	Period     string     `json:"period"` // monthly or annual
	Family     bool       `json:"family,omitempty"`
	MaxMembers int        `json:"max_members,omitempty"` // family plans: 2..16; individual: 1 (or 0)
	Tiers      []TierJSON `json:"tiers"`
	FamilyCap  string     `json:"family_cap,omitempty"`
	Covered    []string   `json:"covered,omitempty"`
	GraceDays  int        `json:"grace_days,omitempty"`
}

// PlanJSON is a published plan.
type PlanJSON struct {
	ID              chain.Hash    `json:"id"`
	Provider        chain.Address `json:"provider"`
	Label           string        `json:"label"`
	Currency        string        `json:"currency"`
	Period          string        `json:"period"`
	Family          bool          `json:"family"`
	MaxMembers      int           `json:"max_members"`
	Tiers           []TierJSON    `json:"tiers"`
	FamilyCap       string        `json:"family_cap,omitempty"`
	Covered         []string      `json:"covered"`
	GraceDays       int           `json:"grace_days"`
	Retired         bool          `json:"retired"`
	PublishedHeight uint64        `json:"published_height"`
	Published       time.Time     `json:"published"`
}

// PlansJSON is the answer of GET /v1/billing/plans.
type PlansJSON struct {
	Plans []PlanJSON `json:"plans"`
}

func planJSON(p *state.PlanRecord) PlanJSON {
	out := PlanJSON{
		ID: p.Plan.ID, Provider: p.Provider, Label: p.Plan.Label, Currency: p.Plan.Currency, Period: p.Plan.Period.String(),
		Family: p.Plan.Family, MaxMembers: int(p.Plan.MaxMembers), Covered: p.Plan.Covered, GraceDays: int(p.Plan.GraceDays),
		Retired: p.Retired, PublishedHeight: p.PublishedHeight, Published: time.UnixMilli(p.PublishedTime).UTC(),
	}
	if out.Covered == nil {
		out.Covered = []string{}
	}
	for _, t := range p.Plan.Tiers {
		out.Tiers = append(out.Tiers, TierJSON{Label: t.Label, Price: billing.FormatCents(t.PriceCents)})
	}
	if p.Plan.FamilyCapCents > 0 {
		out.FamilyCap = billing.FormatCents(p.Plan.FamilyCapCents)
	}
	return out
}

// plan builds the ledger's plan from the request, under a fresh random id.
func (req *PlanRequest) plan() (chain.Plan, error) {
	p := chain.Plan{Label: req.Label, Currency: strings.ToUpper(req.Currency), Family: req.Family}
	if _, err := rand.Read(p.ID[:]); err != nil {
		return p, err
	}
	switch req.Period {
	case "monthly":
		p.Period = chain.PeriodMonthly
	case "annual":
		p.Period = chain.PeriodAnnual
	default:
		return p, fmt.Errorf("period %q: want monthly or annual", req.Period)
	}
	if req.MaxMembers < 0 || req.MaxMembers > chain.MaxFamilyMembers {
		return p, fmt.Errorf("max_members %d out of range", req.MaxMembers)
	}
	p.MaxMembers = uint8(req.MaxMembers)
	if !req.Family && p.MaxMembers == 0 {
		p.MaxMembers = 1
	}
	if req.GraceDays < 0 || req.GraceDays > chain.MaxGraceDays {
		return p, fmt.Errorf("grace_days %d: want 0..%d", req.GraceDays, chain.MaxGraceDays)
	}
	p.GraceDays = uint16(req.GraceDays)
	for i, t := range req.Tiers {
		c, err := billing.ParseAmount(t.Price)
		if err != nil {
			return p, fmt.Errorf("tier %d price: %w", i, err)
		}
		p.Tiers = append(p.Tiers, chain.PlanTier{Label: t.Label, PriceCents: c})
	}
	if req.FamilyCap != "" {
		c, err := billing.ParseAmount(req.FamilyCap)
		if err != nil {
			return p, fmt.Errorf("family_cap: %w", err)
		}
		p.FamilyCapCents = c
	}
	// The ledger wants the codes sorted and distinct; the practice need not care.
	p.Covered = slices.Compact(slices.Sorted(slices.Values(req.Covered)))
	return p, p.Validate()
}

// billingCtx gives a billing submission the time to commit past the request's own deadline.
func billingCtx(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(commitWait + 10*time.Second))
	return context.WithTimeout(context.WithoutCancel(r.Context()), commitWait)
}

// submitOwn signs body with the provider key, submits it and waits for its commit. On failure
// it has answered the request.
func (a *API) submitOwn(w http.ResponseWriter, r *http.Request, kind chain.TxKind, body any) (chain.Hash, bool) {
	ctx, cancel := billingCtx(w, r)
	defer cancel()
	h, _, err := a.records.SubmitTx(ctx, kind, body)
	if err != nil {
		a.billingError(w, kind.String(), err)
		return h, false
	}
	return h, true
}

// billingError answers a submission's refusal: the ledger's rules (422), conflicts (409), load (503).
func (a *API) billingError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, ErrTxDropped) || errors.Is(err, records.ErrBacklogged) || recordStatus(err) != http.StatusInternalServerError {
		a.recordError(w, what, err)
		return
	}
	// An execution refusal reported through the commit hub reads as the state's error.
	for _, e := range []error{state.ErrNotYours, state.ErrPlanUnavailable, state.ErrMembershipClosed, state.ErrAlreadyMember,
		state.ErrBadAgreement, state.ErrOverRefund, state.ErrDuplicatePayment, state.ErrBillingLimit} {
		if errors.Is(err, e) {
			writeError(w, http.StatusUnprocessableEntity, oneLine(err))
			return
		}
	}
	a.internal(w, what, err)
}

// hashParam parses the {id} path value; on failure it has answered.
func hashParam(w http.ResponseWriter, r *http.Request, what string) (chain.Hash, bool) {
	var h chain.Hash
	if err := h.UnmarshalText([]byte(r.PathValue("id"))); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s id %q: want 64 hex digits", what, r.PathValue("id")))
		return h, false
	}
	return h, true
}

// self is this node's provider id.
func (a *API) self() chain.Address { return a.records.ProviderID() }

// view runs f on the committed state with the head block's time.
func (a *API) view(f func(v state.View, atMs int64) error) error {
	v := a.b.Chain().State()
	_, at, err := state.Tip(v)
	if err != nil {
		return err
	}
	return f(v, at)
}

func (a *API) publishPlan(w http.ResponseWriter, r *http.Request) {
	var req PlanRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	p, err := req.plan()
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	if _, ok := a.submitOwn(w, r, chain.TxPlanPublish, &chain.PlanPublish{Plan: p}); !ok {
		return
	}
	a.answerPlan(w, p.ID, http.StatusCreated)
}

func (a *API) answerPlan(w http.ResponseWriter, id chain.Hash, code int) {
	var pr *state.PlanRecord
	err := a.view(func(v state.View, _ int64) (err error) { pr, err = state.Plan(v, id); return })
	switch {
	case err != nil:
		a.internal(w, "plan", err)
	case pr == nil || pr.Provider != a.self():
		writeError(w, http.StatusNotFound, fmt.Sprintf("no plan %s of this practice", id))
	default:
		writeJSON(w, code, planJSON(pr))
	}
}

func (a *API) listPlans(w http.ResponseWriter, r *http.Request) {
	var ps []*state.PlanRecord
	if err := a.view(func(v state.View, _ int64) (err error) { ps, err = state.PlansOf(v, a.self()); return }); err != nil {
		a.internal(w, "plans", err)
		return
	}
	out := PlansJSON{Plans: []PlanJSON{}}
	for _, p := range ps {
		out.Plans = append(out.Plans, planJSON(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getPlan(w http.ResponseWriter, r *http.Request) {
	if id, ok := hashParam(w, r, "plan"); ok {
		a.answerPlan(w, id, http.StatusOK)
	}
}

func (a *API) retirePlan(w http.ResponseWriter, r *http.Request) {
	id, ok := hashParam(w, r, "plan")
	if !ok {
		return
	}
	if _, ok := a.submitOwn(w, r, chain.TxPlanRetire, &chain.PlanRetire{Plan: id}); ok {
		a.answerPlan(w, id, http.StatusOK)
	}
}

// readJSON reads and decodes the body into v; on failure it has answered.
func (a *API) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return false
	}
	if err := decodeJSON(data, v); err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return false
	}
	return true
}

// readAgreementFile reads a signed agreement file of kind and checks it is for this chain and
// practice and signed; on failure it has answered.
func (a *API) readAgreementFile(w http.ResponseWriter, r *http.Request, kind string) (*billing.AgreementFile, chain.Signature, bool) {
	var sig chain.Signature
	data, ok := readBody(w, r, billing.MaxAgreementFileBytes)
	if !ok {
		return nil, sig, false
	}
	f, err := billing.ParseAgreementFile(data)
	if err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return nil, sig, false
	}
	switch {
	case f.Kind != kind:
		err = fmt.Errorf("agreement file of kind %q, want %q", f.Kind, kind)
	case f.ChainID != a.info.ChainID:
		err = fmt.Errorf("agreement file is for chain %q, this node runs %q", f.ChainID, a.info.ChainID)
	case f.Practice != a.self():
		err = fmt.Errorf("agreement file is for practice %s, this node is %s", f.Practice, a.self())
	}
	if err == nil {
		sig, err = f.Signature()
	}
	if err == nil {
		err = a.checkFileTerms(f)
	}
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, oneLine(err))
		return nil, sig, false
	}
	return f, sig, true
}

// checkFileTerms checks that what the patient read in the file is what the ledger will apply:
// the plan as published and the price its rule gives the members. The ledger checks neither (the
// patient signs the agreement's bytes, which name the plan by id only), so a file drafted
// elsewhere with a rosier plan or price is refused here.
func (a *API) checkFileTerms(f *billing.AgreementFile) error {
	var members []chain.MemberTier
	if f.Agreement != nil {
		members = f.Agreement.Members
	} else {
		members = f.Change.Members
	}
	var pr *state.PlanRecord
	if err := a.view(func(v state.View, _ int64) (err error) { pr, err = state.Plan(v, f.Plan.ID); return }); err != nil {
		return err
	}
	if pr == nil || pr.Provider != a.self() {
		return fmt.Errorf("the file's plan %s is not one this practice published", f.Plan.ID)
	}
	if !bytes.Equal(chain.Encode(&pr.Plan), chain.Encode(&f.Plan)) {
		return fmt.Errorf("the file shows plan %s other than the ledger has it", f.Plan.ID)
	}
	price, err := state.PriceOf(&pr.Plan, members)
	if err != nil {
		return err
	}
	if price != f.PriceCents {
		return fmt.Errorf("the file shows a price of %s per period, the plan's rule gives %s", billing.FormatCents(f.PriceCents), billing.FormatCents(price))
	}
	return nil
}

func (a *API) enrolMembership(w http.ResponseWriter, r *http.Request) {
	f, sig, ok := a.readAgreementFile(w, r, billing.AgreementEnrol)
	if !ok {
		return
	}
	ag := *f.Agreement
	if _, ok := a.submitOwn(w, r, chain.TxMembershipEnrol, &chain.MembershipEnrol{Agreement: ag, SubscriberSig: sig}); !ok {
		return
	}
	// The enrolment is on the ledger: a book that cannot be written costs the practice the
	// sponsor's list and the readable Contract, which is logged, not refused.
	if err := a.billing.book.noteContract(ag.ID, f.Contract); err != nil {
		a.log.Error("api: billing book", "err", err)
	}
	if !ag.Sponsor.IsZero() {
		if err := a.billing.book.noteSponsored(ag.Sponsor, ag.ID); err != nil {
			a.log.Error("api: billing book", "err", err)
		}
	}
	a.answerMembership(w, r, ag.ID, http.StatusCreated)
}

func (a *API) changeMembership(w http.ResponseWriter, r *http.Request) {
	id, ok := hashParam(w, r, "membership")
	if !ok {
		return
	}
	f, sig, ok := a.readAgreementFile(w, r, billing.AgreementChange)
	if !ok {
		return
	}
	if f.Change.Membership != id {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("the change file is for membership %s, not %s", f.Change.Membership, id))
		return
	}
	ch := *f.Change
	ch.SubscriberSig = sig
	if _, ok := a.submitOwn(w, r, chain.TxMembershipChange, &ch); !ok {
		return
	}
	if err := a.billing.book.noteContract(id, f.Contract); err != nil {
		a.log.Error("api: billing book", "err", err)
	}
	a.answerMembership(w, r, id, http.StatusOK)
}

func (a *API) cancelMembership(w http.ResponseWriter, r *http.Request) {
	id, ok := hashParam(w, r, "membership")
	if !ok {
		return
	}
	if _, ok := a.submitOwn(w, r, chain.TxMembershipCancel, &chain.MembershipCancel{Membership: id}); ok {
		a.answerMembership(w, r, id, http.StatusOK)
	}
}

// PaymentSplitJSON is the part of a payment that settles one membership; Amount is a decimal.
type PaymentSplitJSON struct {
	Membership chain.Hash `json:"membership"`
	Amount     string     `json:"amount"`
}

// PaymentRequest is the body of POST /v1/billing/payments.
type PaymentRequest struct {
	// Reference is the external reference (a card processor's charge id); the ledger gets its
	// Sum256, the node keeps it in HOME/billing/payments.jsonl.
	Reference string             `json:"reference"`
	Refund    bool               `json:"refund,omitempty"`
	Splits    []PaymentSplitJSON `json:"splits"`
}

// PaymentJSON is a recorded payment or refund.
type PaymentJSON struct {
	ID            chain.Hash         `json:"id"`
	Reference     string             `json:"reference,omitempty"` // the clear reference, when this node recorded it
	ReferenceHash chain.Hash         `json:"reference_hash"`
	Refund        bool               `json:"refund"`
	Splits        []PaymentSplitJSON `json:"splits"`
	Total         string             `json:"total"`
	Height        uint64             `json:"height"`
	Recorded      time.Time          `json:"recorded"`
}

func (a *API) recordPayment(w http.ResponseWriter, r *http.Request) {
	var req PaymentRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	ref := strings.TrimSpace(req.Reference)
	if ref == "" || len(ref) > 256 {
		writeError(w, http.StatusBadRequest, "reference: want the payment's external reference (1..256 bytes), say the card processor's charge id")
		return
	}
	body := &chain.PaymentRecord{Reference: chain.Sum256([]byte(ref)), Refund: req.Refund}
	for i, s := range req.Splits {
		c, err := billing.ParseAmount(s.Amount)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("split %d amount: %v", i, oneLine(err)))
			return
		}
		body.Splits = append(body.Splits, chain.PaymentSplit{Membership: s.Membership, Cents: c})
	}
	slices.SortFunc(body.Splits, func(x, y chain.PaymentSplit) int {
		return strings.Compare(x.Membership.String(), y.Membership.String())
	})
	if err := body.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, oneLine(err))
		return
	}
	id, ok := a.submitOwn(w, r, chain.TxPaymentRecord, body)
	if !ok {
		return
	}
	if err := a.billing.book.notePayment(id, ref, req.Refund, a.billing.now()); err != nil {
		a.log.Error("api: billing book", "err", err)
	}
	a.answerPayment(w, id, http.StatusCreated)
}

func (a *API) getPayment(w http.ResponseWriter, r *http.Request) {
	if id, ok := hashParam(w, r, "payment"); ok {
		a.answerPayment(w, id, http.StatusOK)
	}
}

func (a *API) answerPayment(w http.ResponseWriter, id chain.Hash, code int) {
	var p *state.PaymentState
	if err := a.view(func(v state.View, _ int64) (err error) { p, err = state.Payment(v, id); return }); err != nil {
		a.internal(w, "payment", err)
		return
	}
	if p == nil || p.Provider != a.self() {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no payment %s of this practice", id))
		return
	}
	writeJSON(w, code, a.paymentJSON(p))
}

func (a *API) paymentJSON(p *state.PaymentState) PaymentJSON {
	out := PaymentJSON{ID: p.ID, Reference: a.billing.book.payment(p.ID), ReferenceHash: p.Reference, Refund: p.Refund,
		Height: p.Height, Recorded: time.UnixMilli(p.Time).UTC(), Splits: []PaymentSplitJSON{}}
	var total uint64
	for _, s := range p.Splits {
		out.Splits = append(out.Splits, PaymentSplitJSON{Membership: s.Membership, Amount: billing.FormatCents(s.Cents)})
		total += s.Cents
	}
	out.Total = billing.FormatCents(total)
	return out
}

// SponsorJSON is the answer of GET /v1/billing/sponsors/{name}: the employer's combined
// invoice, one line per membership it sponsors.
type SponsorJSON struct {
	Name        string            `json:"name"`
	ID          chain.Hash        `json:"id"`
	Memberships []SponsorLineJSON `json:"memberships"`
	Balance     string            `json:"balance"` // the sum of the lines' balances; negative: credit
	Currencies  []string          `json:"currencies,omitempty"`
}

// SponsorLineJSON is one sponsored membership and where it stands.
type SponsorLineJSON struct {
	Membership chain.Hash    `json:"membership"`
	Subscriber chain.Address `json:"subscriber"`
	Currency   string        `json:"currency"`
	Status     string        `json:"status"`
	Balance    string        `json:"balance"`
}

// SponsorsJSON is the answer of GET /v1/billing/sponsors: the sponsors this node drafted
// agreements for, by name.
type SponsorsJSON struct {
	Sponsors []SponsorSummaryJSON `json:"sponsors"`
}

func (a *API) listSponsors(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, SponsorsJSON{Sponsors: a.billing.book.sponsors()})
}

func (a *API) getSponsor(w http.ResponseWriter, r *http.Request) {
	name := normSponsor(r.PathValue("name"))
	sid, e, ok := a.billing.book.sponsor(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no sponsor %q in this node's billing book", name))
		return
	}
	out := SponsorJSON{Name: e.Name, ID: sid, Memberships: []SponsorLineJSON{}}
	var balance int64
	err := a.view(func(v state.View, at int64) error {
		for _, s := range e.Memberships {
			var id chain.Hash
			if err := id.UnmarshalText([]byte(s)); err != nil {
				return fmt.Errorf("billing book: membership %q: %w", s, err)
			}
			m, err := state.Membership(v, id)
			if err != nil {
				return err
			}
			if m == nil || m.Sponsor != sid {
				continue // enrolled under another sponsor since (or a book ahead of a resynced chain)
			}
			st := m.Statement(at)
			out.Memberships = append(out.Memberships, SponsorLineJSON{Membership: id, Subscriber: m.Subscriber, Currency: m.Currency,
				Status: st.Status.String(), Balance: formatSigned(st.BalanceCents)})
			balance += st.BalanceCents
			if !slices.Contains(out.Currencies, m.Currency) {
				out.Currencies = append(out.Currencies, m.Currency)
			}
		}
		return nil
	})
	if err != nil {
		a.internal(w, "sponsor", err)
		return
	}
	out.Balance = formatSigned(balance)
	writeJSON(w, http.StatusOK, out)
}

// formatSigned writes signed cents as a decimal ("-12.50").
func formatSigned(c int64) string {
	if c < 0 {
		return "-" + billing.FormatCents(uint64(-c))
	}
	return billing.FormatCents(uint64(c))
}

// localPatientID is the FHIR Patient id billing resources name a patient by: the patient's
// ledger id in hex. The node keeps no Patient id in clear to use instead (the record service's
// bindings hold keyed hashes of them, the patient directory names and MRNs), and the ledger id is
// the one every node and the patient's wallet resolve the same way.
func localPatientID(p chain.Address) string { return p.String() }

// tierIndex resolves a tier given by label or index.
func tierIndex(p *chain.Plan, tier string) (uint8, error) {
	for i, t := range p.Tiers {
		if t.Label == tier {
			return uint8(i), nil
		}
	}
	if n, err := strconv.Atoi(tier); err == nil && n >= 0 && n < len(p.Tiers) {
		return uint8(n), nil
	}
	labels := make([]string, len(p.Tiers))
	for i, t := range p.Tiers {
		labels[i] = t.Label
	}
	return 0, fmt.Errorf("tier %q: plan %s has tiers %s (by label or index)", tier, p.ID.Short(), strings.Join(labels, ", "))
}
