package bench

// The performance floor of the node's HTTP hop: one python no-op container,
// reached over its executor's unix socket
//
//   - directly, with one executor client shared by all load clients (one
//     connection, as the node's Docker backend holds it),
//   - directly, with one executor connection per load client,
//   - through a bare net/http/httputil reverse proxy (bench/floorproxy, a
//     separate process), and
//   - through a real node process (cmd/serverledge, external etcd) whose
//     pool holds exactly one container of the function,
//
// all driven by the same closed-loop HTTP client (keep-alive, N goroutines,
// a fixed number of requests). Besides throughput and latency it reads the
// CPU time (utime+stime in /proc/<pid>/stat) the proxy and the node spend
// per request: on a shared machine that figure is distorted much less than
// throughput. Run with
//
//	go test -run '^$' -bench Floor -benchtime 1x -timeout 20m ./bench/
//
// Paths and client counts are measured in interleaved rounds and the table
// holds the median of the rounds. Results go to bench/results/floor.txt;
// nothing fails on a threshold.

import (
	"bytes"
	"context"
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/executor"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/testutil"
)

// floorResultsFile is where BenchmarkFloor writes its numbers.
const floorResultsFile = "results/floor.txt"

// floorBenchCommand is the command the header of floorResultsFile quotes.
const floorBenchCommand = "go test -run '^$' -bench Floor -benchtime 1x -timeout 20m ./bench/"

const (
	// floorRounds is how many times every path and client count is measured.
	floorRounds = 3
	// floorWarmup is the number of unmeasured requests per path before the rounds.
	floorWarmup = 1000
	// userHZ is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
	// 100 on every Linux architecture Go supports).
	userHZ = 100
	// floorPprofEnv, when set to a directory, makes BenchmarkFloor start
	// the node with debug.pprof and save a CPU profile of the node during
	// one extra 32-client load into that directory.
	floorPprofEnv = "SERVERLEDGE_BENCH_PPROF"
)

// floorLevels are the numbers of concurrent clients, each with its number
// of measured requests per round.
var floorLevels = []struct{ clients, requests int }{{1, 3000}, {5, 8000}, {32, 8000}}

// floorPath is one way of reaching the executor.
type floorPath struct {
	name string
	// pid is the serving process whose CPU time is read, 0 for none.
	pid int
	// do makes one invocation for load client w.
	do func(ctx context.Context, w, seq int) error
}

// floorRun is one measured load of one path at one client count.
type floorRun struct {
	res loadResult
	// cpuPerReq is the serving process's CPU time per request; 0 without a pid.
	cpuPerReq time.Duration
}

