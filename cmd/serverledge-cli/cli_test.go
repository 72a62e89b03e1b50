package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/testutil"
)

// cliBin is the CLI binary built once by TestMain.
var cliBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "serverledge-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cliBin = filepath.Join(dir, "serverledge-cli")
	out, err := exec.Command("go", "build", "-o", cliBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the CLI: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recorded is one request the fake node received.
type recorded struct {
	method string
	path   string
	body   []byte
}

// reply is what the fake node answers on one route.
type reply struct {
	status int
	body   string
}

// fakeNode records requests and replies like a node would.
type fakeNode struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	routes map[string]reply
}

// newFakeNode starts a fake node on 127.0.0.1 answering routes ("METHOD /path").
// Routes not listed get a 404 with a message, like unknown functions do.
func newFakeNode(t *testing.T, routes map[string]reply) *fakeNode {
	t.Helper()
	n := &fakeNode{routes: routes}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		n.reqs = append(n.reqs, recorded{method: r.Method, path: r.URL.Path, body: b})
		n.mu.Unlock()
		rep, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			http.Error(w, "no route "+r.URL.Path, http.StatusNotFound)
			return
		}
		if strings.HasPrefix(rep.body, "{") || strings.HasPrefix(rep.body, "[") {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

// port returns the fake node's port.
func (n *fakeNode) port() string {
	_, port, _ := net.SplitHostPort(n.srv.Listener.Addr().String())
	return port
}

// flags returns the -H/-P flags that select this node.
func (n *fakeNode) flags() []string {
	return []string{"-H", "127.0.0.1", "-P", n.port()}
}

// requests returns a copy of what the node received.
func (n *fakeNode) requests() []recorded {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.reqs)
}

// only returns the single request the node received, failing otherwise.
func (n *fakeNode) only(t *testing.T) recorded {
	t.Helper()
	reqs := n.requests()
	if len(reqs) != 1 {
		t.Fatalf("node received %d requests, want 1: %+v", len(reqs), reqs)
	}
	return reqs[0]
}

// result is the outcome of one CLI run.
type result struct {
	stdout string
	stderr string
	code   int
}

// runCLI runs the built CLI with args and only the given environment variables.
func runCLI(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// jsonEqual fails unless got and want hold the same JSON value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body = %s\nwant   %s", got, want)
	}
}

// tarNames decodes a TarFunctionCode and returns its entry names.
func tarNames(t *testing.T, code string) []string {
	t.Helper()
	archive, err := base64.StdEncoding.DecodeString(code)
	if err != nil {
		t.Fatalf("TarFunctionCode is not base64: %v", err)
	}
	return names(listTar(t, archive))
}

