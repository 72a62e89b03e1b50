package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/api"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/wire"
)

// doHeaders sends a JSON request and returns the status, body and headers.
func (n *testNode) doHeaders(t *testing.T, method, path string, body any) (int, string, http.Header) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// otherArch is an architecture this node is not.
func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// TestUpstreamFieldsStoredAndReturned creates a function with the newest
// upstream release's fields and Env, and checks GET /function/{name}
// returns them with upstream's JSON names and shapes, that they are part
// of the Version, and that Env reaches the function's container.
func TestUpstreamFieldsStoredAndReturned(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	def := with(with(with(with(helloDef(t, "hello.env"),
		"MaxConcurrency", 4),
		"SupportedArchs", []string{runtime.GOARCH, otherArch()}),
		"Signature", map[string]any{
			"Inputs":  []any{map[string]any{"Name": "n", "Type": "Int"}},
			"Outputs": []any{map[string]any{"Name": "IsPrime", "Type": "Bool"}},
		}),
		"Env", map[string]string{"GREETING": "hi", "EMPTY": "", "_X1": "a=b"})
	if code, body := n.do(t, "POST", "/create", def); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body := n.do(t, "GET", "/function/hello", nil)
	if code != 200 {
		t.Fatalf("describe: %d %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"MaxConcurrency": `4`,
		"SupportedArchs": fmt.Sprintf(`[%q,%q]`, runtime.GOARCH, otherArch()),
		"Signature":      `{"Inputs":[{"Name":"n","Type":"Int"}],"Outputs":[{"Name":"IsPrime","Type":"Bool"}]}`,
		"Env":            `{"EMPTY":"","GREETING":"hi","_X1":"a=b"}`,
	}
	for k, w := range want {
		b, _ := json.Marshal(got[k])
		if string(b) != w {
			t.Errorf("%s = %s, want %s", k, b, w)
		}
	}

	code, body = n.do(t, "POST", "/invoke/hello", nil)
	if r := decode[wire.InvocationResponse](t, body); code != 200 || r.Result != want["Env"] {
		t.Fatalf("invoke: %d %s; want the function to see Env %s", code, body, want["Env"])
	}

	before, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, change := range []struct {
		field string
		value any
	}{
		{"Env", map[string]string{"GREETING": "hello"}},
		{"MaxConcurrency", 5},
		{"SupportedArchs", []string{runtime.GOARCH}},
		{"Signature", map[string]any{"Inputs": []any{}, "Outputs": []any{}}},
	} {
		if code, body := n.do(t, "POST", "/update", with(def, change.field, change.value)); code != 200 {
			t.Fatalf("update %s: %d %s", change.field, code, body)
		}
		now, err := n.reg.GetFunction(context.Background(), "hello")
		if err != nil {
			t.Fatal(err)
		}
		if now.Version == before.Version {
			t.Errorf("changing %s kept Version %s", change.field, now.Version)
		}
		before = now
	}
	// The new Env reaches the new version's container.
	code, body = n.do(t, "POST", "/update", with(def, "Env", map[string]string{"GREETING": "v2"}))
	if code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	code, body = n.do(t, "POST", "/invoke/hello", nil)
	if r := decode[wire.InvocationResponse](t, body); code != 200 || r.Result != `{"GREETING":"v2"}` {
		t.Fatalf("invoke after update: %d %s", code, body)
	}
}

// TestUpstreamFieldDefaults checks a definition without the new fields
// gets MaxConcurrency 1 and keeps the Version it had before they existed.
func TestUpstreamFieldDefaults(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	f, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if f.MaxConcurrency != 1 || f.Concurrency() != 1 || f.SupportedArchs != nil || f.Signature != nil || f.Env != nil {
		t.Errorf("defaults: MaxConcurrency %d, SupportedArchs %v, Signature %v, Env %v", f.MaxConcurrency, f.SupportedArchs, f.Signature, f.Env)
	}
	if (&function.Function{}).Concurrency() != 1 {
		t.Error("Concurrency of a definition stored without MaxConcurrency is not 1")
	}
}

// TestRuntimeNamesOfNewestRelease checks the newest upstream release's
// runtime names are accepted and stored under our canonical names, and
// that go125 is refused with 404 naming the runtimes there are.
func TestRuntimeNamesOfNewestRelease(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	for i, tc := range []struct{ name, handler, file, want string }{
		{"python314", "hello.echo", "hello.py", function.RuntimePython},
		{"python312ml", "hello.echo", "hello.py", function.RuntimePython},
		{"nodejs17ng", "hello.js", "hello.js", function.RuntimeNodeJS},
	} {
		fn := fmt.Sprintf("rt%d", i)
		def := with(with(with(helloDef(t, tc.handler), "Name", fn), "Runtime", tc.name),
			"TarFunctionCode", codeTar(t, map[string]string{tc.file: "x"}))
		if code, body := n.do(t, "POST", "/create", def); code != 200 {
			t.Fatalf("create %s: %d %s", tc.name, code, body)
		}
		f, err := n.reg.GetFunction(context.Background(), fn)
		if err != nil || f.Runtime != tc.want {
			t.Errorf("%s stored as %v (%v), want %s", tc.name, f, err, tc.want)
		}
	}
	code, body := n.do(t, "POST", "/create", with(with(helloDef(t, "main.handler"), "Name", "gofn"), "Runtime", "go125"))
	if code != 404 || !strings.Contains(body, "go125") || !strings.Contains(body, "python") || !strings.Contains(body, "custom") {
		t.Errorf("go125: %d %q; want 404 naming the runtimes", code, body)
	}
}

// TestUpstreamFieldBadInputsChangeNothing sends bad values of the new
// fields on /create and /update: each gets a 400 (404 for go125) with a
// message naming the field, and the registry and pool stay as they were.
func TestUpstreamFieldBadInputsChangeNothing(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	good := helloDef(t, "hello.env")
	if code, body := n.do(t, "POST", "/create", good); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	before, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	creates := n.rt.Stats().Creates
	manyEnv := map[string]string{}
	for i := range function.MaxEnvVars + 1 {
		manyEnv[fmt.Sprintf("V%d", i)] = "x"
	}
	bigEnv := map[string]string{}
	for i := range 9 {
		bigEnv[fmt.Sprintf("V%d", i)] = strings.Repeat("x", function.MaxEnvValueBytes)
	}
	other := with(good, "Name", "other")
	cases := []struct {
		name  string
		field string
		value any
		msg   string
	}{
		{"MaxConcurrency negative", "MaxConcurrency", -1, "MaxConcurrency"},
		{"MaxConcurrency too large", "MaxConcurrency", function.MaxConcurrencyLimit + 1, "MaxConcurrency"},
		{"MaxConcurrency wrong type", "MaxConcurrency", "many", "MaxConcurrency"},
		{"SupportedArchs unknown", "SupportedArchs", []string{"sparc"}, "SupportedArchs"},
		{"SupportedArchs x86_64 spelling", "SupportedArchs", []string{"x86_64"}, "GOARCH"},
		{"SupportedArchs twice", "SupportedArchs", []string{"amd64", "amd64"}, "twice"},
		{"SupportedArchs too many", "SupportedArchs", strings.Split(strings.Repeat("amd64,", function.MaxArchs+1), ",")[:function.MaxArchs+1], "limit"},
		{"SupportedArchs not a list", "SupportedArchs", "amd64", "SupportedArchs"},
		{"Signature unknown type", "Signature", map[string]any{"Inputs": []any{map[string]any{"Name": "n", "Type": "Complex"}}}, "Type"},
		{"Signature input without name", "Signature", map[string]any{"Inputs": []any{map[string]any{"Type": "Int"}}}, "Name"},
		{"Signature null input", "Signature", map[string]any{"Outputs": []any{nil}}, "null"},
		{"Signature not an object", "Signature", []any{1}, "Signature"},
		{"Env name starts with a digit", "Env", map[string]string{"1A": "x"}, "Env name"},
		{"Env name with a dash", "Env", map[string]string{"A-B": "x"}, "Env name"},
		{"Env name with =", "Env", map[string]string{"A=B": "x"}, "Env name"},
		{"Env empty name", "Env", map[string]string{"": "x"}, "Env name"},
		{"Env reserved PATH", "Env", map[string]string{"PATH": "/tmp"}, "reserved"},
		{"Env reserved prefix", "Env", map[string]string{"SERVERLEDGE_NODE": "x"}, "reserved"},
		{"Env too many", "Env", manyEnv, "limit"},
		{"Env value too long", "Env", map[string]string{"A": strings.Repeat("x", function.MaxEnvValueBytes+1)}, "limit"},
		{"Env too large in all", "Env", bigEnv, "add up"},
		{"Env NUL byte", "Env", map[string]string{"A": "x\x00y"}, "NUL"},
		{"Env value not a string", "Env", map[string]any{"A": 1}, "Env"},
		{"Env not an object", "Env", []string{"A=1"}, "Env"},
	}
	for _, tc := range cases {
		for _, path := range []string{"/create", "/update"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				def := other
				if path == "/update" {
					def = good
				}
				code, body := n.do(t, "POST", path, with(def, tc.field, tc.value))
				if code != 400 {
					t.Fatalf("status %d, want 400 (body %q)", code, body)
				}
				if !strings.Contains(body, tc.msg) {
					t.Errorf("body %q does not mention %q", body, tc.msg)
				}
				assertUnchanged(t, n, before.Version, creates)
			})
		}
	}
}

