package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/testutil"
)

// workerCmd returns the argv of the real worker for runtime, skipping the
// test if the interpreter is missing on the host.
func workerCmd(tb testing.TB, runtime string) []string {
	tb.Helper()
	interp, script := "python3", "../../images/python/worker.py"
	if runtime == "nodejs" {
		interp, script = "node", "../../images/nodejs/worker.js"
	}
	testutil.LookPath(tb, interp)
	abs, err := filepath.Abs(script)
	if err != nil {
		tb.Fatal(err)
	}
	return []string{interp, abs}
}

type harness struct {
	srv     *Server
	client  *Client
	root    string // parent of the socket and code directories
	sockDir string
	codeDir string
}

// shortTempDir returns a directory with a path short enough for a unix socket.
func shortTempDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("", "exe")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func startHarness(tb testing.TB, worker []string, beforeStart func(sockDir string)) *harness {
	tb.Helper()
	root := shortTempDir(tb)
	h := &harness{root: root, sockDir: filepath.Join(root, "s"), codeDir: filepath.Join(root, "code")}
	if err := os.Mkdir(h.sockDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if beforeStart != nil {
		beforeStart(h.sockDir)
	}
	srv, err := Start(context.Background(), ServerConfig{SocketDir: h.sockDir, CodeDir: h.codeDir, Worker: worker, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	h.srv = srv
	h.client = NewClient(filepath.Join(h.sockDir, SocketName))
	tb.Cleanup(func() {
		h.client.Close()
		_ = srv.Close()
	})
	return h
}

func tarOf(tb testing.TB, files map[string]string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

const pythonCode = `import time

def add(params, context):
    return {"sum": params["a"] + params["b"], "ctx": context.get("fn")}

def chatty(params, context):
    print("to stdout", params["n"])
    import sys
    print("to stderr", file=sys.stderr)
    return "done"

def fail(params, context):
    raise ValueError("bad input " + str(params.get("n")))

def spin(params, context):
    while True:
        pass

def sleep(params, context):
    time.sleep(params.get("s", 5))
    return "woke"

def noop(params, context):
    return None

def mark_sleep(params, context):
    open(params["mark"], "w").close()
    time.sleep(params.get("s", 10))
    return "woke"

def stamp(params, context):
    start = time.time()
    print("out", params["n"])
    time.sleep(0.2)
    print("end", params["n"])
    return {"start": start, "end": time.time()}

def whoami(params, context):
    import os
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "home": os.environ.get("HOME")}

def odd(params, context):
    return {"when": time.gmtime(0), "set": {1}}
`

const nodeCode = `module.exports = async function (params, context) {
  if (params.mode === 'fail') {
    throw new TypeError('bad input ' + params.n);
  }
  if (params.mode === 'spin') {
    for (;;) {}
  }
  if (params.mode === 'sleep') {
    await new Promise((r) => setTimeout(r, 5000));
  }
  if (params.mode === 'stamp') {
    const start = Date.now() / 1000;
    console.log('out', params.n);
    await new Promise((r) => setTimeout(r, 200));
    console.log('end', params.n);
    return { start: start, end: Date.now() / 1000 };
  }
  console.log('to stdout', params.n);
  console.error('to stderr');
  return { sum: params.a + params.b, ctx: context.fn };
};
`

// loaded starts a server for runtime with the test code loaded under handler.
func loaded(t *testing.T, runtime, handler string) *harness {
	t.Helper()
	h := startHarness(t, workerCmd(t, runtime), nil)
	code := map[string]string{"./fn.py": pythonCode}
	if runtime == "nodejs" {
		code = map[string]string{"./fn.js": nodeCode}
	}
	if err := h.client.Load(context.Background(), handler, tarOf(t, code)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return h
}

func TestInvoke(t *testing.T) {
	tests := []struct {
		name       string
		runtime    string
		handler    string
		req        InvokeRequest
		wantOK     bool
		wantResult string
		wantOutput []string // substrings of Output; nil means Output must be empty
		wantError  string   // prefix of Error
	}{
		{
			name: "python result", runtime: "python", handler: "fn.add",
			req:    InvokeRequest{Params: map[string]any{"a": 2, "b": 3}, Context: map[string]any{"fn": "add"}},
			wantOK: true, wantResult: `{"sum": 5, "ctx": "add"}`,
		},
		{
			name: "python output captured", runtime: "python", handler: "fn.chatty",
			req:    InvokeRequest{Params: map[string]any{"n": 7}, ReturnOutput: true},
			wantOK: true, wantResult: `"done"`, wantOutput: []string{"to stdout 7\n", "to stderr\n"},
		},
		{
			name: "python output not requested", runtime: "python", handler: "fn.chatty",
			req:    InvokeRequest{Params: map[string]any{"n": 7}},
			wantOK: true, wantResult: `"done"`,
		},
		{
			name: "python exception", runtime: "python", handler: "fn.fail",
			req:       InvokeRequest{Params: map[string]any{"n": 4}},
			wantError: "ValueError: bad input 4",
		},
		{
			name: "python None", runtime: "python", handler: "fn.noop",
			wantOK: true, wantResult: "null",
		},
		{
			name: "python non-JSON value", runtime: "python", handler: "fn.odd",
			wantOK: true, wantResult: `{"when": [1970, 1, 1, 0, 0, 0, 3, 1, 0], "set": "{1}"}`,
		},
		{
			name: "nodejs result", runtime: "nodejs", handler: "fn.js",
			req:    InvokeRequest{Params: map[string]any{"a": 2, "b": 3}, Context: map[string]any{"fn": "add"}},
			wantOK: true, wantResult: `{"sum":5,"ctx":"add"}`,
		},
		{
			name: "nodejs output captured", runtime: "nodejs", handler: "fn.js",
			req:    InvokeRequest{Params: map[string]any{"n": 7, "a": 1, "b": 1}, ReturnOutput: true},
			wantOK: true, wantResult: `{"sum":2}`, wantOutput: []string{"to stdout 7\n", "to stderr\n"},
		},
		{
			name: "nodejs exception", runtime: "nodejs", handler: "fn.js",
			req:       InvokeRequest{Params: map[string]any{"mode": "fail", "n": 4}},
			wantError: "TypeError: bad input 4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := loaded(t, tt.runtime, tt.handler)
			// Twice: the handler is imported once and reused.
			for i := 0; i < 2; i++ {
				res, err := h.client.Invoke(context.Background(), tt.req)
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if res.Success != tt.wantOK {
					t.Fatalf("Success = %v, want %v (Error %q)", res.Success, tt.wantOK, res.Error)
				}
				if tt.wantOK && res.Result != tt.wantResult {
					t.Errorf("Result = %s, want %s", res.Result, tt.wantResult)
				}
				if !strings.HasPrefix(res.Error, tt.wantError) {
					t.Errorf("Error = %q, want prefix %q", res.Error, tt.wantError)
				}
				if tt.wantOutput == nil && res.Output != "" {
					t.Errorf("Output = %q, want none", res.Output)
				}
				for _, want := range tt.wantOutput {
					if !strings.Contains(res.Output, want) {
						t.Errorf("Output = %q, want it to contain %q", res.Output, want)
					}
				}
				if res.Duration() <= 0 || res.Duration() > 5*time.Second {
					t.Errorf("Duration = %v", res.Duration())
				}
			}
		})
	}
}

func TestTimeoutRetires(t *testing.T) {
	tests := []struct {
		runtime, handler string
		params           map[string]any
	}{
		{"python", "fn.spin", nil},
		{"nodejs", "fn.js", map[string]any{"mode": "spin"}},
	}
	for _, tt := range tests {
		t.Run(tt.runtime, func(t *testing.T) {
			h := loaded(t, tt.runtime, tt.handler)
			pid := h.srv.WorkerPID()
			_, err := h.client.Invoke(context.Background(), InvokeRequest{Params: tt.params, TimeoutMillis: 300})
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("first call: got %v, want ErrTimeout", err)
			}
			_, err = h.client.Invoke(context.Background(), InvokeRequest{Params: tt.params})
			if !errors.Is(err, ErrRetired) {
				t.Fatalf("second call: got %v, want ErrRetired", err)
			}
			if err := h.client.Load(context.Background(), tt.handler, tarOf(t, nil)); !errors.Is(err, ErrRetired) {
				t.Errorf("load after retirement: got %v, want ErrRetired", err)
			}
			waitGone(t, pid)
		})
	}
}

// waitGone waits until process pid is gone, failing the test if it is
// still running after 10 s.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	testutil.WaitUntil(t, 10*time.Second, "worker "+strconv.Itoa(pid)+" gone", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

// waitFile waits until the file p exists.
func waitFile(t *testing.T, p string) {
	t.Helper()
	testutil.WaitUntil(t, 30*time.Second, "file "+p, func() bool {
		_, err := os.Stat(p)
		return err == nil
	})
}

// killOnFile kills process pid with SIGKILL once the file p exists: the
// function under test creates it when it has started.
func killOnFile(t *testing.T, p string, pid int) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := os.Stat(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
}

func TestWorkerKilledMidCall(t *testing.T) {
	h := loaded(t, "python", "fn.mark_sleep")
	pid := h.srv.WorkerPID()
	mark := filepath.Join(h.root, "running")
	killOnFile(t, mark, pid)
	_, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"s": 30, "mark": mark}})
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("got %v, want ErrCrashed", err)
	}
	if !strings.Contains(err.Error(), "SIGKILL") {
		t.Errorf("crash message %q does not name the signal", err)
	}
	if _, err := h.client.Invoke(context.Background(), InvokeRequest{}); !errors.Is(err, ErrRetired) {
		t.Errorf("after crash: got %v, want ErrRetired", err)
	}
}

