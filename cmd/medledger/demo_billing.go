package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/testnet"
	"github.com/medledger/medledger/testnet/procnet"
)

// The demo story's money chapter (docs/billing.md): a membership plan, a family enrolling with
// an agreement the subscriber signs in their wallet, a payment; an insurer joining as a payer;
// claims checked by the ledger's filing rules as they are filed; and a patient's dispute. Like
// the rest of the story it prints ids, amounts, heights and outcomes, never a name.

// demoPayerDir is the payer node's home under the network directory.
const demoPayerDir = "payer"

// storyMoney runs the chapter with patients 1 (insured, not a member), 2 (the family's
// subscriber) and 3 (the family's child). It returns the payer's node, still running, for the
// demo to stop with the others (nil if it did not start).
func (s *story) storyMoney(ctx context.Context, patients []*storyPatient) (*fullNode, error) {
	if len(patients) < 3 {
		return nil, nil
	}
	p1, p2, p3 := patients[0], patients[1], patients[2]
	pr := s.practice

	// A plan.
	var plan node.PlanJSON
	req, _ := json.Marshal(node.PlanRequest{Label: "Family monthly", Currency: "USD", Period: "monthly", Family: true, MaxMembers: 6,
		Tiers: []node.TierJSON{{Label: "adult", Price: "89.00"}, {Label: "child", Price: "39.00"}}, FamilyCap: "200.00",
		Covered: []string{"99213"}, GraceDays: 10})
	if err := s.callJSON(ctx, pr, http.MethodPost, "/v1/billing/plans", req, "application/json", &plan); err != nil {
		return nil, fmt.Errorf("publishing a plan: %w", err)
	}
	s.say("The practice publishes a direct-primary-care membership plan: %q, adults 89.00 and children 39.00 a month (at most 200.00), covering office visits (CPT 99213); plan %s. What is due is derived from block time on read: no job runs at month end.",
		plan.Label, short(plan.ID.String()))

	// The family enrols: the practice drafts, the subscriber signs in their wallet.
	req, _ = json.Marshal(node.AgreementRequest{Plan: plan.ID, Subscriber: p2.wallet.PatientID(),
		Members: []node.MemberJSON{{Patient: p2.wallet.PatientID(), Tier: "adult"}, {Patient: p3.wallet.PatientID(), Tier: "child"}}})
	code, _, data, err := s.call(ctx, pr, http.MethodPost, "/v1/billing/agreements", req, "application/json")
	if err != nil {
		return nil, err
	}
	if code/100 != 2 {
		return nil, fmt.Errorf("drafting the agreement: HTTP %d: %s", code, apiReason(data))
	}
	af, err := billing.ParseAgreementFile(data)
	if err != nil {
		return nil, fmt.Errorf("the drafted agreement: %w", err)
	}
	if err := checkSubscriber(af, p2.wallet.PatientID()); err != nil {
		return nil, err
	}
	if err := af.Sign(p2.wallet.SigningKey()); err != nil {
		return nil, err
	}
	signed, err := encodeAgreement(af)
	if err != nil {
		return nil, err
	}
	var m node.MembershipJSON
	if err := s.callJSON(ctx, pr, http.MethodPost, "/v1/billing/memberships", signed, "application/json", &m); err != nil {
		return nil, fmt.Errorf("enrolling the family: %w", err)
	}
	s.say("Patients 2 and 3 enrol as a family: the practice drafts the agreement, patient 2 reads it and signs it in their wallet (the signature covers the ledger's own bytes), the practice submits it. Membership %s at height %d: %s %s a month.",
		short(m.ID.String()), m.EnrolledHeight, m.Price, m.Currency)
	s.detail("statement now: %s, %d invoice(s), balance %s", m.Statement.Status, len(m.Statement.Invoices), m.Statement.Balance)

	// The first invoice is paid.
	req, _ = json.Marshal(node.PaymentRequest{Reference: fmt.Sprintf("demo_ch_%d", time.Now().UnixNano()),
		Splits: []node.PaymentSplitJSON{{Membership: m.ID, Amount: m.Statement.Balance}}})
	var pay node.PaymentJSON
	if err := s.callJSON(ctx, pr, http.MethodPost, "/v1/billing/payments", req, "application/json", &pay); err != nil {
		return nil, fmt.Errorf("recording the payment: %w", err)
	}
	if err := s.callJSON(ctx, pr, http.MethodGet, "/v1/billing/memberships/"+m.ID.String(), nil, "", &m); err != nil {
		return nil, err
	}
	paidThrough := "-"
	if m.Statement.PaidThrough != nil {
		paidThrough = m.Statement.PaidThrough.UTC().Format(time.DateOnly)
	}
	s.say("Patient 2 pays %s by card; the practice records it with the processor's reference (kept at its node; the ledger holds only its hash, so it cannot be recorded twice). Statement: %s, balance %s, paid through %s.",
		pay.Total, m.Statement.Status, m.Statement.Balance, paidThrough)

	// An insurer joins as a payer.
	payer, payerID, err := s.startPayer(ctx)
	if err != nil {
		return payer, err
	}
	s.say("An insurer joins: a full node (%s) with a payer licence from the testnet's payers' registry, admitted as a candidate, synced to the head and registered as a payer (member id %s).",
		filepath.Join(s.nw.Dir, demoPayerDir), short(payerID.String()))
	var sched node.ScheduleJSON
	req, _ = json.Marshal(node.ScheduleRequest{Provider: s.provider[pr], Currency: "USD", CoinsurancePct: 20,
		Fees: []node.FeeJSON{{Code: "99213", Allowed: "75.00"}, {Code: "93000", Allowed: "40.00"}}})
	if err := payerCall(ctx, payer, http.MethodPost, "/v1/payer/schedules", req, &sched); err != nil {
		return payer, fmt.Errorf("the payer's schedule: %w", err)
	}
	from := time.Now().UTC().AddDate(0, 0, -30).Format(time.DateOnly)
	for _, p := range []*storyPatient{p1, p2} {
		var cov node.CoverageJSON
		req, _ = json.Marshal(node.CoverageRequest{Patient: p.wallet.PatientID(), From: from})
		if err := payerCall(ctx, payer, http.MethodPost, "/v1/payer/coverage", req, &cov); err != nil {
			return payer, fmt.Errorf("the payer's coverage: %w", err)
		}
	}
	s.detail("its fee schedule for the practice (revision %d, %d fees, 20%% coinsurance) is on the ledger only as fingerprints under a key the insurer and the practice share; patients 1 and 2 are covered from %s", sched.Revision, sched.Fees, from)

	// Patient 1 is seen today; the practice files a claim.
	enc1, err := s.visit(ctx, p1)
	if err != nil {
		return payer, err
	}
	claim := demoClaim(p1, "visit-1", "99213", "90.00", "93000", "45.00")
	filed, err := s.fileClaim(ctx, payerID, p1, enc1, claim)
	if err != nil {
		return payer, fmt.Errorf("filing patient 1's claim: %w", err)
	}
	var billed, paid, owed uint64
	for _, l := range filed.Claim.Lines {
		billed, paid, owed = billed+l.Billed, paid+l.Paid, owed+l.Patient
	}
	s.say("Patient 1 (insured, not a member) is seen today: the practice anchors the visit's Encounter (record %s) and files a claim with the insurer for an office visit and an ECG. The ledger checks it at once: no duplicate, a real visit, no membership covering it; adjudicated by the published schedule (%s) at height %d: billed %s, insurer pays %s, patient owes %s.",
		short(enc1.String()), filed.Claim.Status, filed.Height, cents(billed), cents(paid), cents(owed))
	s.detail("claim %s; its FHIR Claim is sealed to patient 1, the practice and the insurer", short(filed.Claim.ID.String()))

	// The same claim again, and a member's covered visit billed to the insurer.
	if reason, err := s.refusedClaim(ctx, payerID, p1, enc1, claim); err != nil {
		return payer, err
	} else {
		s.say("The practice files the same claim again: refused (%s).", reason)
	}
	enc2, err := s.visit(ctx, p2)
	if err != nil {
		return payer, err
	}
	if reason, err := s.refusedClaim(ctx, payerID, p2, enc2, demoClaim(p2, "visit-2", "99213", "90.00")); err != nil {
		return payer, err
	} else {
		s.say("Patient 2 is seen for an office visit their family membership covers; a claim to the insurer for it is refused (%s): no double billing of member care.", reason)
	}

	// Patient 1 disputes the claim from their wallet.
	if err := s.dispute(ctx, p1, filed.Claim.ID); err != nil {
		return payer, err
	}
	var seen [2]node.ClaimJSON
	if err := s.callJSON(ctx, pr, http.MethodGet, "/v1/claims/"+filed.Claim.ID.String(), nil, "", &seen[0]); err != nil {
		return payer, err
	}
	if err := payerCall(ctx, payer, http.MethodGet, "/v1/claims/"+filed.Claim.ID.String(), nil, &seen[1]); err != nil {
		return payer, err
	}
	for i, c := range seen {
		if len(c.Disputes) == 0 {
			return payer, fmt.Errorf("the %s does not see patient 1's dispute of claim %s", []string{"practice", "insurer"}[i], short(c.ID.String()))
		}
	}
	s.detail("the practice and the insurer both see it (%s, height %d)", seen[1].Disputes[0].Reason, seen[1].Disputes[0].Height)
	fmt.Fprintf(s.w, "   Try: medledger wallet claims list --dir %s --home %s\n", filepath.Dir(p1.wallet.File()), s.nw.Home(pr))
	fmt.Fprintf(s.w, "        medledger wallet billing list --dir %s --home %s\n\n", filepath.Dir(p2.wallet.File()), s.nw.Home(pr))
	return payer, nil
}