// assertUnchanged checks the registry holds only hello at version and that
// no container was created since creates.
func assertUnchanged(t *testing.T, n *testNode, version string, creates int64) {
	t.Helper()
	names, err := n.reg.ListFunctions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "hello" {
		t.Errorf("registry functions changed: %v", names)
	}
	now, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil || now.Version != version {
		t.Errorf("function hello changed: %v %+v", err, now)
	}
	if c := n.rt.Stats().Creates; c != creates {
		t.Errorf("containers created: %d, want %d", c, creates)
	}
}

// codeServer serves archives and failures for TarFunctionCode URLs on
// 127.0.0.1.
func codeServer(t *testing.T, archive []byte) (*httptest.Server, chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("/code.tar", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(archive) })
	mux.HandleFunc("/missing.tar", http.NotFound)
	mux.HandleFunc("/empty.tar", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/huge.tar", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(function.MaxCodeBytes+1))
		_, _ = w.Write(make([]byte, 1<<20))
	})
	mux.HandleFunc("/huge-chunked.tar", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range function.MaxCodeBytes/len(chunk) + 2 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/stall.tar", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/to-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/code.tar", http.StatusMovedPermanently)
	})
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(func() {
		once.Do(func() { close(release) })
		srv.Close()
	})
	return srv, release
}

