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

// resultsFile collects the sections of one results file across the
// benchmarks of one `go test` run and rewrites the file after each.
type resultsFile struct {
	path string
	// header returns the lines above the sections, each ending in a
	// newline; nil means none.
	header func() string

	mu       sync.Mutex
	sections map[string]string
	order    []string
}

// newResultsFile returns an empty resultsFile written to path.
func newResultsFile(path string, header func() string) *resultsFile {
	return &resultsFile{path: path, header: header, sections: map[string]string{}}
}

// set records the section of one benchmark and rewrites the file.
func (r *resultsFile) set(b *testing.B, name, text string) {
	b.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sections[name]; !ok {
		r.order = append(r.order, name)
	}
	r.sections[name] = text
	var sb strings.Builder
	if r.header != nil {
		sb.WriteString(r.header())
	}
	for _, n := range r.order {
		fmt.Fprintf(&sb, "\n[%s]\n%s", n, r.sections[n])
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
		b.Fatalf("results dir: %v", err)
	}
	if err := os.WriteFile(r.path, []byte(sb.String()), 0o644); err != nil {
		b.Fatalf("write results: %v", err)
	}
}

// setLines records the section of one benchmark as indented lines and
// rewrites the file.
func (r *resultsFile) setLines(b *testing.B, name string, lines ...string) {
	b.Helper()
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString("  " + l + "\n")
	}
	r.set(b, name, sb.String())
}

// runtimeResults collects the sections of bench/results/runtime.txt across
// the runtime benchmarks of one `go test` run; BenchmarkRuntime sets its header.
var runtimeResults = newResultsFile(runtimeResultsFile, nil)

// benchCtx bounds one benchmark's container work.
func benchCtx(b *testing.B, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	b.Cleanup(cancel)
	return ctx
}
