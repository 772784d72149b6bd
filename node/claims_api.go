package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
)

// The claim endpoints (docs/api.md, "Claims"; docs/billing.md): a provider's node files claims
// with payers and shows them; a payer's node (a member of role payer running the same binary)
// publishes its schedules and coverage, lists the claims filed with it, verifies a claim against
// its sealed FHIR Claim and decides it. Every route needs the "claims" permission. Which side a
// node is on is the ledger's answer about its own member key, not a setting.

// attachClaims adds the claim endpoints; keys is the payer's billing key directory ("" on a node
// without a home: the payer endpoints that need a key then refuse).
func (a *API) attachClaims(keys string) {
	a.billingKeys = billingKeyStore{dir: keys}
	// Provider side.
	a.handle("POST /v1/claims", staff.PermClaims, a.fileClaim)
	a.handle("GET /v1/claims", staff.PermClaims, a.listClaims)
	a.handle("GET /v1/claims/filed", staff.PermClaims, a.filedClaims)
	a.handle("GET /v1/claims/{id}", staff.PermClaims, a.showClaim)
	a.handle("GET /v1/claims/{id}/eob", staff.PermClaims, a.claimEOB)
	// Payer side.
	a.handle("POST /v1/payer/schedules", staff.PermClaims, a.publishSchedule)
	a.handle("POST /v1/payer/coverage", staff.PermClaims, a.setCoverage)
	a.handle("POST /v1/payer/coverage/{id}/end", staff.PermClaims, a.endCoverage)
	a.handle("GET /v1/payer/claims", staff.PermClaims, a.payerClaims)
	a.handle("POST /v1/claims/{id}/verify", staff.PermClaims, a.verifyClaim)
	a.handle("POST /v1/claims/{id}/decide", staff.PermClaims, a.decideClaim)
}

// ClaimLineJSON is one line of a claim and its adjudication, in cents.
type ClaimLineJSON struct {
	Code    chain.Hash `json:"code_fingerprint"`
	Billed  uint64     `json:"billed_cents"`
	Allowed uint64     `json:"allowed_cents"`
	Paid    uint64     `json:"paid_cents"`
	Patient uint64     `json:"patient_cents"`
	Reason  string     `json:"reason,omitempty"`
}

// ClaimDisputeJSON is one dispute of a claim by its patient.
type ClaimDisputeJSON struct {
	Reason    string     `json:"reason"`
	Statement chain.Hash `json:"statement"`
	Height    uint64     `json:"height"`
	Resolved  uint64     `json:"resolved_height,omitempty"`
}

// ClaimJSON is a claim as the ledger holds it (state.ClaimRecord).
type ClaimJSON struct {
	ID               chain.Hash         `json:"id"`
	Provider         chain.Address      `json:"provider"`
	Payer            chain.Address      `json:"payer"`
	Patient          chain.Address      `json:"patient"`
	Encounter        chain.Hash         `json:"encounter"`
	Record           chain.Hash         `json:"record"`
	ServiceDay       uint32             `json:"service_day"`
	ServiceDate      string             `json:"service_date"`
	Status           string             `json:"status"`
	Settled          string             `json:"settled"`
	Flagged          bool               `json:"flagged"`
	VolumeToday      uint32             `json:"volume_today"`
	VolumeAverage    string             `json:"volume_average"`
	VolumeDays       uint32             `json:"volume_days"`
	Lines            []ClaimLineJSON    `json:"lines"`
	FiledHeight      uint64             `json:"filed_height"`
	FiledTime        int64              `json:"filed_time_ms"`
	ScheduleRevision uint32             `json:"schedule_revision"`
	DecidedHeight    uint64             `json:"decided_height,omitempty"`
	Disputes         []ClaimDisputeJSON `json:"disputes,omitempty"`
}

