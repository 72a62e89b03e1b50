package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/executor"
	"github.com/serverledge/serverledge/internal/testutil"
	"github.com/serverledge/serverledge/internal/wire"
)

// nodeResultsFile is where the node benchmarks write their numbers.
const nodeResultsFile = "results/node.txt"

// nodeBenchCommand is the command the header of nodeResultsFile quotes.
const nodeBenchCommand = "go test -run '^$' -bench Node -benchtime 1x -timeout 20m ./bench/"

const (
	// nodeReadyTimeout bounds the wait for a started node to answer GET /status.
	nodeReadyTimeout = 90 * time.Second
	// nodeStopTimeout bounds the wait for a node to exit after SIGTERM; then it is killed.
	nodeStopTimeout = 2 * time.Minute
	// nodePoll is the interval of every polling loop on a node's status.
	nodePoll = 50 * time.Millisecond
	// nodeStartTimeout is container.start.timeout of the benchmark nodes: long
	// enough for 32 concurrent cold starts on a busy 2-core machine.
	nodeStartTimeout = "60s"
)

// nodeResults collects the sections of bench/results/node.txt across the
// node benchmarks of one `go test` run.
var nodeResults = newResultsFile(nodeResultsFile, nodeHeader)

// nodeHeader returns the header of bench/results/node.txt.
func nodeHeader() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Serverledge node benchmarks — %s\n", nodeBenchCommand)
	fmt.Fprintf(&sb, "# this run: %s\n", strings.Join(nodeTestFlags(), " "))
	fmt.Fprintf(&sb, "# %s, %s/%s, %d CPUs; node, load generator and containers share the host\n",
		time.Now().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	sb.WriteString("# percentiles are nearest-rank; reference targets are printed, never asserted\n")
	return sb.String()
}

// nodeTestFlags returns the test binary's flags that shape the run.
func nodeTestFlags() []string {
	var out []string
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.paniconexit0") || strings.HasPrefix(a, "-test.testlogfile") {
			continue
		}
		out = append(out, strings.Replace(a, "-test.", "-", 1))
	}
	return out
}

// nodeTable formats aligned rows: the first row is the header.
func nodeTable(intro []string, rows [][]string) string {
	var buf bytes.Buffer
	for _, l := range intro {
		buf.WriteString("  " + l + "\n")
	}
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintf(tw, "  %s\n", strings.Join(row, "\t"))
	}
	_ = tw.Flush()
	return buf.String()
}

// nodeOpts configures one node process.
type nodeOpts struct {
	// kind names the node in its node.name, to tell runs apart in logs.
	kind string
	// stemCells is container.stemcells; "" means none.
	stemCells string
	// etcd is etcd.address; empty starts the embedded etcd.
	etcd []string
	// extra are further command-line flags.
	extra []string
}

// nodeProc is a running node process.
type nodeProc struct {
	name   string
	url    string
	runDir string
	logf   string
	proc   *testutil.Process
	// ready is the time from exec to the first 200 on GET /status.
	ready time.Duration
	http  *http.Client

	stopOnce sync.Once
	stopped  time.Duration
}

var nodeSeq atomic.Int64

// buildNode builds cmd/serverledge as `make build` does into a temporary
// directory of b and returns the binary's path.
func buildNode(b *testing.B) string {
	b.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		b.Fatalf("module root not found above bench/: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "serverledge")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/serverledge")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/serverledge: %v\n%s", err, out)
	}
	return bin
}

// startNode starts the node binary on free loopback ports with a temporary
// embedded-etcd directory and container run directory, waits until it
// answers GET /status, and registers a cleanup that stops it by its pid and
// removes every container labelled with its node name.
func startNode(b *testing.B, env *runtimeEnv, bin string, o nodeOpts) *nodeProc {
	b.Helper()
	ports, err := testutil.FreePorts(3)
	if err != nil {
		b.Fatal(err)
	}
	// A short run directory: executor socket paths must fit in 107 bytes.
	runDir, err := os.MkdirTemp("/tmp", "slb")
	if err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("bench-%d-%s-%d", os.Getpid(), o.kind, nodeSeq.Add(1))
	n := &nodeProc{
		name:   name,
		url:    "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		runDir: runDir,
		logf:   filepath.Join(b.TempDir(), "node.log"),
		http:   nodeHTTPClient(),
	}
	args := []string{
		"--api.ip", "127.0.0.1",
		"--api.port", strconv.Itoa(ports[0]),
		"--node.name", name,
		"--container.rundir", runDir,
		"--container.stemcells=" + o.stemCells,
		"--container.start.timeout", nodeStartTimeout,
		"--log.level", "warn",
	}
	if len(o.etcd) > 0 {
		args = append(args, "--etcd.address", strings.Join(o.etcd, ","))
	} else {
		args = append(args,
			"--etcd.embedded.dir", filepath.Join(b.TempDir(), "etcd"),
			"--etcd.embedded.client_port", strconv.Itoa(ports[1]),
			"--etcd.embedded.peer_port", strconv.Itoa(ports[2]))
	}
	args = append(args, o.extra...)
	logFile, err := os.Create(n.logf)
	if err != nil {
		b.Fatal(err)
	}
	// The node writes to its own copy of the file descriptor.
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	t0 := time.Now()
	// Should the benchmark binary die, the node still shuts down and removes its containers.
	if n.proc, err = testutil.StartProcess(cmd, syscall.SIGTERM); err != nil {
		b.Fatalf("start node: %v", err)
	}
	b.Cleanup(func() {
		n.stop(b)
		if left := nodeSweep(b, env, name); left > 0 {
			b.Logf("node %s left %d containers behind; removed them", name, left)
		}
		_ = os.RemoveAll(runDir)
		if b.Failed() {
			b.Logf("node %s log:\n%s", name, n.logTail())
		}
	})
	if err := n.waitReady(); err != nil {
		b.Fatalf("node %s: %v\n%s", name, err, n.logTail())
	}
	n.ready = time.Since(t0)
	return n
}

