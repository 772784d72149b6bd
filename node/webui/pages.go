package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/patientdir"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/records"
)

// maxImportBytes bounds a file imported through the page (the API has its own, lower or not).
const maxImportBytes = 64 << 20

func (u *UI) routes() {
	u.mux.Handle("GET /ui/static/", u.static)
	u.mux.HandleFunc("GET /ui/login", u.loginPage)
	u.mux.HandleFunc("POST /ui/login", u.login)
	u.mux.HandleFunc("POST /ui/logout", u.authed(u.logout))
	u.mux.HandleFunc("GET /ui/{$}", u.authed(u.home))
	u.mux.HandleFunc("GET /ui/patients", u.authed(u.search))
	u.mux.HandleFunc("GET /ui/patients/{patient}", u.authed(u.patient))
	u.mux.HandleFunc("POST /ui/patients/{patient}/import", u.authed(u.importFile))
	u.mux.HandleFunc("GET /ui/patients/{patient}/consents", u.authed(u.consents))
	u.mux.HandleFunc("GET /ui/patients/{patient}/emergency", u.authed(u.emergencyForm))
	u.mux.HandleFunc("POST /ui/patients/{patient}/emergency", u.authed(u.emergency))
	u.mux.HandleFunc("GET /ui/patients/{patient}/audit", u.authed(u.audit))
	u.mux.HandleFunc("GET /ui/records/{id}", u.authed(u.record))
	u.mux.HandleFunc("GET /ui/status", u.authed(u.status))
	u.mux.HandleFunc("GET /ui/billing", u.authed(u.billingPage))
	u.mux.HandleFunc("POST /ui/billing/payments", u.authed(u.recordPayment))
	u.mux.HandleFunc("GET /ui/claims", u.authed(u.claimsPage))
	u.mux.HandleFunc("GET /ui/claims/{id}", u.authed(u.claimPage))
	u.mux.HandleFunc("/ui/", u.notFound)
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	u.render(w, r, nil, http.StatusNotFound, "message", page{Title: "Page not found", Error: "There is no page at " + r.URL.Path + "."})
}

// fail renders an error page for a signed-in user.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, s session, code int, title, msg string) {
	u.render(w, r, &s, code, "message", page{Title: title, Error: msg})
}