func TestWorkerDiedWhileIdle(t *testing.T) {
	h := loaded(t, "python", "fn.noop")
	pid := h.srv.WorkerPID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	if _, err := h.client.Invoke(context.Background(), InvokeRequest{}); !errors.Is(err, ErrCrashed) {
		t.Fatalf("got %v, want ErrCrashed", err)
	}
}

func TestLoadRefusesEscapingArchive(t *testing.T) {
	h := startHarness(t, workerCmd(t, "python"), nil)
	archive := tarOf(t, map[string]string{"./fn.py": pythonCode, "../escaped.py": "x = 1\n"})
	err := h.client.Load(context.Background(), "fn.noop", archive)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	if !strings.Contains(err.Error(), "../escaped.py") {
		t.Errorf("message %q does not name the entry", err)
	}
	if _, err := os.Stat(filepath.Join(h.root, "escaped.py")); err == nil {
		t.Errorf("escaping entry was written")
	}
	if entries, _ := os.ReadDir(h.codeDir); len(entries) > 0 {
		t.Errorf("refused archive left %d entries in the code directory", len(entries))
	}
	// A refused archive writes nothing, so a good one can still be loaded.
	if err := h.client.Load(context.Background(), "fn.noop", tarOf(t, map[string]string{"fn.py": pythonCode})); err != nil {
		t.Fatalf("Load after refusal: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, runtime, handler string
		code                   map[string]string
		want                   string
	}{
		{"python syntax error", "python", "bad.handler", map[string]string{"bad.py": "def handler(:\n"}, "SyntaxError"},
		{"python import error", "python", "bad.handler", map[string]string{"bad.py": "import no_such_module_xyz\n"}, "ModuleNotFoundError"},
		{"python missing function", "python", "fn.nothere", map[string]string{"fn.py": pythonCode}, "has no function nothere"},
		{"python malformed handler", "python", "justmodule", map[string]string{"fn.py": pythonCode}, "module.function"},
		{"nodejs syntax error", "nodejs", "bad.js", map[string]string{"bad.js": "module.exports = function( {\n"}, "SyntaxError"},
		{"nodejs missing file", "nodejs", "nope.js", map[string]string{"fn.js": nodeCode}, "not found"},
		{"nodejs no function", "nodejs", "obj.js", map[string]string{"obj.js": "module.exports = {a: 1};\n"}, "exports neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startHarness(t, workerCmd(t, tt.runtime), nil)
			err := h.client.Load(context.Background(), tt.handler, tarOf(t, tt.code))
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, want ErrRefused", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("message %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadTwice(t *testing.T) {
	h := loaded(t, "python", "fn.noop")
	err := h.client.Load(context.Background(), "fn.noop", tarOf(t, map[string]string{"fn.py": pythonCode}))
	if !errors.Is(err, ErrAlreadyLoaded) {
		t.Fatalf("got %v, want ErrAlreadyLoaded", err)
	}
}

func TestInvokeBeforeLoad(t *testing.T) {
	h := startHarness(t, workerCmd(t, "python"), nil)
	_, err := h.client.Invoke(context.Background(), InvokeRequest{})
	if !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("got %v, want ErrNotLoaded", err)
	}
}

func TestReadyFIFO(t *testing.T) {
	var fifo *os.File
	h := startHarness(t, workerCmd(t, "python"), func(sockDir string) {
		p := filepath.Join(sockDir, ReadyFIFO)
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		// Like the node: open the read end before the executor starts.
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		fifo = f
	})
	defer fifo.Close()
	if err := fifo.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := fifo.Read(buf)
	if err != nil {
		t.Fatalf("read FIFO: %v", err)
	}
	if got := string(buf[:n]); got != "ready\n" {
		t.Fatalf("FIFO got %q, want %q", got, "ready\n")
	}
	// Ready means the socket already accepts requests.
	resp, err := rawClient(h.sockDir).Get("http://executor/health")
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health status %d", resp.StatusCode)
	}
}

func rawClient(sockDir string) *http.Client {
	sock := filepath.Join(sockDir, SocketName)
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

func TestMalformedRequests(t *testing.T) {
	h := loaded(t, "python", "fn.noop")
	c := rawClient(h.sockDir)
	defer c.CloseIdleConnections()
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"invoke not JSON", http.MethodPost, "/invoke", "{nope", http.StatusBadRequest},
		{"invoke array", http.MethodPost, "/invoke", "[1,2]", http.StatusBadRequest},
		{"invoke bad timeout", http.MethodPost, "/invoke", `{"TimeoutMillis":"x"}`, http.StatusBadRequest},
		{"invoke GET", http.MethodGet, "/invoke", "", http.StatusMethodNotAllowed},
		{"unknown path", http.MethodGet, "/nope", "", http.StatusNotFound},
		{"empty object still works", http.MethodPost, "/invoke", "{}", http.StatusOK},
		{"multi-line JSON works", http.MethodPost, "/invoke", "{\n \"Params\" : {\"a\":\n 1}\n}", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://executor"+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
		})
	}
}