func BenchmarkFloor(b *testing.B) {
	env := newRuntimeEnv(b)
	nodeBin := buildNode(b)
	proxyBin := buildFloorProxy(b)
	ctx := benchCtx(b, 15*time.Minute)

	socket, err := directExecutorSocket(ctx, env, env.name("floor"), noop(b))
	if err != nil {
		b.Fatal(err)
	}
	shared := executor.NewClient(socket)
	b.Cleanup(shared.Close)
	maxClients := maxFloorClients()
	own := make([]*executor.Client, maxClients)
	for i := range own {
		own[i] = executor.NewClient(socket)
		b.Cleanup(own[i].Close)
	}
	pprofDir := os.Getenv(floorPprofEnv)
	proxy := startFloorProxy(b, proxyBin, socket, 0, pprofDir)
	proxy1 := startFloorProxy(b, proxyBin, socket, 1, pprofDir)
	extra := []string{"--container.pool.memory", strconv.Itoa(function.DefaultMemoryMB)}
	if pprofDir != "" {
		extra = append(extra, "--debug.pprof=true")
	}
	n := startNode(b, env, nodeBin, nodeOpts{kind: "floor", etcd: registrytest.StartExternalEtcd(b), extra: extra})
	if err := n.createNoop(ctx, b, nodeNoopFn, 0); err != nil {
		b.Fatal(err)
	}

	proxyHTTP, proxy1HTTP, nodeHTTP := nodeHTTPClient(), nodeHTTPClient(), nodeHTTPClient()
	b.Cleanup(proxyHTTP.CloseIdleConnections)
	b.Cleanup(proxy1HTTP.CloseIdleConnections)
	paths := []floorPath{
		{name: "executor direct, one shared client", do: func(ctx context.Context, _, _ int) error {
			return directInvoke(ctx, shared)
		}},
		{name: "executor direct, a connection per client", do: func(ctx context.Context, w, _ int) error {
			return directInvoke(ctx, own[w])
		}},
		{name: "bare httputil reverse proxy", pid: proxy.Pid(), do: func(ctx context.Context, _, _ int) error {
			return floorInvoke(ctx, proxyHTTP, proxy.url+"/invoke/"+nodeNoopFn)
		}},
		{name: "bare proxy, one executor connection", pid: proxy1.Pid(), do: func(ctx context.Context, _, _ int) error {
			return floorInvoke(ctx, proxy1HTTP, proxy1.url+"/invoke/"+nodeNoopFn)
		}},
		{name: "node HTTP API (POST /invoke)", pid: n.proc.Pid(), do: func(ctx context.Context, _, _ int) error {
			return floorInvoke(ctx, nodeHTTP, n.url+"/invoke/"+nodeNoopFn)
		}},
	}
	for _, p := range paths {
		nodeLoadOrFatal(b, p.name+" warm-up", runLoad(ctx, 1, floorWarmup/2, p.do))
		nodeLoadOrFatal(b, p.name+" warm-up", runLoad(ctx, maxClients, floorWarmup/2, p.do))
	}

	runs := map[string]map[int][]floorRun{}
	for _, p := range paths {
		runs[p.name] = map[int][]floorRun{}
	}
	for range floorRounds {
		for _, lv := range floorLevels {
			for _, p := range paths {
				r, err := floorMeasure(ctx, p, lv.clients, lv.requests)
				if err != nil {
					b.Fatal(err)
				}
				nodeLoadOrFatal(b, fmt.Sprintf("%s, %d clients", p.name, lv.clients), r.res)
				runs[p.name][lv.clients] = append(runs[p.name][lv.clients], r)
			}
		}
	}
	if pprofDir != "" {
		floorProfile(ctx, b, n, paths[len(paths)-1], pprofDir)
	}
	nodeRSS, err := n.rssKB()
	if err != nil {
		b.Fatal(err)
	}
	n.stop(b)

	floorResults := newResultsFile(floorResultsFile, floorHeader)
	floorResults.set(b, "Floor", floorReport(b, paths, runs)+
		fmt.Sprintf("  node RSS after the load: %.1f MB\n", float64(nodeRSS)/1024))
}

// floorMeasure runs one bounded load of p and reads the serving process's
// CPU counters around it.
func floorMeasure(ctx context.Context, p floorPath, clients, requests int) (floorRun, error) {
	var before, after int64
	var err error
	if p.pid != 0 {
		if before, err = cpuTicks(p.pid); err != nil {
			return floorRun{}, err
		}
	}
	res := runLoad(ctx, clients, requests, p.do)
	run := floorRun{res: res}
	if p.pid != 0 {
		if after, err = cpuTicks(p.pid); err != nil {
			return floorRun{}, err
		}
		if done := len(res.lat) + res.errors; done > 0 {
			run.cpuPerReq = time.Duration(after-before) * (time.Second / userHZ) / time.Duration(done)
		}
	}
	return run, nil
}

// floorMedians are the medians of one path's rounds at one client count.
type floorMedians struct {
	rps        float64
	p50, p99   time.Duration
	cpuPerReq  time.Duration
	errors     int
	rpsSpread  [2]float64
	cpuSpreads [2]time.Duration
}

