package staff

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cheap are hash parameters small enough for tests.
var cheap = HashParams{MemoryKiB: 64, Time: 1, Threads: 1}

const pw = "correct horse battery"

func TestPasswordHashIsPHCAndVerifies(t *testing.T) {
	h, err := HashPassword(pw, DefaultHashParams, rand.Reader)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$"), h)
	ok, err := VerifyPassword(h, pw)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = VerifyPassword(h, pw+"!")
	require.NoError(t, err)
	require.False(t, ok)
	h2, err := HashPassword(pw, DefaultHashParams, rand.Reader)
	require.NoError(t, err)
	require.NotEqual(t, h, h2, "a fresh salt per hash")

	_, err = HashPassword("short", cheap, rand.Reader)
	require.Error(t, err)
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 4 GiB
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA"} {
		_, err := VerifyPassword(bad, pw)
		require.Error(t, err, bad)
	}
}

func TestUsersFileModeAndAtomicWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	users, err := Load(path)
	require.NoError(t, err)
	require.Empty(t, users)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, Add(path, "alice", RoleClinician, pw, cheap, rand.Reader, now))
	require.NoError(t, Add(path, "bob", RoleFrontDesk, pw, cheap, rand.Reader, now))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.ErrorContains(t, Add(path, "alice", RoleAdmin, pw, cheap, rand.Reader, now), "exists")
	require.ErrorContains(t, Add(path, "Alice!", RoleAdmin, pw, cheap, rand.Reader, now), "user name")
	require.ErrorContains(t, Add(path, "carol", "nurse", pw, cheap, rand.Reader, now), "role")
	require.ErrorIs(t, Disable(path, "nobody", now), ErrUnknownUser)

	// A refused change leaves the file as it was, and no temporary file behind.
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Error(t, Save(path, []User{{Name: "x"}}))
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)

	// Readers never see a half-written file while writers replace it.
	users, err = Load(path)
	require.NoError(t, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			users[0].Disabled = i%2 == 0
			if err := Save(path, users); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 300 {
		got, err := Load(path)
		require.NoError(t, err)
		require.Len(t, got, 2)
	}
	close(stop)
	wg.Wait()
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasSuffix(e.Name(), ".tmp"), "left behind: %s", e.Name())
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestGate(t *testing.T, sc SessionConfig) (*Gate, string, *clock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.json")
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	require.NoError(t, Add(path, "alice", RoleClinician, pw, cheap, rand.Reader, c.now()))
	require.NoError(t, Add(path, "bob", RoleFrontDesk, pw, cheap, rand.Reader, c.now()))
	dir, err := NewDirectory(path)
	require.NoError(t, err)
	return NewGate(dir, GateConfig{Sessions: sc, Hash: cheap, Now: c.now}), path, c
}

func TestLoginSessionsExpireAndEnd(t *testing.T) {
	ctx := context.Background()
	g, path, c := newTestGate(t, SessionConfig{Idle: 15 * time.Minute, Lifetime: time.Hour})
	s, err := g.Login(ctx, "alice", pw, "c1")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(s.Token, TokenPrefix))
	require.Equal(t, RoleClinician, s.Role)
	require.Equal(t, c.now().Add(time.Hour), s.ExpiresAt)
	p, err := g.Authenticate(s.Token)
	require.NoError(t, err)
	require.Equal(t, Principal{User: "alice", Role: RoleClinician}, p)

	// Idle timeout: activity within 15 minutes keeps it alive ...
	for range 3 {
		c.add(14 * time.Minute)
		_, err = g.Authenticate(s.Token)
		require.NoError(t, err)
	}
	// ... 15 minutes of silence ends it.
	c.add(15 * time.Minute)
	_, err = g.Authenticate(s.Token)
	require.ErrorIs(t, err, ErrNoSession)

	// Absolute lifetime ends even a busy session.
	s, err = g.Login(ctx, "alice", pw, "c1")
	require.NoError(t, err)
	for range 4 {
		c.add(14 * time.Minute)
		_, err = g.Authenticate(s.Token)
		require.NoError(t, err)
	}
	c.add(5 * time.Minute) // 61 minutes after login
	_, err = g.Authenticate(s.Token)
	require.ErrorIs(t, err, ErrNoSession)

	// Logout.
	s, err = g.Login(ctx, "alice", pw, "c1")
	require.NoError(t, err)
	require.True(t, g.Logout(s.Token))
	_, err = g.Authenticate(s.Token)
	require.ErrorIs(t, err, ErrNoSession)
	require.False(t, g.Logout(s.Token))

	// Disabling a user ends its live session at its next request.
	s, err = g.Login(ctx, "bob", pw, "c1")
	require.NoError(t, err)
	_, err = g.Authenticate(s.Token)
	require.NoError(t, err)
	require.NoError(t, Disable(path, "bob", c.now()))
	_, err = g.Authenticate(s.Token)
	require.ErrorIs(t, err, ErrNoSession)
	_, err = g.Login(ctx, "bob", pw, "c1")
	require.ErrorIs(t, err, ErrBadCredentials)

	// Forged and foreign tokens.
	for _, tok := range []string{"", "mls_", TokenPrefix + strings.Repeat("0", 64), strings.Repeat("a", 64)} {
		_, err = g.Authenticate(tok)
		require.ErrorIs(t, err, ErrNoSession)
	}
}

