package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/staff"
)

// Staff accounts on the API: POST /v1/login opens a session for a user of HOME/users.json;
// every route needs one permission of the role → permission matrix (staff.Permissions), which
// the operator token always has; every request, refused or not, goes to the local audit log.

// operatorName is the audit log's user for the operator token.
const operatorName = "operator"

// anyone is the permission of routes every authenticated caller may use (POST /v1/logout).
const anyone staff.Permission = ""

// Bounds of GET /v1/audit.
const (
	defaultAuditTail = 100
	maxAuditTail     = 1000
)

// attachStaff adds staff logins, the per-route permission checks' users and the audit log.
func (a *API) attachStaff(g *staff.Gate, audit *auditlog.Log) {
	a.staff, a.audit = g, audit
	a.handle("GET /v1/users", staff.PermAudit, a.listUsers)
	a.handle("GET /v1/audit", staff.PermAudit, a.auditTail)
}

// requestInfo is what the audit log says of a request, filled in as it is handled.
type requestInfo struct {
	user      string
	role      staff.Role
	patient   string
	record    string
	emergency bool
	note      string
}

type requestInfoKey struct{}

// requestInfoOf is the request's audit information (a throwaway one outside ServeHTTP).
func requestInfoOf(r *http.Request) *requestInfo {
	if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// noteTarget records the patient or record a request names (from its body) for the audit log.
func noteTarget(r *http.Request, patient *chain.Address, record *chain.Hash) {
	info := requestInfoOf(r)
	if patient != nil {
		info.patient = patient.String()
	}
	if record != nil {
		info.record = record.String()
	}
}

// handle registers h for pattern, behind perm.
func (a *API) handle(pattern string, perm staff.Permission, h http.HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		info := requestInfoOf(r)
		if p := r.PathValue("patient"); p != "" {
			info.patient = p
		}
		if id := r.PathValue("id"); id != "" {
			info.record = id
		}
		if perm == staff.PermEmergency || r.URL.Query().Get("emergency") == "true" {
			info.emergency = true
		}
		if perm != anyone && !a.permit(w, r, perm) {
			return
		}
		h(w, r)
	})
}

// permit answers 403 and returns false unless the caller's role has perm.
func (a *API) permit(w http.ResponseWriter, r *http.Request, perm staff.Permission) bool {
	info := requestInfoOf(r)
	if info.role.Can(perm) {
		return true
	}
	info.note = "forbidden: needs " + string(perm)
	writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: the %s role does not have the %q permission (docs/api.md, Roles)", info.role, perm))
	return false
}

// statusWriter remembers the status code of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeAudit appends the request to the local audit log. The answer has been sent by then; a
// log that cannot be written is an error in the node's log.
func (a *API) writeAudit(r *http.Request, status int, info *requestInfo) {
	if a.audit == nil {
		return
	}
	if status == 0 {
		status = http.StatusOK
	}
	e := auditlog.Entry{
		Time: time.Now().UTC(), User: info.user, Role: string(info.role), Method: r.Method, Path: r.URL.Path, Status: status,
		Patient: info.patient, Record: info.record, Emergency: info.emergency, Client: clientAddr(r), Note: info.note,
	}
	if err := a.audit.Write(e); err != nil {
		a.log.Error("api: audit log", "err", err, "user", info.user, "path", r.URL.Path, "status", status)
	}
}

// LoginRequest is the body of POST /v1/login.
type LoginRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// LoginJSON is the answer of POST /v1/login.
type LoginJSON struct {
	// Token is the session's bearer token: send "Authorization: Bearer <token>".
	Token string `json:"token"`
	// ExpiresAt is the session's absolute end; IdleTimeoutSeconds without a request ends it sooner.
	ExpiresAt          string `json:"expires_at"`
	IdleTimeoutSeconds int    `json:"idle_timeout_seconds"`
	User               string `json:"user"`
	Role               string `json:"role"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request, info *requestInfo) {
	info.note = "login"
	if a.staff == nil {
		writeError(w, http.StatusNotFound, "this node has no staff accounts")
		return
	}
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return
	}
	var req LoginRequest
	if err := decodeJSON(data, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if staff.CheckName(req.Name) == nil {
		info.user = req.Name
	} else {
		info.user = "(invalid name)"
	}
	s, err := a.staff.Login(r.Context(), req.Name, req.Password, clientAddr(r))
	var rl *staff.RateLimitedError
	switch {
	case err == nil:
	case errors.Is(err, staff.ErrBadCredentials):
		info.note = "login failed"
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	case errors.As(err, &rl):
		info.note = "login rate-limited"
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, err.Error())
		return
	case errors.Is(err, staff.ErrTooManySessions):
		info.note = "login refused: too many sessions"
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		info.note = "login abandoned"
		writeError(w, http.StatusServiceUnavailable, "login: the node did not answer in time")
		return
	default:
		info.note = "login failed: node error"
		a.internal(w, "login", err)
		return
	}
	info.role = s.Role
	writeJSON(w, http.StatusOK, LoginJSON{
		Token: s.Token, ExpiresAt: s.ExpiresAt.UTC().Format(time.RFC3339), User: s.User, Role: string(s.Role),
		IdleTimeoutSeconds: int(a.staff.Config().Sessions.Idle.Seconds()),
	})
}

// logout is POST /v1/logout: it ends the session of the bearer token.
func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	info := requestInfoOf(r)
	if info.role == staff.RoleOperator {
		writeError(w, http.StatusBadRequest, "the operator token is not a session: there is nothing to log out of")
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.staff.Logout(strings.TrimSpace(tok))
	info.note = "logout"
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

// UserJSON is one user of GET /v1/users (never the password hash).
type UserJSON struct {
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	Created    time.Time  `json:"created"`
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	out := []UserJSON{}
	if a.staff != nil {
		users, err := a.staff.Directory().List()
		if err != nil {
			a.internal(w, "users", err)
			return
		}
		for _, u := range users {
			out = append(out, UserJSON{Name: u.Name, Role: string(u.Role), Created: u.Created, Disabled: u.Disabled, DisabledAt: u.DisabledAt})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// auditTail is GET /v1/audit?limit=N: the last N entries (default 100, at most 1000) of the
// current audit log file.
func (a *API) auditTail(w http.ResponseWriter, r *http.Request) {
	n := defaultAuditTail
	if l := r.URL.Query().Get("limit"); l != "" {
		v, err := strconv.Atoi(l)
		if err != nil || v < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a positive number", l))
			return
		}
		n = min(v, maxAuditTail)
	}
	entries := []auditlog.Entry{}
	if a.audit != nil {
		var err error
		if entries, err = a.audit.Tail(n); err != nil {
			a.internal(w, "audit log", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}