func floorMedian(rs []floorRun) floorMedians {
	var m floorMedians
	var rps []float64
	var p50, p99, cpu []time.Duration
	for _, r := range rs {
		rps = append(rps, r.res.rps())
		p50 = append(p50, r.res.lat.percentile(50))
		p99 = append(p99, r.res.lat.percentile(99))
		cpu = append(cpu, r.cpuPerReq)
		m.errors += r.res.errors
	}
	slices.Sort(rps)
	slices.Sort(p50)
	slices.Sort(p99)
	slices.Sort(cpu)
	mid := len(rs) / 2
	m.rps, m.p50, m.p99, m.cpuPerReq = rps[mid], p50[mid], p99[mid], cpu[mid]
	m.rpsSpread = [2]float64{rps[0], rps[len(rps)-1]}
	m.cpuSpreads = [2]time.Duration{cpu[0], cpu[len(cpu)-1]}
	return m
}

// floorReport formats the table and the ratios to the targets, and
// reports the headline figures as benchmark metrics.
func floorReport(b *testing.B, paths []floorPath, runs map[string]map[int][]floorRun) string {
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
	rows := [][]string{{"clients", "path", "req/s", "(min–max)", "p50", "p99", "CPU/req", "(min–max)", "errors"}}
	med := map[string]map[int]floorMedians{}
	for _, lv := range floorLevels {
		for _, p := range paths {
			m := floorMedian(runs[p.name][lv.clients])
			if med[p.name] == nil {
				med[p.name] = map[int]floorMedians{}
			}
			med[p.name][lv.clients] = m
			cpu, spread := "", ""
			if p.pid != 0 {
				cpu, spread = us(m.cpuPerReq), us(m.cpuSpreads[0])+"–"+us(m.cpuSpreads[1])
			}
			rows = append(rows, []string{strconv.Itoa(lv.clients), p.name,
				fmt.Sprintf("%.0f", m.rps), fmt.Sprintf("%.0f–%.0f", m.rpsSpread[0], m.rpsSpread[1]),
				ms(m.p50), ms(m.p99), cpu, spread, strconv.Itoa(m.errors)})
		}
	}
	direct, node := paths[0].name, paths[len(paths)-1].name
	ratios := [][]string{{"clients", "floor", "node/floor req/s", "(target ≥ 85%)", "node/floor p50 overhead", "(target ≤ 1.2×)", "node/floor CPU/req", "(target ≤ 1.3×)"}}
	for _, lv := range floorLevels {
		c := lv.clients
		d, nd := med[direct][c], med[node][c]
		for i, floor := range []string{paths[2].name, paths[3].name} {
			px := med[floor][c]
			pxOver, ndOver := px.p50-d.p50, nd.p50-d.p50
			over := "n/a"
			if pxOver > 0 {
				over = fmt.Sprintf("%.2f× (%s vs %s)", float64(ndOver)/float64(pxOver), us(ndOver), us(pxOver))
			}
			cpu := "n/a"
			if px.cpuPerReq > 0 {
				cpu = fmt.Sprintf("%.2f×", float64(nd.cpuPerReq)/float64(px.cpuPerReq))
			}
			ratios = append(ratios, []string{strconv.Itoa(c), floor, fmt.Sprintf("%.0f%%", 100*nd.rps/px.rps), "", over, "", cpu, ""})
			tag := []string{"proxy", "proxy1conn"}[i]
			b.ReportMetric(px.rps, fmt.Sprintf("%s-%dc-req/s", tag, c))
			b.ReportMetric(float64(px.cpuPerReq)/float64(time.Microsecond), fmt.Sprintf("%s-%dc-cpu-µs/req", tag, c))
		}
		b.ReportMetric(nd.rps, fmt.Sprintf("node-%dc-req/s", c))
		b.ReportMetric(float64(nd.cpuPerReq)/float64(time.Microsecond), fmt.Sprintf("node-%dc-cpu-µs/req", c))
	}
	b.ReportMetric(0, "ns/op")
	levels := make([]string, len(floorLevels))
	for i, lv := range floorLevels {
		levels[i] = fmt.Sprintf("%d clients × %d requests", lv.clients, lv.requests)
	}
	return nodeTable([]string{
		"one python no-op container per path, closed loop over keep-alive connections: each client sends its next request when the previous one returns",
		fmt.Sprintf("%d interleaved rounds of %s per path; medians of the rounds, (min–max) across rounds; %d unmeasured requests per path first",
			floorRounds, strings.Join(levels, ", "), floorWarmup),
		"direct and both proxies share one container; the node (external etcd, container.pool.memory = one container) has its own",
		"the node holds one connection per container and sends it one request at a time; the bare proxy opens one executor connection per concurrent request",
		"(the executor still runs one at a time, but a request waits on its own connection), the one-connection proxy shares a single one, as the node",
		"CPU/req: utime+stime of the serving process (/proc/<pid>/stat, 10 ms ticks) over the run / requests",
		"p50 overhead: the path's p50 minus the p50 of the direct call with one shared client",
	}, rows) + "\n" + nodeTable(nil, ratios)
}

