package api

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// DefaultMetricsMaxFunctions is used when Config.MetricFuncs ≤ 0.
const DefaultMetricsMaxFunctions = 100

// otherFunctions is the function label of every function beyond the
// label budget.
const otherFunctions = "_other"

// Invocation outcomes, the values of the outcome label.
const (
	outcomeSuccess = iota
	outcomeRejected
	outcomeTimeout
	outcomeFunctionError
	outcomeError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"success", "rejected", "timeout", "function_error", "error"}

// Start kinds, the values of the start label.
const (
	startCold = iota
	startWarm
	numStarts
)

var startNames = [numStarts]string{"cold", "warm"}

// latencyBuckets covers 0.5 ms to about 65 s, beyond the default function
// timeout of 60 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 18)

// metrics holds the node's Prometheus collectors. A nil *metrics records
// nothing. Counters of events only the request path sees are updated
// there; everything the pool and the scheduler already count is read from
// their snapshots when Prometheus scrapes.
type metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	respTime    *prometheus.HistogramVec
	initTime    *prometheus.HistogramVec
	duration    *prometheus.HistogramVec
	queueWait   prometheus.Histogram
	drops       map[scheduling.RejectReason]prometheus.Counter
	fns         *functionSeries
}

func newMetrics(pool *node.Pool, sched *scheduling.Scheduler, maxFunctions int) *metrics {
	if maxFunctions <= 0 {
		maxFunctions = DefaultMetricsMaxFunctions
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "serverledge_invocations_total",
			Help: "Invocations handled by this node, by function and outcome.",
		}, []string{"function", "outcome"}),
		respTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "serverledge_response_seconds",
			Help:    "Response time of completed invocations, from arrival to reply, by function and warm/cold start.",
			Buckets: latencyBuckets,
		}, []string{"function", "start"}),
		initTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "serverledge_function_init_seconds",
			Help:    "Time from a request's arrival until its function starts (queueing plus any cold start), by function and warm/cold start.",
			Buckets: latencyBuckets,
		}, []string{"function", "start"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "serverledge_function_duration_seconds",
			Help:    "Execution time of the function inside its container, by function.",
			Buckets: latencyBuckets,
		}, []string{"function"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "serverledge_queue_wait_seconds",
			Help:    "Time requests spent in the scheduler's queue waiting for capacity.",
			Buckets: latencyBuckets,
		}),
		drops: map[scheduling.RejectReason]prometheus.Counter{},
	}
	dropVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "serverledge_dropped_requests_total",
		Help: "Requests rejected for load (HTTP 429), by reason.",
	}, []string{"reason"})
	for _, r := range scheduling.RejectReasons() {
		m.drops[r] = dropVec.WithLabelValues(string(r))
	}
	m.fns = newFunctionSeries(maxFunctions, m.newFnSeries, m.deleteFnSeries)
	m.reg.MustRegister(m.invocations, m.respTime, m.initTime, m.duration, m.queueWait, dropVec,
		newSnapshotCollector(pool, sched, m.fns),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe records one finished invocation of function fn.
func (m *metrics) observe(fn string, resp *wire.InvocationResponse, err error) {
	if m == nil {
		return
	}
	s := m.fns.get(fn)
	s.outcomes[outcomeOf(err)].Inc()
	if resp == nil {
		return
	}
	start := startCold
	if resp.IsWarmStart {
		start = startWarm
	}
	s.response[start].Observe(resp.ResponseTime)
	s.init[start].Observe(resp.InitTime)
	s.duration.Observe(resp.Duration)
}

// forget drops the series of a deleted function and frees its label.
func (m *metrics) forget(fn string) {
	if m == nil {
		return
	}
	m.fns.forget(fn)
}

// Rejected implements scheduling.Hooks.
func (m *metrics) Rejected(reason scheduling.RejectReason) {
	c, ok := m.drops[reason]
	if !ok {
		c = m.drops[scheduling.ReasonOther]
	}
	c.Inc()
}

// Dequeued implements scheduling.Hooks.
func (m *metrics) Dequeued(waited time.Duration) {
	m.queueWait.Observe(waited.Seconds())
}

func outcomeOf(err error) int {
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.Is(err, scheduling.ErrRejected):
		return outcomeRejected
	case errors.Is(err, scheduling.ErrTimeout):
		return outcomeTimeout
	case errors.Is(err, scheduling.ErrFunctionFailed):
		return outcomeFunctionError
	default:
		return outcomeError
	}
}

