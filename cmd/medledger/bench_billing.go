package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
)

// The claims part of the billing phase (docs/bench.md, "Billing phase"): a payer joins the
// running network as a node of its own, publishes a fee schedule for node0's practice and covers
// its patients; node0 anchors an encounter per claim (the phantom-visit rule wants one) and files
// the claims concurrently; the payer decides the ones its schedule cannot.

const (
	claimWorkers      = 8 // concurrent claim requests to node0 (and decisions to the payer)
	claimsPerPatient  = 4 // one per code set below: the duplicate rule wants distinct sets per day
	claimDuplicates   = 5 // exact re-filings, each must be refused
	claimSetupWorkers = 8 // concurrent coverage and encounter requests
)

// claimCodeSets are a patient's claims of one day: the schedule prices 99213 and 93000, so the
// first three are adjudicated by rule as they are filed; 36415 has no fee, so that claim is
// pended until the payer's signed decision.
var claimCodeSets = [claimsPerPatient][]struct{ code, billed string }{
	{{"99213", "90.00"}},
	{{"93000", "45.00"}},
	{{"99213", "95.00"}, {"93000", "45.00"}},
	{{"36415", "25.00"}},
}

// billingReport is the billing phase's outcome (the "billing" member of --json).
type billingReport struct {
	Boundary []boundaryPoint `json:"period_boundary,omitempty"`

	Claims   int `json:"claims"`
	Patients int `json:"patients"`
	Workers  int `json:"workers"`
	// Setup: the payer's node joining and registering, its schedule and coverages, and node0's
	// encounters (not part of the rates).
	PayerJoinSeconds float64 `json:"payer_join_seconds"`
	SetupSeconds     float64 `json:"setup_seconds"`

	// Filing: POST /v1/claims to node0, answered once the ClaimSubmit committed.
	FileSeconds   float64 `json:"file_seconds"`
	FiledPerSec   float64 `json:"filed_per_sec"`
	FileP50Ms     float64 `json:"file_p50_ms"`
	FileP99Ms     float64 `json:"file_p99_ms"`
	ByRule        int     `json:"adjudicated_by_rule"` // final when filed
	Pended        int     `json:"pended"`
	Decided       int     `json:"decided"` // the payer's signed decisions, committed
	DecideSeconds float64 `json:"decide_seconds"`
	DecidedPerSec float64 `json:"decided_per_sec"`
	// AdjudicatedPerSec is every claim final (by rule or decided) ÷ the time from the first
	// filing to the last decision.
	AdjudicatedSeconds float64 `json:"adjudicated_seconds"`
	AdjudicatedPerSec  float64 `json:"adjudicated_per_sec"`
	// Node CPU (the authorities and the payer's node) over filing and deciding, per claim.
	NodeCPUSeconds float64 `json:"node_cpu_seconds"`
	CPUPerClaimMs  float64 `json:"node_cpu_ms_per_claim"`

	Refused           int    `json:"refused"` // refusals of claims meant to pass (should be 0)
	FirstRefusal      string `json:"first_refusal,omitempty"`
	Duplicates        int    `json:"duplicates_filed"`
	DuplicatesRefused int    `json:"duplicates_refused"`
	DuplicateAnswer   string `json:"duplicate_answer,omitempty"`
	Note              string `json:"note,omitempty"`
}

// claimBench drives the claims part.
type claimBench struct {
	nw        *procnet.Network
	progress  io.Writer
	home0     string
	payerHome string
	practice  chain.Address
	payer     chain.Address
	payerNode *fullNode
	day       string // service date, YYYY-MM-DD (UTC, as block time counts days)
}

// benchClaim is one claim to file.
type benchClaim struct {
	patient   *benchPatient
	set       int
	encounter chain.Hash
	doc       []byte
}