// waitReady polls GET /status until it answers 200.
func (n *nodeProc) waitReady() error {
	deadline := time.Now().Add(nodeReadyTimeout)
	for {
		if _, err := n.status(context.Background()); err == nil {
			return nil
		}
		select {
		case <-n.proc.Exited():
			return errors.New("node exited before it was ready")
		case <-time.After(nodePoll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v", nodeReadyTimeout)
		}
	}
}

// stop sends SIGTERM to the node and waits for it to exit, killing it after
// nodeStopTimeout. It returns the time from the signal to the exit; later
// calls return the first result.
func (n *nodeProc) stop(b *testing.B) time.Duration {
	n.stopOnce.Do(func() {
		select {
		case <-n.proc.Exited():
			return
		default:
		}
		t0 := time.Now()
		inTime, err := n.proc.Stop(nodeStopTimeout)
		n.stopped = time.Since(t0)
		if err != nil {
			b.Logf("signal node %s: %v", n.name, err)
		}
		if !inTime {
			b.Errorf("node %s did not exit within %v of SIGTERM; killed it", n.name, nodeStopTimeout)
		}
		n.http.CloseIdleConnections()
	})
	return n.stopped
}

// logTail returns the end of the node's log.
func (n *nodeProc) logTail() string {
	data, err := os.ReadFile(n.logf)
	if err != nil {
		return err.Error()
	}
	const keep = 8 << 10
	if len(data) > keep {
		data = data[len(data)-keep:]
	}
	return string(data)
}

// rssKB returns the node's resident set size (VmRSS) in KiB.
func (n *nodeProc) rssKB() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", n.proc.Pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line in /proc status")
}

// nodeSweep removes every container labelled with the node's name and
// returns how many there were.
func nodeSweep(b *testing.B, env *runtimeEnv, node string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	left, err := env.rt.List(ctx, map[string]string{container.LabelNode: node})
	if err != nil {
		b.Errorf("list containers of %s: %v", node, err)
		return 0
	}
	for _, c := range left {
		if err := env.rt.Remove(ctx, c.ID); err != nil {
			b.Errorf("remove %s: %v", c.Name, err)
		}
	}
	return len(left)
}

// nodeContainers counts the containers labelled with the node's name.
func nodeContainers(ctx context.Context, env *runtimeEnv, node string) (int, error) {
	list, err := env.rt.List(ctx, map[string]string{container.LabelNode: node})
	return len(list), err
}

// nodeHTTPClient returns a keep-alive client with enough idle connections
// for 32 concurrent clients.
func nodeHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        128,
			MaxIdleConnsPerHost: 128,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
	}
}

// call sends one JSON request and decodes a 200 reply into out (when not nil).
func (n *nodeProc) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