// fnSeries holds the per-function series of one function label, so that
// the request path does not look labels up on every invocation.
type fnSeries struct {
	outcomes [numOutcomes]prometheus.Counter
	response [numStarts]prometheus.Observer
	init     [numStarts]prometheus.Observer
	duration prometheus.Observer
}

func (m *metrics) newFnSeries(label string) *fnSeries {
	s := &fnSeries{duration: m.duration.WithLabelValues(label)}
	for i, o := range outcomeNames {
		s.outcomes[i] = m.invocations.WithLabelValues(label, o)
	}
	for i, st := range startNames {
		s.response[i] = m.respTime.WithLabelValues(label, st)
		s.init[i] = m.initTime.WithLabelValues(label, st)
	}
	return s
}

func (m *metrics) deleteFnSeries(label string) {
	l := prometheus.Labels{"function": label}
	m.invocations.DeletePartialMatch(l)
	m.respTime.DeletePartialMatch(l)
	m.initTime.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}

// functionSeries bounds the function label: the first max distinct
// function names get their own series, every later one shares the series
// labelled otherFunctions. Deleting a function frees its label.
type functionSeries struct {
	max     int
	create  func(label string) *fnSeries
	destroy func(label string)

	mu     sync.RWMutex
	byName map[string]*fnSeries
	other  *fnSeries
}

func newFunctionSeries(limit int, create func(string) *fnSeries, destroy func(string)) *functionSeries {
	return &functionSeries{max: limit, create: create, destroy: destroy, byName: map[string]*fnSeries{}}
}

// get returns the series of function name, admitting it while the label
// budget lasts.
func (f *functionSeries) get(name string) *fnSeries {
	f.mu.RLock()
	s, ok := f.byName[name]
	f.mu.RUnlock()
	if ok {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.byName[name]; ok {
		return s
	}
	if len(f.byName) < f.max {
		s = f.create(name)
		f.byName[name] = s
		return s
	}
	if f.other == nil {
		f.other = f.create(otherFunctions)
	}
	return f.other
}

// labelOf returns the label of function name without admitting it: its
// own name while it has series or the budget has room, else otherFunctions.
// Scrapes use it, so that a container of a deleted function that is still
// busy does not take a place in the budget.
func (f *functionSeries) labelOf(name string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if _, ok := f.byName[name]; ok || len(f.byName) < f.max {
		return name
	}
	return otherFunctions
}

// forget drops the series of function name, if it has its own.
func (f *functionSeries) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byName[name]; !ok {
		return
	}
	delete(f.byName, name)
	f.destroy(name)
}

// snapshotCollector exports, at scrape time, what the pool and the
// scheduler already count.
type snapshotCollector struct {
	pool  *node.Pool
	sched *scheduling.Scheduler
	fns   *functionSeries

	containers, containersStarting, stemCells, stemCellsStarting *prometheus.Desc
	inFlight, vanished                                           *prometheus.Desc
	memory, memoryUsed, cpus, cpusUsed                           *prometheus.Desc
	warmStarts, coldStarts, evictions, expirations               *prometheus.Desc
	queueLength                                                  *prometheus.Desc
}

