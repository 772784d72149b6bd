package logbridge

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	golog "github.com/ipfs/go-log/v2"
)

// A go-log logger's line arrives in the slog handler with its subsystem and fields.
func TestRoute(t *testing.T) {
	var buf bytes.Buffer
	Route(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := golog.Logger("logbridge-test")
	if err := golog.SetLogLevel("logbridge-test", "warn"); err != nil {
		t.Fatal(err)
	}
	l.Infow("not at warn", "k", 1)
	l.Warnw("routing table refresh failed", "peers", 3)
	out := buf.String()
	if strings.Contains(out, "not at warn") {
		t.Fatalf("go-log's subsystem level was not applied: %s", out)
	}
	for _, want := range []string{`"msg":"routing table refresh failed"`, `"level":"WARN"`, `"logger":"logbridge-test"`, `"peers":3`} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %s in %s", want, out)
		}
	}
}
