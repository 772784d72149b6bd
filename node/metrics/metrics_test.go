package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	peers := map[string]int{"member": 2}
	for _, tc := range []struct {
		name             string
		s                Snapshot
		p2p, needPeers   bool
		ready            bool
		reasonContaining string
	}{
		{"synced", Snapshot{Height: 10, SyncTarget: 12, Peers: peers}, true, true, true, ""},
		{"behind", Snapshot{Height: 10, SyncTarget: 14, Peers: peers}, true, true, false, "4 blocks behind"},
		{"alone in a network", Snapshot{Height: 10, Peers: map[string]int{}}, true, true, false, "no member peer"},
		{"alone by design", Snapshot{Height: 10, Peers: map[string]int{}}, true, false, true, ""},
		{"p2p down", Snapshot{Height: 10, Peers: peers}, false, true, false, "p2p"},
	} {
		r := Judge(tc.s, tc.p2p, tc.needPeers)
		if r.Ready != tc.ready || !strings.Contains(r.Reason, tc.reasonContaining) {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
}

// Unknown operations and outcomes fold into fixed values: the label set stays bounded.
func TestRecordLabelsBounded(t *testing.T) {
	m := New(func(context.Context) (Snapshot, error) { return Snapshot{}, errors.New("busy") })
	m.Record("Patient/123", "because")
	m.Record(OpImport, OutcomeOK)
	rec := httptest.NewRecorder()
	m.Routes(Probes{Alive: func(context.Context) error { return nil }, P2PUp: func() bool { return true }}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`medledger_record_requests_total{op="other",outcome="error"} 1`,
		`medledger_record_requests_total{op="import",outcome="ok"} 1`,
		`medledger_scrape_snapshot_ok 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in\n%s", want, body)
		}
	}
	if strings.Contains(body, "Patient/123") {
		t.Fatal("an operation name became a label value")
	}
	// A node that cannot answer is not ready; a store that cannot be read is not healthy.
	rec = httptest.NewRecorder()
	m.Routes(Probes{Alive: func(context.Context) error { return errors.New("closed") }, P2PUp: func() bool { return true }}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz on an unreadable store: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	m.Routes(Probes{Alive: func(context.Context) error { return nil }, P2PUp: func() bool { return true }}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz when the node does not answer: %d", rec.Code)
	}
}
