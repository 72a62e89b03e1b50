package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics returns node n's metrics as series → value.
func scrapeMetrics(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	code, body := do(t, http.MethodGet, n.URL+"/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
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

// TestMetricsAndCLIOutputOfARealNode drives a node with metrics enabled
// and a python stem cell through a cold start from the stem cell, a warm
// start, a cold start in a new container and a rejection, then checks the
// series an operator reads, the CLI's table output and its completion of
// function names.
func TestMetricsAndCLIOutputOfARealNode(t *testing.T) {
	t.Parallel()
	requireImage(t, nodejsImage)
	n := startNode(t, nodeOpts{PoolMemoryMB: 512, Args: []string{
		"--metrics.enabled=true", "--container.stemcells=python:1", "--container.stemcell.memory", "128",
	}})
	eventually(t, 60*time.Second, "a python stem cell", func() bool { return status(t, n).StemCells["python"] == 1 })

	createPython(t, n, "hello", "hello.handler", 128, helloFiles)
	createPython(t, n, "huge", "hello.handler", 4096, helloFiles)
	createCLI(t, n, "hellojs", "--runtime", "nodejs", "--handler", "hello.js", "--src", repoPath(t, "examples/nodejs/hello"))
	for _, call := range []struct {
		fn   string
		code int
	}{
		{"hello", http.StatusOK},             // cold, from the stem cell
		{"hello", http.StatusOK},             // warm
		{"hellojs", http.StatusOK},           // cold, new container
		{"huge", http.StatusTooManyRequests}, // more memory than the pool
	} {
		code, body, err := invokeHTTP(n, call.fn, nil)
		if err != nil || code != call.code {
			t.Fatalf("invoke %s: %d %s %v, want %d", call.fn, code, body, err, call.code)
		}
	}
	got := scrapeMetrics(t, n)
	for series, want := range map[string]float64{
		`serverledge_invocations_total{function="hello",outcome="success"}`:   2,
		`serverledge_invocations_total{function="hellojs",outcome="success"}`: 1,
		`serverledge_invocations_total{function="huge",outcome="rejected"}`:   1,
		`serverledge_cold_starts_total{kind="stem_cell"}`:                     1,
		`serverledge_cold_starts_total{kind="new_container"}`:                 1,
		`serverledge_warm_starts_total`:                                       1,
		`serverledge_dropped_requests_total{reason="too_large"}`:              1,
		`serverledge_containers{function="hello",state="idle"}`:               1,
		`serverledge_containers{function="hellojs",state="idle"}`:             1,
		`serverledge_containers{function="hello",state="busy"}`:               0,
		`serverledge_function_duration_seconds_count{function="hello"}`:       2,
		`serverledge_response_seconds_count{function="hello",start="cold"}`:   1,
		`serverledge_response_seconds_count{function="hello",start="warm"}`:   1,
		`serverledge_pool_memory_bytes`:                                       512 << 20,
		`serverledge_queue_length`:                                            0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %g (present %v), want %g", series, v, ok, want)
		}
	}
	if got[`process_resident_memory_bytes`] <= 0 {
		t.Errorf("process_resident_memory_bytes missing")
	}

	if res := cliOK(t, n, nil, "describe", "hello", "-o", "table"); !strings.Contains(res.Stdout, "Runtime") || !strings.Contains(res.Stdout, "python") {
		t.Errorf("describe -o table:\n%s", res.Stdout)
	}
	var names []string
	cliOK(t, n, &names, "list") // not a terminal: JSON
	if len(names) != 3 {
		t.Errorf("list printed %v, want 3 functions", names)
	}

	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, "__complete", "invoke", "-f", "hel")
	cmd.Env = append(cleanEnv(), "SERVERLEDGE_HOST=127.0.0.1", "SERVERLEDGE_PORT="+strconv.Itoa(n.Port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("__complete: %v", err)
	}
	if !strings.HasPrefix(string(out), "hello\nhellojs\n:") {
		t.Errorf("__complete invoke -f hel printed %q, want hello and hellojs", out)
	}
}
