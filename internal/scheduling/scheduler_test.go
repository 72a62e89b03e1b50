package scheduling_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// setup returns a scheduler over a real pool on the fake runtime with room
// for memoryMB of containers.
func setup(t *testing.T, memoryMB int64, queue int) (*scheduling.Scheduler, context.CancelFunc) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt := fake.New(fake.Options{Funcs: map[string]fake.Func{"f.sleep": fake.Builtins()["sleep"]}})
	var sched *scheduling.Scheduler
	pool, err := node.New(rt, node.Config{NodeID: "sched-test", MemoryMB: memoryMB, CPUs: 2, OnFree: func() { sched.Notify() }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sched = scheduling.New(pool, scheduling.Config{QueueCapacity: queue, QueueMaxWait: 2 * time.Second, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	if err := pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go sched.Run(ctx)
	t.Cleanup(func() {
		cancel()
		_ = pool.Shutdown(context.Background())
	})
	return sched, cancel
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
	s, _ := setup(t, 128, 4)
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
	s, _ := setup(t, 128, 4)
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
	s, _ := setup(t, 512, 4)
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
	s, cancel := setup(t, 128, 4)
	f := fn(t, "f", 128)
	done := occupy(t, s, f, 400*time.Millisecond)
	queued := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), req(f, 0))
		queued <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-queued; !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("queued request at shutdown: %v, want ErrRejected", err)
	}
	<-done
}