func newSnapshotCollector(pool *node.Pool, sched *scheduling.Scheduler, fns *functionSeries) *snapshotCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &snapshotCollector{
		pool: pool, sched: sched, fns: fns,
		containers:         d("serverledge_containers", "Function containers in the pool, by function and state (idle or busy).", "function", "state"),
		containersStarting: d("serverledge_containers_starting", "Function containers being started by a cold start or a prewarm."),
		stemCells:          d("serverledge_stem_cells", "Ready stem cells (started containers with no function loaded), by runtime.", "runtime"),
		stemCellsStarting:  d("serverledge_stem_cells_starting", "Stem cells being created."),
		inFlight:           d("serverledge_requests_in_flight", "Requests being served by a container, by function (above the busy containers for a MaxConcurrency above 1).", "function"),
		vanished:           d("serverledge_containers_vanished_total", "Containers that died or were removed behind the pool's back (told by a Docker event or the janitor's list)."),
		memory:             d("serverledge_pool_memory_bytes", "Memory budget of the pool (container.pool.memory)."),
		memoryUsed:         d("serverledge_pool_memory_used_bytes", "Pool memory counted for containers and stem cells."),
		cpus:               d("serverledge_pool_cpus", "CPU budget of the pool, in cores."),
		cpusUsed:           d("serverledge_pool_cpus_used", "CPU demand of busy containers, in cores."),
		warmStarts:         d("serverledge_warm_starts_total", "Requests served by an idle container."),
		coldStarts:         d("serverledge_cold_starts_total", "Successful cold starts, by kind: stem_cell (code loaded into a stem cell) or new_container.", "kind"),
		evictions:          d("serverledge_evictions_total", "Idle containers and stem cells evicted to make room for another function."),
		expirations:        d("serverledge_expirations_total", "Idle containers removed after container.expiration."),
		queueLength:        d("serverledge_queue_length", "Requests waiting in the scheduler's queue."),
	}
}

// Describe implements prometheus.Collector.
func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.containers, c.containersStarting, c.stemCells, c.stemCellsStarting, c.inFlight, c.vanished,
		c.memory, c.memoryUsed, c.cpus, c.cpusUsed,
		c.warmStarts, c.coldStarts, c.evictions, c.expirations, c.queueLength,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	const mb = 1 << 20
	st := c.pool.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	// Both states of every function present, so that a function's busy
	// series reads 0 rather than vanishing while all its containers idle.
	containers := map[string]*[2]int{}
	add := func(name string, state, n int) {
		label := c.fns.labelOf(name)
		if containers[label] == nil {
			containers[label] = &[2]int{}
		}
		containers[label][state] += n
	}
	for name, n := range st.Idle {
		add(name, 0, n)
	}
	for name, n := range st.Busy {
		add(name, 1, n)
	}
	for label, n := range containers {
		gauge(c.containers, float64(n[0]), label, "idle")
		gauge(c.containers, float64(n[1]), label, "busy")
	}
	inFlight := map[string]int{}
	for name, n := range st.InFlight {
		inFlight[c.fns.labelOf(name)] += n
	}
	for label, n := range inFlight {
		gauge(c.inFlight, float64(n), label)
	}
	gauge(c.containersStarting, float64(st.Starting))
	for rt, n := range st.StemCells {
		gauge(c.stemCells, float64(n), rt)
	}
	gauge(c.stemCellsStarting, float64(st.StemCellsStarting))
	gauge(c.memory, float64(st.TotalMemoryMB*mb))
	gauge(c.memoryUsed, float64((st.TotalMemoryMB-st.FreeMemoryMB)*mb))
	gauge(c.cpus, st.TotalCPUs)
	gauge(c.cpusUsed, max(st.TotalCPUs-st.FreeCPUs, 0))
	counter(c.warmStarts, st.WarmStarts)
	counter(c.coldStarts, st.StemCellStarts, "stem_cell")
	counter(c.coldStarts, st.ColdStarts-st.StemCellStarts, "new_container")
	counter(c.evictions, st.Evictions)
	counter(c.expirations, st.Expirations)
	counter(c.vanished, st.Vanished)
	if c.sched != nil {
		gauge(c.queueLength, float64(c.sched.QueueLength()))
	}
}