// TestCodeURL creates and updates functions whose TarFunctionCode is an
// http URL: the node stores the fetched archive as if it had been inline.
func TestCodeURL(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	inline := codeTar(t, map[string]string{"hello.py": "def echo(p, c): return p\n"})
	archive, err := base64.StdEncoding.DecodeString(inline)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := codeServer(t, archive)
	for _, path := range []string{"/create", "/update"} {
		for i, url := range []string{srv.URL + "/code.tar", srv.URL + "/moved"} {
			name := fmt.Sprintf("hello%d", i)
			code, body := n.do(t, "POST", path, with(with(helloDef(t, "hello.echo"), "Name", name), "TarFunctionCode", url))
			if code != 200 {
				t.Fatalf("%s with %s: %d %s", path, url, code, body)
			}
			f, err := n.reg.GetFunction(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := n.reg.GetCode(context.Background(), name, f.Version)
			if err != nil || !bytes.Equal(stored, archive) {
				t.Fatalf("%s with %s stored %d bytes of code (%v), want the fetched archive", path, url, len(stored), err)
			}
		}
	}
	code, body := n.do(t, "POST", "/invoke/hello1", map[string]any{"Params": map[string]any{"x": 1}})
	if r := decode[wire.InvocationResponse](t, body); code != 200 || r.Result != `{"x":1}` {
		t.Fatalf("invoke: %d %s", code, body)
	}
}

// TestCodeURLFailuresChangeNothing checks every failure to fetch a code URL
// is a 400 saying why, with the registry and pool unchanged.
func TestCodeURLFailuresChangeNothing(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	// A stalled server is given up on after the timeout, which only this
	// node has short.
	impatient := newTestNode(t, nodeOpts{configure: func(c *api.Config) { c.CodeFetchTimeout = 200 * time.Millisecond }})
	if code, body := impatient.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	before, err := n.reg.GetFunction(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	creates := n.rt.Stats().Creates
	srv, _ := codeServer(t, nil)
	cases := []struct {
		name, url, msg string
		node           *testNode
	}{
		{"not found", srv.URL + "/missing.tar", "404", n},
		{"empty", srv.URL + "/empty.tar", "empty", n},
		{"too large by Content-Length", srv.URL + "/huge.tar", "limit", n},
		{"too large streamed", srv.URL + "/huge-chunked.tar", "limit", n},
		{"timeout", srv.URL + "/stall.tar", "within", impatient},
		{"redirect to file", srv.URL + "/to-file", "redirect to a file URL", n},
		{"redirect loop", srv.URL + "/loop", "redirects", n},
		{"ftp scheme", "ftp://127.0.0.1/code.tar", "scheme", n},
		{"file scheme", "file:///etc/passwd", "scheme", n},
		{"no host", "http:///code.tar", "host", n},
		{"connection refused", "http://127.0.0.1:1/code.tar", "fetching", n},
		{"too long", srv.URL + "/" + strings.Repeat("a", 2100), "longer", n},
	}
	for _, tc := range cases {
		for _, path := range []string{"/create", "/update"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				name := "other"
				if path == "/update" {
					name = "hello"
				}
				code, body := tc.node.do(t, "POST", path, with(with(helloDef(t, "hello.echo"), "Name", name), "TarFunctionCode", tc.url))
				if code != 400 {
					t.Fatalf("status %d, want 400 (body %q)", code, body)
				}
				if !strings.Contains(body, tc.msg) || !strings.Contains(body, "TarFunctionCode") {
					t.Errorf("body %q does not mention TarFunctionCode and %q", body, tc.msg)
				}
				assertUnchanged(t, tc.node, before.Version, creates)
			})
		}
	}
}

