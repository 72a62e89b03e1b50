package node

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
)

// pythonCode is the code archive of the test functions: a python handler
// (used by the Docker tests) that the fake accepts too.
var pythonCode = codeArchive(map[string]string{
	"main.py": "def handler(params, context):\n    return {\"echo\": params}\n",
})

// codeArchive returns the base64 of a tar archive holding files.
func codeArchive(files map[string]string) string {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = io.WriteString(tw, body)
	}
	_ = tw.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// testFunc returns a python function running the fake's handler.
func testFunc(name, version string, memoryMB int64, handler string) *function.Function {
	return &function.Function{
		Name:            name,
		Runtime:         function.RuntimePython,
		MemoryMB:        memoryMB,
		Handler:         handler,
		TarFunctionCode: pythonCode,
		Version:         version,
	}
}

// observed wraps a runtime to watch what a user cannot see from outside:
// the memory of containers running an invocation, removals in progress,
// and whether cold starts overlap.
type observed struct {
	container.Runtime
	limits func(id string) int64

	mu         sync.Mutex
	inUseMB    int64
	maxInUseMB int64
	removing   map[string]bool
	removeGate chan struct{} // when set, Remove waits until it is closed
	startGate  *barrier      // when set, Start waits until enough starts overlap
}

func (o *observed) Invoke(ctx context.Context, id string, req container.InvokeRequest) (container.InvokeResult, error) {
	mb := o.limits(id)
	o.mu.Lock()
	o.inUseMB += mb
	o.maxInUseMB = max(o.maxInUseMB, o.inUseMB)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.inUseMB -= mb
		o.mu.Unlock()
	}()
	return o.Runtime.Invoke(ctx, id, req)
}

func (o *observed) Remove(ctx context.Context, id string) error {
	o.mu.Lock()
	gate := o.removeGate
	o.removing[id] = true
	o.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return o.Runtime.Remove(ctx, id)
}

func (o *observed) Start(ctx context.Context, id string) error {
	o.mu.Lock()
	b := o.startGate
	o.mu.Unlock()
	if b != nil {
		if err := b.arrive(); err != nil {
			return err
		}
	}
	return o.Runtime.Start(ctx, id)
}

func (o *observed) maxInUse() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.maxInUseMB
}

func (o *observed) removalStarted(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removing[id]
}

// barrier releases its callers once n of them have arrived, and fails them
// if that does not happen within a generous bound.
type barrier struct {
	n       int
	arrived atomic.Int32
	all     chan struct{}
	once    sync.Once
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) arrive() error {
	if int(b.arrived.Add(1)) >= b.n {
		b.once.Do(func() { close(b.all) })
	}
	select {
	case <-b.all:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("only %d of %d container starts overlapped", b.arrived.Load(), b.n)
	}
}

// env is a pool on the fake runtime.
type env struct {
	fake *fake.Runtime
	obs  *observed
	pool *Pool
}

// newEnv returns a pool on a fake runtime, shut down at the end of the test.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	rt := fake.New(fake.Options{})
	obs := &observed{Runtime: rt, removing: map[string]bool{}}
	obs.limits = func(id string) int64 {
		mb, _, _ := rt.Limits(id)
		return mb
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-" + t.Name()
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := New(obs, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		obs.mu.Lock()
		if obs.removeGate != nil {
			select {
			case <-obs.removeGate:
			default:
				close(obs.removeGate)
			}
		}
		obs.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &env{fake: rt, obs: obs, pool: p}
}

// start starts the pool's background work.
func (e *env) start(t *testing.T) {
	t.Helper()
	if err := e.pool.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// acquire acquires a container of f and fails the test on error.
func (e *env) acquire(t *testing.T, f *function.Function) (*Container, bool) {
	t.Helper()
	c, warm, err := e.pool.Acquire(t.Context(), f)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", f.Name, err)
	}
	return c, warm
}

// exists reports whether the runtime still has container id.
func (e *env) exists(id string) bool {
	_, _, err := e.fake.Limits(id)
	return err == nil
}

// waitFor polls cond until it holds, failing the test after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// isNoCapacity reports whether err is a capacity refusal.
func isNoCapacity(err error) bool { return errors.Is(err, ErrNoCapacity) }

// deaf is a runtime whose event stream never reports anything, so that a
// test sees what the janitor's list alone reconciles.
type deaf struct{ container.Runtime }

func (deaf) Watch(ctx context.Context, _ container.WatchOptions, _ func(container.Event)) error {
	<-ctx.Done()
	return ctx.Err()
}
