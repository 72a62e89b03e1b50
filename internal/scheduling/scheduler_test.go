package scheduling_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// config says what setup builds.
type config struct {
	// memoryMB is the room of the pool for containers.
	memoryMB int64
	// queue is the scheduler's queue capacity.
	queue int
	// queueMaxWait is the scheduler's QueueMaxWait (0: its default).
	queueMaxWait time.Duration
	// createLatency delays every container create of the fake runtime.
	createLatency time.Duration
	// deaf hides the runtime's events from the pool, so that a container
	// killed behind its back is found only when a request uses it.
	deaf bool
}

// deafRuntime is a runtime whose event stream reports nothing.
type deafRuntime struct{ container.Runtime }

func (deafRuntime) Watch(ctx context.Context, _ container.WatchOptions, _ func(container.Event)) error {
	<-ctx.Done()
	return ctx.Err()
}

// testNode is a scheduler over a real pool on the fake runtime.
type testNode struct {
	rt    *fake.Runtime
	pool  *node.Pool
	sched *scheduling.Scheduler
	// stop stops the scheduler and the pool's background work.
	stop context.CancelFunc
}

// setup builds a testNode as cfg says and shuts it down when the test ends.
func setup(t *testing.T, cfg config) *testNode {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := fake.Options{Funcs: map[string]fake.Func{"f.sleep": fake.Builtins()["sleep"]}}
	if cfg.createLatency > 0 {
		opts.Latency = map[fake.Op]time.Duration{fake.OpCreate: cfg.createLatency}
	}
	n := &testNode{rt: fake.New(opts)}
	var rt container.Runtime = n.rt
	if cfg.deaf {
		rt = deafRuntime{n.rt}
	}
	var err error
	n.pool, err = node.New(rt, node.Config{NodeID: "sched-test", MemoryMB: cfg.memoryMB, CPUs: 2, OnFree: func() { n.sched.Notify() }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.sched = scheduling.New(n.pool, scheduling.Config{QueueCapacity: cfg.queue, QueueMaxWait: cfg.queueMaxWait, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	if err := n.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go n.sched.Run(ctx)
	t.Cleanup(func() {
		cancel()
		_ = n.pool.Shutdown(context.Background())
	})
	return n
}

func fn(t *testing.T, name string, memoryMB int64) *function.Function {
	t.Helper()
	return &function.Function{Name: name, Runtime: "python", Handler: "f.sleep", MemoryMB: memoryMB, Version: name + "-v1"}
}

func req(f *function.Function, ms float64) *scheduling.Request {
	return &scheduling.Request{ID: f.Name + "-req", Function: f, Params: map[string]any{"ms": ms}, Arrival: time.Now()}
}

// occupy keeps the only container busy for d in the background.
func occupy(t *testing.T, s *scheduling.Scheduler, f *function.Function, d time.Duration) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), req(f, float64(d.Milliseconds())))
		done <- err
	}()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		r := req(f, 0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, err := s.Invoke(ctx, r)
		cancel()
		if err != nil {
			return done
		}
	}
	t.Fatal("the first request never occupied the pool")
	return nil
}

func TestTooLargeIsRejectedEvenBehindAQueue(t *testing.T) {
	s := setup(t, config{memoryMB: 128, queue: 4, queueMaxWait: 2 * time.Second}).sched
	small := fn(t, "small", 128)
	done := occupy(t, s, small, 500*time.Millisecond)
	queued := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), req(small, 0))
		queued <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	_, err := s.Invoke(context.Background(), req(fn(t, "huge", 4096), 0))
	if !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("huge function: got %v, want ErrRejected", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("rejection took %v; a function larger than the pool must not wait in the queue", d)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("queued request: %v", err)
	}
}