func TestCreateSendsDefinition(t *testing.T) {
	work := t.TempDir()
	mustWrite(t, filepath.Join(work, "hello", "hello.py"), "def handler(params, context):\n    return 'hi'\n")
	tests := []struct {
		name      string
		args      []string
		wantKeys  []string
		wantBody  map[string]any
		wantFiles []string
	}{
		{
			name:      "python directory",
			args:      []string{"create", "-f", "hello", "--runtime", "python", "--handler", "hello.handler", "--src", filepath.Join(work, "hello") + "/", "--memory", "256", "--cpu", "0.5"},
			wantKeys:  []string{"CPUDemand", "Handler", "MemoryMB", "Name", "Runtime", "TarFunctionCode"},
			wantBody:  map[string]any{"Name": "hello", "Runtime": "python", "MemoryMB": 256.0, "CPUDemand": 0.5, "Handler": "hello.handler"},
			wantFiles: []string{"hello.py"},
		},
		{
			name:      "single file with defaults",
			args:      []string{"create", "hello", "--runtime", "python310", "--handler", "hello.handler", "--src", filepath.Join(work, "hello", "hello.py")},
			wantKeys:  []string{"CPUDemand", "Handler", "MemoryMB", "Name", "Runtime", "TarFunctionCode"},
			wantBody:  map[string]any{"Name": "hello", "Runtime": "python310", "MemoryMB": 128.0, "CPUDemand": 0.0, "Handler": "hello.handler"},
			wantFiles: []string{"hello.py"},
		},
		{
			name:     "custom image without code",
			args:     []string{"create", "-f", "hello", "--runtime", "custom", "--custom_image", "me/fn:1", "--timeout", "30", "--zone", "eu-1", "--zone", "eu-2"},
			wantKeys: []string{"AllowedZones", "CPUDemand", "CustomImage", "Handler", "MemoryMB", "Name", "Runtime", "TimeoutSeconds"},
			wantBody: map[string]any{"Name": "hello", "Runtime": "custom", "MemoryMB": 128.0, "CPUDemand": 0.0, "Handler": "", "CustomImage": "me/fn:1", "TimeoutSeconds": 30.0, "AllowedZones": []any{"eu-1", "eu-2"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := newFakeNode(t, map[string]reply{"POST /create": {200, `{"Created":"hello"}`}})
			res := runCLI(t, nil, append(tc.args, node.flags()...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			req := node.only(t)
			if req.method != http.MethodPost || req.path != "/create" {
				t.Fatalf("request %s %s, want POST /create", req.method, req.path)
			}
			var body map[string]any
			if err := json.Unmarshal(req.body, &body); err != nil {
				t.Fatal(err)
			}
			keys := make([]string, 0, len(body))
			for k := range body {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tc.wantKeys) {
				t.Errorf("sent fields %q, want %q", keys, tc.wantKeys)
			}
			for k, want := range tc.wantBody {
				if !reflect.DeepEqual(body[k], want) {
					t.Errorf("%s = %#v, want %#v", k, body[k], want)
				}
			}
			if tc.wantFiles != nil {
				code, _ := body["TarFunctionCode"].(string)
				if got := tarNames(t, code); !slices.Equal(got, tc.wantFiles) {
					t.Errorf("archive entries %q, want %q", got, tc.wantFiles)
				}
			}
			jsonEqual(t, []byte(res.stdout), `{"Created":"hello"}`)
		})
	}
}

func TestCreateWithoutSrcFailsBeforeSending(t *testing.T) {
	node := newFakeNode(t, map[string]reply{"POST /create": {200, `{"Created":"hello"}`}})
	res := runCLI(t, nil, append([]string{"create", "-f", "hello", "--runtime", "python", "--handler", "hello.handler"}, node.flags()...)...)
	if res.code == 0 || !strings.Contains(res.stderr, "--src") {
		t.Errorf("exit %d, stderr %q; want a failure naming --src", res.code, res.stderr)
	}
	if n := len(node.requests()); n != 0 {
		t.Errorf("node received %d requests, want none", n)
	}
}

const okInvocation = `{"Success":true,"Result":"{\"IsPrime\": true}","ResponseTime":0.012,"IsWarmStart":true,"InitTime":0.001,"OffloadLatency":0,"Duration":0.01,"SchedAction":"","Output":""}`

func TestInvokeSendsRequest(t *testing.T) {
	paramsFile := filepath.Join(t.TempDir(), "params.json")
	if err := os.WriteFile(paramsFile, []byte(`{"n": 7, "name": "file"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "defaults and typed params",
			args: []string{"invoke", "-f", "isprime", "-p", "n:17", "-p", "name:Ada", "-p", "ok:true", "-p", "ratio:0.25"},
			want: `{"Params":{"n":17,"name":"Ada","ok":true,"ratio":0.25},"QoSClass":0,"QoSMaxRespT":0,"Async":false,"ReturnOutput":false}`,
		},
		{
			name: "no params sends an empty object",
			args: []string{"invoke", "isprime"},
			want: `{"Params":{},"QoSClass":0,"QoSMaxRespT":0,"Async":false,"ReturnOutput":false}`,
		},
		{
			name: "class by name, deadline, output",
			args: []string{"invoke", "-f", "isprime", "--class", "performance", "--resptime", "0.5", "-o"},
			want: `{"Params":{},"QoSClass":1,"QoSMaxRespT":0.5,"Async":false,"ReturnOutput":true}`,
		},
		{
			name: "class by id and the old output flag",
			args: []string{"invoke", "-f", "isprime", "-c", "2", "--ret_output"},
			want: `{"Params":{},"QoSClass":2,"QoSMaxRespT":0,"Async":false,"ReturnOutput":true}`,
		},
		{
			name: "params file with an override",
			args: []string{"invoke", "-f", "isprime", "-j", paramsFile, "-p", "name:flag"},
			want: `{"Params":{"n":7,"name":"flag"},"QoSClass":0,"QoSMaxRespT":0,"Async":false,"ReturnOutput":false}`,
		},
		{
			name: "offloading forbidden",
			args: []string{"invoke", "-f", "isprime", "--no_offload"},
			want: `{"Params":{},"QoSClass":0,"QoSMaxRespT":0,"CanDoOffloading":false,"Async":false,"ReturnOutput":false}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := newFakeNode(t, map[string]reply{"POST /invoke/isprime": {200, okInvocation}})
			res := runCLI(t, nil, append(tc.args, node.flags()...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			req := node.only(t)
			if req.method != http.MethodPost || req.path != "/invoke/isprime" {
				t.Fatalf("request %s %s, want POST /invoke/isprime", req.method, req.path)
			}
			jsonEqual(t, req.body, tc.want)
			if !strings.Contains(tc.want, "CanDoOffloading") && bytes.Contains(req.body, []byte("CanDoOffloading")) {
				t.Errorf("CanDoOffloading sent although not asked: %s", req.body)
			}
			if !strings.Contains(res.stdout, "\n  \"Success\": true,\n") {
				t.Errorf("stdout is not the pretty-printed response: %q", res.stdout)
			}
			jsonEqual(t, []byte(res.stdout), okInvocation)
		})
	}
}

func TestInvokeFunctionFailureExitsNonZero(t *testing.T) {
	failed := `{"Success":false,"Result":"","Error":"ZeroDivisionError: division by zero"}`
	node := newFakeNode(t, map[string]reply{"POST /invoke/div": {200, failed}})
	res := runCLI(t, nil, append([]string{"invoke", "-f", "div"}, node.flags()...)...)
	if res.code != 1 {
		t.Errorf("exit %d, want 1", res.code)
	}
	if !strings.Contains(res.stdout, `"Success": false`) {
		t.Errorf("stdout %q does not show the response", res.stdout)
	}
	if !strings.Contains(res.stderr, "ZeroDivisionError") {
		t.Errorf("stderr %q does not say why", res.stderr)
	}
}

func TestInvokeAsyncAndPoll(t *testing.T) {
	node := newFakeNode(t, map[string]reply{
		"POST /invoke/isprime": {200, `{"ReqId":"req-42"}`},
		"GET /poll/req-42":     {200, okInvocation},
		"GET /poll/req-busy":   {202, `{"ReqId":"req-busy","Status":"running"}`},
		"GET /poll/req-gone":   {404, "request req-gone is unknown or expired"},
	})
	res := runCLI(t, nil, append([]string{"invoke", "-f", "isprime", "-a", "-p", "n:5"}, node.flags()...)...)
	if res.code != 0 {
		t.Fatalf("invoke -a: exit %d, stderr %q", res.code, res.stderr)
	}
	jsonEqual(t, node.only(t).body, `{"Params":{"n":5},"QoSClass":0,"QoSMaxRespT":0,"Async":true,"ReturnOutput":false}`)
	jsonEqual(t, []byte(res.stdout), `{"ReqId":"req-42"}`)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"done", []string{"poll", "--request", "req-42"}, 0, `"IsWarmStart": true`, ""},
		{"done, id as argument", []string{"poll", "req-42"}, 0, `"Success": true`, ""},
		{"still running", []string{"poll", "--request", "req-busy"}, exitPending, "still running", ""},
		{"still running after waiting", []string{"poll", "--request", "req-busy", "--wait", "600ms"}, exitPending, "still running", ""},
		{"unknown", []string{"poll", "--request", "req-gone"}, 1, "", "request req-gone is unknown or expired"},
		{"no id", []string{"poll"}, 1, "", "--request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runCLI(t, nil, append(tc.args, node.flags()...)...)
			if res.code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, tc.wantCode, res.stderr)
			}
			if !strings.Contains(res.stdout, tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", res.stdout, tc.wantStdout)
			}
			if !strings.Contains(res.stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", res.stderr, tc.wantStderr)
			}
		})
	}
}

