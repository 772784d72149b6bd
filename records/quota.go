package records

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/records/exchange"
)

// Bounds on what one member may make this node store (pushes) or send (pulls). A member's
// whole node shares them, whatever peer ids it dials from. An honest author pushes each record
// to Params.Replicas holders; importing a practice's history (thousands of records of a few KiB)
// stays far below them, while a compromised member cannot fill a holder's disk faster than
// quotaBytes a window, nor keep its CPU busy with more than quotaRate requests a second.
const (
	quotaBytes  = 64 << 20 // bytes per quotaWindow, per member
	quotaWindow = time.Minute
	quotaRate   = 100 // requests a second, per member
	// quotaMembers bounds the quota table. Only active providers reach it (the ledger is
	// checked first) and a role has at most state.MaxMembersPerRole members.
	quotaMembers = 2 * state.MaxMembersPerRole
)

// memberQuota is a token bucket of requests and one of bytes per member.
type memberQuota struct {
	what  string // "push" or "pull", for the refusal
	bytes rate.Limit
	burst int
	reqs  rate.Limit
	rburs int

	mu sync.Mutex
	m  map[chain.Address]*quotaBuckets
}

type quotaBuckets struct {
	bytes, reqs *rate.Limiter
}

func newMemberQuota(what string, bytesPerWindow int, window time.Duration, reqsPerSecond int) *memberQuota {
	return &memberQuota{what: what, bytes: rate.Limit(float64(bytesPerWindow) / window.Seconds()), burst: bytesPerWindow,
		reqs: rate.Limit(reqsPerSecond), rburs: reqsPerSecond, m: make(map[chain.Address]*quotaBuckets)}
}

// take charges one request of n bytes to member at now. Over either bound it charges nothing
// and returns an error wrapping exchange.ErrBusy that says which bound.
func (q *memberQuota) take(member chain.Address, n int, now time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, ok := q.m[member]
	if !ok {
		if len(q.m) >= quotaMembers {
			q.evictFull(now)
			if len(q.m) >= quotaMembers {
				return fmt.Errorf("%w: too many members pushing at once", exchange.ErrBusy)
			}
		}
		b = &quotaBuckets{bytes: rate.NewLimiter(q.bytes, q.burst), reqs: rate.NewLimiter(q.reqs, q.rburs)}
		q.m[member] = b
	}
	if n > q.burst {
		return fmt.Errorf("%w: a %s of %d bytes exceeds the %d bytes a member may send per %s", exchange.ErrBusy, q.what, n, q.burst, quotaWindow)
	}
	br := b.bytes.ReserveN(now, n)
	if br.DelayFrom(now) > 0 {
		br.CancelAt(now)
		return fmt.Errorf("%w: member %s is over %d MiB of %ss per %s", exchange.ErrBusy, member, q.burst>>20, q.what, quotaWindow)
	}
	if !b.reqs.AllowN(now, 1) {
		br.CancelAt(now)
		return fmt.Errorf("%w: member %s is over %d %ss a second", exchange.ErrBusy, member, q.rburs, q.what)
	}
	return nil
}

// evictFull forgets members whose buckets have refilled: they are where a new entry would start.
func (q *memberQuota) evictFull(now time.Time) {
	for id, b := range q.m {
		if b.bytes.TokensAt(now) >= float64(q.burst) && b.reqs.TokensAt(now) >= float64(q.rburs) {
			delete(q.m, id)
		}
	}
}