func TestConcurrentInvokesAreSerialized(t *testing.T) {
	h := loaded(t, "python", "fn.add")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"a": i, "b": 1}})
			if err != nil {
				errs <- err
				return
			}
			want := `"sum": ` + string(rune('0'+i+1))
			if i+1 >= 10 || !strings.Contains(res.Result, want) {
				errs <- errors.New("call " + string(rune('0'+i)) + " got " + res.Result)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseStopsWorker(t *testing.T) {
	h := startHarness(t, workerCmd(t, "python"), nil)
	pid := h.srv.WorkerPID()
	if err := h.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitGone(t, pid)
	if _, err := os.Stat(filepath.Join(h.sockDir, SocketName)); err == nil {
		t.Errorf("socket still present after Close")
	}
}

// zombieChildren lists the pids of zombie children of this process.
func zombieChildren(t *testing.T) []string {
	t.Helper()
	return childrenIn(t, "Z")
}

// children lists the pids of the children of this process, in any state.
func children(t *testing.T) []string {
	t.Helper()
	return childrenIn(t, "")
}

// childrenIn lists the pids of the children of this process in state
// (any state when "").
func childrenIn(t *testing.T, state string) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var zombies []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 && (state == "" || f[0] == state) && f[1] == me {
			zombies = append(zombies, filepath.Base(filepath.Dir(p)))
		}
	}
	return zombies
}

