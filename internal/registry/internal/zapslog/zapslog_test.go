package zapslog_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/serverledge/serverledge/internal/registry/internal/zapslog"
)

func TestForwarding(t *testing.T) {
	tests := []struct {
		name string
		log  func(*zap.Logger)
		// want is the expected output, "" for none.
		want string
	}{
		{"below the level", func(l *zap.Logger) { l.Info("hello") }, ""},
		{"warning with fields", func(l *zap.Logger) { l.Warn("slow", zap.Int("ms", 120), zap.String("op", "put")) },
			`level=WARN msg=slow ms=120 op=put`},
		{"error", func(l *zap.Logger) { l.Error("broken") }, `level=ERROR msg=broken`},
		{"fields from With", func(l *zap.Logger) { l.With(zap.String("member", "m1")).Warn("lagging") },
			`level=WARN msg=lagging member=m1`},
		{"named logger", func(l *zap.Logger) { l.Named("raft").Warn("x") }, `level=WARN msg=x logger=raft`},
		{"ignored message", func(l *zap.Logger) { l.Warn("simple token is not signed", zap.Int("n", 1)) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: slog.LevelDebug,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			})
			tc.log(zapslog.New(slog.New(h), slog.LevelWarn, "simple token"))
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Errorf("logged %q, want %q", got, tc.want)
			}
		})
	}
}
