// Package webui is the practice's web pages, served by its node under /ui/ on the local API
// address: sign in, find a patient, their records, import, consents, break-glass access, the
// audit trail, the network's status, and for the billing desk memberships, payments and claims.
//
// The pages are a client of the node's own JSON API, called in process: a staff member's session
// cookie carries the session token POST /v1/login returned, and every page that touches the
// ledger or a record forwards it as the bearer token of an API request. So every read goes
// through records.Service with consent, audit and the role recorded, every refusal is the API's,
// and the role → permission matrix (staff.Permissions) is enforced in one place. The API never
// reads a cookie; the UI never accepts a bearer token: the two ways in stay apart.
//
// The one thing the API does not have is names: the patient directory (node/patientdir) is
// read here, behind the same permissions (PermList or PermEnrol).
package webui

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/medledger/medledger/node/patientdir"
	"github.com/medledger/medledger/node/staff"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CookieName is the session cookie's name.
const CookieName = "medledger_session"

// csrfField is the hidden form field (and X-CSRF-Token header) carrying the CSRF token.
const csrfField = "csrf"

// Config is what the UI needs from its node.
type Config struct {
	// API is the node's JSON API handler; the UI calls it in process.
	API http.Handler
	// Authenticate checks a session token and extends its idle timer (staff.Gate.Authenticate).
	Authenticate func(token string) (staff.Principal, error)
	// Patients is the local patient directory; nil: no names (search by patient id only).
	Patients *patientdir.Dir
	// ProviderID is this practice's provider id, ChainID the network's.
	ProviderID string
	ChainID    string
	// Idle is the sessions' idle expiry, for the page's own logoff timer.
	Idle time.Duration
	Log  *slog.Logger
}

// UI serves the practice's pages.
type UI struct {
	cfg    Config
	tmpl   map[string]*template.Template
	mux    *http.ServeMux
	csrf   []byte // the key of the per-session CSRF tokens; a restart ends every session anyway
	static http.Handler
}

