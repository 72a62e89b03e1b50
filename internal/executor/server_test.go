package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
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

// waitGone fails the test if process pid is still running after a second.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
	}
	t.Errorf("worker %d still running", pid)
}

func TestWorkerKilledMidCall(t *testing.T) {
	h := loaded(t, "python", "fn.sleep")
	pid := h.srv.WorkerPID()
	timer := time.AfterFunc(300*time.Millisecond, func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	defer timer.Stop()
	_, err := h.client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"s": 10}})
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
		if len(f) >= 2 && f[0] == "Z" && f[1] == me {
			zombies = append(zombies, p)
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
		"    if params.get('hang'):\n        time.sleep(10)\n" +
		"    subprocess.run(['sh', '-c', 'sleep 0.2 &'], check=True)\n    return 'ok'\n"
	if err := client.Load(context.Background(), "fn.orphan", tarOf(t, map[string]string{"fn.py": code})); err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := client.Invoke(context.Background(), InvokeRequest{}); err != nil {
			t.Fatalf("Invoke: %v", err)
		}
	}
	time.Sleep(600 * time.Millisecond) // the orphaned sleeps end after 200 ms
	if z := zombieChildren(t); len(z) > 0 {
		t.Errorf("unreaped zombies: %v", z)
	}
	pid := srv.WorkerPID()
	timer := time.AfterFunc(200*time.Millisecond, func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	defer timer.Stop()
	_, err = client.Invoke(context.Background(), InvokeRequest{Params: map[string]any{"hang": true}, TimeoutMillis: 5000})
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
			slow := []string{"sh", "-c", "sleep 0.4; exec " + strings.Join(argv, " ")}
			dir := shortTempDir(t)
			start := time.Now()
			srv, err := Start(context.Background(), ServerConfig{SocketDir: dir, CodeDir: filepath.Join(dir, "code"), Worker: slow, PingWorker: true, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer srv.Close()
			if d := time.Since(start); d < 400*time.Millisecond {
				t.Errorf("Start returned after %v, before the worker could answer", d)
			}
		})
	}
	dir := shortTempDir(t)
	_, err := Start(context.Background(), ServerConfig{SocketDir: dir, CodeDir: filepath.Join(dir, "code"), Worker: []string{"sh", "-c", "exit 3"}, PingWorker: true, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "worker did not start") {
		t.Fatalf("Start with a dead worker: %v, want an error saying the worker did not start", err)
	}
}
