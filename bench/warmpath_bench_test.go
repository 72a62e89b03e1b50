package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/memreg"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// BenchmarkWarmPathInProcess measures the node's own work for one warm
// invocation, without sockets or containers: the API handler (echo, JSON
// decode and encode), the scheduler and the pool, over the fake container
// runtime, called in-process through http.Handler. Its allocs/op and B/op
// do not depend on the load of the machine, unlike the timings of
// BenchmarkFloor, so they show the effect of a change to the warm path.
// The request and recorder of each iteration are counted too. Run with
//
//	go test -run '^$' -bench WarmPathInProcess -benchmem ./bench/
func BenchmarkWarmPathInProcess(b *testing.B) {
	h := newInProcessNode(b)
	create, err := json.Marshal(wire.FunctionRequest{
		Name: nodeNoopFn, Runtime: "python", Handler: noopHandler,
		TarFunctionCode: base64.StdEncoding.EncodeToString(noop(b)),
	})
	if err != nil {
		b.Fatal(err)
	}
	if rec := serveInProcess(h, "/create", create); rec.Code != http.StatusOK {
		b.Fatalf("create: status %d: %s", rec.Code, rec.Body)
	}
	for range 100 { // the first invocation is a cold start
		if rec := serveInProcess(h, "/invoke/"+nodeNoopFn, invokeBody); rec.Code != http.StatusOK {
			b.Fatalf("invoke: status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if rec := serveInProcess(h, "/invoke/"+nodeNoopFn, invokeBody); rec.Code != http.StatusOK {
			b.Fatalf("invoke: status %d: %s", rec.Code, rec.Body)
		}
	}
}

func serveInProcess(h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// newInProcessNode wires an API server, scheduler and pool over the fake
// runtime and an in-memory registry, as cmd/serverledge wires the real ones.
func newInProcessNode(b *testing.B) http.Handler {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := memreg.New()
	rt := fake.New(fake.Options{Funcs: map[string]fake.Func{
		noopHandler: func(context.Context, *fake.Call) (any, error) { return nil, nil },
	}})
	var sched *scheduling.Scheduler
	pool, err := node.New(rt, node.Config{
		NodeID: "bench-inproc", MemoryMB: 1024, CPUs: 2,
		Expiration: time.Hour, JanitorInterval: time.Hour,
		OnFree: func() { sched.Notify() }, Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	sched = scheduling.New(pool, scheduling.Config{QueueCapacity: 100, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	if err := pool.Start(ctx); err != nil {
		b.Fatal(err)
	}
	go sched.Run(ctx)
	cache, err := registry.NewCache(reg, 16)
	if err != nil {
		b.Fatal(err)
	}
	go cache.Watch(ctx, log, func(ev registry.FunctionEvent) {
		v := ""
		if ev.Function != nil {
			v = ev.Function.Version
		}
		pool.FunctionChanged(ev.Name, v)
	})
	srv := api.New(api.Config{NodeID: "bench-inproc", Logger: log}, reg, cache, sched, pool)
	b.Cleanup(func() {
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = pool.Shutdown(sctx)
		_ = reg.Close()
	})
	return srv.Handler()
}