// TestReapOrphans runs the server as it runs as PID 1: orphans of the
// function are reaped and the worker's own death is still reported.
func TestReapOrphans(t *testing.T) {
	testutil.LookPath(t, "sh")
	// Become the reaper of orphaned descendants, as PID 1 is in a container.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		testutil.SkipOrFail(t, "PR_SET_CHILD_SUBREAPER: %v", errno)
	}
	t.Cleanup(func() { _, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })

	root := shortTempDir(t)
	sockDir := filepath.Join(root, "s")
	if err := os.Mkdir(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(context.Background(), ServerConfig{
		SocketDir: sockDir, CodeDir: filepath.Join(root, "code"), Worker: workerCmd(t, "python"),
		ReapOrphans: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := NewClient(filepath.Join(sockDir, SocketName))
	t.Cleanup(func() {
		client.Close()
		_ = srv.Close()
	})
	code := "import subprocess, time\n\ndef orphan(params, context):\n" +
		"    if params.get('hang'):\n        open(params['mark'], 'w').close()\n        time.sleep(10)\n" +
		"    subprocess.run(['sh', '-c', 'sleep 0.2 &'], check=True)\n    return 'ok'\n"
	if err := client.Load(context.Background(), "fn.orphan", tarOf(t, map[string]string{"fn.py": code})); err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := client.Invoke(context.Background(), InvokeRequest{}); err != nil {
			t.Fatalf("Invoke: %v", err)
		}
	}
	// The orphaned sleeps end after 200 ms; then the worker is our only child.
	pid := srv.WorkerPID()
	testutil.WaitUntil(t, 30*time.Second, "orphans exited and reaped", func() bool {
		kids := children(t)
		return len(kids) == 1 && kids[0] == strconv.Itoa(pid)
	})
	if z := zombieChildren(t); len(z) > 0 {
		t.Errorf("unreaped zombies: %v", z)
	}
	mark := filepath.Join(root, "hanging")
	killOnFile(t, mark, pid)
	_, err = client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"hang": true, "mark": mark}, TimeoutMillis: 30000})
	if !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), "SIGKILL") {
		t.Fatalf("got %v, want ErrCrashed naming SIGKILL", err)
	}
}