func TestErrorsPrintServerMessage(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "hello.py"), "def handler(p, c):\n    return 1\n")
	tests := []struct {
		name    string
		args    []string
		route   string
		reply   reply
		wantMsg string
	}{
		{"create conflict", []string{"create", "-f", "hello", "--runtime", "python", "--handler", "hello.handler", "--src", dir}, "POST /create", reply{409, "function hello already exists\n"}, "function hello already exists"},
		{"create bad runtime", []string{"create", "-f", "hello", "--runtime", "cobol", "--handler", "x", "--src", dir}, "POST /create", reply{404, `{"message":"unknown runtime \"cobol\""}`}, `unknown runtime "cobol"`},
		{"invoke unknown", []string{"invoke", "-f", "nope"}, "POST /invoke/nope", reply{404, "function nope does not exist"}, "function nope does not exist"},
		{"invoke rejected", []string{"invoke", "-f", "busy", "-c", "performance"}, "POST /invoke/busy", reply{429, "rejected: no node can meet the 0.1 s deadline"}, "rejected: no node can meet the 0.1 s deadline"},
		{"invoke crashed", []string{"invoke", "-f", "boom"}, "POST /invoke/boom", reply{500, "container failure: executor exited"}, "container failure: executor exited"},
		{"invoke timeout", []string{"invoke", "-f", "slow"}, "POST /invoke/slow", reply{504, "function slow exceeded its timeout of 1 s"}, "exceeded its timeout"},
		{"delete unknown", []string{"delete", "-f", "nope"}, "POST /delete", reply{404, "function nope does not exist"}, "function nope does not exist"},
		{"describe unknown", []string{"describe", "nope"}, "GET /function/nope", reply{404, "function nope does not exist"}, "function nope does not exist"},
		{"prewarm unknown", []string{"prewarm", "-f", "nope"}, "POST /prewarm", reply{404, "function nope does not exist"}, "function nope does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := newFakeNode(t, map[string]reply{tc.route: tc.reply})
			res := runCLI(t, nil, append(tc.args, node.flags()...)...)
			if res.code != 1 {
				t.Errorf("exit %d, want 1", res.code)
			}
			if !strings.Contains(res.stderr, tc.wantMsg) {
				t.Errorf("stderr %q does not contain the server's message %q", res.stderr, tc.wantMsg)
			}
			if !strings.Contains(res.stderr, "HTTP "+strconv.Itoa(tc.reply.status)) {
				t.Errorf("stderr %q does not name the status %d", res.stderr, tc.reply.status)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q, want nothing", res.stdout)
			}
		})
	}
}

