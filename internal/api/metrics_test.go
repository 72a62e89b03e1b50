package api_test

import (
	"bufio"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/container/fake"
)

// scrape returns the node's metrics as series → value, the series written
// as in the exposition format (name{label="value",...}).
func (n *testNode) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := n.do(t, "GET", "/metrics", nil)
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// expectSeries checks that every series in want has its value.
func expectSeries(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		g, ok := got[series]
		if !ok {
			t.Errorf("metrics lack %s", series)
			continue
		}
		if g != v {
			t.Errorf("%s = %g, want %g", series, g, v)
		}
	}
}

// waitUntil polls cond until it holds, failing after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nodejsDef(t *testing.T, name string) map[string]any {
	return map[string]any{
		"Name": name, "Runtime": "nodejs", "MemoryMB": 128, "Handler": "hello.js",
		"TarFunctionCode": codeTar(t, map[string]string{"hello.js": "module.exports = (p) => p\n"}),
	}
}

// TestMetricsColdWarmReject scrapes a node after a cold start from a stem
// cell, a warm start, cold starts in new containers, a function error and a
// rejection, and checks the series an operator reads.
func TestMetricsColdWarmReject(t *testing.T) {
	n := newTestNode(t, nodeOpts{
		metricsPath: "/metrics",
		stemCells:   map[string]int{"python": 1},
		funcs: map[string]fake.Func{
			"hello.js": fake.Echo,
			"fail.js": func(context.Context, *fake.Call) (any, error) {
				return nil, errors.New("TypeError: bad input")
			},
		},
	})
	waitUntil(t, "a python stem cell", func() bool { return n.pool.Stats().StemCells["python"] == 1 })
	expectSeries(t, n.scrape(t), map[string]float64{
		`serverledge_stem_cells{runtime="python"}`: 1,
		`serverledge_pool_memory_bytes`:            1024 << 20,
		`serverledge_pool_memory_used_bytes`:       128 << 20,
		`serverledge_pool_cpus`:                    2,
		`serverledge_queue_length`:                 0,
	})

	failing := with(with(nodejsDef(t, "failing"), "Handler", "fail.js"), "TarFunctionCode",
		codeTar(t, map[string]string{"fail.js": "module.exports = () => { throw new TypeError() }\n"}))
	for _, def := range []map[string]any{
		helloDef(t, "hello.echo"),
		nodejsDef(t, "js"),
		failing,
		with(with(helloDef(t, "hello.echo"), "Name", "huge"), "MemoryMB", 4096),
	} {
		if code, body := n.do(t, "POST", "/create", def); code != 200 {
			t.Fatalf("create %s: %d %s", def["Name"], code, body)
		}
	}
	for _, call := range []struct {
		fn   string
		code int
	}{
		{"hello", 200},   // cold, from the stem cell
		{"hello", 200},   // warm
		{"js", 200},      // cold, new container (no nodejs stem cells)
		{"failing", 500}, // cold, new container
		{"huge", 429},    // more memory than the node has
	} {
		if code, body := n.do(t, "POST", "/invoke/"+call.fn, nil); code != call.code {
			t.Fatalf("invoke %s: %d %s, want %d", call.fn, code, body, call.code)
		}
	}
	got := n.scrape(t)
	expectSeries(t, got, map[string]float64{
		`serverledge_invocations_total{function="hello",outcome="success"}`:                 2,
		`serverledge_invocations_total{function="hello",outcome="rejected"}`:                0,
		`serverledge_invocations_total{function="js",outcome="success"}`:                    1,
		`serverledge_invocations_total{function="failing",outcome="function_error"}`:        1,
		`serverledge_invocations_total{function="huge",outcome="rejected"}`:                 1,
		`serverledge_cold_starts_total{kind="stem_cell"}`:                                   1,
		`serverledge_cold_starts_total{kind="new_container"}`:                               2,
		`serverledge_warm_starts_total`:                                                     1,
		`serverledge_evictions_total`:                                                       0,
		`serverledge_containers_vanished_total`:                                             0,
		`serverledge_dropped_requests_total{reason="too_large"}`:                            1,
		`serverledge_dropped_requests_total{reason="queue_full"}`:                           0,
		`serverledge_response_seconds_count{function="hello",start="cold"}`:                 1,
		`serverledge_response_seconds_count{function="hello",start="warm"}`:                 1,
		`serverledge_function_init_seconds_count{function="hello",start="cold"}`:            1,
		`serverledge_function_init_seconds_count{function="hello",start="warm"}`:            1,
		`serverledge_function_duration_seconds_count{function="hello"}`:                     2,
		`serverledge_function_duration_seconds_count{function="js"}`:                        1,
		`serverledge_containers{function="hello",state="idle"}`:                             1,
		`serverledge_containers{function="hello",state="busy"}`:                             0,
		`serverledge_containers{function="js",state="idle"}`:                                1,
		`serverledge_function_init_seconds_bucket{function="hello",start="cold",le="+Inf"}`: 1,
	})
}

