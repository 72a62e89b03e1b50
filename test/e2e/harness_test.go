// Package e2e runs real Serverledge nodes (the built cmd/serverledge binary,
// the Docker daemon, embedded or external etcd) and drives them through the
// built CLI and plain HTTP, checking what a user would check.
//
// The package needs Docker and the runtime images (`make images`). Without
// them every test is skipped, unless SERVERLEDGE_REQUIRE_DOCKER is set, in
// which case the package fails.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// logDirEnv names an environment variable that, when set, is a directory
// where every node's output is also written, as <node name>.log.
const logDirEnv = "SERVERLEDGE_E2E_LOGS"

// requireDockerEnv names the environment variable that turns a missing
// Docker daemon or runtime image into a failure instead of a skip.
const requireDockerEnv = "SERVERLEDGE_REQUIRE_DOCKER"

// Images the tests use.
const (
	pythonImage = "serverledge/runtime-python:latest"
	nodejsImage = "serverledge/runtime-nodejs:latest"
	customImage = "serverledge/example-custom:latest"
)

// Bounds of the harness's waits.
const (
	nodeReadyTimeout = 40 * time.Second
	nodeStopTimeout  = 30 * time.Second
	cliTimeout       = 90 * time.Second
	httpTimeout      = 90 * time.Second
	dockerTimeout    = 30 * time.Second
)

var (
	// skipReason is set when Docker or the python image is missing and
	// the environment does not require them.
	skipReason string
	// nodeBin and cliBin are the binaries built by TestMain.
	nodeBin, cliBin string
	// runID makes node names unique to this test process.
	runID = strconv.Itoa(os.Getpid())
	// nodeSeq numbers the nodes of this process.
	nodeSeq atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if reason := dockerMissing(); reason != "" {
		if os.Getenv(requireDockerEnv) != "" {
			fmt.Fprintf(os.Stderr, "e2e: %s is set but %s\n", requireDockerEnv, reason)
			return 1
		}
		skipReason = reason
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "serverledge-e2e-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	nodeBin = filepath.Join(dir, "serverledge")
	cliBin = filepath.Join(dir, "serverledge-cli")
	for pkg, out := range map[string]string{"./cmd/serverledge": nodeBin, "./cmd/serverledge-cli": cliBin} {
		if err := goBuild(pkg, out); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
	}
	code := m.Run()
	if n := removeLeftovers(); n > 0 {
		fmt.Fprintf(os.Stderr, "e2e: removed %d containers left behind by this run's nodes\n", n)
	}
	return code
}

// dockerMissing returns why the tests cannot run, or "".
func dockerMissing() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "the docker command is not on PATH"
	}
	if _, err := docker("version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Sprintf("the Docker daemon does not answer: %v", err)
	}
	if !imageExists(pythonImage) {
		return fmt.Sprintf("image %s is missing (run `make images`)", pythonImage)
	}
	return ""
}

