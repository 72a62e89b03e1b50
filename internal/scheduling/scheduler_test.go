package scheduling_test

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/serverledge/serverledge/internal/testutil"
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

// occupy keeps the only container of f busy for d in the background, and
// returns once the request runs.
func occupy(t *testing.T, n *testNode, f *function.Function, d time.Duration) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := n.sched.Invoke(context.Background(), req(f, float64(d.Milliseconds())))
		done <- err
	}()
	testutil.WaitUntil(t, 10*time.Second, "the first request to run", func() bool { return n.pool.Busy(f.Name) == 1 })
	return done
}

// queued waits until the scheduler's queue holds k requests.
func queued(t *testing.T, s *scheduling.Scheduler, k int) {
	t.Helper()
	testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("%d queued requests", k), func() bool { return s.QueueLength() == k })
}

func TestTooLargeIsRejectedEvenBehindAQueue(t *testing.T) {
	n := setup(t, config{memoryMB: 128, queue: 4, queueMaxWait: 10 * time.Second})
	s := n.sched
	small := fn(t, "small", 128)
	done := occupy(t, n, small, 500*time.Millisecond)
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), req(small, 0))
		waiting <- err
	}()
	queued(t, s, 1)
	_, err := s.Invoke(context.Background(), req(fn(t, "huge", 4096), 0))
	if !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("huge function: got %v, want ErrRejected", err)
	}
	// The rejection did not wait in the queue: the queued request is
	// still there, behind the running one.
	if got := s.QueueLength(); got != 1 {
		t.Errorf("queue length %d when the huge function was rejected, want the 1 queued request still waiting", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("queued request: %v", err)
	}
}

func TestCancelledWaiterLeavesTheQueue(t *testing.T) {
	n := setup(t, config{memoryMB: 128, queue: 4, queueMaxWait: 10 * time.Second})
	s := n.sched
	f := fn(t, "f", 128)
	done := occupy(t, n, f, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		queued(t, s, 1)
		cancel()
	}()
	_, err := s.Invoke(ctx, req(f, 0))
	if !errors.Is(err, context.Canceled) {
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
	n := setup(t, config{memoryMB: 512, queue: 4, queueMaxWait: 2 * time.Second})
	s := n.sched
	f := fn(t, "slow", 128)
	if _, err := s.Invoke(context.Background(), req(f, 300)); err != nil {
		t.Fatal(err)
	}
	r := req(f, 300)
	r.Class = wire.ClassPerformance
	r.MaxRespT = 50 * time.Millisecond
	invokes := n.rt.Stats().Invokes
	_, err := s.Invoke(context.Background(), r)
	if !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("got %v, want ErrRejected for a deadline below the known execution time", err)
	}
	if got := n.rt.Stats().Invokes; got != invokes {
		t.Errorf("the rejected request ran (%d invocations, want %d): it must be rejected before it runs", got, invokes)
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
	done := occupy(t, n, f, 400*time.Millisecond)
	waiting := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), req(f, 0))
		waiting <- err
	}()
	queued(t, s, 1)
	n.stop()
	if err := <-waiting; !errors.Is(err, scheduling.ErrRejected) {
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
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	for name, ch := range map[string]chan struct{}{"f.blockA": releaseA, "f.blockB": releaseB} {
		n.rt.Register(name, func(ctx context.Context, _ *fake.Call) (any, error) {
			select {
			case <-ch:
				return "ok", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}
	a, b := fn(t, "a", 128), fn(t, "b", 128)
	a.Handler, b.Handler = "f.blockA", "f.blockB"
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
	}
	run := func(f *function.Function) chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			resp, err := n.sched.Invoke(context.Background(), req(f, 0))
			ch <- outcome{resp, err}
		}()
		return ch
	}
	a1 := run(a)
	b1 := run(b)
	testutil.WaitUntil(t, 10*time.Second, "a1 and b1 to run", func() bool { return n.pool.Busy("a") == 1 && n.pool.Busy("b") == 1 })
	a2 := run(a) // queue head: a's only container is busy until releaseA
	queued(t, n.sched, 1)
	b2 := run(b) // behind a2
	queued(t, n.sched, 2)
	close(releaseB) // b's container becomes idle; a's stays busy

	got := <-b2
	if got.err != nil {
		t.Fatalf("b2: %v", got.err)
	}
	if !got.resp.IsWarmStart {
		t.Errorf("b2 was not a warm start; want b's container once idle")
	}
	select {
	case o := <-a1:
		t.Fatalf("a1 finished (%+v) before it was released: b2 was not served ahead of the queue head", o)
	default:
	}
	close(releaseA)
	for name, ch := range map[string]chan outcome{"a1": a1, "b1": b1, "a2": a2} {
		if o := <-ch; o.err != nil {
			t.Errorf("%s: %v", name, o.err)
		}
	}
}
