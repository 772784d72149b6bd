package staff

import (
	"sync"
	"time"
)

// limiter counts login attempts per key (a user name, a client address) in fixed windows: after
// max attempts within window of the first, the key is refused until the window ends. An attempt
// is counted when it starts (take), before the password is checked, so that attempts made in
// parallel cannot slip past the limit; a successful one is taken back (refund) or clears the key
// (reset). It holds at most maxKeys keys; when full of live windows it refuses keys it does not
// hold (failing closed), so outside input cannot grow it.
type limiter struct {
	max     int
	window  time.Duration
	maxKeys int

	mu sync.Mutex
	m  map[string]*attempts
}

type attempts struct {
	n     int
	start time.Time
}

func newLimiter(max int, window time.Duration, maxKeys int) *limiter {
	return &limiter{max: max, window: window, maxKeys: maxKeys, m: map[string]*attempts{}}
}

// take counts an attempt of key at now, or refuses it and says when key may try again.
func (l *limiter) take(key string, now time.Time) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.m[key]
	if ok && !now.Before(a.start.Add(l.window)) {
		delete(l.m, key)
		ok = false
	}
	if !ok {
		if len(l.m) >= l.maxKeys {
			l.sweepLocked(now)
		}
		if len(l.m) >= l.maxKeys {
			return false, now.Add(l.window)
		}
		a = &attempts{start: now}
		l.m[key] = a
	}
	if a.n >= l.max {
		return false, a.start.Add(l.window)
	}
	a.n++
	return true, time.Time{}
}

// refund takes back one attempt of key (one that succeeded, or failed for the node's reasons).
func (l *limiter) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.m[key]; ok && a.n > 0 {
		a.n--
	}
}

// reset forgets key's attempts (after a successful login).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

func (l *limiter) sweepLocked(now time.Time) {
	for k, a := range l.m {
		if !now.Before(a.start.Add(l.window)) {
			delete(l.m, k)
		}
	}
}