// startPayer creates and starts the payer's node and waits until it is registered as a payer.
func (s *story) startPayer(ctx context.Context) (*fullNode, chain.Address, error) {
	home := filepath.Join(s.nw.Dir, demoPayerDir)
	id, err := memberHome{Name: "demo-insurer", Role: chain.RolePayer, IssuerKey: testnet.PayersKeyFile(s.nw.Dir), Number: "DEMO-PAYER-1"}.write(s.nw, home)
	if err != nil {
		return nil, id, fmt.Errorf("the payer's home: %w", err)
	}
	f, err := startFullNode(s.nw.Bin, home, filepath.Join(s.nw.Dir, demoPayerDir+".log"), nil)
	if err != nil {
		return nil, id, err
	}
	err = procnet.WaitFor(ctx, storyStep, 250*time.Millisecond, "the payer registered", func(ctx context.Context) (bool, error) {
		if f.exited() {
			return false, procnet.Permanent(fmt.Errorf("the payer's node exited (%v); see %s.log", f.err, filepath.Join(s.nw.Dir, demoPayerDir)))
		}
		var st node.StatusJSON
		if err := payerCall(ctx, f, http.MethodGet, "/v1/status", nil, &st); err != nil {
			return false, err
		}
		return st.Role != nil && *st.Role == chain.RolePayer, nil
	})
	return f, id, err
}