func TestBadUsageSendsNothing(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantMsg string
	}{
		{"unknown class", []string{"invoke", "-f", "fn", "-c", "fast"}, "--class"},
		{"class id out of range", []string{"invoke", "-f", "fn", "--class", "3"}, "--class"},
		{"param without colon", []string{"invoke", "-f", "fn", "-p", "n17"}, "--param"},
		{"missing function", []string{"invoke"}, "-f/--function"},
		{"unknown flag", []string{"invoke", "-f", "fn", "--bogus"}, "bogus"},
		{"negative count", []string{"prewarm", "-f", "fn", "--count", "-1"}, "--count"},
		{"bad port", []string{"status", "-P", "70000"}, "port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := newFakeNode(t, map[string]reply{})
			args := append([]string{"-H", "127.0.0.1", "-P", node.port()}, tc.args...)
			res := runCLI(t, nil, args...)
			if res.code == 0 {
				t.Errorf("exit 0, want a failure")
			}
			if !strings.Contains(res.stderr, tc.wantMsg) {
				t.Errorf("stderr %q does not mention %q", res.stderr, tc.wantMsg)
			}
			if n := len(node.requests()); n != 0 {
				t.Errorf("node received %d requests, want none", n)
			}
		})
	}
}

func TestHostAndPortSelection(t *testing.T) {
	status := `{"Url":"http://127.0.0.1","AvailableWarmContainers":{},"AvailableMemMB":1024,"AvailableCPUs":2,"DropCount":0,"Coordinates":{"X":null,"Height":0,"Error":0}}`
	a := newFakeNode(t, map[string]reply{"GET /status": {200, status}})
	b := newFakeNode(t, map[string]reply{"GET /status": {200, status}})
	tests := []struct {
		name  string
		env   []string
		flags []string
		want  *fakeNode
	}{
		{"environment only", []string{"SERVERLEDGE_HOST=127.0.0.1", "SERVERLEDGE_PORT=" + a.port()}, nil, a},
		{"port flag wins over environment", []string{"SERVERLEDGE_HOST=127.0.0.1", "SERVERLEDGE_PORT=" + a.port()}, []string{"-P", b.port()}, b},
		{"long port flag wins over environment", []string{"SERVERLEDGE_HOST=127.0.0.1", "SERVERLEDGE_PORT=" + a.port()}, []string{"--port=" + b.port()}, b},
		{"host flag wins over environment", []string{"SERVERLEDGE_HOST=unreachable.invalid", "SERVERLEDGE_PORT=" + b.port()}, []string{"-H", "127.0.0.1"}, b},
		{"flags only", nil, []string{"--host", "127.0.0.1", "-P", a.port()}, a},
		{"host with scheme", nil, []string{"-H", "http://127.0.0.1", "-P", b.port()}, b},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := map[*fakeNode]int{a: len(a.requests()), b: len(b.requests())}
			res := runCLI(t, tc.env, append([]string{"status"}, tc.flags...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			for _, n := range []*fakeNode{a, b} {
				got := len(n.requests()) - before[n]
				want := 0
				if n == tc.want {
					want = 1
				}
				if got != want {
					t.Errorf("node %s received %d requests, want %d", n.port(), got, want)
				}
			}
			if !strings.Contains(res.stdout, `"AvailableMemMB": 1024`) {
				t.Errorf("stdout %q is not the status", res.stdout)
			}
		})
	}
}

