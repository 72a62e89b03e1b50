package e2e

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/wire"
)

// TestQueueOverflowRejects fills a one-container pool and a one-slot queue:
// the third concurrent request is rejected with 429 and counted as a drop.
func TestQueueOverflowRejects(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{PoolMemoryMB: 128, Args: []string{"--scheduler.queue.capacity", "1"}})
	createPython(t, n, "slow", "sleep.handler", 128, map[string]string{"sleep.py": sleepPy})

	type reply struct {
		code int
		body string
	}
	replies := make([]reply, 3)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() {
			code, body, err := invokeHTTP(n, "slow", map[string]any{"s": 1})
			if err != nil {
				body = []byte(err.Error())
			}
			replies[i] = reply{code, string(body)}
		})
	}
	wg.Wait()

	var ok, rejected int
	for _, r := range replies {
		switch r.code {
		case http.StatusOK:
			ok++
			if !strings.Contains(r.body, `"Result":"\"slept\""`) {
				t.Errorf("200 reply without the result: %s", r.body)
			}
		case http.StatusTooManyRequests:
			rejected++
			if !strings.Contains(r.body, "queue is full") {
				t.Errorf("429 body %q does not say the queue is full", r.body)
			}
		default:
			t.Errorf("unexpected reply %d %s", r.code, r.body)
		}
	}
	if ok != 2 || rejected != 1 {
		t.Fatalf("%d successes and %d rejections; want 2 and 1: %+v", ok, rejected, replies)
	}
	if st := status(t, n); st.DropCount != 1 {
		t.Errorf("DropCount %d; want 1", st.DropCount)
	}
}

// TestPollFromAnotherNode invokes asynchronously on one node and polls the
// result on another node sharing the same external etcd.
func TestPollFromAnotherNode(t *testing.T) {
	t.Parallel()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	endpoints := registrytest.StartExternalEtcd(t)
	a := startNode(t, nodeOpts{Etcd: endpoints})
	b := startNode(t, nodeOpts{Etcd: endpoints})

	createCLI(t, a, "hello", "--runtime", "python", "--handler", "hello.handler",
		"--src", repoPath(t, "examples/python/hello"))
	var names []string
	cliOK(t, b, &names, "list")
	if !slices.Contains(names, "hello") {
		t.Fatalf("node B lists %v; want the function created on node A", names)
	}

	// A request still running on node A is reported as such by node B.
	createPython(t, a, "slow", "sleep.handler", 128, map[string]string{"sleep.py": sleepPy})
	var slow wire.AsyncResponse
	cliOK(t, a, &slow, "invoke", "-f", "slow", "-p", "s:5", "-a", "--no_offload")
	if res := cli(t, b, "poll", "--request", slow.ReqID); res.Code != 3 || !strings.Contains(res.Stdout, "still running") {
		t.Errorf("poll of a running request on node B: exit %d, stdout %q, stderr %q; want 3 and \"still running\"", res.Code, res.Stdout, res.Stderr)
	}

	var async wire.AsyncResponse
	cliOK(t, a, &async, "invoke", "-f", "hello", "-p", "name:Far", "-a", "--no_offload")
	var polled wire.InvocationResponse
	cliOK(t, b, &polled, "poll", "--request", async.ReqID, "--wait", "30s")
	if !polled.Success || polled.Result != `"Hello, Far!"` {
		t.Fatalf("poll on node B: %+v; want the result of node A", polled)
	}
	if polled.NodeURL != a.URL {
		t.Errorf("NodeUrl %q; want node A (%s), which ran it", polled.NodeURL, a.URL)
	}
	var slowDone wire.InvocationResponse
	cliOK(t, b, &slowDone, "poll", "--request", slow.ReqID, "--wait", "60s")
	if !slowDone.Success || slowDone.Result != `"slept"` {
		t.Errorf("poll of the slow request on node B: %+v", slowDone)
	}
	if res := cli(t, b, "poll", "--request", "hello-00000000-0000-4000-8000-000000000000"); res.Code != 1 || !strings.Contains(res.Stderr, "404") {
		t.Errorf("poll of an unknown id: exit %d, stderr %q; want 1 and 404", res.Code, res.Stderr)
	}
}

