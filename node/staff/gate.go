package staff

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// GateConfig configures a Gate. Zero fields take the defaults.
type GateConfig struct {
	Sessions SessionConfig
	// MaxFailuresPerName failed logins for one user name within FailureWindow refuse further
	// logins for that name until the window ends (attempts count from their start, so parallel
	// ones cannot exceed it). Default 5.
	MaxFailuresPerName int
	// MaxFailuresPerClient is the same per client address. Default 30. (The API listens on
	// loopback, so local clients share one address: see docs/security.md.)
	MaxFailuresPerClient int
	// FailureWindow is the window of the failure counts. Default 15 minutes.
	FailureWindow time.Duration
	// Hash are the parameters of the stand-in hash verified for an unknown or disabled user, so
	// that such a login costs what a wrong password costs. Default DefaultHashParams.
	Hash HashParams
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

// Login-limit defaults and bounds.
const (
	DefaultMaxFailuresPerName   = 5
	DefaultMaxFailuresPerClient = 30
	DefaultFailureWindow        = 15 * time.Minute
	// maxLimiterKeys bounds each failure table (names, clients).
	maxLimiterKeys = 10_000
	// MaxConcurrentHashes bounds password hashings running at once (each takes the hash's
	// memory, 19 MiB by default); further logins wait for one to finish.
	MaxConcurrentHashes = 2
)

// Errors of Login and Authenticate. ErrBadCredentials is the one answer for an unknown user, a
// disabled user and a wrong password.
var (
	ErrBadCredentials = errors.New("invalid user name or password")
	ErrNoSession      = errors.New("no such session: it expired, was logged out, or its user was disabled (log in again)")
)

// RateLimitedError refuses a login after too many failures.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed logins: retry in %s", e.RetryAfter.Round(time.Second))
}

// Principal is who a session acts for.
type Principal struct {
	User string
	Role Role
}

// Gate checks logins against a Directory and keeps their sessions.
type Gate struct {
	dir      *Directory
	cfg      GateConfig
	sessions *sessions
	byName   *limiter
	byClient *limiter
	hashing  chan struct{}

	dummyOnce sync.Once
	dummy     string
	dummyErr  error
}

// NewGate returns a Gate over dir.
func NewGate(dir *Directory, cfg GateConfig) *Gate {
	if cfg.MaxFailuresPerName <= 0 {
		cfg.MaxFailuresPerName = DefaultMaxFailuresPerName
	}
	if cfg.MaxFailuresPerClient <= 0 {
		cfg.MaxFailuresPerClient = DefaultMaxFailuresPerClient
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = DefaultFailureWindow
	}
	if cfg.Hash == (HashParams{}) {
		cfg.Hash = DefaultHashParams
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.Sessions = cfg.Sessions.withDefaults()
	return &Gate{
		dir: dir, cfg: cfg,
		sessions: newSessions(cfg.Sessions, cfg.Rand),
		byName:   newLimiter(cfg.MaxFailuresPerName, cfg.FailureWindow, maxLimiterKeys),
		byClient: newLimiter(cfg.MaxFailuresPerClient, cfg.FailureWindow, maxLimiterKeys),
		hashing:  make(chan struct{}, MaxConcurrentHashes),
	}
}

// Config is the gate's configuration with defaults filled in.
func (g *Gate) Config() GateConfig { return g.cfg }

// Directory is the users the gate checks against.
func (g *Gate) Directory() *Directory { return g.dir }

// Login checks name and password and opens a session. Refusals: *RateLimitedError (checked
// before the password, so a locked-out name cannot be guessed at), ErrBadCredentials,
// ErrTooManySessions; any other error is the node's (users.json unreadable, ctx ended).
func (g *Gate) Login(ctx context.Context, name, password, client string) (Session, error) {
	now := g.cfg.Now()
	nameKey := name
	if CheckName(name) != nil {
		nameKey = "\x00invalid" // all malformed names share one count, so they cannot grow the table
	}
	if ok, until := g.byClient.take(client, now); !ok {
		return Session{}, &RateLimitedError{RetryAfter: until.Sub(now)}
	}
	if ok, until := g.byName.take(nameKey, now); !ok {
		g.byClient.refund(client)
		return Session{}, &RateLimitedError{RetryAfter: until.Sub(now)}
	}
	// Both attempts are counted from here: a failure leaves them counted, anything else takes
	// them back.
	select {
	case g.hashing <- struct{}{}:
	case <-ctx.Done():
		g.byClient.refund(client)
		g.byName.refund(nameKey)
		return Session{}, ctx.Err()
	}
	ok, u, err := g.verify(name, password)
	<-g.hashing
	if err != nil {
		g.byClient.refund(client)
		g.byName.refund(nameKey)
		return Session{}, err
	}
	if !ok {
		return Session{}, ErrBadCredentials
	}
	g.byClient.refund(client)
	g.byName.reset(nameKey)
	return g.sessions.open(u.Name, u.Role, g.cfg.Now())
}

// verify checks the password of name; an unknown or disabled user costs one hash too.
func (g *Gate) verify(name, password string) (bool, User, error) {
	u, found, err := g.dir.Lookup(name)
	if err != nil {
		return false, User{}, err
	}
	if !found || u.Disabled {
		g.dummyOnce.Do(func() {
			g.dummy, g.dummyErr = HashPassword("stand-in for an unknown user", g.cfg.Hash, g.cfg.Rand)
		})
		if g.dummyErr != nil {
			return false, User{}, g.dummyErr
		}
		_, _ = VerifyPassword(g.dummy, password)
		return false, User{}, nil
	}
	ok, err := VerifyPassword(u.PasswordHash, password)
	if err != nil {
		return false, User{}, fmt.Errorf("staff: user %q: %w", name, err)
	}
	return ok, u, nil
}

// Authenticate returns who the session token acts for and extends its idle timer. A session
// whose user has since been disabled, removed or given another role ends at once
// (ErrNoSession, with the Principal it was); an error other than ErrNoSession is the node's.
func (g *Gate) Authenticate(token string) (Principal, error) {
	s, ok := g.sessions.check(token, g.cfg.Now())
	if !ok {
		return Principal{}, ErrNoSession
	}
	u, found, err := g.dir.Lookup(s.user)
	if err != nil {
		return Principal{}, err
	}
	if !found || u.Disabled || u.Role != s.role {
		g.sessions.closeUser(s.user)
		// Who it was is returned for the audit log; the session is over all the same.
		return Principal{User: s.user, Role: s.role}, ErrNoSession
	}
	return Principal{User: s.user, Role: s.role}, nil
}

// Logout ends the session of token; it says whether there was one.
func (g *Gate) Logout(token string) bool { return g.sessions.close(token) }

// Sessions is the number of sessions held (for tests and status).
func (g *Gate) Sessions() int { return g.sessions.count() }
