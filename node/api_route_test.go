package node

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A wrong method on an existing route is 405 with an Allow header naming the right ones; an
// unknown path stays 404; both keep the API's JSON error shape.
func TestAPIWrongMethodIs405(t *testing.T) {
	api := NewAPI(refusingBackend{}, NodeInfo{ChainID: "api-test"}, testToken, 4096, 1<<20, slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{http.MethodGet, "/v1/txs", http.StatusMethodNotAllowed, "POST"},
		{http.MethodDelete, "/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodPost, "/v1/blocks/3", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, "/v1/nothing-here", http.StatusNotFound, ""},
		{http.MethodPost, "/v1/status/extra", http.StatusNotFound, ""},
	} {
		req := httptest.NewRequest(c.method, c.path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		var e ErrorJSON
		if rec.Code != c.code || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("%s %s: got %d %q, want %d with a JSON error", c.method, c.path, rec.Code, rec.Body, c.code)
			continue
		}
		if got := rec.Header().Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
		if c.code == http.StatusMethodNotAllowed && !strings.Contains(e.Error, "not allowed") {
			t.Errorf("%s %s: error %q does not say the method is not allowed", c.method, c.path, e.Error)
		}
	}
}
