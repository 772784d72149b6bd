// Package logbridge routes the logs of libraries that write through go-log (kad-dht, boxo)
// into a slog handler, so that every line a node prints goes through one handler and format.
// go-log is process-wide: the last handler given wins.
package logbridge

import (
	"context"
	"log/slog"
	"sync"

	golog "github.com/ipfs/go-log/v2"
	"go.uber.org/zap/zapcore"
)

var mu sync.Mutex

// Route makes go-log's primary output h: go-log's per-subsystem levels still decide what is
// logged (GOLOG_LOG_LEVEL, "error" by default), and h's level what is printed.
func Route(h slog.Handler) {
	mu.Lock()
	defer mu.Unlock()
	golog.SetPrimaryCore(&core{h: h})
}

// core is a zapcore.Core writing to a slog handler.
type core struct {
	h      slog.Handler
	fields []zapcore.Field
}

func level(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (c *core) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), level(l))
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{h: c.h, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, level(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	for k, v := range enc.Fields {
		r.AddAttrs(slog.Any(k, v))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *core) Sync() error { return nil }
