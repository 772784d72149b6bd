package staff

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// SessionConfig bounds sessions. Zero fields take the defaults.
type SessionConfig struct {
	// Idle ends a session that has made no request for this long (automatic logoff, HIPAA
	// §164.312(a)(2)(iii)). Default 15 minutes.
	Idle time.Duration
	// Lifetime ends a session this long after login, however busy. Default 12 hours.
	Lifetime time.Duration
	// MaxTotal bounds the sessions of all users; a login beyond it is refused (ErrTooManySessions)
	// once expired sessions are swept. Default 1000.
	MaxTotal int
	// MaxPerUser bounds one user's sessions; a login beyond it ends that user's oldest session.
	// Default 5.
	MaxPerUser int
}

// Session defaults.
const (
	DefaultIdle       = 15 * time.Minute
	DefaultLifetime   = 12 * time.Hour
	DefaultMaxTotal   = 1000
	DefaultMaxPerUser = 5
)

func (c SessionConfig) withDefaults() SessionConfig {
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.Lifetime <= 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.MaxTotal <= 0 {
		c.MaxTotal = DefaultMaxTotal
	}
	if c.MaxPerUser <= 0 {
		c.MaxPerUser = DefaultMaxPerUser
	}
	return c
}

// TokenPrefix starts every session token, so that a token in a log or a paste is recognizable
// (and never mistaken for the operator's 64-hex-digit api.token).
const TokenPrefix = "mls_"

// ErrTooManySessions refuses a login while MaxTotal sessions are live.
var ErrTooManySessions = errors.New("staff: too many open sessions on this node: retry later")

// Session is an open session as its user sees it.
type Session struct {
	// Token is the bearer token: TokenPrefix and 32 random bytes in hex. Only its SHA-256 is kept.
	Token     string
	User      string
	Role      Role
	Created   time.Time
	ExpiresAt time.Time // the absolute end; idleness may end it sooner
}

type session struct {
	user          string
	role          Role
	created, last time.Time
	seq           uint64 // order of opening: logins in the same instant still have an oldest
}

// sessions is the in-memory session table, keyed by the SHA-256 of the token. A node restart
// ends every session. Callers hold no lock; sessions has its own.
type sessions struct {
	cfg  SessionConfig
	rand io.Reader

	mu     sync.Mutex
	byID   map[[32]byte]*session
	opened uint64
}

func newSessions(cfg SessionConfig, rand io.Reader) *sessions {
	return &sessions{cfg: cfg.withDefaults(), rand: rand, byID: map[[32]byte]*session{}}
}

func (s *sessions) expired(x *session, now time.Time) bool {
	return !now.Before(x.created.Add(s.cfg.Lifetime)) || !now.Before(x.last.Add(s.cfg.Idle))
}

// open starts a session for user.
func (s *sessions) open(user string, role Role, now time.Time) (Session, error) {
	raw := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, raw); err != nil {
		return Session{}, fmt.Errorf("staff: session token: %w", err)
	}
	tok := TokenPrefix + hex.EncodeToString(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	var oldest [32]byte
	var oldestSeq uint64
	mine := 0
	for id, x := range s.byID {
		if x.user == user {
			if mine++; mine == 1 || x.seq < oldestSeq {
				oldest, oldestSeq = id, x.seq
			}
		}
	}
	if mine >= s.cfg.MaxPerUser {
		delete(s.byID, oldest)
	} else if len(s.byID) >= s.cfg.MaxTotal {
		return Session{}, ErrTooManySessions
	}
	s.opened++
	s.byID[sha256.Sum256([]byte(tok))] = &session{user: user, role: role, created: now, last: now, seq: s.opened}
	return Session{Token: tok, User: user, Role: role, Created: now, ExpiresAt: now.Add(s.cfg.Lifetime)}, nil
}

// check returns the live session of token and marks it used at now; an expired one is removed.
// The token is looked up by its SHA-256, so the lookup's timing says nothing useful about the
// token itself.
func (s *sessions) check(token string, now time.Time) (session, bool) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return session{}, false
	}
	id := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.byID[id]
	if !ok {
		return session{}, false
	}
	if s.expired(x, now) {
		delete(s.byID, id)
		return session{}, false
	}
	x.last = now
	return *x, true
}

// close ends the session of token; it says whether there was one.
func (s *sessions) close(token string) bool {
	id := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byID[id]
	delete(s.byID, id)
	return ok
}

// closeUser ends every session of user.
func (s *sessions) closeUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, x := range s.byID {
		if x.user == user {
			delete(s.byID, id)
		}
	}
}

func (s *sessions) sweepLocked(now time.Time) {
	for id, x := range s.byID {
		if s.expired(x, now) {
			delete(s.byID, id)
		}
	}
}

// count is the number of sessions held (expired ones included until swept).
func (s *sessions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
