// Package zapslog forwards the zap logs of the etcd client and server to
// log/slog, so that a node has one log stream.
package zapslog

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a zap logger that writes entries at min or above to l, except
// entries whose message starts with one of ignore (known, benign messages).
// min may be a *slog.LevelVar to change the level later.
func New(l *slog.Logger, min slog.Leveler, ignore ...string) *zap.Logger {
	return zap.New(&core{l: l, min: min, ignore: ignore})
}

type core struct {
	l      *slog.Logger
	min    slog.Leveler
	ignore []string
	attrs  []slog.Attr
}

func (c *core) Enabled(lvl zapcore.Level) bool {
	return level(lvl) >= c.min.Level()
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.attrs = append(slices.Clip(c.attrs), attrs(fields)...)
	return &clone
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !c.Enabled(e.Level) {
		return ce
	}
	for _, prefix := range c.ignore {
		if strings.HasPrefix(e.Message, prefix) {
			return ce
		}
	}
	return ce.AddCore(e, c)
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	all := append(slices.Clip(c.attrs), attrs(fields)...)
	if e.LoggerName != "" {
		all = append(all, slog.String("logger", e.LoggerName))
	}
	c.l.LogAttrs(context.Background(), level(e.Level), e.Message, all...)
	return nil
}

func (c *core) Sync() error { return nil }

func level(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func attrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	slices.SortFunc(out, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return out
}
