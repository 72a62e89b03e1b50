package scheduling

import (
	"sync"
	"time"

	"github.com/serverledge/serverledge/internal/function"
)

// ewmaWeight is the weight of a new sample in the moving averages.
const ewmaWeight = 0.2

// estimator keeps moving averages of execution and cold-start times, used to
// predict whether a request can still meet its deadline.
type estimator struct {
	mu   sync.Mutex
	exec map[string]time.Duration // function name → execution time
	cold map[string]time.Duration // runtime → cold-start init time
}

func newEstimator() *estimator {
	return &estimator{exec: map[string]time.Duration{}, cold: map[string]time.Duration{}}
}

func ewma(old, sample time.Duration) time.Duration {
	if old == 0 {
		return sample
	}
	return time.Duration(ewmaWeight*float64(sample) + (1-ewmaWeight)*float64(old))
}

// observeExec records the execution time of one completed invocation.
func (e *estimator) observeExec(f *function.Function, duration time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exec[f.Name] = ewma(e.exec[f.Name], duration)
}

// observeCold records how long a request waited for a cold-started
// container of f's runtime, as soon as the container is ready.
func (e *estimator) observeCold(f *function.Function, initTime time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cold[f.Runtime] = ewma(e.cold[f.Runtime], initTime)
}

// expected predicts the response time of f: its execution estimate, plus the
// cold-start estimate of its runtime when cold is true. Unknown figures count as 0.
func (e *estimator) expected(f *function.Function, cold bool) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.exec[f.Name]
	if cold {
		d += e.cold[f.Runtime]
	}
	return d
}

// estimates returns the execution estimate of f and the cold-start estimate
// of its runtime (0 when unknown).
func (e *estimator) estimates(f *function.Function) (exec, cold time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exec[f.Name], e.cold[f.Runtime]
}