func claimJSON(c *state.ClaimRecord) ClaimJSON {
	j := ClaimJSON{
		ID: c.ID, Provider: c.Provider, Payer: c.Payer, Patient: c.Patient, Encounter: c.Encounter, Record: c.Record,
		ServiceDay: c.ServiceDay, ServiceDate: billing.DayDate(c.ServiceDay), Status: c.Status.String(), Settled: c.Settled.String(),
		Flagged: c.Flagged, VolumeToday: c.VolumeToday, VolumeDays: c.VolumeDays,
		VolumeAverage: fmt.Sprintf("%d.%03d", c.VolumeAverage/state.VolumeScale, c.VolumeAverage%state.VolumeScale),
		FiledHeight:   c.FiledHeight, FiledTime: c.FiledTime, ScheduleRevision: c.ScheduleRevision, DecidedHeight: c.DecidedHeight,
		Lines: make([]ClaimLineJSON, len(c.Lines)),
	}
	for i, l := range c.Lines {
		j.Lines[i] = ClaimLineJSON{Code: l.Code, Billed: l.BilledCents, Allowed: l.AllowedCents, Paid: l.PaidCents, Patient: l.PatientCents}
		if l.Reason != chain.DenyNone {
			j.Lines[i].Reason = l.Reason.String()
		}
	}
	for _, d := range c.Disputes {
		j.Disputes = append(j.Disputes, ClaimDisputeJSON{Reason: d.Reason.String(), Statement: d.Statement, Height: d.Height, Resolved: d.ResolvedHeight})
	}
	return j
}

// ClaimsJSON is a page of claims; Next is the from parameter of the next page ("" after the last).
type ClaimsJSON struct {
	Claims []ClaimJSON `json:"claims"`
	Next   string      `json:"next,omitempty"`
}

// ClaimErrorJSON is a claim transaction the ledger refused: Rule names the filing rule
// (docs/billing.md) that refused it.
type ClaimErrorJSON struct {
	Error string `json:"error"`
	Rule  string `json:"rule,omitempty"`
}

// claimRules maps the ledger's claim refusals to the rule they enforce and an HTTP status: a
// repeat of something done is a conflict, a claim that breaks a rule unprocessable.
var claimRules = []struct {
	err  error
	rule string
	code int
}{
	{state.ErrDuplicateClaim, "duplicate", http.StatusConflict},
	{state.ErrPhantomVisit, "phantom-visit", http.StatusUnprocessableEntity},
	{state.ErrMemberCare, "member-care", http.StatusUnprocessableEntity},
	{state.ErrNotCovered, "coverage", http.StatusUnprocessableEntity},
	{state.ErrNoSchedule, "schedule", http.StatusUnprocessableEntity},
	{state.ErrClaimRecord, "sealed-claim-record", http.StatusUnprocessableEntity},
	{state.ErrServiceDay, "service-day", http.StatusUnprocessableEntity},
	{state.ErrClaimRole, "role", http.StatusUnprocessableEntity},
	{state.ErrClaimExists, "id-used", http.StatusConflict},
	{state.ErrNoClaim, "unknown-claim", http.StatusNotFound},
	{state.ErrClaimState, "claim-status", http.StatusConflict},
	{state.ErrDecision, "decision", http.StatusUnprocessableEntity},
	{state.ErrCoverageLimit, "coverage-limit", http.StatusUnprocessableEntity},
}

// claimError answers a failed claim transaction. The ledger's refusals reach here wrapped by the
// mempool or the block's executor; the sentinel's text is matched too, in case a wrapper kept
// only the message.
func (a *API) claimError(w http.ResponseWriter, what string, err error) {
	for _, r := range claimRules {
		msg := err.Error()
		if i := strings.Index(msg, r.err.Error()); errors.Is(err, r.err) || i >= 0 {
			if i > 0 {
				msg = msg[i:] // the rule's own words, without the layers of the submission path
			}
			writeJSON(w, r.code, ClaimErrorJSON{Rule: r.rule,
				Error: fmt.Sprintf("%s refused by the ledger's %s rule: %s", what, r.rule, oneLine(errors.New(msg)))})
			return
		}
	}
	a.recordError(w, what, err)
}

// claimParam parses the {id} of a claim route.
func claimParam(w http.ResponseWriter, r *http.Request) (chain.Hash, bool) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("claim %q: want a claim id (64 hex digits)", r.PathValue("id")))
		return id, false
	}
	return id, true
}