// New returns the UI.
func New(cfg Config) (*UI, error) {
	if cfg.API == nil || cfg.Authenticate == nil {
		return nil, errors.New("webui: the API and the session check are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Idle <= 0 {
		cfg.Idle = staff.DefaultIdle
	}
	u := &UI{cfg: cfg, mux: http.NewServeMux(), csrf: make([]byte, 32)}
	if _, err := rand.Read(u.csrf); err != nil {
		return nil, fmt.Errorf("webui: CSRF key: %w", err)
	}
	var err error
	if u.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	u.static = Static("/ui/static/")
	u.routes()
	return u, nil
}

func parseTemplates() (map[string]*template.Template, error) {
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", p)
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// IsRoute says whether path belongs to the UI: "/" (which redirects to /ui/) and /ui/….
func IsRoute(path string) bool {
	return path == "/" || path == "/ui" || strings.HasPrefix(path, "/ui/")
}

// SecurityHeaders forbid inline script, framing, and any resource not from this node.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer the browser sends "Origin: null" on a
	// form post, and the sign-in form checks its Origin.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SecurityHeaders(w.Header())
	if r.URL.Path == "/" || r.URL.Path == "/ui" {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	u.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title   string
	User    string
	Role    string
	CSRF    string
	IdleSec int
	Nav     string
	Flash   string
	Error   string
	Data    any
	// CanBilling and CanClaims show the billing and claims pages in the menu.
	CanBilling, CanClaims bool
}

// session is a signed-in request's principal and token.
type session struct {
	staff.Principal
	token string
}

func (s session) can(p staff.Permission) bool { return s.Role.Can(p) }

// csrfToken is the session's CSRF token: an HMAC of the session token under a key of this
// process, so it needs no storage, dies with the session and cannot be computed by a page of
// another origin (which cannot read the HttpOnly cookie it derives from).
func (u *UI) csrfToken(tok string) string {
	m := hmac.New(sha256.New, u.csrf)
	m.Write([]byte(tok))
	return hex.EncodeToString(m.Sum(nil))
}

// authed wraps a page that needs a signed-in user; POSTs also need the CSRF token.
func (u *UI) authed(h func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(CookieName)
		if err != nil || c.Value == "" {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		p, err := u.cfg.Authenticate(c.Value)
		if errors.Is(err, staff.ErrNoSession) {
			clearCookie(w, r)
			http.Redirect(w, r, "/ui/login?ended=1", http.StatusSeeOther)
			return
		}
		if err != nil {
			u.cfg.Log.Error("webui: session check", "err", err)
			http.Error(w, "the node could not check your session", http.StatusInternalServerError)
			return
		}
		s := session{Principal: p, token: c.Value}
		if r.Method == http.MethodPost {
			// Bounded before any form is parsed (a multipart form spills to disk otherwise).
			r.Body = http.MaxBytesReader(w, r.Body, maxImportBytes+1<<20)
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostFormValue(csrfField)
			}
			if !hmac.Equal([]byte(got), []byte(u.csrfToken(s.token))) {
				http.Error(w, "This form has expired or did not come from this page (CSRF check failed). Go back, reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		h(w, r, s)
	}
}

func setCookie(w http.ResponseWriter, r *http.Request, tok string) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// render writes template name with p filled in for s.
func (u *UI) render(w http.ResponseWriter, r *http.Request, s *session, code int, name string, p page) {
	t, ok := u.tmpl[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if s != nil {
		p.User, p.Role, p.CSRF = s.User, string(s.Role), u.csrfToken(s.token)
		p.IdleSec = int(u.cfg.Idle / time.Second)
		p.CanBilling, p.CanClaims = s.can(staff.PermBilling), s.can(staff.PermClaims)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		u.cfg.Log.Error("webui: render", "page", name, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// apiResult is one in-process API answer.
type apiResult struct {
	code int
	body []byte
}

// apiError is the message of an API error answer.
func (a apiResult) apiError() string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return fmt.Sprintf("the node answered %d", a.code)
}

func (a apiResult) ok() bool { return a.code >= 200 && a.code < 300 }

// call makes an API request as the session (token empty: no Authorization, for login).
func (u *UI) call(ctx context.Context, orig *http.Request, token, method, path string, body []byte, accept string) apiResult {
	rec := &recorder{header: http.Header{}}
	u.callTo(ctx, rec, orig, token, method, path, body, accept)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return apiResult{code: rec.code, body: rec.body.Bytes()}
}

func (u *UI) callTo(ctx context.Context, w http.ResponseWriter, orig *http.Request, token, method, path string, body []byte, accept string) {
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"error":%q}`, err.Error())
		return
	}
	// The login limiter counts failures per client address: the browser's, not the node's.
	req.RemoteAddr = orig.RemoteAddr
	req.Host = orig.Host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(body))
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	u.cfg.API.ServeHTTP(w, req)
}

// recorder keeps an in-process API answer.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

// getJSON calls GET path and decodes the answer into v; it returns the API's error message.
func (u *UI) getJSON(r *http.Request, s session, path string, v any) (int, string) {
	res := u.call(r.Context(), r, s.token, http.MethodGet, path, nil, "")
	if !res.ok() {
		return res.code, res.apiError()
	}
	if err := json.Unmarshal(res.body, v); err != nil {
		return http.StatusBadGateway, "the node's answer did not decode: " + err.Error()
	}
	return res.code, ""
}

// limitBody reads at most n bytes of rd.
func limitBody(rd io.Reader, n int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(rd, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > n {
		return nil, fmt.Errorf("the file is larger than %d MB", n>>20)
	}
	return data, nil
}

// Static serves the pages' style sheet and script under prefix, for the wallet's page too.
func Static(prefix string) http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix(prefix, http.FileServerFS(sub))
}