func TestSameAnswerForUnknownUserAndWrongPassword(t *testing.T) {
	g, _, _ := newTestGate(t, SessionConfig{})
	_, e1 := g.Login(context.Background(), "alice", "wrong password!", "c1")
	_, e2 := g.Login(context.Background(), "zed", pw, "c2")
	_, e3 := g.Login(context.Background(), "BAD NAME", pw, "c3")
	require.ErrorIs(t, e1, ErrBadCredentials)
	require.Equal(t, e1, e2)
	require.Equal(t, e1, e3)
}

func TestLoginRateLimits(t *testing.T) {
	ctx := context.Background()
	g, _, c := newTestGate(t, SessionConfig{})
	for range DefaultMaxFailuresPerName {
		_, err := g.Login(ctx, "alice", "wrong password!", "c1")
		require.ErrorIs(t, err, ErrBadCredentials)
	}
	// Locked: even the right password is refused, without being checked.
	_, err := g.Login(ctx, "alice", pw, "c2")
	var rl *RateLimitedError
	require.ErrorAs(t, err, &rl)
	require.Equal(t, DefaultFailureWindow, rl.RetryAfter)
	// Other users are not locked out by alice's failures.
	_, err = g.Login(ctx, "bob", pw, "c1")
	require.NoError(t, err)
	c.add(DefaultFailureWindow)
	_, err = g.Login(ctx, "alice", pw, "c1")
	require.NoError(t, err)

	// Per client: failures spread over many names lock the client.
	for i := range DefaultMaxFailuresPerClient {
		_, err := g.Login(ctx, "user"+string(rune('a'+i%26))+string(rune('a'+i/26)), "wrong password!", "c9")
		require.ErrorIs(t, err, ErrBadCredentials)
	}
	_, err = g.Login(ctx, "bob", pw, "c9")
	require.ErrorAs(t, err, &rl)
	_, err = g.Login(ctx, "bob", pw, "c8")
	require.NoError(t, err)
}

func TestSessionBounds(t *testing.T) {
	ctx := context.Background()
	g, _, _ := newTestGate(t, SessionConfig{MaxPerUser: 2, MaxTotal: 3})
	a1, err := g.Login(ctx, "alice", pw, "c")
	require.NoError(t, err)
	a2, err := g.Login(ctx, "alice", pw, "c")
	require.NoError(t, err)
	a3, err := g.Login(ctx, "alice", pw, "c") // ends a1, the oldest
	require.NoError(t, err)
	_, err = g.Authenticate(a1.Token)
	require.ErrorIs(t, err, ErrNoSession)
	for _, s := range []Session{a2, a3} {
		_, err = g.Authenticate(s.Token)
		require.NoError(t, err)
	}
	_, err = g.Login(ctx, "bob", pw, "c")
	require.NoError(t, err)
	_, err = g.Login(ctx, "bob", pw, "c")
	require.True(t, errors.Is(err, ErrTooManySessions), "%v", err)
	require.Equal(t, 3, g.Sessions())
}

func TestLimiterIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, time.Minute, 3)
	for _, k := range []string{"a", "b", "c"} {
		ok, _ := l.take(k, now)
		require.True(t, ok)
	}
	ok, _ := l.take("d", now)
	require.False(t, ok, "a full table refuses keys it does not hold")
	require.Len(t, l.m, 3)
	ok, _ = l.take("a", now)
	require.False(t, ok, "over its limit")
	l.refund("a")
	ok, _ = l.take("a", now)
	require.True(t, ok, "a refunded attempt does not count")
	ok, _ = l.take("d", now.Add(time.Minute))
	require.True(t, ok, "expired windows make room")
}

// TestParallelGuessesAreLimited: attempts count when they start, so many at once get no more
// password checks than the limit.
func TestParallelGuessesAreLimited(t *testing.T) {
	g, _, _ := newTestGate(t, SessionConfig{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	checked := 0
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.Login(context.Background(), "alice", "wrong password!", "c1")
			if errors.Is(err, ErrBadCredentials) {
				mu.Lock()
				checked++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, DefaultMaxFailuresPerName, checked)
	_, err := g.Login(context.Background(), "alice", pw, "c2")
	var rl *RateLimitedError
	require.ErrorAs(t, err, &rl)
}

// TestDirectoryFollowsTheFile: the directory sees additions, and a file that stops loading is an
// error, never an empty list.
func TestDirectoryFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	d, err := NewDirectory(path)
	require.NoError(t, err)
	_, ok, err := d.Lookup("alice")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, Add(path, "alice", RoleAdmin, pw, cheap, rand.Reader, time.Now()))
	u, ok, err := d.Lookup("alice")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, RoleAdmin, u.Role)
	require.NoError(t, os.WriteFile(path, []byte(`{"version":1,"users":[{"name":"alice"`), 0o600))
	_, _, err = d.Lookup("alice")
	require.Error(t, err)
}