// TestMetricsQueue fills a one-container pool: one request runs, one waits
// in the queue (capacity 1), the third is rejected because the queue is
// full; the metrics show the queue length while it waits, then its wait and
// the drop by reason.
func TestMetricsQueue(t *testing.T) {
	release := make(chan struct{})
	n := newTestNode(t, nodeOpts{
		metricsPath: "/metrics", memoryMB: 128, queueCapacity: 1,
		funcs: map[string]fake.Func{
			"hello.block": func(ctx context.Context, _ *fake.Call) (any, error) {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return "done", nil
			},
		},
	})
	n.do(t, "POST", "/create", helloDef(t, "hello.block"))
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	invoke := func() {
		wg.Go(func() {
			code, _ := n.do(t, "POST", "/invoke/hello", nil)
			codes <- code
		})
	}
	invoke()
	waitUntil(t, "the first request to run", func() bool { return n.pool.Stats().Busy["hello"] == 1 })
	expectSeries(t, n.scrape(t), map[string]float64{
		`serverledge_containers{function="hello",state="busy"}`: 1,
		`serverledge_requests_in_flight{function="hello"}`:      1,
		`serverledge_pool_memory_used_bytes`:                    128 << 20,
	})
	invoke()
	waitUntil(t, "the second request to queue", func() bool {
		return n.scrape(t)[`serverledge_queue_length`] == 1
	})
	if code, body := n.do(t, "POST", "/invoke/hello", nil); code != 429 {
		t.Fatalf("third request: %d %s, want 429", code, body)
	}
	close(release)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("queued or running request: %d, want 200", code)
		}
	}
	expectSeries(t, n.scrape(t), map[string]float64{
		`serverledge_queue_length`:                                           0,
		`serverledge_queue_wait_seconds_count`:                               1,
		`serverledge_dropped_requests_total{reason="queue_full"}`:            1,
		`serverledge_invocations_total{function="hello",outcome="success"}`:  2,
		`serverledge_invocations_total{function="hello",outcome="rejected"}`: 1,
		`serverledge_containers{function="hello",state="idle"}`:              1,
		`serverledge_containers{function="hello",state="busy"}`:              0,
		`serverledge_warm_starts_total`:                                      1,
	})
}

// TestMetricsFunctionLabelsBounded checks that functions beyond
// metrics.functions.max share the _other label, and that deleting a
// function drops its series and frees its label.
func TestMetricsFunctionLabelsBounded(t *testing.T) {
	n := newTestNode(t, nodeOpts{metricsPath: "/metrics", configure: func(c *api.Config) { c.MetricFuncs = 2 }})
	for _, fn := range []string{"f1", "f2", "f3", "f4"} {
		n.do(t, "POST", "/create", with(helloDef(t, "hello.echo"), "Name", fn))
		if code, body := n.do(t, "POST", "/invoke/"+fn, nil); code != 200 {
			t.Fatalf("invoke %s: %d %s", fn, code, body)
		}
	}
	got := n.scrape(t)
	expectSeries(t, got, map[string]float64{
		`serverledge_invocations_total{function="f1",outcome="success"}`:     1,
		`serverledge_invocations_total{function="f2",outcome="success"}`:     1,
		`serverledge_invocations_total{function="_other",outcome="success"}`: 2,
		`serverledge_containers{function="_other",state="idle"}`:             2,
	})
	for series := range got {
		if strings.Contains(series, `function="f3"`) || strings.Contains(series, `function="f4"`) {
			t.Errorf("series beyond the label budget: %s", series)
		}
	}
	if code, body := n.do(t, "POST", "/delete", map[string]any{"Name": "f1"}); code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	n.do(t, "POST", "/create", with(helloDef(t, "hello.echo"), "Name", "f5"))
	if code, body := n.do(t, "POST", "/invoke/f5", nil); code != 200 {
		t.Fatalf("invoke f5: %d %s", code, body)
	}
	got = n.scrape(t)
	for series := range got {
		if strings.Contains(series, `function="f1"`) {
			t.Errorf("series of a deleted function: %s", series)
		}
	}
	expectSeries(t, got, map[string]float64{
		`serverledge_invocations_total{function="f5",outcome="success"}`:     1,
		`serverledge_invocations_total{function="_other",outcome="success"}`: 2,
	})
}