// runClaims runs the claims part on the running network; the payer's node is stopped before it
// returns.
func runClaims(ctx context.Context, nw *procnet.Network, g *chain.Genesis, progress io.Writer, n int) (rep *billingReport, err error) {
	rep = &billingReport{Workers: claimWorkers}
	cb := &claimBench{nw: nw, progress: progress, home0: nw.Home(0), payerHome: filepath.Join(nw.Dir, "payer")}
	st, err := nodeStatus(ctx, cb.home0)
	if err != nil {
		return nil, err
	}
	if st.ProviderID == nil {
		return nil, fmt.Errorf("node0 has no provider id")
	}
	cb.practice = *st.ProviderID

	fmt.Fprintf(progress, "billing: a payer's node joins (licence from the testnet's payers registry)...\n")
	t0 := time.Now()
	if _, err := (memberHome{Name: "bench-payer", Role: chain.RolePayer, IssuerKey: testnet.PayersKeyFile(nw.Dir), Number: "BENCH-PAYER-1"}).write(nw, cb.payerHome); err != nil {
		return nil, fmt.Errorf("payer home: %w", err)
	}
	payerNode, err := startFullNode(nw.Bin, cb.payerHome, filepath.Join(nw.Dir, "payer.log"), nil)
	if err != nil {
		return nil, err
	}
	cb.payerNode = payerNode
	defer func() {
		if serr := payerNode.stop(); serr != nil && err == nil {
			rep.Note = joinNote(rep.Note, serr.Error())
		}
	}()
	// The node registers itself from its licence once the members let it in.
	err = procnet.WaitFor(ctx, 5*time.Minute, 200*time.Millisecond, "the payer registered", func(ctx context.Context) (bool, error) {
		if payerNode.exited() {
			return false, procnet.Permanent(fmt.Errorf("the payer's node exited (%v); see %s", payerNode.err, filepath.Join(nw.Dir, "payer.log")))
		}
		ps, err := nodeStatus(ctx, cb.payerHome)
		if err != nil {
			return false, nil
		}
		if ps.ProviderID != nil {
			cb.payer = *ps.ProviderID
		}
		return ps.Role != nil && *ps.Role == chain.RolePayer, nil
	})
	if err != nil {
		return nil, err
	}
	rep.PayerJoinSeconds = time.Since(t0).Seconds()
	fmt.Fprintf(progress, "  payer %s registered after %.1f s\n", cb.payer, rep.PayerJoinSeconds)

	t0 = time.Now()
	claims, err := cb.setup(ctx, g, n, rep)
	if err != nil {
		return nil, err
	}
	rep.SetupSeconds = time.Since(t0).Seconds()
	if err := cb.file(ctx, claims, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// post sends in as JSON to the API of the node at home and decodes the answer into out.
func post(ctx context.Context, home, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	data, err := apiDo(ctx, home, http.MethodPost, path, body, "application/json", 2*time.Minute)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// forEach runs f on items 0..n-1 with w workers and returns the first error.
func forEach(ctx context.Context, n, w int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		next     int
		firstErr error
	)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// setup registers the patients, publishes the payer's schedule, covers every patient and
// anchors one encounter per claim at node0.
func (cb *claimBench) setup(ctx context.Context, g *chain.Genesis, n int, rep *billingReport) ([]*benchClaim, error) {
	k := (n + claimsPerPatient - 1) / claimsPerPatient
	rep.Patients = k
	pats := make([]*benchPatient, k)
	for i := range pats {
		p, err := newBenchPatient(i)
		if err != nil {
			return nil, err
		}
		p.fhirID = fmt.Sprintf("claim-%05d", i)
		pats[i] = p
	}
	enroller, err := node.ReadKeyFile(node.Resolve(cb.home0, node.DefaultConfig().Records.ProviderKey))
	if err != nil {
		return nil, err
	}
	rb := &recBench{nw: cb.nw, chainID: g.ChainID, progress: cb.progress, enroller: enroller}
	fmt.Fprintf(cb.progress, "billing: registering %d patients, the payer's schedule and coverage, %d encounters...\n", k, n)
	if err := rb.registerPatients(ctx, pats); err != nil {
		return nil, err
	}
	var sched node.ScheduleJSON
	if err := post(ctx, cb.payerHome, "/v1/payer/schedules", node.ScheduleRequest{Provider: cb.practice, Currency: "USD", CoinsurancePct: 20,
		Fees: []node.FeeJSON{{Code: "99213", Allowed: "75.00"}, {Code: "93000", Allowed: "40.00"}}}, &sched); err != nil {
		return nil, fmt.Errorf("payer schedule: %w", err)
	}
	now := time.Now().UTC()
	cb.day = now.Format(time.DateOnly)
	if now.Add(10*time.Minute).Format(time.DateOnly) != cb.day {
		// Encounters anchored before midnight and claims filed after would still pass; the
		// note only explains a service day that differs from the filing day.
		rep.Note = joinNote(rep.Note, "run close to UTC midnight: service day "+cb.day)
	}
	from := now.AddDate(0, 0, -30).Format(time.DateOnly)
	err = forEach(ctx, k, claimSetupWorkers, func(ctx context.Context, i int) error {
		var cov node.CoverageJSON
		if err := post(ctx, cb.payerHome, "/v1/payer/coverage", node.CoverageRequest{Patient: pats[i].addr, From: from}, &cov); err != nil {
			return fmt.Errorf("coverage of %s: %w", pats[i].addr, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	claims := make([]*benchClaim, 0, n)
	encs := make([][]chain.Hash, k)
	err = forEach(ctx, k, claimSetupWorkers, func(ctx context.Context, i int) error {
		m := min(claimsPerPatient, n-i*claimsPerPatient)
		var out struct {
			Records []struct {
				ID           chain.Hash `json:"id"`
				ResourceType string     `json:"resourceType"`
			} `json:"records"`
		}
		data, err := apiDo(ctx, cb.home0, http.MethodPost, "/v1/patients/"+pats[i].addr.String()+"/records", encounterBundle(pats[i].fhirID, m, now), "application/json", 2*time.Minute)
		if err == nil {
			err = json.Unmarshal(data, &out)
		}
		if err != nil {
			return fmt.Errorf("encounters of %s: %w", pats[i].addr, err)
		}
		for _, r := range out.Records {
			if r.ResourceType == "Encounter" {
				encs[i] = append(encs[i], r.ID)
			}
		}
		if len(encs[i]) != m {
			return fmt.Errorf("encounters of %s: %d anchored, want %d", pats[i].addr, len(encs[i]), m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, p := range pats {
		for j, enc := range encs[i] {
			claims = append(claims, &benchClaim{patient: p, set: j, encounter: enc, doc: claimDoc(fmt.Sprintf("%s-%d", p.fhirID, j), p.fhirID, cb.day, j)})
		}
	}
	return claims, nil
}

// encounterBundle is the patient's Patient resource and m finished ambulatory Encounters of at.
func encounterBundle(fhirID string, m int, at time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Patient","id":%q,"gender":"unknown"}}`, benchUUID(0), fhirID)
	start := at.Add(-time.Minute).Format(time.RFC3339)
	for j := range m {
		fmt.Fprintf(&b, `,{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Encounter","status":"finished",`+
			`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"},`+
			`"subject":{"reference":"Patient/%s"},"period":{"start":%q,"end":%q}}}`, benchUUID(j+1), fhirID, start, start)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// claimDoc is a professional FHIR Claim for the patient on day (YYYY-MM-DD) with code set set.
func claimDoc(id, fhirID, day string, set int) []byte {
	var items []string
	for i, it := range claimCodeSets[set] {
		items = append(items, fmt.Sprintf(`{"sequence":%d,"productOrService":{"coding":[{"system":"http://www.ama-assn.org/go/cpt","code":%q}]},"servicedDate":%q,"net":{"value":%s,"currency":"USD"}}`,
			i+1, it.code, day, it.billed))
	}
	return fmt.Appendf(nil, `{"resourceType":"Claim","id":%q,"status":"active",`+
		`"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/claim-type","code":"professional"}]},`+
		`"use":"claim","patient":{"reference":"Patient/%s"},"created":%q,"provider":{"reference":"Organization/practice"},`+
		`"priority":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/processpriority","code":"normal"}]},`+
		`"insurance":[{"sequence":1,"focal":true,"coverage":{"reference":"Coverage/c1"}}],"item":[%s]}`,
		id, fhirID, day, strings.Join(items, ","))
}

// cpu is the CPU time of every authority and the payer's node so far.
func (cb *claimBench) cpu() time.Duration {
	var all time.Duration
	for i := range cb.nw.N {
		if u, err := cb.nw.Usage(i); err == nil {
			all += u.CPU
		}
	}
	if cb.payerNode != nil && !cb.payerNode.exited() {
		if u, err := procnet.ReadUsage(cb.payerNode.cmd.Process.Pid); err == nil {
			all += u.CPU
		}
	}
	return all
}

// file files every claim at node0, then the payer decides the pended ones; then the duplicates.
func (cb *claimBench) file(ctx context.Context, claims []*benchClaim, rep *billingReport) error {
	rep.Claims = len(claims)
	fmt.Fprintf(cb.progress, "billing: filing %d claims at node0, %d concurrent requests...\n", len(claims), claimWorkers)
	lat := &latencies{}
	var mu sync.Mutex
	var pended []chain.Hash
	cpu0 := cb.cpu()
	start := time.Now()
	err := forEach(ctx, len(claims), claimWorkers, func(ctx context.Context, i int) error {
		c := claims[i]
		t0 := time.Now()
		var out node.FiledClaimJSON
		err := post(ctx, cb.home0, "/v1/claims", node.FileClaimRequest{Payer: cb.payer, Patient: c.patient.addr, Encounter: c.encounter, Claim: c.doc}, &out)
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			rep.Refused++
			if rep.FirstRefusal == "" {
				rep.FirstRefusal = trimLog(err.Error())
			}
			return nil // counted: the bench reports refusals, it does not stop at one
		}
		lat.add(d)
		switch out.Claim.Status {
		case "adjudicated-by-rule":
			rep.ByRule++
		case "pended":
			rep.Pended++
			pended = append(pended, out.Claim.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.FileSeconds = time.Since(start).Seconds()
	rep.FiledPerSec = float64(len(claims)-rep.Refused) / rep.FileSeconds
	rep.FileP50Ms, rep.FileP99Ms, _, _ = lat.summary()
	fmt.Fprintf(cb.progress, "  %d filed in %.1f s (%.1f claims/s; p50 %.0f ms, p99 %.0f ms): %d adjudicated by rule, %d pended, %d refused %s\n",
		len(claims)-rep.Refused, rep.FileSeconds, rep.FiledPerSec, rep.FileP50Ms, rep.FileP99Ms, rep.ByRule, rep.Pended, rep.Refused, rep.FirstRefusal)

	// The payer decides what its schedule could not: 36415 billed 25.00, 20.00 paid, 5.00 the
	// patient's. Its node must hold the claim first.
	d0 := time.Now()
	err = forEach(ctx, len(pended), claimWorkers, func(ctx context.Context, i int) error {
		path := "/v1/claims/" + pended[i].String() + "/decide"
		req := node.DecideRequest{Lines: []node.LineDecisionJSON{{Paid: "20.00", Patient: "5.00"}}}
		return procnet.WaitFor(ctx, time.Minute, 100*time.Millisecond, "decision on "+pended[i].Short(), func(ctx context.Context) (bool, error) {
			var c node.ClaimJSON
			if err := post(ctx, cb.payerHome, path, req, &c); err != nil {
				if strings.Contains(err.Error(), "HTTP 404") {
					return false, nil // not at the payer's node yet
				}
				return false, procnet.Permanent(err)
			}
			mu.Lock()
			rep.Decided++
			mu.Unlock()
			return true, nil
		})
	})
	if err != nil {
		rep.Note = joinNote(rep.Note, "decisions: "+trimLog(err.Error()))
	}
	end := time.Now()
	rep.DecideSeconds = end.Sub(d0).Seconds()
	if rep.Decided > 0 {
		rep.DecidedPerSec = float64(rep.Decided) / rep.DecideSeconds
	}
	rep.AdjudicatedSeconds = end.Sub(start).Seconds()
	rep.AdjudicatedPerSec = float64(rep.ByRule+rep.Decided) / rep.AdjudicatedSeconds
	rep.NodeCPUSeconds = (cb.cpu() - cpu0).Seconds()
	if final := rep.ByRule + rep.Decided; final > 0 {
		rep.CPUPerClaimMs = 1000 * rep.NodeCPUSeconds / float64(final)
	}
	fmt.Fprintf(cb.progress, "  %d decided by the payer in %.1f s (%.1f/s); all %d final %.1f s after the first filing (%.1f claims/s); node CPU %.1f ms per claim\n",
		rep.Decided, rep.DecideSeconds, rep.DecidedPerSec, rep.ByRule+rep.Decided, rep.AdjudicatedSeconds, rep.AdjudicatedPerSec, rep.CPUPerClaimMs)

	// Exact duplicates: the same claim document for the same patient, day and codes.
	for i := 0; i < claimDuplicates && i < len(claims); i++ {
		c := claims[i]
		rep.Duplicates++
		err := post(ctx, cb.home0, "/v1/claims", node.FileClaimRequest{Payer: cb.payer, Patient: c.patient.addr, Encounter: c.encounter, Claim: c.doc}, nil)
		if err != nil {
			rep.DuplicatesRefused++
			rep.DuplicateAnswer = trimLog(err.Error())
		}
	}
	fmt.Fprintf(cb.progress, "  %d of %d exact duplicates refused: %s\n", rep.DuplicatesRefused, rep.Duplicates, rep.DuplicateAnswer)
	return nil
}

// printBillingRows adds the billing phase's figures to the main table (issue 13's "Done means").
func printBillingRows(row func(figure, value, target, ok string), b *billingReport) {
	if b == nil {
		row("billing: claims/s, period boundary", "not measured (--claims 0, --billing-memberships 0)", "", "")
		return
	}
	if b.Claims > 0 {
		row(fmt.Sprintf("claims filed at node0 (%d concurrent, answered when committed)", b.Workers),
			fmt.Sprintf("%.1f /s (%d in %.1f s; p50 %.0f ms, p99 %.0f ms)", b.FiledPerSec, b.Claims-b.Refused, b.FileSeconds, b.FileP50Ms, b.FileP99Ms), "", "")
		row("claims adjudicated (by rule when filed, or the payer's signed decision)",
			fmt.Sprintf("%.1f /s (%d by rule, %d of %d pended decided at %.1f /s; all final %.1f s after the first filing); node CPU %.1f ms per claim",
				b.AdjudicatedPerSec, b.ByRule, b.Decided, b.Pended, b.DecidedPerSec, b.AdjudicatedSeconds, b.CPUPerClaimMs), "", "")
		refused := fmt.Sprint(b.Refused)
		if b.FirstRefusal != "" {
			refused += " (first: " + b.FirstRefusal + ")"
		}
		row("claims refused; exact duplicates refused", fmt.Sprintf("%s; %d of %d", refused, b.DuplicatesRefused, b.Duplicates),
			"0; all", met(b.Refused == 0 && b.DuplicatesRefused == b.Duplicates, true))
	}
	if ps := b.Boundary; len(ps) > 0 {
		row(fmt.Sprintf("period boundary at %d → %d memberships", ps[0].Memberships, ps[len(ps)-1].Memberships), boundarySummary(ps),
			"does not grow with memberships", met(boundaryFlat(ps), true))
	}
	if b.Note != "" {
		row("billing note", b.Note, "", "")
	}
}
