package executor

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkWarmNoop measures one warm invocation of a no-op Python function
// through Client (keep-alive), sequentially from one worker, and reports the
// latency percentiles and the request rate.
//
//	go test -run '^$' -bench WarmNoop -benchtime 5000x ./internal/executor/
func BenchmarkWarmNoop(b *testing.B) {
	h := startHarness(b, workerCmd(b, "python"), nil)
	ctx := context.Background()
	if err := h.client.Load(ctx, "fn.noop", tarOf(b, map[string]string{"fn.py": pythonCode})); err != nil {
		b.Fatalf("Load: %v", err)
	}
	req := InvokeRequest{Params: map[string]any{"n": 1}}
	for i := 0; i < 200; i++ { // warm up the connection and the interpreter
		if _, err := h.client.Invoke(ctx, req); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := h.client.Invoke(ctx, req)
		lat = append(lat, time.Since(t0))
		if err != nil || !res.Success {
			b.Fatalf("invoke: %v %+v", err, res)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}
