package embedded_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/registry/embedded"
)

func start(t *testing.T, cfg embedded.Config) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func client(t *testing.T, srv *embedded.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestServesClients(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "etcd")
	srv := start(t, embedded.Config{Dir: dir, ClientURL: "http://127.0.0.1:0"})

	endpoints := srv.Endpoints()
	if len(endpoints) != 1 || !strings.HasPrefix(endpoints[0], "http://127.0.0.1:") || strings.HasSuffix(endpoints[0], ":0") {
		t.Fatalf("endpoints %q, want one http://127.0.0.1:<port>", endpoints)
	}
	cli := client(t, srv)
	if _, err := cli.Put(t.Context(), "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("stat data directory: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode %v, want 0700", perm)
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	first, err := embedded.Start(t.Context(), embedded.Config{Dir: dir, ClientURL: "http://127.0.0.1:0"})
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: first.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	_, err = cli.Put(t.Context(), "function", "kept")
	cli.Close()
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// New ports, same data.
	second := start(t, embedded.Config{Dir: dir, ClientURL: "http://127.0.0.1:0"})
	resp, err := client(t, second).Get(t.Context(), "function")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Errorf("after restart got %v, want function=kept", resp.Kvs)
	}
}

func TestStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyURL := "http://" + busy.Addr().String()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	inUse := filepath.Join(t.TempDir(), "etcd")
	start(t, embedded.Config{Dir: inUse, ClientURL: "http://127.0.0.1:0"})

	tests := []struct {
		name string
		cfg  embedded.Config
		// want is matched with errors.Is, besides ErrStart.
		want error
		// mention must appear in the message.
		mention string
	}{
		{name: "no data directory", cfg: embedded.Config{ClientURL: "http://127.0.0.1:0"}, mention: "data directory"},
		{name: "data directory is a file", cfg: embedded.Config{Dir: file, ClientURL: "http://127.0.0.1:0"}, mention: file},
		{name: "data directory in use", cfg: embedded.Config{Dir: inUse, ClientURL: "http://127.0.0.1:0"}, want: embedded.ErrDirInUse, mention: inUse},
		{name: "client port in use", cfg: embedded.Config{Dir: filepath.Join(t.TempDir(), "etcd"), ClientURL: busyURL}, want: syscall.EADDRINUSE, mention: busy.Addr().String()},
		{name: "peer port in use", cfg: embedded.Config{Dir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "http://127.0.0.1:0", PeerURL: busyURL}, want: syscall.EADDRINUSE, mention: busy.Addr().String()},
		{name: "client URL without scheme", cfg: embedded.Config{Dir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "127.0.0.1:2379"}, mention: "127.0.0.1:2379"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			srv, err := embedded.Start(ctx, tc.cfg)
			if err == nil {
				srv.Close()
				t.Fatal("Start succeeded")
			}
			if !errors.Is(err, embedded.ErrStart) {
				t.Errorf("error %v does not wrap ErrStart", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

// recorder is a slog.Handler that keeps records.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

func (r *recorder) WithGroup(string) slog.Handler { return r }

func TestQuietLogging(t *testing.T) {
	rec := &recorder{}
	srv, err := embedded.Start(t.Context(), embedded.Config{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "http://127.0.0.1:0",
		Logger:    slog.New(rec),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cli := client(t, srv)
	if _, err := cli.Put(t.Context(), "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	cli.Close()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.records {
		// A loaded machine may make etcd warn about slow requests.
		if strings.Contains(r.Message, "took too long") {
			continue
		}
		t.Errorf("a normal start and stop logged %v %q", r.Level, r.Message)
	}
}

// BenchmarkStartClose measures a cold start on a fresh data directory,
// until the server serves clients, and its stop.
func BenchmarkStartClose(b *testing.B) {
	for b.Loop() {
		srv, err := embedded.Start(b.Context(), embedded.Config{
			Dir:       filepath.Join(b.TempDir(), "etcd"),
			ClientURL: "http://127.0.0.1:0",
		})
		if err != nil {
			b.Fatalf("Start: %v", err)
		}
		srv.Close()
	}
}