// TestArchitectureRefused checks a node refuses, with 421 and a message, to
// run or prewarm a function whose SupportedArchs exclude its architecture,
// and starts no container for it.
func TestArchitectureRefused(t *testing.T) {
	n := newTestNode(t, nodeOpts{})
	def := with(helloDef(t, "hello.echo"), "SupportedArchs", []string{otherArch()})
	if code, body := n.do(t, "POST", "/create", def); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, tc := range []struct {
		path string
		body any
	}{
		{"/invoke/hello", map[string]any{}},
		{"/invoke/hello", map[string]any{"Async": true}},
		{"/prewarm", map[string]any{"Function": "hello", "Instances": 1}},
	} {
		code, body := n.do(t, "POST", tc.path, tc.body)
		if code != http.StatusMisdirectedRequest || !strings.Contains(body, runtime.GOARCH) || !strings.Contains(body, otherArch()) {
			t.Errorf("%s %v: %d %q; want 421 naming both architectures", tc.path, tc.body, code, body)
		}
	}
	if c := n.rt.Stats().Creates; c != 0 {
		t.Errorf("%d containers created for a function this node cannot run", c)
	}
}

// TestStatusAndNodeHeaders checks /status carries the newest upstream
// release's resource fields and that invoke replies carry the headers its
// load balancer reads, in the formats it parses.
func TestStatusAndNodeHeaders(t *testing.T) {
	n := newTestNode(t, nodeOpts{memoryMB: 1024})
	if code, body := n.do(t, "POST", "/create", helloDef(t, "hello.echo")); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	start := time.Now().Unix()
	code, body, h := n.doHeaders(t, "POST", "/invoke/hello", map[string]any{})
	if code != 200 {
		t.Fatalf("invoke: %d %s", code, body)
	}
	if got := h.Get(wire.HeaderNodeName); got != "api-test" {
		t.Errorf("%s = %q, want api-test", wire.HeaderNodeName, got)
	}
	if got := h.Get(wire.HeaderNodeArch); got != runtime.GOARCH {
		t.Errorf("%s = %q, want %s", wire.HeaderNodeArch, got, runtime.GOARCH)
	}
	if mem, err := strconv.ParseInt(h.Get(wire.HeaderFreeMem), 10, 64); err != nil || mem != 1024 {
		t.Errorf("%s = %q (%v), want 1024: the idle container's memory is reclaimable", wire.HeaderFreeMem, h.Get(wire.HeaderFreeMem), err)
	}
	if cpu, err := strconv.ParseFloat(h.Get(wire.HeaderFreeCPU), 64); err != nil || cpu != 2 {
		t.Errorf("%s = %q (%v), want 2", wire.HeaderFreeCPU, h.Get(wire.HeaderFreeCPU), err)
	}
	if ts, err := strconv.ParseInt(h.Get(wire.HeaderTimestamp), 10, 64); err != nil || ts < start || ts > time.Now().Unix() {
		t.Errorf("%s = %q (%v), want Unix seconds of now", wire.HeaderTimestamp, h.Get(wire.HeaderTimestamp), err)
	}
	r := decode[wire.InvocationResponse](t, body)
	if r.ExecutionNode != "api-test" || r.ExecutionArea != "test-area" {
		t.Errorf("ExecutionNode %q, ExecutionArea %q; want api-test, test-area", r.ExecutionNode, r.ExecutionArea)
	}

	code, body = n.do(t, "GET", "/status", nil)
	if code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	// UsedCPU is 0 on an idle node, so omitted.
	for _, k := range []string{"TotalMemory", "AvailableMemory", "FreeMemory", "TotalCPU", "LoadAvg", "LastUpdateTime"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status lacks %s", k)
		}
	}
	st := decode[wire.StatusResponse](t, body)
	if st.TotalMemory != 1024 || st.AvailableMemory != 1024 || st.FreeMemory != 1024-function.DefaultMemoryMB {
		t.Errorf("memory: total %d, available %d, free %d; want 1024, 1024, %d", st.TotalMemory, st.AvailableMemory, st.FreeMemory, 1024-function.DefaultMemoryMB)
	}
	if st.TotalCPU != 2 || st.UsedCPU != 0 {
		t.Errorf("CPU: total %v, used %v; want 2, 0", st.TotalCPU, st.UsedCPU)
	}
	if len(st.LoadAvg) != 3 {
		t.Errorf("LoadAvg %v, want 3 values", st.LoadAvg)
	}
	if st.LastUpdateTime < start || st.LastUpdateTime > time.Now().Unix() {
		t.Errorf("LastUpdateTime %d is not now", st.LastUpdateTime)
	}

	// A failed invocation's reply carries them too.
	n.do(t, "POST", "/create", with(helloDef(t, "hello.fail"), "Name", "failing"))
	if code, _, h := n.doHeaders(t, "POST", "/invoke/failing", map[string]any{}); code != 500 || h.Get(wire.HeaderNodeName) != "api-test" || h.Get(wire.HeaderFreeMem) == "" {
		t.Errorf("failed invocation: status %d, headers %v; want 500 with the node headers", code, h)
	}
}

