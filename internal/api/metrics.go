package api

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// metrics holds the node's Prometheus collectors. A nil *metrics records nothing.
type metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	respTime    *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "serverledge_invocations_total",
			Help: "Invocations handled by this node, by function and outcome.",
		}, []string{"function", "outcome"}),
		respTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "serverledge_response_seconds",
			Help:    "Response time of completed invocations, by function and warm/cold start.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"function", "start"}),
	}
	m.reg.MustRegister(m.invocations, m.respTime, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observe(fn string, resp *wire.InvocationResponse, err error) {
	if m == nil {
		return
	}
	outcome := "success"
	switch {
	case errors.Is(err, scheduling.ErrRejected):
		outcome = "rejected"
	case errors.Is(err, scheduling.ErrTimeout):
		outcome = "timeout"
	case errors.Is(err, scheduling.ErrFunctionFailed):
		outcome = "function_error"
	case err != nil:
		outcome = "error"
	}
	m.invocations.WithLabelValues(fn, outcome).Inc()
	if resp == nil {
		return
	}
	start := "cold"
	if resp.IsWarmStart {
		start = "warm"
	}
	m.respTime.WithLabelValues(fn, start).Observe(resp.ResponseTime)
}
