package api_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/memreg"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

type testNode struct {
	url   string
	reg   registry.Registry
	rt    *fake.Runtime
	pool  *node.Pool
	sched *scheduling.Scheduler
	srv   *api.Server
}

type nodeOpts struct {
	memoryMB      int64
	queueCapacity int
	maxBody       int64
	metricsPath   string
	// configure edits the API configuration before the server is built.
	configure func(*api.Config)
	// reg is the registry; nil means a new in-memory one.
	reg registry.Registry
	// serve runs the API's own HTTP server (with its timeouts and limits)
	// on a loopback port instead of an httptest server.
	serve bool
	// stemCells are the pool's stem-cell targets per runtime.
	stemCells map[string]int
	// funcs are fake functions registered besides the usual ones.
	funcs map[string]fake.Func
}

func newTestNode(t testing.TB, o nodeOpts) *testNode {
	t.Helper()
	if o.memoryMB == 0 {
		o.memoryMB = 1024
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var reg registry.Registry = memreg.New()
	if o.reg != nil {
		reg = o.reg
	}
	funcs := map[string]fake.Func{
		"hello.echo":  fake.Echo,
		"hello.v2":    func(context.Context, *fake.Call) (any, error) { return "v2", nil },
		"hello.fail":  func(context.Context, *fake.Call) (any, error) { return nil, fmt.Errorf("ValueError: bad input") },
		"hello.sleep": builtin("sleep"),
		"hello.loop":  builtin("loop"),
		"hello.env":   func(_ context.Context, c *fake.Call) (any, error) { return c.Env, nil },
	}
	maps.Copy(funcs, o.funcs)
	rt := fake.New(fake.Options{Funcs: funcs})
	codes, err := registry.NewCodeCache(reg, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	var sched *scheduling.Scheduler
	pool, err := node.New(rt, node.Config{
		NodeID: "api-test", MemoryMB: o.memoryMB, CPUs: 2, Code: codes.Get,
		Expiration: time.Minute, JanitorInterval: time.Minute,
		StemCells: o.stemCells,
		OnFree:    func() { sched.Notify() }, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	sched = scheduling.New(pool, scheduling.Config{QueueCapacity: o.queueCapacity, QueueMaxWait: 5 * time.Second, NodeID: "api-test", Area: "test-area", Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	if err := pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go sched.Run(ctx)
	cache, err := registry.NewCache(reg, 16)
	if err != nil {
		t.Fatal(err)
	}
	go cache.Watch(ctx, log, func(ev registry.FunctionEvent) {
		v := ""
		if ev.Function != nil {
			v = ev.Function.Version
		}
		pool.FunctionChanged(ev.Name, v)
		codes.Forget(ev.Name, v)
	})
	if err := reg.RegisterNode(ctx, registry.NodeInfo{ID: "api-test", URL: "http://127.0.0.1:1", Area: "default"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{NodeID: "api-test", MaxBodyBytes: o.maxBody, MetricsPath: o.metricsPath, Logger: log}
	if o.configure != nil {
		o.configure(&cfg)
	}
	srv := api.New(cfg, reg, cache, sched, pool)
	var url string
	var closeServer func()
	if o.serve {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		url = "http://" + l.Addr().String()
		closeServer = func() {
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
			<-served
		}
	} else {
		hs := httptest.NewServer(srv.Handler())
		url, closeServer = hs.URL, hs.Close
	}
	t.Cleanup(func() {
		closeServer()
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = pool.Shutdown(sctx)
		_ = reg.Close()
	})
	return &testNode{url: url, reg: reg, rt: rt, pool: pool, sched: sched, srv: srv}
}

func builtin(name string) fake.Func { return fake.Builtins()[name] }

// blockUntil returns a func that returns "ok" once release is closed.
func blockUntil(release <-chan struct{}) fake.Func {
	return func(ctx context.Context, _ *fake.Call) (any, error) {
		select {
		case <-release:
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func codeTar(t testing.TB, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func symlinkTar(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "l", Linkname: "/etc", Typeflag: tar.TypeSymlink}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func (n *testNode) do(t testing.TB, method, path string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, n.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func helloDef(t testing.TB, handler string) map[string]any {
	return map[string]any{
		"Name": "hello", "Runtime": "python", "MemoryMB": 128, "Handler": handler,
		"TarFunctionCode": codeTar(t, map[string]string{"hello.py": "def echo(p, c): return p\n"}),
	}
}

func with(def map[string]any, key string, value any) map[string]any {
	out := map[string]any{}
	for k, v := range def {
		out[k] = v
	}
	if value == nil {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

// TestBadInputsChangeNothing sends every bad input SPEC §2 names and checks
// each gets a clear 4xx and leaves the registry and the pool untouched.
func TestBadInputsChangeNothing(t *testing.T) {
	n := newTestNode(t, nodeOpts{maxBody: 64 << 10})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	good := helloDef(t, "hello.echo")
	before, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	creates := n.rt.Stats().Creates

	cases := []struct {
		name, method, path string
		body               any
		want               int
		msg                string
	}{
		{"create malformed JSON", "POST", "/create", `{"Name": "x",`, 400, "malformed JSON"},
		{"create not an object", "POST", "/create", `[1,2]`, 400, "JSON object"},
		{"create empty body", "POST", "/create", ``, 400, "empty"},
		{"create MemoryMB wrong type", "POST", "/create", with(with(good, "Name", "other"), "MemoryMB", "lots"), 400, "MemoryMB"},
		{"create CPUDemand wrong type", "POST", "/create", with(with(good, "Name", "other"), "CPUDemand", true), 400, "CPUDemand"},
		{"create missing name", "POST", "/create", with(good, "Name", nil), 400, "Name"},
		{"create bad name", "POST", "/create", with(good, "Name", "../etc"), 400, "Name"},
		{"create long name", "POST", "/create", with(good, "Name", strings.Repeat("a", 65)), 400, "Name"},
		{"create unknown runtime", "POST", "/create", with(with(good, "Name", "other"), "Runtime", "cobol"), 404, "runtime"},
		{"create missing code", "POST", "/create", with(with(good, "Name", "other"), "TarFunctionCode", nil), 400, "TarFunctionCode"},
		{"create code not base64", "POST", "/create", with(with(good, "Name", "other"), "TarFunctionCode", "%%%"), 400, "base64"},
		{"create escaping tar", "POST", "/create", with(with(good, "Name", "other"), "TarFunctionCode", codeTar(t, map[string]string{"../x": "boom"})), 400, "refused"},
		{"create absolute tar", "POST", "/create", with(with(good, "Name", "other"), "TarFunctionCode", codeTar(t, map[string]string{"/etc/x": "boom"})), 400, "refused"},
		{"create symlink tar", "POST", "/create", with(with(good, "Name", "other"), "TarFunctionCode", symlinkTar(t)), 400, "refused"},
		{"create python handler without dot", "POST", "/create", with(with(good, "Name", "other"), "Handler", "echo"), 400, "Handler"},
		{"create memory too small", "POST", "/create", with(with(good, "Name", "other"), "MemoryMB", 1), 400, "MemoryMB"},
		{"create custom without image", "POST", "/create", with(with(with(good, "Name", "other"), "Runtime", "custom"), "TarFunctionCode", nil), 400, "CustomImage"},
		{"create exists", "POST", "/create", good, 409, "exists"},
		{"create oversized body", "POST", "/create", with(with(good, "Name", "other"), "Handler", "a."+strings.Repeat("x", 70<<10)), 400, "limit"},
		{"update unknown", "POST", "/update", with(good, "Name", "nosuch"), 404, "nosuch"},
		{"update malformed", "POST", "/update", `{`, 400, "malformed"},
		{"update bad field", "POST", "/update", with(good, "MemoryMB", -5), 400, "MemoryMB"},
		{"delete unknown", "POST", "/delete", map[string]any{"Name": "nosuch"}, 404, "nosuch"},
		{"delete malformed", "POST", "/delete", `{"Name":`, 400, "malformed"},
		{"delete Name wrong type", "POST", "/delete", `{"Name": 5}`, 400, "Name"},
		{"describe unknown", "GET", "/function/nosuch", nil, 404, "nosuch"},
		{"invoke unknown", "POST", "/invoke/nosuch", `{}`, 404, "nosuch"},
		{"invoke malformed", "POST", "/invoke/hello", `{"Params":`, 400, "malformed"},
		{"invoke Params not object", "POST", "/invoke/hello", `{"Params": [1]}`, 400, "Params"},
		{"invoke bad class", "POST", "/invoke/hello", `{"QoSClass": 7}`, 400, "QoSClass"},
		{"invoke class wrong type", "POST", "/invoke/hello", `{"QoSClass": "fast"}`, 400, "QoSClass"},
		{"poll unknown", "GET", "/poll/nosuch-id", nil, 404, "unknown"},
		{"prewarm unknown", "POST", "/prewarm", map[string]any{"Function": "nosuch", "Instances": 1}, 404, "nosuch"},
		{"prewarm negative", "POST", "/prewarm", map[string]any{"Function": "hello", "Instances": -1}, 400, "Instances"},
		{"prewarm malformed", "POST", "/prewarm", `{"Function"`, 400, "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := n.do(t, tc.method, tc.path, tc.body)
			if code != tc.want {
				t.Fatalf("status %d, want %d (body %q)", code, tc.want, body)
			}
			if !strings.Contains(strings.ToLower(body), strings.ToLower(tc.msg)) {
				t.Errorf("body %q does not mention %q", body, tc.msg)
			}
			names, err := n.reg.ListFunctions(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0] != "hello" {
				t.Errorf("registry functions changed: %v", names)
			}
			now, err := n.reg.GetFunction(context.Background(), "hello")
			if err != nil || now.Version != before.Version {
				t.Errorf("function hello changed: %v %+v", err, now)
			}
			if c := n.rt.Stats().Creates; c != creates {
				t.Errorf("containers created: %d, want %d", c, creates)
			}
		})
	}
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

func TestFunctionLifecycle(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo"))
	if code != 200 || decode[wire.CreatedResponse](t, body).Created != "hello" {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body = n.do(t, "GET", "/function", nil)
	if code != 200 || body != `["hello"]`+"\n" {
		t.Fatalf("list: %d %q", code, body)
	}
	code, body = n.do(t, "GET", "/function/hello", nil)
	if code != 200 || strings.Contains(body, "TarFunctionCode") || !strings.Contains(body, `"Handler":"hello.echo"`) {
		t.Fatalf("describe: %d %s", code, body)
	}

	code, body = n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"x": 1}})
	first := decode[wire.InvocationResponse](t, body)
	if code != 200 || !first.Success || first.IsWarmStart || first.Result != `{"x":1}` {
		t.Fatalf("cold invoke: %d %s", code, body)
	}
	code, body = n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"x": 2}})
	second := decode[wire.InvocationResponse](t, body)
	if code != 200 || !second.IsWarmStart || second.Result != `{"x":2}` {
		t.Fatalf("warm invoke: %d %s", code, body)
	}
	if second.ResponseTime <= 0 || second.ResponseTime < second.Duration {
		t.Errorf("ResponseTime %v must be positive and at least Duration %v", second.ResponseTime, second.Duration)
	}

	code, body = n.do(t, "POST", "/update", helloDef(t, "hello.v2"))
	if code != 200 || decode[wire.UpdatedResponse](t, body).Updated != "hello" {
		t.Fatalf("update: %d %s", code, body)
	}
	code, body = n.do(t, "POST", "/invoke/hello", nil)
	if r := decode[wire.InvocationResponse](t, body); code != 200 || r.Result != `"v2"` || r.IsWarmStart {
		t.Fatalf("invoke after update: %d %s", code, body)
	}

	code, body = n.do(t, "POST", "/delete", map[string]any{"Name": "hello"})
	if code != 200 || decode[wire.DeletedResponse](t, body).Deleted != "hello" {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body = n.do(t, "POST", "/invoke/hello", nil); code != 404 {
		t.Fatalf("invoke after delete: %d %s", code, body)
	}
	testutil.WaitUntil(t, 10*time.Second, "the idle containers of the deleted function to be retired", func() bool {
		return n.pool.Stats().Idle["hello"] == 0
	})
}

func TestFunctionErrorsAndTimeout(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	n.do(t, "POST", "/create", with(helloDef(t, "hello.fail"), "Name", "failing"))
	code, body := n.do(t, "POST", "/invoke/failing", nil)
	if code != 500 || !strings.Contains(body, "ValueError: bad input") {
		t.Fatalf("function error: %d %s", code, body)
	}
	n.do(t, "POST", "/create", with(with(helloDef(t, "hello.loop"), "Name", "looping"), "TimeoutSeconds", 0.3))
	code, body = n.do(t, "POST", "/invoke/looping", nil)
	if code != 504 {
		t.Fatalf("timeout: %d %s", code, body)
	}
}

func TestAsyncPoll(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	n.do(t, "POST", "/create", helloDef(t, "hello.sleep"))
	code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Async": true, "Params": map[string]any{"ms": 300}})
	id := decode[wire.AsyncResponse](t, body).ReqID
	if code != 200 || id == "" {
		t.Fatalf("async invoke: %d %s", code, body)
	}
	if code, body = n.do(t, "GET", "/poll/"+id, nil); code != 202 || !strings.Contains(body, "running") {
		t.Fatalf("poll while running: %d %s", code, body)
	}
	testutil.WaitUntil(t, 10*time.Second, "the async result", func() bool {
		code, body = n.do(t, "GET", "/poll/"+id, nil)
		return code != 202
	})
	if r := decode[wire.InvocationResponse](t, body); code != 200 || !r.Success || r.Result != `{"ms":300}` {
		t.Fatalf("poll result: %d %s", code, body)
	}
}

// TestQueueOverflow fills a one-container pool: one request runs, one waits
// in the queue (capacity 1) and the third is rejected with 429.
func TestQueueOverflow(t *testing.T) {
	n := newTestNode(t, nodeOpts{memoryMB: 128, queueCapacity: 1})
	release := make(chan struct{})
	n.rt.Register("hello.block", blockUntil(release))
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
	testutil.WaitUntil(t, 10*time.Second, "the first request to run", func() bool { return n.pool.Busy("hello") == 1 })
	invoke()
	testutil.WaitUntil(t, 10*time.Second, "the second request to queue", func() bool { return n.sched.QueueLength() == 1 })
	if code, body := n.do(t, "POST", "/invoke/hello", nil); code != 429 {
		t.Errorf("third request with the container busy and the queue full: %d %s, want 429", code, body)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("running or queued request: status %d, want 200", c)
		}
	}
	code, body := n.do(t, "GET", "/status", nil)
	if st := decode[wire.StatusResponse](t, body); code != 200 || st.DropCount != 1 {
		t.Fatalf("status: %d %s", code, body)
	}
}

// TestQueueDeadline checks a queued request whose deadline can no longer be
// met leaves the queue with 429 instead of waiting.
func TestQueueDeadline(t *testing.T) {
	n := newTestNode(t, nodeOpts{memoryMB: 128, queueCapacity: 10})
	release := make(chan struct{})
	n.rt.Register("hello.block", blockUntil(release))
	n.do(t, "POST", "/create", helloDef(t, "hello.block"))
	done := make(chan int, 1)
	go func() {
		code, _ := n.do(t, "POST", "/invoke/hello", nil)
		done <- code
	}()
	testutil.WaitUntil(t, 10*time.Second, "the first request to run", func() bool { return n.pool.Busy("hello") == 1 })
	// The slot frees only when release is closed, after the answer: a 429
	// naming the deadline shows the rejection did not wait for the slot
	// (nor for the queue's maximum wait, whose message differs).
	code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"QoSMaxRespT": 0.3})
	if code != 429 || !strings.Contains(body, "deadline") {
		t.Fatalf("queued past its deadline: %d %s", code, body)
	}
	close(release)
	if c := <-done; c != 200 {
		t.Fatalf("first request: %d", c)
	}
}

func TestMetrics(t *testing.T) {
	n := newTestNode(t, nodeOpts{metricsPath: "/metrics"})
	n.do(t, "POST", "/create", helloDef(t, "hello.echo"))
	for range 2 {
		if code, body := n.do(t, "POST", "/invoke/hello", nil); code != 200 {
			t.Fatalf("invoke: %d %s", code, body)
		}
	}
	n.do(t, "POST", "/create", with(helloDef(t, "hello.fail"), "Name", "failing"))
	n.do(t, "POST", "/invoke/failing", nil)
	code, body := n.do(t, "GET", "/metrics", nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`serverledge_invocations_total{function="hello",outcome="success"} 2`,
		`serverledge_invocations_total{function="failing",outcome="function_error"} 1`,
		`serverledge_response_seconds_count{function="hello",start="cold"} 1`,
		`serverledge_response_seconds_count{function="hello",start="warm"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	off := newTestNode(t, nodeOpts{})
	if code, _ := off.do(t, "GET", "/metrics", nil); code != 404 {
		t.Errorf("metrics disabled: status %d, want 404", code)
	}
}
