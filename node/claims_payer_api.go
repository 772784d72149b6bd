package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// The payer's side of the claim endpoints (claims_api.go). The node's member key signs as the
// payer; the ledger refuses everything here unless that member is an active payer, and the
// handlers say so before signing anything.

// needPayer answers 409 and returns false unless this node's member is an active payer.
func (a *API) needPayer(w http.ResponseWriter, r *http.Request) (chain.Address, bool) {
	self := a.records.ProviderID()
	var m *state.MemberRecord
	err := a.records.View(r.Context(), func(view state.View) error {
		_, now, err := state.Tip(view)
		if err != nil {
			return err
		}
		m, err = state.ActivePayer(view, self, now)
		return err
	})
	switch {
	case err != nil:
		a.internal(w, "payer", err)
		return self, false
	case m == nil:
		writeError(w, http.StatusConflict, fmt.Sprintf("this node's member %s is not an active payer (docs/joining.md, \"A payer joins\")", self))
		return self, false
	}
	return self, true
}

// FeeJSON is one fee of a schedule: a service code and the amount allowed ("75.00").
type FeeJSON struct {
	Code    string `json:"code"`
	Allowed string `json:"allowed"`
}

// ScheduleRequest is POST /v1/payer/schedules: the payer's rules for one provider. Fees come as
// a list or as CSV text (billing.ParseFeeCSV), not both.
type ScheduleRequest struct {
	Provider       chain.Address `json:"provider"`
	Currency       string        `json:"currency"`
	CoinsurancePct uint8         `json:"coinsurance_pct"`
	Fees           []FeeJSON     `json:"fees,omitempty"`
	FeesCSV        string        `json:"fees_csv,omitempty"`
}

// ScheduleJSON answers a published schedule.
type ScheduleJSON struct {
	Payer      chain.Address `json:"payer"`
	Provider   chain.Address `json:"provider"`
	KeyCommit  chain.Hash    `json:"key_commit"`
	NewKey     bool          `json:"new_key"`
	Revision   uint32        `json:"revision"`
	Fees       int           `json:"fees"`
	Exclusions int           `json:"plan_exclusions"`
	Height     uint64        `json:"height"`
	Tx         chain.Hash    `json:"tx"`
}

// publishSchedule builds the payer's schedule for a provider under the pair's billing key (made
// on the first schedule, kept in HOME/billing-keys) with the provider's published plans as
// exclusions, and files it.
func (a *API) publishSchedule(w http.ResponseWriter, r *http.Request) {
	var req ScheduleRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	if req.Provider == (chain.Address{}) || (len(req.Fees) > 0) == (req.FeesCSV != "") {
		writeError(w, http.StatusBadRequest, "a schedule needs a provider and its fees, as fees or as fees_csv (one of them)")
		return
	}
	fees, err := scheduleFees(req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	payer, ok := a.needPayer(w, r)
	if !ok {
		return
	}
	in := billing.ScheduleInput{ChainID: a.records.ChainID(), Payer: payer, Provider: req.Provider,
		Currency: strings.ToUpper(strings.TrimSpace(req.Currency)), CoinsurancePct: req.CoinsurancePct, Fees: fees}
	err = a.records.View(r.Context(), func(view state.View) error {
		p, err := state.Provider(view, req.Provider)
		if err != nil || p == nil {
			return errors.Join(err, fmt.Errorf("%s is not a registered provider", req.Provider))
		}
		in.ProviderEncryptionKey = p.EncryptionKey
		plans, err := state.PlansOf(view, req.Provider)
		for _, pl := range plans {
			in.Plans = append(in.Plans, pl.Plan)
		}
		return err
	})
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, oneLine(err))
		return
	}
	key, created, err := a.billingKeys.getOrCreate(req.Provider)
	if err != nil {
		a.internal(w, "billing key", err)
		return
	}
	body, err := billing.BuildSchedule(key, in)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, oneLine(err))
		return
	}
	tx, height, err := a.records.SubmitTx(r.Context(), chain.TxPayerSchedule, body)
	if err != nil {
		a.claimError(w, "schedule", err)
		return
	}
	out := ScheduleJSON{Payer: payer, Provider: req.Provider, KeyCommit: body.KeyCommit, NewKey: created,
		Fees: len(body.Fees), Exclusions: len(body.Excluded), Height: height, Tx: tx}
	_ = a.records.View(r.Context(), func(view state.View) error {
		if s, err := state.Schedule(view, payer, req.Provider); err == nil && s != nil {
			out.Revision = s.Revision
		}
		return nil
	})
	writeJSON(w, http.StatusCreated, out)
}

