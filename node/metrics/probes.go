package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// ReadyLag is how many blocks behind the highest height its peers show a node may be and
// still answer /readyz with 200.
const ReadyLag = 3

// Probes are the checks behind /healthz and /readyz.
type Probes struct {
	// Alive reads the store (the committed head): an error makes /healthz answer 503.
	Alive func(ctx context.Context) error
	// P2PUp reports whether the libp2p host is listening.
	P2PUp func() bool
	// NeedPeers: the network has other members, so a node with no member peer is not ready
	// (a one-node network is ready alone).
	NeedPeers bool
}

// Readiness is the body of /readyz: heights and counts only, nothing a token protects.
type Readiness struct {
	Ready       bool   `json:"ready"`
	Height      uint64 `json:"height"`
	SyncTarget  uint64 `json:"sync_target"`
	MemberPeers int    `json:"member_peers"`
	P2P         bool   `json:"p2p"`
	Reason      string `json:"reason,omitempty"`
}

// Judge decides readiness from a snapshot: p2p up, a member peer when the network has others,
// and within ReadyLag blocks of the highest height peers showed.
func Judge(s Snapshot, p2pUp, needPeers bool) Readiness {
	r := Readiness{Height: s.Height, SyncTarget: max(s.SyncTarget, s.Height), MemberPeers: s.Peers["member"], P2P: p2pUp}
	switch {
	case !p2pUp:
		r.Reason = "p2p host not listening"
	case needPeers && r.MemberPeers == 0:
		r.Reason = "no member peer connected"
	case r.SyncTarget > r.Height+ReadyLag:
		r.Reason = fmt.Sprintf("syncing: %d blocks behind", r.SyncTarget-r.Height)
	default:
		r.Ready = true
	}
	return r
}

// Routes serves GET /metrics, /healthz and /readyz, which need no token: their answers hold
// counts, heights and states, never protected health information nor anything a token guards.
func (m *Metrics) Routes(p Probes) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
		defer cancel()
		if err := p.Alive(ctx); err != nil {
			writeProbe(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "reason": "store not readable"})
			return
		}
		writeProbe(w, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
		defer cancel()
		s, err := m.snap(ctx)
		if err != nil {
			writeProbe(w, http.StatusServiceUnavailable, Readiness{Reason: "the node did not answer in time"})
			return
		}
		rd := Judge(s, p.P2PUp(), p.NeedPeers)
		code := http.StatusOK
		if !rd.Ready {
			code = http.StatusServiceUnavailable
		}
		writeProbe(w, code, rd)
	})
	return mux
}

// IsRoute reports whether path is one Routes serves, for a caller that sends these requests
// there before its token check.
func IsRoute(path string) bool {
	return path == "/metrics" || path == "/healthz" || path == "/readyz"
}

func writeProbe(w http.ResponseWriter, code int, v any) {
	data, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}