// loadClaim reads claim id from the ledger; on failure it has answered.
func (a *API) loadClaim(w http.ResponseWriter, r *http.Request, id chain.Hash) (*state.ClaimRecord, bool) {
	var c *state.ClaimRecord
	err := a.records.View(r.Context(), func(view state.View) (err error) {
		c, err = state.Claim(view, id)
		return err
	})
	switch {
	case err != nil:
		a.internal(w, "claim", err)
		return nil, false
	case c == nil:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no claim %s on this node's ledger", id))
		return nil, false
	}
	return c, true
}

func newID() (chain.Hash, error) {
	var h chain.Hash
	_, err := rand.Read(h[:])
	return h, err
}

// FileClaimRequest is POST /v1/claims: the provider files Claim (FHIR R4 Claim JSON) with
// Payer for Patient's Encounter (the id of the Encounter record this provider anchored).
type FileClaimRequest struct {
	Payer     chain.Address   `json:"payer"`
	Patient   chain.Address   `json:"patient"`
	Encounter chain.Hash      `json:"encounter"`
	Claim     json.RawMessage `json:"claim"`
}

// FiledClaimJSON is the answer to a filed claim: the claim as the ledger adjudicated it, the
// sealed FHIR Claim's record and the payers its data key was wrapped for.
type FiledClaimJSON struct {
	Claim     ClaimJSON       `json:"claim"`
	Record    chain.Hash      `json:"record"`
	Height    uint64          `json:"height"`
	Tx        chain.Hash      `json:"tx"`
	WrappedTo []chain.Address `json:"wrapped_to"`
}

// fileClaim imports the FHIR Claim as a record of the patient (sealed to the patient and this
// provider; the payer gets the key once the claim names it), fingerprints its codes under the
// payer's billing key for this provider and files the ClaimSubmit, waiting for it to commit.
func (a *API) fileClaim(w http.ResponseWriter, r *http.Request) {
	var req FileClaimRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	if req.Payer == (chain.Address{}) || req.Patient == (chain.Address{}) || req.Encounter.IsZero() || len(req.Claim) == 0 {
		writeError(w, http.StatusBadRequest, "a claim needs payer, patient, encounter and claim (FHIR Claim JSON)")
		return
	}
	noteTarget(r, &req.Patient, &req.Encounter)
	r, cancel := importRequest(w, r)
	defer cancel()
	content, err := billing.ParseClaim(req.Claim)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "claim: "+oneLine(err))
		return
	}
	self := a.records.ProviderID()
	var sched *state.ScheduleRecord
	if err := a.records.View(r.Context(), func(view state.View) (err error) {
		sched, err = state.Schedule(view, req.Payer, self)
		return err
	}); err != nil {
		a.internal(w, "claim", err)
		return
	}
	if sched == nil {
		writeJSON(w, http.StatusUnprocessableEntity, ClaimErrorJSON{Rule: "schedule",
			Error: fmt.Sprintf("payer %s has published no schedule for this provider %s: nothing to bill under", req.Payer, self)})
		return
	}
	key, err := a.records.OpenBillingKey(&sched.Schedule, req.Payer)
	if err != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("payer %s's schedule (revision %d): %s", req.Payer, sched.Revision, oneLine(err)))
		return
	}
	// An exact duplicate first, to name the claim it repeats in full.
	dupPrint := billing.DupPrint(key, req.Patient, content.Day, content.Codes())
	var dup chain.Hash
	if err := a.records.View(r.Context(), func(view state.View) (err error) {
		dup, err = state.ClaimWithPrint(view, self, dupPrint)
		return err
	}); err != nil {
		a.internal(w, "claim", err)
		return
	}
	if !dup.IsZero() {
		writeJSON(w, http.StatusConflict, ClaimErrorJSON{Rule: "duplicate",
			Error: fmt.Sprintf("claim refused by the ledger's duplicate rule: this provider already filed claim %s for patient %s, day %s and the same codes",
				dup, req.Patient, billing.DayDate(content.Day))})
		return
	}
	id, err := newID()
	if err != nil {
		a.internal(w, "claim", err)
		return
	}
	ids := billing.ClaimIDs{ID: id, Patient: req.Patient, Payer: req.Payer, Encounter: req.Encounter}
	// Every filing rule but the sealed record's is checked before anything is anchored, so that a
	// claim the ledger would refuse leaves no Claim record behind (the record id is not known
	// yet: the claim's own id stands in, and the record check is skipped).
	ids.Record = id
	body, err := billing.BuildClaimSubmit(key, content, ids)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, oneLine(err))
		return
	}
	if err := a.records.View(r.Context(), func(view state.View) error {
		// The next block's time: after the head's, and about now (a test clock runs ahead).
		_, tip, err := state.Tip(view)
		if err != nil {
			return err
		}
		return state.PrecheckClaim(view, self, body, max(tip, time.Now().UnixMilli()))
	}); err != nil {
		a.claimError(w, "claim", err)
		return
	}
	var opts records.ImportOptions
	if strings.HasPrefix(content.PatientRef, "Patient/") {
		// The operator names the patient; the Claim's own reference is that patient's.
		opts.Links = []string{content.PatientRef}
	}
	res, err := a.records.ImportDocument(r.Context(), req.Patient, req.Claim, opts)
	if err != nil {
		a.recordError(w, "import the claim", err)
		return
	}
	var record chain.Hash
	for _, rec := range res.Records {
		if rec.ResourceType == "Claim" {
			record = rec.ID
		}
	}
	if record.IsZero() {
		writeError(w, http.StatusUnprocessableEntity, "the claim document kept no Claim record for the patient")
		return
	}
	ids.Record = record
	if body, err = billing.BuildClaimSubmit(key, content, ids); err != nil {
		writeError(w, http.StatusUnprocessableEntity, oneLine(err))
		return
	}
	tx, height, err := a.records.SubmitTx(r.Context(), chain.TxClaimSubmit, body)
	if err != nil {
		a.claimError(w, "claim", err)
		return
	}
	// The payer reads the claim from this node anyway (wrapped on the fly); wrapping now also
	// lets replicas serve it.
	wrapped, err := a.records.WrapForClaim(r.Context(), record)
	if err != nil {
		a.log.Warn("api: wrap the claim's key for its payer", "record", record.Short(), "err", err)
	}
	// The ledger lists claims by patient and payer only; the practice's claims page reads this.
	if a.billing != nil {
		if err := a.billing.book.noteClaim(id, time.Now()); err != nil {
			a.log.Error("api: billing book", "err", err)
		}
	}
	c, ok := a.loadClaim(w, r, id)
	if !ok {
		return
	}
	writeJSON(w, http.StatusCreated, FiledClaimJSON{Claim: claimJSON(c), Record: record, Height: height, Tx: tx, WrappedTo: wrapped})
}