const prSetChildSubreaper = 36

// TestCustomWorker runs the example custom-runtime worker
// (examples/custom/worker) behind the server, as a custom image would.
func TestCustomWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example worker")
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", bin, "../../examples/custom/worker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build example worker: %v\n%s", err, out)
	}
	h := startHarness(t, []string{bin}, nil)
	if err := h.client.Load(context.Background(), "greet", nil); err != nil {
		t.Fatalf("Load with no code: %v", err)
	}
	tests := []struct {
		name       string
		params     map[string]any
		wantOK     bool
		wantResult string
		wantError  string
	}{
		{"greets", map[string]any{"name": "world"}, true, `{"greeting":"Hello, WORLD!"}`, ""},
		{"function error", map[string]any{}, false, "", "ValueError: missing parameter name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := h.client.Invoke(context.Background(), InvokeRequest{Params: tt.params, ReturnOutput: true})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if res.Success != tt.wantOK || res.Result != tt.wantResult || res.Error != tt.wantError {
				t.Errorf("got %+v, want Success %v Result %s Error %q", res, tt.wantOK, tt.wantResult, tt.wantError)
			}
		})
	}
}

// TestPingWorkerDelaysReady checks that with PingWorker the executor says
// ready only once the worker answers, for both built-in workers, and that a
// worker that exits at once makes Start fail instead of signalling ready.
func TestPingWorkerDelaysReady(t *testing.T) {
	for _, rt := range []string{"python", "nodejs"} {
		t.Run(rt, func(t *testing.T) {
			argv := workerCmd(t, rt)
			dir := shortTempDir(t)
			// The worker can answer only once the marker exists.
			mark := filepath.Join(dir, "started")
			slow := []string{"sh", "-c", "sleep 0.4; touch " + mark + "; exec " + strings.Join(argv, " ")}
			srv, err := Start(context.Background(), ServerConfig{SocketDir: dir, CodeDir: filepath.Join(dir, "code"), Worker: slow, PingWorker: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer srv.Close()
			if _, err := os.Stat(mark); err != nil {
				t.Errorf("Start returned before the worker could answer: %v", err)
			}
		})
	}
	dir := shortTempDir(t)
	_, err := Start(context.Background(), ServerConfig{SocketDir: dir, CodeDir: filepath.Join(dir, "code"), Worker: []string{"sh", "-c", "exit 3"}, PingWorker: true, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "worker did not start") {
		t.Fatalf("Start with a dead worker: %v, want an error saying the worker did not start", err)
	}
}

// span is what the stamp handlers return.
type span struct{ Start, End float64 }

// TestConcurrentInvokes checks that an executor loaded with concurrency 4
// runs 4 invocations of a function sleeping 200 ms at once (the intervals
// the function measured overlap), each with its own output.
func TestConcurrentInvokes(t *testing.T) {
	for _, tc := range []struct{ runtime, handler, file, code string }{
		{"python", "fn.stamp", "fn.py", pythonCode},
		{"nodejs", "fn.js", "fn.js", nodeCode},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			h := startHarness(t, workerCmd(t, tc.runtime), nil)
			const n = 4
			if err := h.client.LoadConcurrent(context.Background(), tc.handler, tarOf(t, map[string]string{tc.file: tc.code}), n); err != nil {
				t.Fatalf("LoadConcurrent: %v", err)
			}
			spans := make([]span, n)
			outs := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					res, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"n": i, "mode": "stamp"}, ReturnOutput: true})
					if err == nil && !res.Success {
						err = errors.New(res.Error)
					}
					if err == nil {
						err = json.Unmarshal([]byte(res.Result), &spans[i])
					}
					outs[i], errs[i] = res.Output, err
				})
			}
			wg.Wait()
			latestStart, earliestEnd := spans[0].Start, spans[0].End
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("invocation %d: %v", i, errs[i])
				}
				if want := fmt.Sprintf("out %d\nend %d\n", i, i); outs[i] != want {
					t.Errorf("invocation %d output %q, want %q", i, outs[i], want)
				}
				latestStart = max(latestStart, spans[i].Start)
				earliestEnd = min(earliestEnd, spans[i].End)
			}
			if latestStart >= earliestEnd {
				t.Errorf("the %d invocations did not all overlap: %+v", n, spans)
			}
			// Sequential calls keep working on the pooled connections.
			for i := range 3 {
				if res, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"n": i, "mode": "stamp"}}); err != nil || !res.Success || res.Output != "" {
					t.Errorf("sequential call %d: %+v, %v", i, res, err)
				}
			}
		})
	}
}