// goBuild builds the package pkg of this module into out.
func goBuild(pkg, out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot returns the directory holding go.mod.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// repoPath returns the absolute path of a file of the repository.
func repoPath(t testing.TB, rel string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// removeLeftovers removes the containers of this process's nodes that
// survived their tests (a failed or killed test), and returns how many.
func removeLeftovers() int {
	out, err := docker("ps", "-a", "--filter", "label=serverledge.managed=true",
		"--format", `{{.ID}} {{.Label "serverledge.node"}}`)
	if err != nil {
		return 0
	}
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		id, node, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && strings.HasPrefix(node, "e2e-"+runID+"-") {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0
	}
	if _, err := docker(append([]string{"rm", "-f"}, ids...)...); err != nil {
		return 0
	}
	return len(ids)
}

// docker runs the docker command and returns its trimmed stdout.
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// imageExists reports whether a local image exists.
func imageExists(image string) bool {
	_, err := docker("image", "inspect", "--format", "{{.Id}}", image)
	return err == nil
}

// requireImage skips (or, with SERVERLEDGE_REQUIRE_DOCKER, fails) a test
// whose image is missing.
func requireImage(t *testing.T, image string) {
	t.Helper()
	if imageExists(image) {
		return
	}
	if os.Getenv(requireDockerEnv) != "" {
		t.Fatalf("image %s is missing (run `make images`)", image)
	}
	t.Skipf("image %s is missing (run `make images`)", image)
}

// containers returns the IDs of the containers (running or not) carrying
// every given label (key=value).
func containers(t testing.TB, labels ...string) []string {
	t.Helper()
	args := []string{"ps", "-a", "-q", "--no-trunc"}
	for _, l := range labels {
		args = append(args, "--filter", "label="+l)
	}
	out, err := docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// nodeContainers returns the IDs of the containers of node n, optionally
// narrowed to one function ("" for none).
func nodeContainers(t testing.TB, n *node, function string) []string {
	t.Helper()
	labels := []string{"serverledge.node=" + n.Name}
	if function != "" {
		labels = append(labels, "serverledge.function="+function)
	}
	return containers(t, labels...)
}

// inspect returns a Go-template field of container id.
func inspect(t testing.TB, id, format string) string {
	t.Helper()
	out, err := docker("inspect", "--format", format, id)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond every interval until it returns true or timeout
// passes, and fails the test with msg then.
func eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeOpts configures startNode.
type nodeOpts struct {
	// Name is node.name; empty means a new unique name.
	Name string
	// PoolMemoryMB is container.pool.memory; 0 means 1024.
	PoolMemoryMB int
	// Etcd lists external etcd endpoints; empty starts an embedded etcd.
	Etcd []string
	// EtcdDir is the embedded etcd's data directory; empty means a new one.
	EtcdDir string
	// RunDir is container.rundir; empty means a new short directory.
	RunDir string
	// SpoolDir is async.spool.dir; empty means a new directory.
	SpoolDir string
	// Args are more flags, appended last so that they win (the harness
	// disables stem cells; "--container.stemcells=python:1" enables them).
	Args []string
}

// node is a running serverledge process.
type node struct {
	Name     string
	URL      string
	Port     int
	EtcdDir  string
	RunDir   string
	SpoolDir string

	out  *testutil.SyncBuffer
	proc *testutil.Process
}

// newNodeName returns a node name unique to this process and test run.
func newNodeName() string {
	return fmt.Sprintf("e2e-%s-%d", runID, nodeSeq.Add(1))
}

// startNode starts a node, waits until GET /status answers and registers
// its stop: SIGTERM, a bounded wait, kill by pid if needed, and a check that
// no container labelled with its name remains.
func startNode(t *testing.T, opts nodeOpts) *node {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if opts.Name == "" {
		opts.Name = newNodeName()
	}
	if opts.PoolMemoryMB == 0 {
		opts.PoolMemoryMB = 1024
	}
	if opts.RunDir == "" {
		// Unix socket paths are short: keep the run directory near the root.
		dir, err := os.MkdirTemp("/tmp", "sle")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		opts.RunDir = dir
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = filepath.Join(t.TempDir(), "spool")
	}
	if opts.EtcdDir == "" && len(opts.Etcd) == 0 {
		opts.EtcdDir = filepath.Join(t.TempDir(), "etcd")
	}
	confFile := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(confFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A free port is found by binding and releasing it, so another process
	// may take it first; the node then exits at once and we try again.
	const attempts = 3
	for i := 1; ; i++ {
		n, err := launchNode(t, opts, confFile)
		if err == nil {
			t.Cleanup(func() { n.stopAndCheck(t) })
			return n
		}
		if i == attempts {
			t.Fatalf("start node %s: %v", opts.Name, err)
		}
		t.Logf("start node %s, attempt %d: %v", opts.Name, i, err)
	}
}

func launchNode(t *testing.T, opts nodeOpts, confFile string) (*node, error) {
	ports, err := testutil.FreePorts(3)
	if err != nil {
		return nil, err
	}
	n := &node{
		Name:     opts.Name,
		Port:     ports[0],
		URL:      "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		EtcdDir:  opts.EtcdDir,
		RunDir:   opts.RunDir,
		SpoolDir: opts.SpoolDir,
		out:      &testutil.SyncBuffer{},
	}
	args := []string{
		"--config", confFile,
		"--api.ip", "127.0.0.1",
		"--api.port", strconv.Itoa(ports[0]),
		"--node.name", opts.Name,
		"--container.rundir", opts.RunDir,
		"--async.spool.dir", opts.SpoolDir,
		"--container.pool.memory", strconv.Itoa(opts.PoolMemoryMB),
		"--container.stemcells=",
		"--shutdown.timeout", "20s",
		"--log.level", "debug",
	}
	if len(opts.Etcd) > 0 {
		args = append(args, "--etcd.address", strings.Join(opts.Etcd, ","))
	} else {
		args = append(args,
			"--etcd.embedded.dir", opts.EtcdDir,
			"--etcd.embedded.client_port", strconv.Itoa(ports[1]),
			"--etcd.embedded.peer_port", strconv.Itoa(ports[2]))
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(nodeBin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if dir := os.Getenv(logDirEnv); dir != "" {
		f, err := os.OpenFile(filepath.Join(dir, n.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { f.Close() })
		w := io.MultiWriter(n.out, f)
		cmd.Stdout, cmd.Stderr = w, w
	}
	// Should the test binary die, the kernel stops the node too.
	if n.proc, err = testutil.StartProcess(cmd, syscall.SIGKILL); err != nil {
		return nil, err
	}
	if err := n.waitReady(); err != nil {
		n.proc.Kill()
		removeNodeContainers(n.Name)
		return nil, fmt.Errorf("%w; node output:\n%s", err, tail(n.out.String(), 40))
	}
	return n, nil
}

// waitReady polls GET /status until it answers 200.
func (n *node) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(nodeReadyTimeout)
	for {
		resp, err := client.Get(n.URL + "/status")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.proc.Exited():
			return fmt.Errorf("node exited before it was ready (%v)", n.proc.State())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node not ready within %v", nodeReadyTimeout)
		}
	}
}

// signal sends sig to the node process.
func (n *node) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := n.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal node %s: %v", n.Name, err)
	}
}

// stop stops the node with SIGTERM and fails the test unless it exits
// cleanly within the bound (it is then killed).
func (n *node) stop(t testing.TB) {
	t.Helper()
	select {
	case <-n.proc.Exited():
		return
	default:
	}
	n.signal(t, syscall.SIGTERM)
	if !n.proc.Wait(nodeStopTimeout) {
		n.proc.Kill()
		t.Errorf("node %s did not exit within %v of SIGTERM; killed", n.Name, nodeStopTimeout)
		return
	}
	if !n.proc.State().Success() {
		t.Errorf("node %s exited with %v after SIGTERM", n.Name, n.proc.State())
	}
}

// stopAndCheck stops the node and checks that none of its containers remain.
func (n *node) stopAndCheck(t *testing.T) {
	t.Helper()
	n.stop(t)
	if left := nodeContainers(t, n, ""); len(left) > 0 {
		t.Errorf("node %s left %d containers behind: %v", n.Name, len(left), left)
		removeNodeContainers(n.Name)
	}
	if t.Failed() {
		t.Logf("node %s output (tail):\n%s", n.Name, tail(n.out.String(), 80))
	}
}

// removeNodeContainers force-removes every container of the named node.
func removeNodeContainers(name string) {
	out, err := docker("ps", "-a", "-q", "--filter", "label=serverledge.node="+name)
	if err != nil || out == "" {
		return
	}
	docker(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
}

// cleanEnv returns the environment without SERVERLEDGE_* variables, so that
// the caller's environment configures neither the node nor the CLI.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SERVERLEDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cliResult is the outcome of one CLI run.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

// cli runs the built CLI against node n and returns its output and exit code.
func cli(t testing.TB, n *node, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	full := append([]string{"-H", "127.0.0.1", "-P", strconv.Itoa(n.Port)}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, cliBin, full...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.Code = exitErr.ExitCode()
	default:
		t.Fatalf("serverledge-cli %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// cliOK runs the CLI, fails the test unless it exits 0, and decodes its
// stdout into out (when out is not nil).
func cliOK(t testing.TB, n *node, out any, args ...string) cliResult {
	t.Helper()
	res := cli(t, n, args...)
	if res.Code != 0 {
		t.Fatalf("serverledge-cli %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(res.Stdout), out); err != nil {
			t.Fatalf("serverledge-cli %s: stdout is not the expected JSON: %v\n%s", strings.Join(args, " "), err, res.Stdout)
		}
	}
	return res
}

// httpClient is shared by the tests' plain HTTP calls.
var httpClient = &http.Client{Timeout: httpTimeout}

// do sends a request with a raw body and returns the status and body.
func do(t testing.TB, method, url string, body []byte) (int, []byte) {
	t.Helper()
	code, b, err := tryDo(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

// tryDo is do returning its error, for use off the test goroutine.
func tryDo(method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the reply: %w", method, url, err)
	}
	return resp.StatusCode, b, nil
}

// postJSON posts v as JSON and returns the status and body.
func postJSON(t testing.TB, url string, v any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, http.MethodPost, url, b)
}

// invokeHTTP invokes fn on n with params over plain HTTP.
func invokeHTTP(n *node, fn string, params map[string]any) (int, []byte, error) {
	b, err := json.Marshal(wire.InvocationRequest{Params: params})
	if err != nil {
		return 0, nil, err
	}
	return tryDo(http.MethodPost, n.URL+"/invoke/"+fn, b)
}

// status returns GET /status of n.
func status(t testing.TB, n *node) wire.StatusResponse {
	t.Helper()
	st, err := tryStatus(n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tryStatus is status returning its error, for use off the test goroutine.
func tryStatus(n *node) (wire.StatusResponse, error) {
	var st wire.StatusResponse
	code, b, err := tryDo(http.MethodGet, n.URL+"/status", nil)
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("GET /status: %d %s", code, b)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("GET /status: %w\n%s", err, b)
	}
	return st, nil
}

// functionNames returns GET /function of n.
func functionNames(t testing.TB, n *node) []string {
	t.Helper()
	code, b := do(t, http.MethodGet, n.URL+"/function", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /function: %d %s", code, b)
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		t.Fatalf("GET /function: %v\n%s", err, b)
	}
	return names
}
