package webui

import (
	"fmt"
	"time"
)

// The billing and claims answers of the node's API as the pages read them. They decode the
// fields the pages show of node.PlanJSON, MembershipJSON, PaymentJSON, ClaimJSON and
// records.BillingItem (the webui package cannot import node, which imports it). Every amount
// and status is the node's: the pages format, they never derive an invoice or a balance.

type tierView struct {
	Label string `json:"label"`
	Price string `json:"price"`
}

type planView struct {
	ID         string     `json:"id"`
	Label      string     `json:"label"`
	Currency   string     `json:"currency"`
	Period     string     `json:"period"`
	Family     bool       `json:"family"`
	MaxMembers int        `json:"max_members"`
	Tiers      []tierView `json:"tiers"`
	FamilyCap  string     `json:"family_cap"`
	Covered    []string   `json:"covered"`
	GraceDays  int        `json:"grace_days"`
	Retired    bool       `json:"retired"`
	Published  time.Time  `json:"published"`
}

type invoiceView struct {
	ID     string    `json:"id"`
	Period int       `json:"period"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Due    time.Time `json:"due"`
	Amount string    `json:"amount"`
	Paid   string    `json:"paid"`
	Status string    `json:"status"`
}

type statementView struct {
	At           time.Time     `json:"at"`
	Status       string        `json:"status"`
	Invoices     []invoiceView `json:"invoices"`
	TotalDue     string        `json:"total_due"`
	TotalPaid    string        `json:"total_paid"`
	Balance      string        `json:"balance"`
	PaidThrough  *time.Time    `json:"paid_through"`
	NextInvoice  *time.Time    `json:"next_invoice"`
	PastDueSince *time.Time    `json:"past_due_since"`
}

// RecentInvoices are the statement's last few invoices, newest first, for the patient's page.
func (s statementView) RecentInvoices() []invoiceView {
	const n = 6
	out := make([]invoiceView, 0, n)
	for i := len(s.Invoices) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, s.Invoices[i])
	}
	return out
}

type memberView struct {
	Patient   string `json:"patient"`
	Tier      int    `json:"tier"`
	TierLabel string `json:"tier_label"`
}

type membershipView struct {
	ID          string        `json:"id"`
	Subscriber  string        `json:"subscriber"`
	SponsorName string        `json:"sponsor_name"`
	Plan        string        `json:"plan"`
	PlanLabel   string        `json:"plan_label"`
	Members     []memberView  `json:"members"`
	Price       string        `json:"price"`
	Currency    string        `json:"currency"`
	Period      string        `json:"period"`
	Start       time.Time     `json:"start"`
	End         *time.Time    `json:"end"`
	Statement   statementView `json:"statement"`
	// Payments are the payments this node recorded for it (patient page only).
	Payments []paymentView `json:"-"`
	// SubscriberName is from the patient directory, for a role that may see names.
	SubscriberName string `json:"-"`
}

// PastDue says whether the node's statement has the membership past due.
func (m membershipView) PastDue() bool { return m.Statement.Status == "past-due" }

type sponsorView struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	Memberships int    `json:"memberships"`
}

type splitView struct {
	Membership string `json:"membership"`
	Amount     string `json:"amount"`
}

type paymentView struct {
	ID        string      `json:"id"`
	Reference string      `json:"reference"`
	Refund    bool        `json:"refund"`
	Splits    []splitView `json:"splits"`
	Total     string      `json:"total"`
	Height    uint64      `json:"height"`
	Recorded  time.Time   `json:"recorded"`
}

type claimLineView struct {
	Billed  uint64 `json:"billed_cents"`
	Allowed uint64 `json:"allowed_cents"`
	Paid    uint64 `json:"paid_cents"`
	Patient uint64 `json:"patient_cents"`
	Reason  string `json:"reason"`
}

type disputeView struct {
	Reason   string `json:"reason"`
	Height   uint64 `json:"height"`
	Resolved uint64 `json:"resolved_height"`
}

type claimView struct {
	ID            string          `json:"id"`
	Provider      string          `json:"provider"`
	Payer         string          `json:"payer"`
	Patient       string          `json:"patient"`
	Record        string          `json:"record"`
	ServiceDate   string          `json:"service_date"`
	Status        string          `json:"status"`
	Settled       string          `json:"settled"`
	Flagged       bool            `json:"flagged"`
	Lines         []claimLineView `json:"lines"`
	FiledHeight   uint64          `json:"filed_height"`
	FiledTime     int64           `json:"filed_time_ms"`
	DecidedHeight uint64          `json:"decided_height"`
	Disputes      []disputeView   `json:"disputes"`
	// PatientName is from the patient directory, for a role that may see names.
	PatientName string `json:"-"`
}

// Filed is when the claim was filed (its block's time).
func (c claimView) Filed() time.Time { return time.UnixMilli(c.FiledTime).UTC() }

// OpenDispute says whether the patient disputes the claim and the dispute is not resolved.
func (c claimView) OpenDispute() bool {
	for _, d := range c.Disputes {
		if d.Resolved == 0 {
			return true
		}
	}
	return false
}

// Denied says whether every line was denied (a reason and nothing paid).
func (c claimView) Denied() bool {
	if len(c.Lines) == 0 || c.Status == "pended" {
		return false
	}
	for _, l := range c.Lines {
		if l.Reason == "" || l.Paid != 0 {
			return false
		}
	}
	return true
}

// State is the claim's status in the words of the claims page.
func (c claimView) State() string {
	switch {
	case c.Status == "disputed":
		return "disputed (what stands meanwhile: " + c.Settled + ")"
	case c.Status == "pended":
		return "filed, awaiting the payer"
	case c.Denied():
		return "denied"
	case c.Status == "adjudicated-by-rule":
		return "paid by the payer's schedule"
	case c.Status == "decided":
		return "decided by the payer"
	}
	return c.Status
}

func sumLines(ls []claimLineView, f func(claimLineView) uint64) string {
	var t uint64
	for _, l := range ls {
		t += f(l)
	}
	return cents(t)
}

// Billed, Allowed, Paid and PatientOwes are the ledger's line amounts summed.
func (c claimView) Billed() string {
	return sumLines(c.Lines, func(l claimLineView) uint64 { return l.Billed })
}
func (c claimView) Allowed() string {
	return sumLines(c.Lines, func(l claimLineView) uint64 { return l.Allowed })
}
func (c claimView) Paid() string {
	return sumLines(c.Lines, func(l claimLineView) uint64 { return l.Paid })
}
func (c claimView) PatientOwes() string {
	return sumLines(c.Lines, func(l claimLineView) uint64 { return l.Patient })
}

// cents writes an amount in cents as a decimal, as the billing API writes amounts.
func cents(c uint64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

type billingItemView struct {
	Record       string `json:"record"`
	Version      uint64 `json:"version"`
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Date         string `json:"date"`
	Status       string `json:"status"`
	Total        string `json:"total"`
	Currency     string `json:"currency"`
	Use          string `json:"use"`
	Kind         string `json:"kind"`
}

// day writes a time as its UTC date; the zero time and nil as "".
func day(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return ""
		}
		return v.UTC().Format(time.DateOnly)
	case *time.Time:
		if v == nil || v.IsZero() {
			return ""
		}
		return v.UTC().Format(time.DateOnly)
	}
	return ""
}