// floorHeader returns the header of bench/results/floor.txt.
func floorHeader() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Serverledge performance floor — %s\n", floorBenchCommand)
	fmt.Fprintf(&sb, "# this run: %s\n", strings.Join(nodeTestFlags(), " "))
	fmt.Fprintf(&sb, "# %s, %s/%s, %d CPUs; serving processes, load generator and container share the host\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	sb.WriteString("# percentiles are nearest-rank; targets are printed, never asserted\n")
	return sb.String()
}

// floorInvoke sends one invocation over HTTP and checks that it succeeded.
// The node and the proxy answer with JSON objects that both carry Success.
func floorInvoke(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(invokeBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("invoke: status %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var out struct {
		Success bool
		Error   string
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("invoke: decode: %w", err)
	}
	if !out.Success {
		return fmt.Errorf("invoke: not successful: %s", out.Error)
	}
	return nil
}

// cpuTicks returns utime+stime of the process, in USER_HZ ticks.
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// buildFloorProxy builds bench/floorproxy into a temporary directory of b.
func buildFloorProxy(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "floorproxy")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./floorproxy")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./bench/floorproxy: %v\n%s", err, out)
	}
	return bin
}

// floorProxy is a running bench/floorproxy process.
type floorProxy struct {
	*testutil.Process
	url string
}

// startFloorProxy starts the proxy on a free loopback port in front of the
// executor socket with at most maxConns executor connections (0: no bound),
// waits until it accepts connections, and registers its stop. With pprofDir
// set, the proxy writes a CPU profile of its whole run there.
func startFloorProxy(b *testing.B, bin, socket string, maxConns int, pprofDir string) *floorProxy {
	b.Helper()
	ports, err := testutil.FreePorts(1)
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"-listen", addr, "-socket", socket, "-maxconns", strconv.Itoa(maxConns)}
	if pprofDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(pprofDir, fmt.Sprintf("proxy-maxconns%d-cpu.pprof", maxConns)))
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	proc, err := testutil.StartProcess(cmd, syscall.SIGTERM)
	if err != nil {
		b.Fatalf("start floorproxy: %v", err)
	}
	b.Cleanup(func() {
		if _, err := proc.Stop(10 * time.Second); err != nil {
			b.Logf("stop floorproxy: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return &floorProxy{Process: proc, url: "http://" + addr}
		}
		select {
		case <-proc.Exited():
			b.Fatal("floorproxy exited before it listened")
		case <-time.After(nodePoll):
		}
		if time.Now().After(deadline) {
			b.Fatalf("floorproxy not listening within 30s: %v", err)
		}
	}
}

// floorProfile saves a 32-client CPU profile of the node (debug.pprof) into dir.
func floorProfile(ctx context.Context, b *testing.B, n *nodeProc, p floorPath, dir string) {
	b.Helper()
	const seconds = 5
	errc := make(chan error, 1)
	go func() {
		errc <- saveProfile(ctx, n.url+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds), filepath.Join(dir, "node-cpu.pprof"))
	}()
	pctx, cancel := context.WithTimeout(ctx, (seconds+1)*time.Second)
	defer cancel()
	// A load that ends with the profile; the count only bounds the
	// latency buffer, far above what the node serves in that time.
	_ = runLoad(pctx, maxFloorClients(), 200_000, p.do)
	if err := <-errc; err != nil {
		b.Errorf("node CPU profile: %v", err)
	}
}

func maxFloorClients() int { return floorLevels[len(floorLevels)-1].clients }

// saveProfile fetches url into path.
func saveProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 64<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
