package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// schedResultsFile is where BenchmarkSchedulerRejection writes its numbers.
const schedResultsFile = "results/scheduler.txt"

// schedNode is a scheduler over a pool of one 128 MB container on the fake
// runtime: the timing claims the scheduler tests used to assert.
func schedNode(b *testing.B) (*scheduling.Scheduler, func()) {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt := fake.New(fake.Options{})
	var s *scheduling.Scheduler
	pool, err := node.New(rt, node.Config{NodeID: "sched-bench", MemoryMB: 128, CPUs: 2, OnFree: func() { s.Notify() }, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	s = scheduling.New(pool, scheduling.Config{QueueCapacity: 1 << 20, QueueMaxWait: time.Minute, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	if err := pool.Start(ctx); err != nil {
		b.Fatal(err)
	}
	go s.Run(ctx)
	return s, func() {
		cancel()
		_ = pool.Shutdown(context.Background())
	}
}

func schedFunc(name string, memoryMB int64) *function.Function {
	return &function.Function{Name: name, Runtime: "python", Handler: "sleep", MemoryMB: memoryMB, Version: name + "-v1"}
}

func schedReq(f *function.Function, ms float64) *scheduling.Request {
	return &scheduling.Request{ID: f.Name, Function: f, Params: map[string]any{"ms": ms}, Arrival: time.Now()}
}

// BenchmarkSchedulerRejection measures how long the scheduler takes to
// reject (a) a function larger than the pool while the pool is busy and a
// request is queued, and (b) a performance-class request whose deadline is
// below the function's known execution time. Neither should wait for
// capacity: both are answered in microseconds, not in the 300 ms the busy
// container takes.
func BenchmarkSchedulerRejection(b *testing.B) {
	s, stop := schedNode(b)
	defer stop()
	small := schedFunc("small", 128)
	if _, err := s.Invoke(context.Background(), schedReq(small, 300)); err != nil {
		b.Fatal(err)
	}
	busy := make(chan error, 2)
	go func() {
		_, err := s.Invoke(context.Background(), schedReq(small, 2000))
		busy <- err
	}()
	go func() {
		// Queued behind the busy container for the whole measurement.
		_, err := s.Invoke(context.Background(), schedReq(small, 0))
		busy <- err
	}()
	huge := schedFunc("huge", 4096)
	var tooLarge, deadline []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := s.Invoke(context.Background(), schedReq(huge, 0)); !errors.Is(err, scheduling.ErrRejected) {
			b.Fatalf("huge function: %v, want ErrRejected", err)
		}
		tooLarge = append(tooLarge, time.Since(start))
		r := schedReq(small, 300)
		r.Class = wire.ClassPerformance
		r.MaxRespT = 50 * time.Millisecond
		start = time.Now()
		if _, err := s.Invoke(context.Background(), r); !errors.Is(err, scheduling.ErrRejected) {
			b.Fatalf("deadline below the execution time: %v, want ErrRejected", err)
		}
		deadline = append(deadline, time.Since(start))
	}
	for range 2 {
		if err := <-busy; err != nil {
			b.Fatal(err)
		}
	}
	p50 := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	b.ReportMetric(float64(p50(tooLarge).Microseconds()), "too-large-p50-µs")
	b.ReportMetric(float64(p50(deadline).Microseconds()), "deadline-p50-µs")
	var out strings.Builder
	fmt.Fprintf(&out, "# go test -run '^$' -bench SchedulerRejection ./bench/   (%s)\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&out, "rejections measured: %d of each\n", len(tooLarge))
	fmt.Fprintf(&out, "too-large function behind a busy pool and a queue: p50 %v, max %v\n", p50(tooLarge), tooLarge[len(tooLarge)-1])
	fmt.Fprintf(&out, "deadline below the known execution time:          p50 %v, max %v\n", p50(deadline), deadline[len(deadline)-1])
	if err := os.MkdirAll(filepath.Dir(schedResultsFile), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(schedResultsFile, []byte(out.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}