// TestRestartRemovesOrphans kills a node with SIGKILL, leaving its
// containers behind, and checks that a node restarted under the same name
// removes them before it is ready.
func TestRestartRemovesOrphans(t *testing.T) {
	t.Parallel()
	first := startNode(t, nodeOpts{})
	createPython(t, first, "orphan", "hello.handler", 128, helloFiles)
	var pre wire.PrewarmResponse
	cliOK(t, first, &pre, "prewarm", "-f", "orphan", "--count", "2")
	if pre.Prewarmed != 2 {
		t.Fatalf("Prewarmed %d; want 2", pre.Prewarmed)
	}
	orphans := nodeContainers(t, first, "")
	if len(orphans) != 2 {
		t.Fatalf("%d containers after prewarm; want 2", len(orphans))
	}

	first.signal(t, syscall.SIGKILL)
	if !first.proc.Wait(10 * time.Second) {
		t.Fatalf("node did not die of SIGKILL")
	}
	left := nodeContainers(t, first, "")
	slices.Sort(left)
	slices.Sort(orphans)
	if !slices.Equal(left, orphans) {
		t.Fatalf("containers after kill -9: %v; want the two prewarmed ones %v still there", left, orphans)
	}

	second := startNode(t, nodeOpts{Name: first.Name, EtcdDir: first.EtcdDir, RunDir: first.RunDir})
	for _, id := range nodeContainers(t, second, "") {
		if slices.Contains(orphans, id) {
			t.Errorf("orphan container %s of the killed node is still there after the restart", id)
		}
	}
	if got := status(t, second).AvailableWarmContainers["orphan"]; got != 0 {
		t.Errorf("the restarted node counts %d idle containers of its previous run; want 0", got)
	}
	// The function survived in the registry and runs on the new node.
	if resp := invokeCLI(t, second, "orphan", "-p", "name:Again"); resp.Result != `"Hello, Again!"` || resp.IsWarmStart {
		t.Errorf("invoke after the restart: Result %s, IsWarmStart %v; want a cold start's result", resp.Result, resp.IsWarmStart)
	}
}

// TestBadInputsChangeNothing sends a few malformed requests to a real node:
// each gets a 4xx with a message and the function list stays the same.
func TestBadInputsChangeNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{Args: []string{"--api.max.body", "64KiB"}})
	createPython(t, n, "ok", "hello.handler", 128, helloFiles)
	before := functionNames(t, n)

	code := func(files map[string]string) string {
		return base64.StdEncoding.EncodeToString(tarOf(t, files))
	}
	tests := []struct {
		name     string
		path     string
		body     []byte
		wantCode int
		wantMsg  string
	}{
		{"malformed create", "/create", []byte(`{"Name": "x", "Runtime": `), http.StatusBadRequest, "malformed JSON"},
		{"malformed invoke", "/invoke/ok", []byte(`{"Params": {`), http.StatusBadRequest, "malformed JSON"},
		{"unknown runtime", "/create", mustJSON(wire.FunctionRequest{Name: "x", Runtime: "cobol", Handler: "a.b", TarFunctionCode: code(helloFiles)}), http.StatusNotFound, "cobol"},
		{"escaping tar", "/create", mustJSON(wire.FunctionRequest{Name: "x", Runtime: "python", Handler: "hello.handler", TarFunctionCode: code(map[string]string{"../evil.py": "x = 1\n"})}), http.StatusBadRequest, "TarFunctionCode"},
		{"oversized body", "/create", mustJSON(wire.FunctionRequest{Name: "x", Runtime: "python", Handler: "hello.handler", TarFunctionCode: code(map[string]string{"big.py": strings.Repeat("#", 100<<10)})}), http.StatusBadRequest, "exceeds the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, body := do(t, http.MethodPost, n.URL+tt.path, tt.body)
			if got != tt.wantCode || !strings.Contains(string(body), tt.wantMsg) {
				t.Fatalf("POST %s: %d %q; want %d with a message containing %q", tt.path, got, body, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if after := functionNames(t, n); !slices.Equal(after, before) {
		t.Errorf("GET /function %v after bad requests; want %v", after, before)
	}
	if resp := invokeCLI(t, n, "ok"); resp.Result != `"Hello, world!"` {
		t.Errorf("the node does not serve after bad requests: %+v", resp)
	}
}

// TestGracefulShutdownFinishesInFlight sends SIGTERM while an invocation
// runs: the invocation still succeeds, then the node exits and removes its
// containers.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	createPython(t, n, "slow", "sleep.handler", 128, map[string]string{"sleep.py": sleepPy})
	var pre wire.PrewarmResponse
	cliOK(t, n, &pre, "prewarm", "-f", "slow", "--count", "1")

	type reply struct {
		code int
		body []byte
		err  error
	}
	done := make(chan reply, 1)
	go func() {
		code, body, err := invokeHTTP(n, "slow", map[string]any{"s": 2})
		done <- reply{code, body, err}
	}()
	eventually(t, 10*time.Second, "the invocation never became busy", func() bool {
		return status(t, n).BusyContainers["slow"] == 1
	})
	n.signal(t, syscall.SIGTERM)
	if len(done) > 0 {
		t.Fatal("the invocation finished before SIGTERM was sent; nothing was in flight")
	}

	var r reply
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight invocation got no reply within 30s of SIGTERM")
	}
	if r.err != nil {
		t.Fatalf("in-flight invocation: %v", r.err)
	}
	if r.code != http.StatusOK || !bytes.Contains(r.body, []byte(`"Success":true`)) {
		t.Fatalf("in-flight invocation: %d %s; want 200 with Success", r.code, r.body)
	}
	if !n.proc.Wait(nodeStopTimeout) {
		t.Fatalf("node did not exit within %v of SIGTERM", nodeStopTimeout)
	}
	if !n.proc.State().Success() {
		t.Errorf("node exited with %v", n.proc.State())
	}
	if left := nodeContainers(t, n, ""); len(left) != 0 {
		t.Errorf("containers left after shutdown: %v", left)
	}
	if _, _, err := tryDo(http.MethodGet, n.URL+"/status", nil); err == nil {
		t.Errorf("the node still answers after it exited")
	}
}