// forbidden is the answer of a page the role may not see; it names the permission, as the API does.
func (u *UI) forbidden(w http.ResponseWriter, r *http.Request, s session, what string) {
	u.fail(w, r, s, http.StatusForbidden, "Not available to your role",
		fmt.Sprintf("Your role (%s) does not allow you to %s. Ask a colleague with the right role, or the practice's administrator.", s.Role, what))
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Sign in"}
	if r.URL.Query().Get("ended") != "" {
		p.Flash = "Your session ended (signed out, or idle for too long). Please sign in again."
	}
	u.render(w, r, nil, http.StatusOK, "login", p)
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	// Login has no session yet, so no CSRF token: SameSite=Strict on the cookie it sets, and the
	// Origin check below, keep another site from signing a browser in as someone else.
	if o := r.Header.Get("Origin"); o != "" {
		if ou, err := url.Parse(o); err != nil || ou.Host != r.Host {
			http.Error(w, "sign-in from another site is refused", http.StatusForbidden)
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	name, pass := strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("password")
	body, _ := json.Marshal(map[string]string{"name": name, "password": pass})
	res := u.call(r.Context(), r, "", http.MethodPost, "/v1/login", body, "")
	if !res.ok() {
		msg := res.apiError()
		if res.code == http.StatusUnauthorized {
			msg = "The user name or password is not correct."
		}
		u.render(w, r, nil, res.code, "login", page{Title: "Sign in", Error: msg, Data: name})
		return
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(res.body, &out); err != nil || out.Token == "" {
		u.render(w, r, nil, http.StatusBadGateway, "login", page{Title: "Sign in", Error: "the node's answer to the sign-in did not decode"})
		return
	}
	setCookie(w, r, out.Token)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, s session) {
	u.call(r.Context(), r, s.token, http.MethodPost, "/v1/logout", nil, "")
	clearCookie(w, r)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// mayFind: the directory holds names, so only roles that deal with patients see it.
func mayFind(s session) bool { return s.can(staff.PermList) || s.can(staff.PermEnrol) }

func (u *UI) home(w http.ResponseWriter, r *http.Request, s session) {
	u.render(w, r, &s, http.StatusOK, "home", page{Title: "MedLedger", Nav: "home", Data: map[string]any{
		"CanFind": mayFind(s), "CanStatus": s.can(staff.PermStatus), "Provider": u.cfg.ProviderID}})
}

type searchData struct {
	Query   string
	Results []patientdir.Entry
	ByID    string // the query is a patient id
	NoDir   bool
}

func (u *UI) search(w http.ResponseWriter, r *http.Request, s session) {
	if !mayFind(s) {
		u.forbidden(w, r, s, "look up patients")
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	d := searchData{Query: q, NoDir: u.cfg.Patients == nil}
	if a, err := chain.ParseAddress(q); err == nil {
		d.ByID = a.String()
	}
	if q != "" && u.cfg.Patients != nil {
		d.Results = u.cfg.Patients.Search(q, 50)
	}
	u.render(w, r, &s, http.StatusOK, "search", page{Title: "Find a patient", Nav: "find", Data: d})
}

// patientParam parses the page's patient id and looks up their name.
// patientFor is patientParam for a page that needs perm: a session without it is answered
// forbidden (naming what it tried to do) and asks the API nothing.
func (u *UI) patientFor(w http.ResponseWriter, r *http.Request, s session, perm staff.Permission, action string) (patientView, bool) {
	pv, ok := u.patientParam(w, r, s)
	if !ok {
		return pv, false
	}
	if !s.can(perm) {
		u.forbidden(w, r, s, action)
		return pv, false
	}
	return pv, true
}

func (u *UI) patientParam(w http.ResponseWriter, r *http.Request, s session) (patientView, bool) {
	a, err := chain.ParseAddress(r.PathValue("patient"))
	if err != nil {
		u.fail(w, r, s, http.StatusBadRequest, "No such patient", "The address does not name a patient: a patient id is 40 hexadecimal digits.")
		return patientView{}, false
	}
	v := patientView{ID: a.String(), Name: "(name not in this practice's directory)"}
	if u.cfg.Patients != nil && mayFind(s) {
		if e, ok := u.cfg.Patients.Get(a); ok {
			v.Name, v.BirthDate, v.MRN, v.Known = e.Name, e.BirthDate, e.MRN, true
		}
	}
	return v, true
}

type patientView struct {
	ID, Name, BirthDate, MRN string
	Known                    bool
}

// recordGroup is one kind of record with every version of each.
type recordGroup struct {
	Title   string
	Records []records.RecordJSON
}

func (u *UI) patient(w http.ResponseWriter, r *http.Request, s session) {
	pv, ok := u.patientParam(w, r, s)
	if !ok {
		return
	}
	data := map[string]any{"Patient": pv, "CanImport": s.can(staff.PermImport), "CanList": s.can(staff.PermList),
		"CanEmergency": s.can(staff.PermEmergency)}
	if s.can(staff.PermList) {
		list, msg := u.allRecords(r, s, pv.ID)
		data["Groups"], data["ListError"] = groupRecords(list), msg
	}
	if m := u.loadMoney(r, s, pv.ID); m != nil {
		data["Money"] = m
	}
	p := page{Title: pv.Name, Nav: "find", Data: data}
	switch {
	case r.URL.Query().Get("imported") != "":
		p.Flash = "The file was imported."
	case r.URL.Query().Get("paid") != "":
		p.Flash = "The payment was recorded on the ledger."
	case r.URL.Query().Get("emergency") != "":
		p.Flash = "Emergency access is open: it is on the ledger, and the patient will see it. Open a record to read it."
	}
	u.render(w, r, &s, http.StatusOK, "patient", p)
}

// allRecords lists every record of the patient (every page of the API's list).
func (u *UI) allRecords(r *http.Request, s session, patient string) ([]records.RecordJSON, string) {
	var all []records.RecordJSON
	after := ""
	for range 100 {
		var page struct {
			Records []records.RecordJSON `json:"records"`
			Next    string               `json:"next"`
		}
		path := "/v1/patients/" + patient + "/records"
		if after != "" {
			path += "?after=" + url.QueryEscape(after)
		}
		if _, msg := u.getJSON(r, s, path, &page); msg != "" {
			return all, msg
		}
		all = append(all, page.Records...)
		if after = page.Next; after == "" {
			break
		}
	}
	return all, ""
}

// groupTitles are the headings of the kinds of record a clinician looks for first.
var groupTitles = []struct {
	title string
	types []string
}{
	{"Problems", []string{"Condition"}},
	{"Allergies", []string{"AllergyIntolerance"}},
	{"Medications", []string{"MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"}},
	{"Observations and results", []string{"Observation", "DiagnosticReport"}},
	{"Encounters", []string{"Encounter"}},
	{"Documents", []string{"DocumentReference", "Composition"}},
	{"Immunizations and procedures", []string{"Immunization", "Procedure"}},
}

func groupRecords(list []records.RecordJSON) []recordGroup {
	byType := map[string][]records.RecordJSON{}
	for _, rec := range list {
		byType[rec.ResourceType] = append(byType[rec.ResourceType], rec)
	}
	var out []recordGroup
	for _, g := range groupTitles {
		var recs []records.RecordJSON
		for _, t := range g.types {
			recs = append(recs, byType[t]...)
			delete(byType, t)
		}
		if len(recs) > 0 {
			out = append(out, recordGroup{Title: g.title, Records: recs})
		}
	}
	var other []records.RecordJSON
	for _, recs := range byType {
		other = append(other, recs...)
	}
	if len(other) > 0 {
		out = append(out, recordGroup{Title: "Other records", Records: other})
	}
	return out
}

// importFile imports the uploaded file for the patient through the API. The page's script asks
// for NDJSON and gets the API's progress stream passed through; without script the form posts
// and gets a result page.
func (u *UI) importFile(w http.ResponseWriter, r *http.Request, s session) {
	pv, ok := u.patientFor(w, r, s, staff.PermImport, "import records")
	if !ok {
		return
	}
	stream := strings.Contains(r.Header.Get("Accept"), "application/x-ndjson")
	f, _, err := r.FormFile("file")
	var data []byte
	if err == nil {
		data, err = limitBody(f, maxImportBytes)
		f.Close()
	}
	if err != nil {
		msg := "Choose a FHIR file (JSON or NDJSON) to import: " + err.Error()
		if stream {
			w.Header().Set("Content-Type", "application/x-ndjson")
			_ = json.NewEncoder(w).Encode(map[string]any{"status": http.StatusBadRequest, "error": msg})
			return
		}
		u.fail(w, r, s, http.StatusBadRequest, "Import", msg)
		return
	}
	path := "/v1/patients/" + pv.ID + "/records"
	if stream {
		u.callTo(r.Context(), &flushWriter{w: w}, r, s.token, http.MethodPost, path, data, "application/x-ndjson")
		return
	}
	res := u.call(r.Context(), r, s.token, http.MethodPost, path, data, "")
	if !res.ok() {
		u.fail(w, r, s, res.code, "Import refused", res.apiError())
		return
	}
	http.Redirect(w, r, "/ui/patients/"+pv.ID+"?imported=1", http.StatusSeeOther)
}

// flushWriter passes the API's stream to the browser line by line.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Header() http.Header         { return f.w.Header() }
func (f *flushWriter) WriteHeader(code int)        { f.w.WriteHeader(code) }
func (f *flushWriter) Write(b []byte) (int, error) { return f.w.Write(b) }
func (f *flushWriter) Flush()                      { _ = http.NewResponseController(f.w).Flush() }
func (f *flushWriter) Unwrap() http.ResponseWriter { return f.w }

func (u *UI) consents(w http.ResponseWriter, r *http.Request, s session) {
	pv, ok := u.patientFor(w, r, s, staff.PermList, "see consents")
	if !ok {
		return
	}
	var out struct {
		Consents []records.ConsentJSON `json:"consents"`
	}
	_, msg := u.getJSON(r, s, "/v1/patients/"+pv.ID+"/consents", &out)
	u.render(w, r, &s, http.StatusOK, "consents", page{Title: "Consents", Nav: "find", Error: msg, Data: map[string]any{
		"Patient": pv, "Consents": out.Consents, "Provider": u.cfg.ProviderID}})
}

func (u *UI) emergencyForm(w http.ResponseWriter, r *http.Request, s session) {
	pv, ok := u.patientFor(w, r, s, staff.PermEmergency, "open emergency access")
	if !ok {
		return
	}
	u.render(w, r, &s, http.StatusOK, "emergency", page{Title: "Emergency access", Nav: "find", Data: map[string]any{
		"Patient": pv, "Reasons": chain.EmergencyReasons()}})
}

func (u *UI) emergency(w http.ResponseWriter, r *http.Request, s session) {
	pv, ok := u.patientFor(w, r, s, staff.PermEmergency, "open emergency access")
	if !ok {
		return
	}
	code, note := r.PostFormValue("reason_code"), strings.TrimSpace(r.PostFormValue("reason"))
	render := func(status int, msg string) {
		u.render(w, r, &s, status, "emergency", page{Title: "Emergency access", Nav: "find", Error: msg, Data: map[string]any{
			"Patient": pv, "Reasons": chain.EmergencyReasons(), "Code": code, "Note": note}})
	}
	if _, err := chain.ParseEmergencyReason(code); err != nil {
		render(http.StatusBadRequest, "Choose the reason for emergency access.")
		return
	}
	if note == "" {
		render(http.StatusBadRequest, "Describe the emergency in a sentence: it is kept in this practice's log.")
		return
	}
	body, _ := json.Marshal(map[string]string{"patient": pv.ID, "reason_code": code, "reason": note})
	res := u.call(r.Context(), r, s.token, http.MethodPost, "/v1/emergency", body, "")
	if !res.ok() {
		render(res.code, "Emergency access was not opened: "+res.apiError())
		return
	}
	http.Redirect(w, r, "/ui/patients/"+pv.ID+"?emergency=1", http.StatusSeeOther)
}

func (u *UI) audit(w http.ResponseWriter, r *http.Request, s session) {
	pv, ok := u.patientFor(w, r, s, staff.PermList, "see who read this patient's records")
	if !ok {
		return
	}
	var out struct {
		Accesses []records.AccessJSON `json:"accesses"`
	}
	_, msg := u.getJSON(r, s, "/v1/patients/"+pv.ID+"/accesses", &out)
	u.render(w, r, &s, http.StatusOK, "audit", page{Title: "Who read these records", Nav: "find", Error: msg, Data: map[string]any{
		"Patient": pv, "Accesses": out.Accesses, "Provider": u.cfg.ProviderID}})
}

func (u *UI) record(w http.ResponseWriter, r *http.Request, s session) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		u.fail(w, r, s, http.StatusBadRequest, "No such record", "The address does not name a record: a record id is 64 hexadecimal digits.")
		return
	}
	if !s.can(staff.PermRead) {
		u.forbidden(w, r, s, "read records")
		return
	}
	path := "/v1/records/" + id.String()
	emergency := r.URL.Query().Get("emergency") == "true"
	if emergency {
		path += "?emergency=true"
	}
	res := u.call(r.Context(), r, s.token, http.MethodGet, path, nil, "")
	data := map[string]any{"ID": id.String(), "Emergency": emergency, "CanEmergency": s.can(staff.PermEmergency)}
	if !res.ok() {
		data["Refused"] = true
		u.render(w, r, &s, res.code, "record", page{Title: "Record", Error: res.apiError(), Data: data})
		return
	}
	var resource map[string]any
	if err := json.Unmarshal(res.body, &resource); err != nil {
		u.fail(w, r, s, http.StatusBadGateway, "Record", "The record's contents are not JSON: "+err.Error())
		return
	}
	view := RenderResource(resource)
	data["View"] = view
	// The record's place in its history: its versions as the ledger lists them.
	var meta []records.RecordJSON
	if pat := r.URL.Query().Get("patient"); pat != "" {
		if a, err := chain.ParseAddress(pat); err == nil {
			list, _ := u.allRecords(r, s, a.String())
			meta = history(list, id)
			data["Patient"] = a.String()
		}
	}
	data["History"] = meta
	u.render(w, r, &s, http.StatusOK, "record", page{Title: view.Title, Data: data})
}

// history is the chain of versions id belongs to, oldest first.
func history(list []records.RecordJSON, id chain.Hash) []records.RecordJSON {
	byID := map[chain.Hash]records.RecordJSON{}
	for _, r := range list {
		byID[r.ID] = r
	}
	cur, ok := byID[id]
	if !ok {
		return nil
	}
	for cur.Supersedes != nil {
		prev, ok := byID[*cur.Supersedes]
		if !ok {
			break
		}
		cur = prev
	}
	var out []records.RecordJSON
	for range len(list) {
		out = append(out, cur)
		if cur.SupersededBy == nil {
			break
		}
		next, ok := byID[*cur.SupersededBy]
		if !ok {
			break
		}
		cur = next
	}
	return out
}

func (u *UI) status(w http.ResponseWriter, r *http.Request, s session) {
	if !s.can(staff.PermStatus) {
		u.forbidden(w, r, s, "see the network's status")
		return
	}
	var st map[string]any
	_, msg := u.getJSON(r, s, "/v1/status", &st)
	m := u.call(r.Context(), r, "", http.MethodGet, "/metrics", nil, "")
	var metrics []metricLine
	if m.ok() {
		metrics = pickMetrics(string(m.body))
	}
	u.render(w, r, &s, http.StatusOK, "status", page{Title: "Network status", Nav: "status", Error: msg, Data: map[string]any{
		"Status": st, "Metrics": metrics, "Sync": syncLine(metrics)}})
}
