package webui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/staff"
)

// The billing and claims pages, and the patient page's money section. Like every page they
// call the node's API as the signed-in staff member, so the permissions (billing, claims) and
// every check of POST /v1/billing/payments are the API's.

type billingData struct {
	Plans       []planView
	Memberships []membershipView
	Sponsors    []sponsorView
	Payments    []paymentView
	Errors      []string
	Form        paymentForm
}

// paymentForm is the payment form's values, kept when the node refuses it.
type paymentForm struct {
	Membership, Amount, Reference string
	Refund                        bool
}

// loadBilling reads what the billing page shows; what the node refused is in Errors.
func (u *UI) loadBilling(r *http.Request, s session) billingData {
	var d billingData
	var plans struct {
		Plans []planView `json:"plans"`
	}
	var ms struct {
		Memberships []membershipView `json:"memberships"`
	}
	var sp struct {
		Sponsors []sponsorView `json:"sponsors"`
	}
	var pays struct {
		Payments []paymentView `json:"payments"`
	}
	for _, q := range []struct {
		path string
		v    any
	}{
		{"/v1/billing/plans", &plans}, {"/v1/billing/memberships", &ms},
		{"/v1/billing/sponsors", &sp}, {"/v1/billing/payments?limit=20", &pays},
	} {
		if _, msg := u.getJSON(r, s, q.path, q.v); msg != "" {
			d.Errors = append(d.Errors, q.path+": "+msg)
		}
	}
	d.Plans, d.Memberships, d.Sponsors, d.Payments = plans.Plans, ms.Memberships, sp.Sponsors, pays.Payments
	for i := range d.Memberships {
		d.Memberships[i].SubscriberName = u.nameOf(s, d.Memberships[i].Subscriber)
	}
	// Past-due memberships first: they are what the billing desk acts on.
	slices.SortStableFunc(d.Memberships, func(x, y membershipView) int {
		switch {
		case x.PastDue() && !y.PastDue():
			return -1
		case y.PastDue() && !x.PastDue():
			return 1
		}
		return 0
	})
	return d
}

func (u *UI) billingPage(w http.ResponseWriter, r *http.Request, s session) {
	if !s.can(staff.PermBilling) {
		u.forbidden(w, r, s, "see the practice's billing")
		return
	}
	d := u.loadBilling(r, s)
	d.Form.Membership = r.URL.Query().Get("membership")
	p := page{Title: "Billing", Nav: "billing", Data: d}
	if id := r.URL.Query().Get("paid"); id != "" {
		p.Flash = "The payment was recorded on the ledger (" + shortText(id) + ")."
	}
	u.render(w, r, &s, http.StatusOK, "billing", p)
}

// nameOf is the patient's name in the directory, for a role that may look patients up; else "".
func (u *UI) nameOf(s session, patient string) string {
	a, err := chain.ParseAddress(patient)
	if err != nil || u.cfg.Patients == nil || !mayFind(s) {
		return ""
	}
	if e, ok := u.cfg.Patients.Get(a); ok {
		return e.Name
	}
	return ""
}

func shortText(x string) string {
	if len(x) > 12 {
		return x[:12] + "…"
	}
	return x
}