func (n *nodeProc) status(ctx context.Context) (*wire.StatusResponse, error) {
	var st wire.StatusResponse
	if err := n.call(ctx, http.MethodGet, "/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// createNoop registers a python no-op under name.
func (n *nodeProc) createNoop(ctx context.Context, b *testing.B, name string, memoryMB int64) error {
	return n.call(ctx, http.MethodPost, "/create", wire.FunctionRequest{
		Name:            name,
		Runtime:         "python",
		MemoryMB:        memoryMB,
		Handler:         noopHandler,
		TarFunctionCode: base64.StdEncoding.EncodeToString(noop(b)),
	}, nil)
}

// invokeBody is the body of every benchmark invocation.
var invokeBody = []byte(`{"Params":{}}`)

// invoke calls the function once, synchronously, and checks that it succeeded.
func (n *nodeProc) invoke(ctx context.Context, name string) (*wire.InvocationResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url+"/invoke/"+name, bytes.NewReader(invokeBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("invoke %s: status %d: %s", name, resp.StatusCode, bytes.TrimSpace(data))
	}
	var out wire.InvocationResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("invoke %s: decode: %w", name, err)
	}
	if !out.Success {
		return &out, fmt.Errorf("invoke %s: not successful: %s", name, out.Error)
	}
	return &out, nil
}

// prewarm makes at least want idle containers of fn exist, asking for at
// most batch per POST /prewarm, and returns how many are idle.
func (n *nodeProc) prewarm(ctx context.Context, fn string, want, batch int) (int, error) {
	for attempt := 0; attempt < 2*want/batch+4; attempt++ {
		st, err := n.status(ctx)
		if err != nil {
			return 0, err
		}
		idle := st.AvailableWarmContainers[fn]
		if idle >= want {
			return idle, nil
		}
		var res wire.PrewarmResponse
		if err := n.call(ctx, http.MethodPost, "/prewarm", wire.PrewarmRequest{Function: fn, Instances: min(batch, want-idle)}, &res); err != nil {
			return idle, err
		}
	}
	st, err := n.status(ctx)
	if err != nil {
		return 0, err
	}
	return st.AvailableWarmContainers[fn], nil
}

// waitStemCell waits until the node has a ready python stem cell.
func (n *nodeProc) waitStemCell(ctx context.Context) error {
	return n.waitStemCells(ctx, 1)
}

// waitStemCells waits until the node has want ready python stem cells.
func (n *nodeProc) waitStemCells(ctx context.Context, want int) error {
	for {
		st, err := n.status(ctx)
		if err == nil && st.StemCells["python"] >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d python stem cells: %w (last error %v)", want, ctx.Err(), err)
		case <-time.After(nodePoll):
		}
	}
}

// loadResult is the outcome of a bounded load.
type loadResult struct {
	lat     runtimeSample
	elapsed time.Duration
	errors  int
	first   error
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.elapsed.Seconds()
}

// runLoad makes total calls of do from clients goroutines and records the
// latency of each successful call. do gets the goroutine's index and the
// call's sequence number (0 ≤ seq < total). A failed call is counted and
// does not stop the load; ctx bounds the whole run.
func runLoad(ctx context.Context, clients, total int, do func(ctx context.Context, worker, seq int) error) loadResult {
	var (
		next atomic.Int64
		mu   sync.Mutex
		res  = loadResult{lat: make(runtimeSample, 0, total)}
		wg   sync.WaitGroup
	)
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			lat := make(runtimeSample, 0, total/clients+1)
			var errs int
			var first error
			for ctx.Err() == nil {
				seq := int(next.Add(1)) - 1
				if seq >= total {
					break
				}
				t0 := time.Now()
				err := do(ctx, w, seq)
				d := time.Since(t0)
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			if res.first == nil {
				res.first = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if res.first == nil && ctx.Err() != nil {
		res.first = ctx.Err()
	}
	return res
}

// directExecutors starts n python containers through the Docker backend,
// loads the no-op into each, and returns one executor client per container.
// The containers carry env's label and are removed by env's cleanup.
func directExecutors(ctx context.Context, b *testing.B, env *runtimeEnv, n int) ([]*executor.Client, error) {
	names := make([]string, n)
	for i := range names {
		names[i] = env.name("node-direct")
	}
	code := noop(b)
	clients := make([]*executor.Client, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			clients[i], errs[i] = directExecutor(ctx, env, names[i], code)
		})
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	})
	return clients, errors.Join(errs...)
}

func directExecutor(ctx context.Context, env *runtimeEnv, name string, code []byte) (*executor.Client, error) {
	socket, err := directExecutorSocket(ctx, env, name, code)
	if err != nil {
		return nil, err
	}
	return executor.NewClient(socket), nil
}

// directExecutorSocket starts one python container through the Docker
// backend, loads code into it and returns the host path of its executor's
// unix socket. The container carries env's label and is removed by env's cleanup.
func directExecutorSocket(ctx context.Context, env *runtimeEnv, name string, code []byte) (string, error) {
	id, err := env.rt.Create(ctx, container.Spec{Name: name, Image: runtimeBenchImage, MemoryMB: coldMemoryMB, Labels: env.labels()})
	if err != nil {
		return "", err
	}
	if err := env.rt.Start(ctx, id); err != nil {
		return "", err
	}
	if err := env.rt.Load(ctx, id, container.LoadRequest{Handler: noopHandler, Code: code}); err != nil {
		return "", err
	}
	info, err := env.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", err
	}
	for _, m := range info.Container.Mounts {
		if m.Destination == executor.SocketDir {
			return filepath.Join(m.Source, executor.SocketName), nil
		}
	}
	return "", fmt.Errorf("container %s has no mount at %s", name, executor.SocketDir)
}

// directInvoke invokes the no-op on an executor client and checks the result.
func directInvoke(ctx context.Context, c *executor.Client) error {
	res, err := c.Invoke(ctx, executor.InvokeRequest{Params: map[string]any{}})
	if err != nil {
		return err
	}
	if !res.Success {
		return fmt.Errorf("no-op failed: %s", res.Error)
	}
	return nil
}