// payerCall is callJSON for the payer's node, through its home like the CLI.
func payerCall(ctx context.Context, f *fullNode, method, path string, body []byte, out any) error {
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	data, err := apiDo(ctx, f.home, method, path, body, ct, storyRequest)
	if err != nil {
		return fmt.Errorf("payer: %s %s: %w", method, routeOf(path), err)
	}
	return json.Unmarshal(data, out)
}

// visit anchors today's Encounter for p at the practice and returns its record id.
func (s *story) visit(ctx context.Context, p *storyPatient) (chain.Hash, error) {
	now := time.Now().UTC()
	enc := fmt.Sprintf(`{"resourceType": "Encounter", "id": "%s-visit-%d", "status": "finished",
	  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
	  "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}]}],
	  "subject": {"reference": "Patient/%s"}, "period": {"start": %q, "end": %q}}`,
		p.person.ID, now.UnixMilli(), p.person.ID, now.Add(-30*time.Minute).Format(time.RFC3339), now.Format(time.RFC3339))
	var out struct {
		Records []records.ImportedRecord `json:"records"`
	}
	if err := s.callJSON(ctx, s.practice, http.MethodPost, "/v1/patients/"+p.wallet.PatientID().String()+"/records", []byte(enc), "application/fhir+json", &out); err != nil {
		return chain.Hash{}, fmt.Errorf("anchoring a visit: %w", err)
	}
	if len(out.Records) != 1 {
		return chain.Hash{}, fmt.Errorf("anchoring a visit: %d records imported, want 1", len(out.Records))
	}
	return out.Records[0].ID, nil
}

