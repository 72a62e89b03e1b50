package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// runtimeResultsFile is where the runtime benchmarks write their numbers.
const runtimeResultsFile = "results/runtime.txt"

// runtimeSample holds the durations of one measured quantity.
type runtimeSample []time.Duration

// percentile returns the nearest-rank percentile p (0 < p ≤ 100).
func (s runtimeSample) percentile(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func (s runtimeSample) mean() time.Duration {
	if len(s) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(len(s))
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// msf returns a duration in milliseconds, for b.ReportMetric.
func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runtimeReport collects the lines of bench/results/runtime.txt across the
// runtime benchmarks of one `go test` run.
type runtimeReport struct {
	mu      sync.Mutex
	header  []string
	entries map[string][]string
	order   []string
}

var runtimeResults = &runtimeReport{entries: map[string][]string{}}

// set records the lines of one benchmark and rewrites the results file.
func (r *runtimeReport) set(b *testing.B, name string, lines ...string) {
	b.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[name]; !ok {
		r.order = append(r.order, name)
	}
	r.entries[name] = lines
	if err := os.MkdirAll(filepath.Dir(runtimeResultsFile), 0o755); err != nil {
		b.Fatalf("results dir: %v", err)
	}
	var sb strings.Builder
	for _, l := range r.header {
		sb.WriteString(l + "\n")
	}
	for _, n := range r.order {
		fmt.Fprintf(&sb, "\n[%s]\n", n)
		for _, l := range r.entries[n] {
			sb.WriteString("  " + l + "\n")
		}
	}
	if err := os.WriteFile(runtimeResultsFile, []byte(sb.String()), 0o644); err != nil {
		b.Fatalf("write results: %v", err)
	}
}

// benchCtx bounds one benchmark's container work.
func benchCtx(b *testing.B, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	b.Cleanup(cancel)
	return ctx
}