func scheduleFees(req ScheduleRequest) ([]billing.Fee, error) {
	if req.FeesCSV != "" {
		fees, err := billing.ParseFeeCSV(strings.NewReader(req.FeesCSV))
		if err != nil {
			return nil, fmt.Errorf("fees_csv: %w", err)
		}
		return fees, nil
	}
	fees := make([]billing.Fee, len(req.Fees))
	for i, f := range req.Fees {
		c, err := billing.ParseAmount(f.Allowed)
		if err != nil {
			return nil, fmt.Errorf("fee %d (%s): %w", i, f.Code, err)
		}
		fees[i] = billing.Fee{Code: f.Code, AllowedCents: c}
	}
	return fees, nil
}

// CoverageRequest is POST /v1/payer/coverage: a FHIR Coverage for Patient, or the simple form
// From and To (dates, YYYY-MM-DD; no To: open-ended).
type CoverageRequest struct {
	Patient chain.Address   `json:"patient"`
	FHIR    json.RawMessage `json:"fhir,omitempty"`
	From    string          `json:"from,omitempty"`
	To      string          `json:"to,omitempty"`
}

// CoverageJSON is a coverage as the ledger holds it.
type CoverageJSON struct {
	ID      chain.Hash    `json:"id"`
	Payer   chain.Address `json:"payer"`
	Patient chain.Address `json:"patient"`
	From    string        `json:"from"`
	To      string        `json:"to,omitempty"`
	Ended   bool          `json:"ended"`
	EndDate string        `json:"end_date,omitempty"`
	Height  uint64        `json:"height"`
}

func coverageJSON(c *state.CoverageRecord, height uint64) CoverageJSON {
	j := CoverageJSON{ID: c.ID, Payer: c.Payer, Patient: c.Patient, From: billing.DayDate(c.FromDay), Ended: c.Ended, Height: height}
	if c.ToDay != 0 {
		j.To = billing.DayDate(c.ToDay)
	}
	if c.Ended {
		j.EndDate = billing.DayDate(c.EndDay)
	}
	return j
}

// setCoverage records the payer's coverage of a patient.
func (a *API) setCoverage(w http.ResponseWriter, r *http.Request) {
	var req CoverageRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	if req.Patient == (chain.Address{}) || (len(req.FHIR) > 0) == (req.From != "") {
		writeError(w, http.StatusBadRequest, "a coverage needs a patient and either fhir (a FHIR Coverage) or from (and to)")
		return
	}
	noteTarget(r, &req.Patient, nil)
	id, err := newID()
	if err != nil {
		a.internal(w, "coverage", err)
		return
	}
	var body *chain.CoverageSet
	if len(req.FHIR) > 0 {
		if body, _, err = billing.CoverageFromFHIR(req.FHIR, id, req.Patient); err != nil {
			writeError(w, http.StatusUnprocessableEntity, oneLine(err))
			return
		}
		if body.End {
			writeError(w, http.StatusUnprocessableEntity, "the Coverage is cancelled: end a coverage with POST /v1/payer/coverage/{id}/end")
			return
		}
	} else {
		body = &chain.CoverageSet{ID: id, Patient: req.Patient}
		if body.FromDay, err = billing.ServiceDay(req.From); err == nil && req.To != "" {
			body.ToDay, err = billing.ServiceDay(req.To)
		}
		if err == nil {
			err = body.Validate()
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "coverage: "+oneLine(err))
			return
		}
	}
	if _, ok := a.needPayer(w, r); !ok {
		return
	}
	if _, height, err := a.records.SubmitTx(r.Context(), chain.TxCoverageSet, body); err != nil {
		a.claimError(w, "coverage", err)
	} else {
		a.answerCoverage(w, r, body.ID, height, http.StatusCreated)
	}
}

func (a *API) answerCoverage(w http.ResponseWriter, r *http.Request, id chain.Hash, height uint64, code int) {
	var c *state.CoverageRecord
	if err := a.records.View(r.Context(), func(view state.View) (err error) {
		c, err = state.Coverage(view, id)
		return err
	}); err != nil || c == nil {
		a.internal(w, "coverage", errors.Join(err, errors.New("committed coverage not found")))
		return
	}
	writeJSON(w, code, coverageJSON(c, height))
}