// TestConcurrentTimeoutRetires checks that with concurrency, an invocation
// that exceeds its timeout retires the executor: it gets 504, the other
// invocation in flight learns why its function process was stopped, and
// later calls get 410.
func TestConcurrentTimeoutRetires(t *testing.T) {
	h := startHarness(t, workerCmd(t, "python"), nil)
	if err := h.client.LoadConcurrent(context.Background(), "fn.mark_sleep", tarOf(t, map[string]string{"fn.py": pythonCode}), 2); err != nil {
		t.Fatalf("LoadConcurrent: %v", err)
	}
	pid := h.srv.WorkerPID()
	mark := filepath.Join(h.root, "long")
	longErr := make(chan error, 1)
	go func() {
		_, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"s": 30, "mark": mark}})
		longErr <- err
	}()
	waitFile(t, mark)
	_, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"s": 30, "mark": mark + "2"}, TimeoutMillis: 200})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("timed-out call: %v, want ErrTimeout", err)
	}
	if err := <-longErr; !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), "exceeded its timeout") {
		t.Errorf("concurrent call: %v, want ErrCrashed saying another invocation timed out", err)
	}
	if _, err := h.client.Invoke(context.Background(), InvokeRequest{}); !errors.Is(err, ErrRetired) {
		t.Errorf("later call: %v, want ErrRetired", err)
	}
	waitGone(t, pid)
}