func TestUnreachableNode(t *testing.T) {
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	res := runCLI(t, nil, "list", "-H", "127.0.0.1", "-P", port)
	if res.code != 1 || !strings.Contains(res.stderr, "cannot reach node http://127.0.0.1:"+port) {
		t.Errorf("exit %d, stderr %q; want 1 and a message naming the node", res.code, res.stderr)
	}
}

func TestUpdateKeepsUnsetFields(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "v2", "hello.py"), "def handler(p, c):\n    return 2\n")
	current := `{"Name":"hello","Runtime":"python","MemoryMB":256,"CPUDemand":1,"Handler":"hello.handler","TimeoutSeconds":20,"Version":"0123abcd"}`
	t.Run("new code keeps the rest", func(t *testing.T) {
		node := newFakeNode(t, map[string]reply{
			"GET /function/hello": {200, current},
			"POST /update":        {200, `{"Updated":"hello"}`},
		})
		res := runCLI(t, nil, append([]string{"update", "-f", "hello", "--src", filepath.Join(dir, "v2"), "--memory", "512"}, node.flags()...)...)
		if res.code != 0 {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
		reqs := node.requests()
		if len(reqs) != 2 || reqs[1].path != "/update" {
			t.Fatalf("requests %+v, want GET /function/hello then POST /update", reqs)
		}
		var body map[string]any
		if err := json.Unmarshal(reqs[1].body, &body); err != nil {
			t.Fatal(err)
		}
		code, _ := body["TarFunctionCode"].(string)
		if got := tarNames(t, code); !slices.Equal(got, []string{"hello.py"}) {
			t.Errorf("archive entries %q, want [hello.py]", got)
		}
		delete(body, "TarFunctionCode")
		b, _ := json.Marshal(body)
		jsonEqual(t, b, `{"Name":"hello","Runtime":"python","MemoryMB":512,"CPUDemand":1,"Handler":"hello.handler","TimeoutSeconds":20}`)
		jsonEqual(t, []byte(res.stdout), `{"Updated":"hello"}`)
	})
	t.Run("no code is refused", func(t *testing.T) {
		node := newFakeNode(t, map[string]reply{
			"GET /function/hello": {200, current},
			"POST /update":        {200, `{"Updated":"hello"}`},
		})
		res := runCLI(t, nil, append([]string{"update", "-f", "hello", "--memory", "512"}, node.flags()...)...)
		if res.code != 1 || !strings.Contains(res.stderr, "--src") {
			t.Errorf("exit %d, stderr %q; want 1 and a message naming --src", res.code, res.stderr)
		}
		for _, r := range node.requests() {
			if r.path == "/update" {
				t.Errorf("update sent without code")
			}
		}
	})
}

