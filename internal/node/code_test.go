package node_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/testutil"
)

// loadRecorder is a runtime that remembers the code of every load.
type loadRecorder struct {
	container.Runtime
	mu    sync.Mutex
	loads [][]byte
}

func (r *loadRecorder) Load(ctx context.Context, id string, req container.LoadRequest) error {
	r.mu.Lock()
	r.loads = append(r.loads, bytes.Clone(req.Code))
	r.mu.Unlock()
	return r.Runtime.Load(ctx, id, req)
}

func (r *loadRecorder) last() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.loads) == 0 {
		return nil
	}
	return r.loads[len(r.loads)-1]
}

// archive returns a tar archive of one file.
func archive(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestColdStartAfterUpdateLoadsNewCode wires a pool to a real etcd as the
// node does: definitions without code from the watched cache, code by
// version from a CodeCache. After an update, the next cold start must load
// the new version's code, not a cached copy of the old one.
func TestColdStartAfterUpdateLoadsNewCode(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	reg, err := etcdreg.New(ctx, etcdreg.Config{Endpoints: registrytest.StartEmbeddedEtcd(t), Prefix: registrytest.UniquePrefix(t)})
	if err != nil {
		t.Fatalf("etcd registry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	codes, err := registry.NewCodeCache(reg, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	rt := &loadRecorder{Runtime: fake.New(fake.Options{Funcs: map[string]fake.Func{"main.echo": fake.Echo}})}
	pool, err := node.New(rt, node.Config{NodeID: "code-" + t.Name(), MemoryMB: 1024, CPUs: 2, Code: codes.Get, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = pool.Shutdown(sctx)
	})
	if err := pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cache, err := registry.NewCache(reg, 16)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		cache.Watch(wctx, log, func(ev registry.FunctionEvent) {
			version := ""
			if ev.Function != nil {
				version = ev.Function.Version
			}
			pool.FunctionChanged(ev.Name, version)
			codes.Forget(ev.Name, version)
		})
	}()
	t.Cleanup(func() { stop(); <-watching })

	define := func(body string) (*function.Function, []byte) {
		code := archive(t, "main.py", body)
		f := &function.Function{Name: "fn", Runtime: function.RuntimePython, Handler: "main.echo",
			TarFunctionCode: base64.StdEncoding.EncodeToString(code)}
		if err := f.Normalize(); err != nil {
			t.Fatal(err)
		}
		return f, code
	}
	coldStart := func(f *function.Function, want []byte) {
		t.Helper()
		def, err := cache.Get(ctx, f.Name)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if def.TarFunctionCode != "" || def.Version != f.Version {
			t.Fatalf("cached definition has version %s and %d bytes of code, want version %s and none",
				def.Version, len(def.TarFunctionCode), f.Version)
		}
		c, warm, err := pool.Acquire(ctx, def)
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		defer pool.Release(c, true)
		if warm {
			t.Fatalf("version %s served by a warm container", f.Version)
		}
		if got := rt.last(); !bytes.Equal(got, want) {
			t.Errorf("cold start of version %s loaded %d bytes, want the %d bytes of that version", f.Version, len(got), len(want))
		}
	}

	// Once the watch reports a probe (written until it does), it reports
	// every later change.
	probe, _ := define("probe = 1\n")
	probe.Name = "probe"
	if err := reg.CreateFunction(ctx, probe); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 10*time.Second, "the watch reports the probe", func() bool {
		if _, ok := cache.Peek("probe"); ok {
			return true
		}
		if err := reg.UpdateFunction(ctx, probe); err != nil {
			t.Fatalf("update probe: %v", err)
		}
		return false
	})

	v1, code1 := define("v = 1\n")
	if err := reg.CreateFunction(ctx, v1); err != nil {
		t.Fatal(err)
	}
	coldStart(v1, code1)
	if codes.Len() != 1 {
		t.Errorf("code cache holds %d archives after one cold start, want 1", codes.Len())
	}

	v2, code2 := define("v = 2\n")
	if err := reg.UpdateFunction(ctx, v2); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 10*time.Second, "the watch applies the update", func() bool {
		f, ok := cache.Peek("fn")
		return ok && f.Version == v2.Version
	})
	coldStart(v2, code2)
	testutil.WaitUntil(t, 10*time.Second, "the code cache holds only the new version", func() bool {
		return codes.Len() == 1 && codes.Bytes() == int64(len(code2))
	})
}