// demoClaim is a professional FHIR Claim for p's visit today, one line per (code, amount) pair.
// It names the patient by their FHIR id: it is sealed, and the PHI scan checks it stays so.
func demoClaim(p *storyPatient, id string, codeAmounts ...string) json.RawMessage {
	today := time.Now().UTC().Format(time.DateOnly)
	var items []string
	for i := 0; i+1 < len(codeAmounts); i += 2 {
		items = append(items, fmt.Sprintf(`{"sequence": %d, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": %q}]},
		  "servicedDate": %q, "net": {"value": %s, "currency": "USD"}}`, i/2+1, codeAmounts[i], today, codeAmounts[i+1]))
	}
	return json.RawMessage(fmt.Sprintf(`{"resourceType": "Claim", "id": %q, "status": "active",
	  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
	  "use": "claim", "patient": {"reference": "Patient/%s"}, "created": %q,
	  "provider": {"reference": "Organization/practice"},
	  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
	  "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "Coverage/demo"}}],
	  "item": [%s]}`, id, p.person.ID, today, strings.Join(items, ",")))
}

func (s *story) fileClaim(ctx context.Context, payer chain.Address, p *storyPatient, enc chain.Hash, claim json.RawMessage) (node.FiledClaimJSON, error) {
	var filed node.FiledClaimJSON
	req, _ := json.Marshal(node.FileClaimRequest{Payer: payer, Patient: p.wallet.PatientID(), Encounter: enc, Claim: claim})
	err := s.callJSON(ctx, s.practice, http.MethodPost, "/v1/claims", req, "application/json", &filed)
	return filed, err
}

// refusedClaim files a claim that a filing rule must refuse and returns the rule and reason.
func (s *story) refusedClaim(ctx context.Context, payer chain.Address, p *storyPatient, enc chain.Hash, claim json.RawMessage) (string, error) {
	req, _ := json.Marshal(node.FileClaimRequest{Payer: payer, Patient: p.wallet.PatientID(), Encounter: enc, Claim: claim})
	code, _, data, err := s.call(ctx, s.practice, http.MethodPost, "/v1/claims", req, "application/json")
	if err != nil {
		return "", err
	}
	var e node.ClaimErrorJSON
	if code/100 == 2 || json.Unmarshal(data, &e) != nil || e.Rule == "" {
		return "", fmt.Errorf("a claim the filing rules must refuse was answered %d: %s", code, apiReason(data))
	}
	return fmt.Sprintf("HTTP %d, the %s rule: %s", code, e.Rule, apiReason([]byte(e.Error))), nil
}

// dispute has patient p's wallet, a light client, find the claim in the patient's proved log and
// dispute it.
func (s *story) dispute(ctx context.Context, p *storyPatient, id chain.Hash) error {
	var height uint64
	err := procnet.WaitFor(ctx, storyStep, 500*time.Millisecond, "patient 1's wallet disputing the claim", func(ctx context.Context) (bool, error) {
		ls, err := openLedger(ctx, p.wallet, &ledgerFlags{}, s.nw.Home(s.practice))
		if err != nil {
			return false, err
		}
		defer ls.close()
		ps, err := ls.patientState(ctx, p.wallet)
		if err != nil {
			return false, err
		}
		found := false
		for _, it := range ps.Items {
			found = found || (it.Claim != nil && it.Claim.ID == id)
		}
		if !found {
			return false, errors.New("the claim is not in the proved log yet")
		}
		if height, err = disputeClaim(ctx, ls, ps, p.wallet, id, chain.DisputeNotReceived); err != nil {
			return false, procnet.Permanent(err)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	s.say("Patient 1's wallet (a light client) finds the claim in their proved log and disputes it, signed with the patient's own key (%s, height %d).", chain.DisputeNotReceived, height)
	return nil
}

// stopPayer stops the payer's node and says so.
func stopPayer(w io.Writer, f *fullNode) error {
	if err := f.stop(); err != nil {
		return fmt.Errorf("payer node: %w", err)
	}
	fmt.Fprintf(w, "the payer's node process stopped cleanly\n")
	return nil
}