// TestQueueingTimeReported fills a one-container pool and checks the
// request that waited in the queue reports the wait as QueueingTime, within
// its InitTime, while the one that did not wait reports none.
func TestQueueingTimeReported(t *testing.T) {
	n := newTestNode(t, nodeOpts{memoryMB: 128, queueCapacity: 4})
	n.do(t, "POST", "/create", helloDef(t, "hello.sleep"))
	first := make(chan wire.InvocationResponse, 1)
	go func() {
		_, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"ms": 300}})
		var r wire.InvocationResponse
		_ = json.Unmarshal([]byte(body), &r)
		first <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n.pool.Stats().Busy["hello"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never got a container")
		}
		time.Sleep(5 * time.Millisecond)
	}
	code, body := n.do(t, "POST", "/invoke/hello", map[string]any{"Params": map[string]any{"ms": 1}})
	second := decode[wire.InvocationResponse](t, body)
	if code != 200 {
		t.Fatalf("queued request: %d %s", code, body)
	}
	if second.QueueingTime <= 0 || second.QueueingTime > second.InitTime {
		t.Errorf("queued request: QueueingTime %v, InitTime %v; want 0 < QueueingTime <= InitTime", second.QueueingTime, second.InitTime)
	}
	if r := <-first; r.QueueingTime != 0 {
		t.Errorf("first request: QueueingTime %v, want 0", r.QueueingTime)
	}
}