func TestReadCommands(t *testing.T) {
	node := newFakeNode(t, map[string]reply{
		"GET /function":       {200, `["hello","isprime"]`},
		"GET /function/hello": {200, `{"Name":"hello","Runtime":"python","MemoryMB":128,"CPUDemand":0,"Handler":"hello.handler","Version":"0123abcd"}`},
		"POST /delete":        {200, `{"Deleted":"hello"}`},
		"POST /prewarm":       {200, `{"Prewarmed":2}`},
	})
	tests := []struct {
		name       string
		args       []string
		wantReq    string
		wantBody   string
		wantStdout string
	}{
		{"list", []string{"list"}, "GET /function", "", `["hello","isprime"]`},
		{"describe", []string{"describe", "-f", "hello"}, "GET /function/hello", "", `{"Name":"hello","Runtime":"python","MemoryMB":128,"CPUDemand":0,"Handler":"hello.handler","Version":"0123abcd"}`},
		{"delete", []string{"delete", "-f", "hello"}, "POST /delete", `{"Name":"hello"}`, `{"Deleted":"hello"}`},
		{"prewarm", []string{"prewarm", "-f", "hello", "--count", "3", "--force_pull"}, "POST /prewarm", `{"Function":"hello","Instances":3,"ForceImagePull":true}`, `{"Prewarmed":2}`},
		{"prewarm default count", []string{"prewarm", "hello"}, "POST /prewarm", `{"Function":"hello","Instances":1,"ForceImagePull":false}`, `{"Prewarmed":2}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(node.requests())
			res := runCLI(t, nil, append(tc.args, node.flags()...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			reqs := node.requests()[before:]
			if len(reqs) != 1 || reqs[0].method+" "+reqs[0].path != tc.wantReq {
				t.Fatalf("requests %+v, want one %s", reqs, tc.wantReq)
			}
			if tc.wantBody != "" {
				jsonEqual(t, reqs[0].body, tc.wantBody)
			}
			jsonEqual(t, []byte(res.stdout), tc.wantStdout)
		})
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		res := runCLI(t, nil, "completion", shell)
		if res.code != 0 || !strings.Contains(res.stdout, "serverledge-cli") {
			t.Errorf("completion %s: exit %d, %d bytes of output", shell, res.code, len(res.stdout))
		}
	}
}