// TestLoadConcurrencyRefused checks the concurrency a /load may ask for:
// out-of-range values are a 400 that leaves the executor unloaded, and a
// worker that does not declare itself concurrent (the example custom
// worker) is refused rather than fed overlapping requests.
func TestLoadConcurrencyRefused(t *testing.T) {
	h := startHarness(t, workerCmd(t, "python"), nil)
	hc := rawClient(h.sockDir)
	archive := tarOf(t, map[string]string{"fn.py": pythonCode})
	for _, v := range []string{"0", "-1", "abc", "1025", "1.5"} {
		req, err := http.NewRequest(http.MethodPost, "http://executor/load", bytes.NewReader(archive))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(HandlerHeader, "fn.noop")
		req.Header.Set(ConcurrencyHeader, v)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), ConcurrencyHeader) {
			t.Errorf("%s: %s: status %d (%s), want 400 naming the header", ConcurrencyHeader, v, resp.StatusCode, body)
		}
	}
	if err := h.client.LoadConcurrent(context.Background(), "fn.noop", archive, 2); err != nil {
		t.Fatalf("a good load after refused ones: %v", err)
	}

	if testing.Short() {
		return
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", bin, "../../examples/custom/worker")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build example worker: %v\n%s", err, out)
	}
	custom := startHarness(t, []string{bin}, nil)
	err := custom.client.LoadConcurrent(context.Background(), "greet", nil, 2)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "concurrent") {
		t.Fatalf("concurrent load of a sequential worker: %v, want ErrRefused", err)
	}
}

func TestReplyID(t *testing.T) {
	tests := []struct {
		line, rest string
		id         uint64
		ok         bool
	}{
		{`{"id":7,"Success":true}`, `"Success":true}`, 7, true},
		{`{"id":12}`, `}`, 12, true},
		{`{"Success":true}`, "", 0, false},
		{`{"id":"7","Success":true}`, "", 0, false},
		{`{"id":,"Success":true}`, "", 0, false},
		{`{"id":99999999999999999999999,"x":1}`, "", 0, false},
		{`{"id":5`, "", 0, false},
	}
	for _, tt := range tests {
		id, rest, ok := replyID([]byte(tt.line))
		if id != tt.id || string(rest) != tt.rest || ok != tt.ok {
			t.Errorf("replyID(%s) = %d, %q, %v, want %d, %q, %v", tt.line, id, rest, ok, tt.id, tt.rest, tt.ok)
		}
	}
}

// TestWorkerCredential checks that with a Credential the worker runs as
// that user with no supplementary groups and can import code archived with
// owner-only permissions.
func TestWorkerCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching the worker's user needs root")
	}
	root := shortTempDir(t)
	if err := os.Chmod(root, 0o755); err != nil { // let the worker reach the code
		t.Fatal(err)
	}
	sockDir := filepath.Join(root, "s")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The system interpreter: one under root's home is out of the worker's reach.
	argv := workerCmd(t, "python")
	argv[0] = testutil.LookPath(t, "/usr/bin/python3")
	// The checkout may sit below a directory the worker's user cannot
	// traverse (a 0700 temporary directory in CI): give it its own copy.
	script, err := os.ReadFile(argv[1])
	if err != nil {
		t.Fatal(err)
	}
	argv[1] = filepath.Join(root, "worker.py")
	if err := os.WriteFile(argv[1], script, 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(context.Background(), ServerConfig{
		SocketDir: sockDir, CodeDir: filepath.Join(root, "code"), Worker: argv,
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	client := NewClient(filepath.Join(sockDir, SocketName))
	t.Cleanup(func() {
		client.Close()
		_ = srv.Close()
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "fn.py", Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(pythonCode))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(pythonCode)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Load(context.Background(), "fn.whoami", buf.Bytes()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	res, err := client.Invoke(context.Background(), InvokeRequest{})
	if err != nil || !res.Success {
		t.Fatalf("Invoke: %+v, %v", res, err)
	}
	var got struct {
		UID, GID int
		Groups   []int
		Home     string
	}
	if err := json.Unmarshal([]byte(res.Result), &got); err != nil {
		t.Fatal(err)
	}
	if got.UID != 65534 || got.GID != 65534 || len(got.Groups) != 0 {
		t.Errorf("worker runs as %+v, want uid and gid 65534 and no groups", got)
	}
}