// recordPayment posts the payment form to POST /v1/billing/payments: one membership, one amount.
// With a patient field it returns to that patient's page.
func (u *UI) recordPayment(w http.ResponseWriter, r *http.Request, s session) {
	if !s.can(staff.PermBilling) {
		u.forbidden(w, r, s, "record payments")
		return
	}
	f := paymentForm{Membership: strings.TrimSpace(r.PostFormValue("membership")), Amount: strings.TrimSpace(r.PostFormValue("amount")),
		Reference: strings.TrimSpace(r.PostFormValue("reference")), Refund: r.PostFormValue("refund") != ""}
	back := ""
	if a, err := chain.ParseAddress(r.PostFormValue("patient")); err == nil {
		back = a.String()
	}
	refuse := func(code int, msg string) {
		if back != "" {
			u.fail(w, r, s, code, "Payment not recorded", msg)
			return
		}
		d := u.loadBilling(r, s)
		d.Form = f
		u.render(w, r, &s, code, "billing", page{Title: "Billing", Nav: "billing", Error: "The payment was not recorded: " + msg, Data: d})
	}
	id, err := chain.ParseHash(f.Membership)
	switch {
	case err != nil:
		refuse(http.StatusBadRequest, "choose the membership the payment is for.")
		return
	case f.Amount == "":
		refuse(http.StatusBadRequest, "enter the amount (say 99.00).")
		return
	case f.Reference == "":
		refuse(http.StatusBadRequest, "enter the payment's external reference (the card processor's charge id, a cheque number).")
		return
	}
	body, _ := json.Marshal(map[string]any{"reference": f.Reference, "refund": f.Refund,
		"splits": []map[string]string{{"membership": id.String(), "amount": f.Amount}}})
	res := u.call(r.Context(), r, s.token, http.MethodPost, "/v1/billing/payments", body, "")
	if !res.ok() {
		refuse(res.code, res.apiError())
		return
	}
	var out struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(res.body, &out)
	if back != "" {
		http.Redirect(w, r, "/ui/patients/"+back+"?paid="+url.QueryEscape(out.ID)+"#money", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/ui/billing?paid="+url.QueryEscape(out.ID), http.StatusSeeOther)
}

type claimsData struct {
	Filed     []claimView
	FiledNext string
	Payer     []claimView
	PayerNext string
	Errors    []string
}

func (u *UI) claimsPage(w http.ResponseWriter, r *http.Request, s session) {
	if !s.can(staff.PermClaims) {
		u.forbidden(w, r, s, "see the practice's claims")
		return
	}
	var d claimsData
	var filed, payer struct {
		Claims []claimView `json:"claims"`
		Next   string      `json:"next"`
	}
	q := url.Values{}
	if from := r.URL.Query().Get("from"); from != "" {
		q.Set("from", from)
	}
	if _, msg := u.getJSON(r, s, "/v1/claims/filed?"+q.Encode(), &filed); msg != "" {
		d.Errors = append(d.Errors, "claims filed: "+msg)
	}
	q = url.Values{}
	if from := r.URL.Query().Get("payer_from"); from != "" {
		q.Set("from", from)
	}
	// The payer's queue is empty on a node whose member is not a payer: shown only when not.
	if _, msg := u.getJSON(r, s, "/v1/payer/claims?"+q.Encode(), &payer); msg != "" {
		d.Errors = append(d.Errors, "payer's queue: "+msg)
	}
	for _, cs := range [][]claimView{filed.Claims, payer.Claims} {
		for i := range cs {
			cs[i].PatientName = u.nameOf(s, cs[i].Patient)
		}
	}
	d.Filed, d.FiledNext, d.Payer, d.PayerNext = filed.Claims, filed.Next, payer.Claims, payer.Next
	u.render(w, r, &s, http.StatusOK, "claims", page{Title: "Claims", Nav: "claims", Data: d})
}

// claimPage is one claim: the ledger's record of it, the EOB the node builds from it (an
// audited read of the sealed Claim, for payment) and, for a role that reads records, the
// sealed Claim itself.
func (u *UI) claimPage(w http.ResponseWriter, r *http.Request, s session) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		u.fail(w, r, s, http.StatusBadRequest, "No such claim", "The address does not name a claim: a claim id is 64 hexadecimal digits.")
		return
	}
	if !s.can(staff.PermClaims) {
		u.forbidden(w, r, s, "see claims")
		return
	}
	var c claimView
	if code, msg := u.getJSON(r, s, "/v1/claims/"+id.String(), &c); msg != "" {
		u.fail(w, r, s, code, "Claim", msg)
		return
	}
	data := map[string]any{"Claim": c, "Provider": u.cfg.ProviderID, "CanRead": s.can(staff.PermRead)}
	if v, msg := u.resource(r, s, "/v1/claims/"+id.String()+"/eob"); msg != "" {
		data["EOBError"] = msg
	} else {
		data["EOB"] = v
	}
	if s.can(staff.PermRead) && c.Record != "" {
		if v, msg := u.resource(r, s, "/v1/records/"+c.Record+"?purpose=HPAYMT"); msg != "" {
			data["SealedError"] = msg
		} else {
			data["Sealed"] = v
		}
	}
	u.render(w, r, &s, http.StatusOK, "claim", page{Title: "Claim " + shortText(id.String()), Nav: "claims", Data: data})
}

// resource reads a FHIR resource from the API and renders it for reading.
func (u *UI) resource(r *http.Request, s session, path string) (ResourceView, string) {
	var m map[string]any
	if _, msg := u.getJSON(r, s, path, &m); msg != "" {
		return ResourceView{}, msg
	}
	return RenderResource(m), ""
}

// moneyData is the patient page's money section. A part the role may not see is nil and was
// never asked of the node: memberships, payments and the billing history need the billing
// permission, claims the claims permission. A clinician has neither and sees no amounts.
type moneyData struct {
	CanBilling, CanClaims bool
	Memberships           []membershipView
	Claims                []claimView
	History               []billingItemView
	HistoryShown          bool
	Errors                []string
}

// loadMoney reads the patient's money section. The billing history reads (and audits on the
// ledger) every financial record, so it is read only when asked for (?history=1).
func (u *UI) loadMoney(r *http.Request, s session, patient string) *moneyData {
	d := &moneyData{CanBilling: s.can(staff.PermBilling), CanClaims: s.can(staff.PermClaims)}
	if !d.CanBilling && !d.CanClaims {
		return nil
	}
	if d.CanBilling {
		var ms struct {
			Memberships []membershipView `json:"memberships"`
		}
		if _, msg := u.getJSON(r, s, "/v1/billing/memberships?patient="+patient, &ms); msg != "" {
			d.Errors = append(d.Errors, "memberships: "+msg)
		}
		for i := range ms.Memberships {
			var pays struct {
				Payments []paymentView `json:"payments"`
			}
			if _, msg := u.getJSON(r, s, "/v1/billing/payments?limit=10&membership="+ms.Memberships[i].ID, &pays); msg != "" {
				d.Errors = append(d.Errors, "payments: "+msg)
			}
			ms.Memberships[i].Payments = pays.Payments
		}
		d.Memberships = ms.Memberships
		if r.URL.Query().Get("history") != "" {
			var h struct {
				Items []billingItemView `json:"items"`
			}
			if _, msg := u.getJSON(r, s, "/v1/patients/"+patient+"/billing-history", &h); msg != "" {
				d.Errors = append(d.Errors, "billing history: "+msg)
			}
			d.History, d.HistoryShown = h.Items, true
		}
	}
	if d.CanClaims {
		var cs struct {
			Claims []claimView `json:"claims"`
		}
		if _, msg := u.getJSON(r, s, "/v1/claims?patient="+patient, &cs); msg != "" {
			d.Errors = append(d.Errors, "claims: "+msg)
		}
		d.Claims = cs.Claims
	}
	return d
}
