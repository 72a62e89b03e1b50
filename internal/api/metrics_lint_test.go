package api

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// TestMetricNamesFollowConventions lints every serverledge_ metric with
// Prometheus's own linter (promlint: suffixes, units, help texts).
func TestMetricNamesFollowConventions(t *testing.T) {
	pool, err := node.New(fake.New(fake.Options{}), node.Config{NodeID: "lint", MemoryMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(pool, scheduling.New(pool, scheduling.Config{}), 10)
	m.observe("hello", &wire.InvocationResponse{ResponseTime: 0.01, InitTime: 0.001, Duration: 0.009}, nil)
	m.Rejected(scheduling.ReasonQueueFull)
	m.Dequeued(0)
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