// endCoverage ends one of the payer's coverages from the block's day on.
func (a *API) endCoverage(w http.ResponseWriter, r *http.Request) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("coverage %q: want a coverage id (64 hex digits)", r.PathValue("id")))
		return
	}
	var c *state.CoverageRecord
	if err := a.records.View(r.Context(), func(view state.View) (err error) {
		c, err = state.Coverage(view, id)
		return err
	}); err != nil {
		a.internal(w, "coverage", err)
		return
	}
	if c == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no coverage %s", id))
		return
	}
	if _, ok := a.needPayer(w, r); !ok {
		return
	}
	if _, height, err := a.records.SubmitTx(r.Context(), chain.TxCoverageSet, &chain.CoverageSet{ID: id, Patient: c.Patient, End: true}); err != nil {
		a.claimError(w, "coverage end", err)
	} else {
		a.answerCoverage(w, r, id, height, http.StatusOK)
	}
}

// payerClaims is GET /v1/payer/claims?from=N&limit=N: the claims filed with this node's payer,
// oldest first, from the payer's claim log on the ledger (state.PayerLog).
func (a *API) payerClaims(w http.ResponseWriter, r *http.Request) {
	from, limit, err := claimPageParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	self := a.records.ProviderID()
	out := ClaimsJSON{Claims: []ClaimJSON{}}
	err = a.records.View(r.Context(), func(view state.View) error {
		n, err := state.PayerLogLength(view, self)
		if err != nil {
			return err
		}
		entries, err := state.PayerLog(view, self, from, limit)
		if err != nil {
			return err
		}
		for _, e := range entries {
			c, err := state.Claim(view, e.Claim)
			if err != nil {
				return err
			}
			if c == nil {
				return fmt.Errorf("logged claim %s missing", e.Claim.Short())
			}
			out.Claims = append(out.Claims, claimJSON(c))
		}
		if next := from + uint64(len(entries)); next < n {
			out.Next = strconv.FormatUint(next, 10)
		}
		return nil
	})
	if err != nil {
		a.internal(w, "claims", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// VerifyJSON is the payer's check of a claim against its sealed FHIR Claim: OK, or the
// mismatches (grounds for denying it as content-mismatch).
type VerifyJSON struct {
	Claim      chain.Hash `json:"claim"`
	OK         bool       `json:"ok"`
	Mismatches []string   `json:"mismatches,omitempty"`
	Holder     string     `json:"holder,omitempty"`
}

// verifyClaim reads the claim's sealed FHIR Claim as the payer (an audited read for payment)
// and checks the ledger's lines against it with the pair's billing key.
func (a *API) verifyClaim(w http.ResponseWriter, r *http.Request) {
	id, ok := claimParam(w, r)
	if !ok {
		return
	}
	c, ok := a.loadClaim(w, r, id)
	if !ok {
		return
	}
	noteTarget(r, &c.Patient, &c.Record)
	self, ok := a.needPayer(w, r)
	if !ok {
		return
	}
	if c.Payer != self {
		writeError(w, http.StatusForbidden, fmt.Sprintf("claim %s is filed with payer %s, not this node's %s", id, c.Payer, self))
		return
	}
	key, err := a.billingKeys.get(c.Provider)
	if err == nil && key == nil {
		err = fmt.Errorf("this node holds no billing key for provider %s (HOME/billing-keys)", c.Provider)
	}
	if err != nil {
		writeError(w, http.StatusConflict, oneLine(err))
		return
	}
	read, err := a.records.Read(r.Context(), c.Record, state.PurposePayment, false, string(requestInfoOf(r).role))
	if err != nil {
		a.recordError(w, "read the sealed claim", err)
		return
	}
	var sched *state.ScheduleRecord
	if err := a.records.View(r.Context(), func(view state.View) (err error) {
		sched, err = state.Schedule(view, c.Payer, c.Provider)
		return err
	}); err != nil {
		a.internal(w, "verify", err)
		return
	}
	out := VerifyJSON{Claim: id, OK: true, Holder: read.Holder}
	if err := billing.VerifyClaim(key, read.JSON, ledgerSubmit(c, sched)); err != nil {
		var mm *billing.MismatchError
		out.OK = false
		if errors.As(err, &mm) {
			out.Mismatches = mm.Problems
		} else {
			out.Mismatches = []string{oneLine(err)}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// ledgerSubmit rebuilds the ClaimSubmit a claim was filed with from the ledger's record. The
// record keeps no key commitment: the ledger required the schedule's, and the pair's key is
// kept across revisions, so the current schedule's stands for it (a changed key shows as a
// mismatch).
func ledgerSubmit(c *state.ClaimRecord, s *state.ScheduleRecord) *chain.ClaimSubmit {
	cs := &chain.ClaimSubmit{ID: c.ID, Patient: c.Patient, Payer: c.Payer, Encounter: c.Encounter, Record: c.Record,
		ServiceDay: c.ServiceDay, DupPrint: c.DupPrint, Lines: make([]chain.ClaimLine, len(c.Lines))}
	if s != nil {
		cs.KeyCommit = s.Schedule.KeyCommit
	}
	for i, l := range c.Lines {
		cs.Lines[i] = chain.ClaimLine{Code: l.Code, BilledCents: l.BilledCents}
	}
	return cs
}

// LineDecisionJSON is the payer's decision on one line: amounts ("60.00") and a denial reason.
type LineDecisionJSON struct {
	Paid    string `json:"paid"`
	Patient string `json:"patient,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// DecideRequest is POST /v1/claims/{id}/decide: a decision per line, or Deny (a reason such as
// "content-mismatch") denying every line.
type DecideRequest struct {
	Lines []LineDecisionJSON `json:"lines,omitempty"`
	Deny  string             `json:"deny,omitempty"`
}

// ParseDenialReason parses a denial reason by its name (chain.DenialReason.String).
func ParseDenialReason(s string) (chain.DenialReason, error) {
	for r := chain.DenyNone; r <= chain.DenyOther; r++ {
		if r.String() == s {
			return r, nil
		}
	}
	var names []string
	for r := chain.DenyNotCovered; r <= chain.DenyOther; r++ {
		names = append(names, r.String())
	}
	return 0, fmt.Errorf("denial reason %q: want one of %s", s, strings.Join(names, ", "))
}

// decideClaim files the payer's decision on a claim filed with it.
func (a *API) decideClaim(w http.ResponseWriter, r *http.Request) {
	id, ok := claimParam(w, r)
	if !ok {
		return
	}
	var req DecideRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	if (len(req.Lines) > 0) == (req.Deny != "") {
		writeError(w, http.StatusBadRequest, "a decision gives lines or deny, one of them")
		return
	}
	c, ok := a.loadClaim(w, r, id)
	if !ok {
		return
	}
	noteTarget(r, &c.Patient, &c.Record)
	body := &chain.ClaimDecide{Claim: id}
	if req.Deny != "" {
		reason, err := ParseDenialReason(req.Deny)
		if err != nil || reason == chain.DenyNone {
			writeError(w, http.StatusBadRequest, "deny: "+oneLine(errors.Join(err, errors.New("a denial needs a reason"))))
			return
		}
		for range c.Lines {
			body.Lines = append(body.Lines, chain.LineDecision{Reason: reason})
		}
	} else {
		for i, l := range req.Lines {
			d, err := lineDecision(l)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("line %d: %s", i, oneLine(err)))
				return
			}
			body.Lines = append(body.Lines, d)
		}
	}
	if _, ok := a.needPayer(w, r); !ok {
		return
	}
	if _, _, err := a.records.SubmitTx(r.Context(), chain.TxClaimDecide, body); err != nil {
		a.claimError(w, "decision", err)
		return
	}
	if c, ok = a.loadClaim(w, r, id); ok {
		writeJSON(w, http.StatusOK, claimJSON(c))
	}
}

func lineDecision(l LineDecisionJSON) (chain.LineDecision, error) {
	var d chain.LineDecision
	var err error
	if d.PaidCents, err = billing.ParseAmount(l.Paid); err != nil {
		return d, fmt.Errorf("paid: %w", err)
	}
	if l.Patient != "" {
		if d.PatientCents, err = billing.ParseAmount(l.Patient); err != nil {
			return d, fmt.Errorf("patient: %w", err)
		}
	}
	if l.Reason != "" {
		if d.Reason, err = ParseDenialReason(l.Reason); err != nil {
			return d, err
		}
	}
	return d, nil
}