// maxClaimPage bounds a page of claims, and claimLogScan the patient-log entries one page reads.
const (
	maxClaimPage = 200
	claimLogScan = 2000
)

// claimPageParams reads from and limit.
func claimPageParams(r *http.Request) (uint64, int, error) {
	q := r.URL.Query()
	var from uint64
	limit := maxClaimPage
	var err error
	if s := q.Get("from"); s != "" {
		if from, err = strconv.ParseUint(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("from %q: want a number", s)
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > maxClaimPage {
			return 0, 0, fmt.Errorf("limit %q: want 1..%d", s, maxClaimPage)
		}
	}
	return from, limit, nil
}

// listClaims is GET /v1/claims?patient=ADDR: the claims filed in the patient's name that this
// node's member filed or is the payer of, from the patient's log (state.PatientLog, which proves
// none is hidden); from and limit page through the log. Without patient it is the payer's inbox
// (GET /v1/payer/claims).
func (a *API) listClaims(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query().Get("patient")
	if p == "" {
		a.payerClaims(w, r)
		return
	}
	patient, err := chain.ParseAddress(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("patient %q: want a patient id (40 hex digits)", p))
		return
	}
	noteTarget(r, &patient, nil)
	from, limit, err := claimPageParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	self := a.records.ProviderID()
	out := ClaimsJSON{Claims: []ClaimJSON{}}
	err = a.records.View(r.Context(), func(view state.View) error {
		entries, err := state.PatientLog(view, patient, from, claimLogScan)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if len(out.Claims) == limit {
				out.Next = strconv.FormatUint(from+uint64(i), 10)
				return nil
			}
			if e.Kind != state.LogClaim {
				continue
			}
			c, err := state.Claim(view, e.ID)
			if err != nil {
				return err
			}
			if c != nil && (c.Provider == self || c.Payer == self) {
				out.Claims = append(out.Claims, claimJSON(c))
			}
		}
		if len(entries) == claimLogScan {
			out.Next = strconv.FormatUint(from+claimLogScan, 10)
		}
		return nil
	})
	if err != nil {
		a.internal(w, "claims", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// showClaim is GET /v1/claims/{id}: the claim as the ledger holds it.
func (a *API) showClaim(w http.ResponseWriter, r *http.Request) {
	id, ok := claimParam(w, r)
	if !ok {
		return
	}
	c, ok := a.loadClaim(w, r, id)
	if !ok {
		return
	}
	noteTarget(r, &c.Patient, &c.Record)
	writeJSON(w, http.StatusOK, claimJSON(c))
}

// claimEOB is GET /v1/claims/{id}/eob: the FHIR ExplanationOfBenefit of the claim's outcome on
// the ledger. The service codes are the sealed Claim's, so building it reads that record (an
// audited read, for payment) as the provider or the payer; the amounts are the ledger's.
func (a *API) claimEOB(w http.ResponseWriter, r *http.Request) {
	id, ok := claimParam(w, r)
	if !ok {
		return
	}
	c, ok := a.loadClaim(w, r, id)
	if !ok {
		return
	}
	noteTarget(r, &c.Patient, &c.Record)
	out, err := a.claimOutcome(r.Context(), c, string(requestInfoOf(r).role))
	if err != nil {
		a.recordError(w, "explanation of benefit", err)
		return
	}
	eob, err := billing.ExplanationOfBenefitResource(*out)
	if err != nil {
		a.internal(w, "explanation of benefit", err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(eob)
}

// claimOutcome gathers what the FHIR outcome of c says: the ledger's adjudication, the codes of
// the sealed Claim, the schedule's currency, the coverage of the service day and the decision's
// block time.
func (a *API) claimOutcome(ctx context.Context, c *state.ClaimRecord, role string) (*billing.ClaimOutcome, error) {
	read, err := a.records.Read(ctx, c.Record, state.PurposePayment, false, role)
	if err != nil {
		return nil, err
	}
	content, err := billing.ParseClaim(read.JSON)
	if err != nil {
		return nil, fmt.Errorf("%w: the sealed claim: %w", records.ErrBadRequest, err)
	}
	o := &billing.ClaimOutcome{Claim: c.ID, PatientID: c.Patient.String(), Provider: c.Provider, Payer: c.Payer,
		ServiceDay: c.ServiceDay, Filed: msTime(c.FiledTime), Currency: content.Currency}
	err = a.records.View(ctx, func(view state.View) error {
		s, err := state.Schedule(view, c.Payer, c.Provider)
		if err != nil {
			return err
		}
		if s != nil {
			o.Currency = s.Schedule.Currency
		}
		covs, err := state.Coverages(view, c.Payer, c.Patient)
		if err != nil {
			return err
		}
		for _, cv := range covs {
			if cv.CoversDay(c.ServiceDay) {
				o.Coverage = cv.ID
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case c.Settled == state.ClaimAdjudicated:
		o.Decided = o.Filed
	case c.DecidedHeight != 0:
		b, err := a.b.Chain().Block(c.DecidedHeight)
		if err != nil {
			return nil, err
		}
		o.Decided = msTime(b.Header.Time)
	}
	if d := c.Dispute(); d != nil {
		o.Dispute = d.Reason
	}
	for i, l := range c.Lines {
		ol := billing.OutcomeLine{Sequence: i + 1, BilledCents: l.BilledCents, AllowedCents: l.AllowedCents,
			PaidCents: l.PaidCents, PatientCents: l.PatientCents, Denial: l.Reason}
		if i < len(content.Lines) {
			ol.System, ol.Code = content.Lines[i].System, content.Lines[i].Code
		}
		o.Lines = append(o.Lines, ol)
	}
	return o, nil
}

// msTime is a block time (Unix ms) as a time.
func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