func TestCancelledWaiterLeavesTheQueue(t *testing.T) {
	s := setup(t, config{memoryMB: 128, queue: 4, queueMaxWait: 2 * time.Second}).sched
	f := fn(t, "f", 128)
	done := occupy(t, s, f, 400*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Invoke(ctx, req(f, 0))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	if n := s.QueueLength(); n != 0 {
		t.Errorf("queue length %d after the waiter left", n)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The container is free again and serves the next request warm.
	resp, err := s.Invoke(context.Background(), req(f, 0))
	if err != nil || !resp.IsWarmStart {
		t.Fatalf("after the queue drained: %v %+v", err, resp)
	}
}

func TestPerformanceDeadlineRejectsEarly(t *testing.T) {
	s := setup(t, config{memoryMB: 512, queue: 4, queueMaxWait: 2 * time.Second}).sched
	f := fn(t, "slow", 128)
	if _, err := s.Invoke(context.Background(), req(f, 300)); err != nil {
		t.Fatal(err)
	}
	r := req(f, 300)
	r.Class = wire.ClassPerformance
	r.MaxRespT = 50 * time.Millisecond
	start := time.Now()
	_, err := s.Invoke(context.Background(), r)
	if !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("got %v, want ErrRejected for a deadline below the known execution time", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("early rejection took %v", d)
	}
	if s.DropCount() != 1 {
		t.Errorf("DropCount %d, want 1", s.DropCount())
	}
	r.Class = wire.ClassLow
	r.MaxRespT = 0
	if _, err := s.Invoke(context.Background(), r); err != nil {
		t.Fatalf("low class without deadline: %v", err)
	}
}

func TestShutdownRejectsQueued(t *testing.T) {
	n := setup(t, config{memoryMB: 128, queue: 4, queueMaxWait: 2 * time.Second})
	s := n.sched
	f := fn(t, "f", 128)
	done := occupy(t, s, f, 400*time.Millisecond)
	queued := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), req(f, 0))
		queued <- err
	}()
	time.Sleep(50 * time.Millisecond)
	n.stop()
	if err := <-queued; !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("queued request at shutdown: %v, want ErrRejected", err)
	}
	<-done
}

// TestBurstReusesContainersInsteadOfColdStartingEach sends a burst of
// requests for one short function to an empty pool whose cold starts are
// slow: the requests must be served by a few containers, not one each.
func TestBurstReusesContainersInsteadOfColdStartingEach(t *testing.T) {
	n := setup(t, config{memoryMB: 4096, queue: 64, createLatency: 300 * time.Millisecond})

	const burst = 16
	f := fn(t, "short", 128)
	errs := make(chan error, burst)
	for range burst {
		go func() {
			_, err := n.sched.Invoke(context.Background(), req(f, 1))
			errs <- err
		}()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Fatalf("request failed: %v", err)
		}
	}
	// Two cold starts run at once on a 2-core host (more on larger ones);
	// everything else must be served by the containers they started.
	limit := int64(max(2, runtime.NumCPU()))
	if creates := n.rt.Stats().Creates; creates > limit {
		t.Errorf("%d containers created for a burst of %d one-millisecond requests; want at most %d", creates, burst, limit)
	}
}

// TestQueuedRequestTakesIdleContainerOfItsFunction checks the queue does
// not make a request wait behind the head when a container of its own
// function is idle, and that the head's cold start does not evict it.
func TestQueuedRequestTakesIdleContainerOfItsFunction(t *testing.T) {
	n := setup(t, config{memoryMB: 256, queue: 8, createLatency: 300 * time.Millisecond})

	a, b := fn(t, "a", 128), fn(t, "b", 128)
	// One idle container of each function, made without invocations so the
	// scheduler has no timing estimates to wait on.
	for _, f := range []*function.Function{a, b} {
		if got, err := n.pool.Prewarm(context.Background(), f, 1); got != 1 {
			t.Fatalf("prewarm %s: %d, %v", f.Name, got, err)
		}
	}
	type outcome struct {
		resp *wire.InvocationResponse
		err  error
		at   time.Duration
	}
	start := time.Now()
	run := func(f *function.Function, ms float64) chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			resp, err := n.sched.Invoke(context.Background(), req(f, ms))
			ch <- outcome{resp, err, time.Since(start)}
		}()
		return ch
	}
	a1 := run(a, 600)
	b1 := run(b, 100)
	time.Sleep(30 * time.Millisecond)
	a2 := run(a, 0) // queue head: a's only container is busy for 600 ms
	time.Sleep(30 * time.Millisecond)
	b2 := run(b, 0) // behind a2; b's container frees after 100 ms

	got := <-b2
	if got.err != nil {
		t.Fatalf("b2: %v", got.err)
	}
	if !got.resp.IsWarmStart || got.at > 400*time.Millisecond {
		t.Errorf("b2 warm=%v after %v; want a warm start as soon as b's container is idle", got.resp.IsWarmStart, got.at)
	}
	for name, ch := range map[string]chan outcome{"a1": a1, "b1": b1, "a2": a2} {
		if o := <-ch; o.err != nil {
			t.Errorf("%s: %v", name, o.err)
		}
	}
}
