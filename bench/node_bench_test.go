package bench

// Node benchmarks: a complete node (cmd/serverledge, built as `make build`
// does) started as a subprocess on free loopback ports, with its own
// embedded etcd (or an external one), temporary directories and a unique
// node.name. Run with
//
//	go test -run '^$' -bench Node -benchtime 1x -timeout 20m ./bench/
//
// Each benchmark does a fixed amount of work with a Go load generator
// (net/http keep-alive, N goroutines, a fixed number of requests, every
// latency recorded), reports percentiles with b.ReportMetric and writes a
// section of bench/results/node.txt. The direct-executor baselines start
// python containers through internal/container/docker and talk to their
// executors over the unix socket. Nodes are stopped by pid with SIGTERM and
// every container they or the baselines created is removed. Nothing fails
// on a threshold: reference targets are printed next to the numbers.

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/registry/registrytest"
)

const (
	// nodeColdRuns is the number of measured cold starts per kind.
	nodeColdRuns = 10
	// nodeBurst is the number of concurrent cold starts of the burst, and
	// the number of warm containers of the throughput and shutdown runs.
	nodeBurst = 32
	// nodeWarmupLoad is the number of unmeasured requests before each throughput run.
	nodeWarmupLoad = 500
	// nodeStemSettle is how long a ready stem cell idles before it is used.
	nodeStemSettle = 300 * time.Millisecond
	// nodeIdleSettle is how long a node idles before its RSS is read.
	nodeIdleSettle = 3 * time.Second
	// nodePoolMemory is container.pool.memory of the nodes that hold 32 or
	// more containers (32 × 128 MB plus stem cells exceed the 4096 default).
	nodePoolMemory = "8192"
	// nodeNoopFn is the function of the warm, throughput and shutdown runs.
	nodeNoopFn = "noop"
)

// Published Serverledge throughput with a no-op function (req/s), for reference.
const (
	publishedRPS5  = 830
	publishedRPS32 = 885 // upper end of the published 600–885 req/s
)

// nodeThroughputRuns maps a number of concurrent clients to the number of
// measured requests.
var nodeThroughputRuns = map[int]int{5: 5000, 32: 6400}

// nodeLoadOrFatal stops the benchmark when a load produced no successful
// request, and logs the first error of a partly failed one.
func nodeLoadOrFatal(b *testing.B, what string, r loadResult) {
	b.Helper()
	if len(r.lat) == 0 {
		b.Fatalf("%s: no successful request: %v", what, r.first)
	}
	if r.errors > 0 {
		b.Logf("%s: %d failed requests, first: %v", what, r.errors, r.first)
	}
}

// latencyRow is one table row: name, p50, p99, mean, req/s, errors.
func latencyRow(name string, r loadResult) []string {
	return []string{name, ms(r.lat.percentile(50)), ms(r.lat.percentile(99)), ms(r.lat.mean()),
		fmt.Sprintf("%.0f", r.rps()), strconv.Itoa(r.errors)}
}

var latencyHeader = []string{"path", "p50", "p99", "mean", "req/s", "errors"}

func fromSeconds(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }

// BenchmarkNodeWarmLatency measures sequential warm invocations of a python
// no-op through the node's HTTP API, next to the same no-op invoked
// directly on an executor over its unix socket (the floor).
func BenchmarkNodeWarmLatency(b *testing.B) {
	env := newRuntimeEnv(b)
	bin := buildNode(b)
	ctx := benchCtx(b, 5*time.Minute)

	n := startNode(b, env, bin, nodeOpts{kind: "warm"})
	if err := n.createNoop(ctx, b, nodeNoopFn, 0); err != nil {
		b.Fatal(err)
	}
	var server, inside runtimeSample
	viaNode := func(ctx context.Context, _, _ int) error {
		resp, err := n.invoke(ctx, nodeNoopFn)
		if err == nil {
			server = append(server, fromSeconds(resp.ResponseTime))
			inside = append(inside, fromSeconds(resp.Duration))
		}
		return err
	}
	nodeLoadOrFatal(b, "node warm-up", runLoad(ctx, 1, warmup, viaNode))
	server, inside = server[:0], inside[:0]
	nodeRes := runLoad(ctx, 1, WarmRuns, viaNode)
	nodeLoadOrFatal(b, "node", nodeRes)
	n.stop(b)

	clients, err := directExecutors(ctx, b, env, 1)
	if err != nil {
		b.Fatal(err)
	}
	direct := func(ctx context.Context, _, _ int) error { return directInvoke(ctx, clients[0]) }
	nodeLoadOrFatal(b, "direct warm-up", runLoad(ctx, 1, warmup, direct))
	directRes := runLoad(ctx, 1, WarmRuns, direct)
	nodeLoadOrFatal(b, "direct", directRes)

	overhead := nodeRes.lat.percentile(50) - directRes.lat.percentile(50)
	b.ReportMetric(msf(nodeRes.lat.percentile(50)), "node-p50-ms")
	b.ReportMetric(msf(nodeRes.lat.percentile(99)), "node-p99-ms")
	b.ReportMetric(msf(directRes.lat.percentile(50)), "exec-p50-ms")
	b.ReportMetric(msf(directRes.lat.percentile(99)), "exec-p99-ms")
	b.ReportMetric(msf(overhead), "overhead-p50-ms")
	b.ReportMetric(0, "ns/op")
	nodeResults.set(b, "WarmLatency", nodeTable(
		[]string{
			fmt.Sprintf("sequential warm invocations of a python no-op, %d measured after %d warm-up, one keep-alive connection", WarmRuns, warmup),
		},
		[][]string{
			latencyHeader,
			latencyRow("node HTTP API (POST /invoke)", nodeRes),
			latencyRow("executor direct (unix socket)", directRes),
			{"node ResponseTime (server side)", ms(server.percentile(50)), ms(server.percentile(99)), ms(server.mean()), "", ""},
			{"in-container Duration", ms(inside.percentile(50)), ms(inside.percentile(99)), ms(inside.mean()), "", ""},
			{"node p50 − executor p50", ms(overhead), "", "", "", "reference target ≤ 0.300 ms"},
		}))
}

// BenchmarkNodeThroughput measures the request rate of 5 and 32 concurrent
// clients through the node (32 prewarmed containers) and directly on 32
// executors with each client bound to one container.
func BenchmarkNodeThroughput(b *testing.B) {
	env := newRuntimeEnv(b)
	bin := buildNode(b)
	ctx := benchCtx(b, 8*time.Minute)
	levels := []int{5, 32}

	n := startNode(b, env, bin, nodeOpts{kind: "tput", extra: []string{"--container.pool.memory", nodePoolMemory}})
	if err := n.createNoop(ctx, b, nodeNoopFn, 0); err != nil {
		b.Fatal(err)
	}
	idle, err := n.prewarm(ctx, nodeNoopFn, nodeBurst, 8)
	if err != nil {
		b.Fatalf("prewarm: %v", err)
	}
	if idle < nodeBurst {
		b.Logf("only %d of %d containers prewarmed; the rest start cold during warm-up", idle, nodeBurst)
	}
	viaNode := func(ctx context.Context, _, _ int) error {
		_, err := n.invoke(ctx, nodeNoopFn)
		return err
	}
	nodeRes := map[int]loadResult{}
	for _, c := range levels {
		nodeLoadOrFatal(b, "node warm-up", runLoad(ctx, c, nodeWarmupLoad, viaNode))
		nodeRes[c] = runLoad(ctx, c, nodeThroughputRuns[c], viaNode)
		nodeLoadOrFatal(b, fmt.Sprintf("node, %d clients", c), nodeRes[c])
	}
	rss, err := n.rssKB()
	if err != nil {
		b.Fatal(err)
	}
	n.stop(b)

	clients, err := directExecutors(ctx, b, env, nodeBurst)
	if err != nil {
		b.Fatal(err)
	}
	direct := func(ctx context.Context, w, _ int) error { return directInvoke(ctx, clients[w]) }
	directRes := map[int]loadResult{}
	for _, c := range levels {
		nodeLoadOrFatal(b, "direct warm-up", runLoad(ctx, c, nodeWarmupLoad, direct))
		directRes[c] = runLoad(ctx, c, nodeThroughputRuns[c], direct)
		nodeLoadOrFatal(b, fmt.Sprintf("direct, %d clients", c), directRes[c])
	}

	rows := [][]string{{"clients", "path", "requests", "req/s", "p50", "p99", "errors", "node/direct", "node/published"}}
	for _, c := range levels {
		nr, dr := nodeRes[c], directRes[c]
		published := float64(publishedRPS5)
		if c == 32 {
			published = publishedRPS32
		}
		ratio := nr.rps() / dr.rps()
		vsPublished := nr.rps() / published
		b.ReportMetric(nr.rps(), fmt.Sprintf("node-%dc-req/s", c))
		b.ReportMetric(dr.rps(), fmt.Sprintf("exec-%dc-req/s", c))
		b.ReportMetric(ratio, fmt.Sprintf("node/exec-%dc", c))
		b.ReportMetric(msf(nr.lat.percentile(99)), fmt.Sprintf("node-%dc-p99-ms", c))
		rows = append(rows,
			[]string{strconv.Itoa(c), "node HTTP API", strconv.Itoa(nodeThroughputRuns[c]), fmt.Sprintf("%.0f", nr.rps()),
				ms(nr.lat.percentile(50)), ms(nr.lat.percentile(99)), strconv.Itoa(nr.errors),
				fmt.Sprintf("%.0f%%", 100*ratio), fmt.Sprintf("%.2f× (vs %.0f)", vsPublished, published)},
			[]string{strconv.Itoa(c), "executors direct", strconv.Itoa(nodeThroughputRuns[c]), fmt.Sprintf("%.0f", dr.rps()),
				ms(dr.lat.percentile(50)), ms(dr.lat.percentile(99)), strconv.Itoa(dr.errors), "", ""})
	}
	b.ReportMetric(float64(rss)/1024, "node-rss-after-load-MB")
	b.ReportMetric(0, "ns/op")
	nodeResults.set(b, "Throughput", nodeTable(
		[]string{
			fmt.Sprintf("python no-op, closed loop: each client sends its next request when the previous one returns; %d unmeasured requests first", nodeWarmupLoad),
			fmt.Sprintf("node: %d prewarmed containers (%d ready), stem cells none; direct: %d executors, client i bound to executor i", nodeBurst, idle, nodeBurst),
			fmt.Sprintf("published system: ≈%d req/s with 5 clients, 600–%d with 32; reference targets: node ≥ 80%% of direct and ≥ 2× published", publishedRPS5, publishedRPS32),
		}, rows)+fmt.Sprintf("  node RSS after the load: %.1f MB\n", float64(rss)/1024))
}

// BenchmarkNodeColdStart measures the first invocation of never-seen
// functions with a python stem cell ready and without stem cells, next to a
// bare Docker create+start+ready of the runtime image, and a burst of 32
// concurrent cold starts of distinct functions without stem cells.
func BenchmarkNodeColdStart(b *testing.B) {
	env := newRuntimeEnv(b)
	bin := buildNode(b)
	ctx := benchCtx(b, 10*time.Minute)

	var bare runtimeSample
	for i := -1; i < nodeColdRuns; i++ { // i = -1 is an unmeasured warm-up
		c, s, r, err := bareColdStart(ctx, env, bareFull)
		if err != nil {
			b.Fatal(err)
		}
		if i >= 0 {
			bare = append(bare, c+s+r)
		}
	}

	stem, stemInit := nodeColdSeries(ctx, b, env, bin, "python:1")
	none, noneInit := nodeColdSeries(ctx, b, env, bin, "")

	burst, warmHits := nodeBurstRun(ctx, b, env, bin, "", true)
	sameFn, sameWarm := nodeBurstRun(ctx, b, env, bin, "", false)
	stemBurst, _ := nodeBurstRun(ctx, b, env, bin, fmt.Sprintf("python:%d", nodeBurst), true)

	b.ReportMetric(msf(stem.percentile(50)), "stem-p50-ms")
	b.ReportMetric(msf(none.percentile(50)), "nostem-p50-ms")
	b.ReportMetric(msf(bare.percentile(50)), "bare-docker-p50-ms")
	b.ReportMetric(msf(burst.lat.percentile(50)), "burst32-p50-ms")
	b.ReportMetric(msf(burst.lat.percentile(99)), "burst32-p99-ms")
	b.ReportMetric(msf(sameFn.lat.percentile(99)), "burst32-onefn-p99-ms")
	b.ReportMetric(msf(stemBurst.lat.percentile(99)), "burst32-stem-p99-ms")
	b.ReportMetric(0, "ns/op")
	row := func(name string, s runtimeSample, init runtimeSample) []string {
		r := []string{name, strconv.Itoa(len(s)), ms(s.percentile(50)), ms(s.percentile(99)), ms(s.mean()), ""}
		if len(init) > 0 {
			r[5] = ms(init.percentile(50))
		}
		return r
	}
	nodeResults.set(b, "ColdStart", nodeTable(
		[]string{
			"first invocation of a never-seen python no-op through POST /invoke (client-side latency), one at a time",
			"with stem cells: container.stemcells python:1, each run waits for a ready stem cell idle for " + nodeStemSettle.String(),
			"bare docker: raw SDK create+start of the runtime image with the backend's host config, until the ready FIFO",
		},
		[][]string{
			{"kind", "n", "p50", "p99", "mean", "InitTime p50"},
			row("node, stem cell ready", stem, stemInit),
			row("node, no stem cells", none, noneInit),
			row("bare docker create+start+ready", bare, nil),
			row(fmt.Sprintf("node, burst of %d distinct fns, no stem cells", nodeBurst), burst.lat, nil),
			row(fmt.Sprintf("node, burst of %d of one fn, no stem cells", nodeBurst), sameFn.lat, nil),
			row(fmt.Sprintf("node, burst of %d distinct fns, %d stem cells", nodeBurst, nodeBurst), stemBurst.lat, nil),
		})+fmt.Sprintf("  bursts: %d requests at once; distinct fns: %d errors, all answered in %s, warm hits %d;\n"+
		"          one fn: %d errors, all answered in %s, warm hits %d (requests served by containers others started);\n"+
		"          with stem cells: %d errors, all answered in %s\n",
		nodeBurst, burst.errors, ms(burst.elapsed), warmHits,
		sameFn.errors, ms(sameFn.elapsed), sameWarm,
		stemBurst.errors, ms(stemBurst.elapsed)))
}

// nodeBurstRun starts a node with the given stem cells (waiting until they
// are all ready), sends nodeBurst concurrent first invocations — of distinct
// never-seen functions, or all of one never-seen function — and stops the
// node. It returns the load and how many requests were warm starts.
func nodeBurstRun(ctx context.Context, b *testing.B, env *runtimeEnv, bin, stemCells string, distinct bool) (loadResult, int64) {
	b.Helper()
	n := startNode(b, env, bin, nodeOpts{kind: "burst", stemCells: stemCells, extra: []string{"--container.pool.memory", nodePoolMemory}})
	defer n.stop(b)
	name := func(seq int) string {
		if distinct {
			return fmt.Sprintf("burst-%d", seq)
		}
		return "burst-0"
	}
	for i := range nodeBurst {
		if !distinct && i > 0 {
			break
		}
		if err := n.createNoop(ctx, b, name(i), 0); err != nil {
			b.Fatal(err)
		}
	}
	if stemCells != "" {
		if err := n.waitStemCells(ctx, nodeBurst); err != nil {
			b.Fatal(err)
		}
		time.Sleep(nodeStemSettle)
	}
	var warmHits atomic.Int64
	res := runLoad(ctx, nodeBurst, nodeBurst, func(ctx context.Context, _, seq int) error {
		resp, err := n.invoke(ctx, name(seq))
		if err == nil && resp.IsWarmStart {
			warmHits.Add(1)
		}
		return err
	})
	nodeLoadOrFatal(b, "burst", res)
	return res, warmHits.Load()
}

// nodeColdSeries starts a node with the given stem cells, makes one
// unmeasured and nodeColdRuns measured cold starts of new functions, stops
// the node, and returns the client latencies and the reported InitTimes.
func nodeColdSeries(ctx context.Context, b *testing.B, env *runtimeEnv, bin, stemCells string) (lat, init runtimeSample) {
	b.Helper()
	kind := "nostem"
	if stemCells != "" {
		kind = "stem"
	}
	n := startNode(b, env, bin, nodeOpts{kind: kind, stemCells: stemCells})
	defer n.stop(b)
	for i := -1; i < nodeColdRuns; i++ {
		fn := "cold-" + strconv.Itoa(i+1)
		if err := n.createNoop(ctx, b, fn, 0); err != nil {
			b.Fatal(err)
		}
		if stemCells != "" {
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := n.waitStemCell(wctx)
			cancel()
			if err != nil {
				b.Fatalf("%v\n%s", err, n.logTail())
			}
			time.Sleep(nodeStemSettle)
		}
		t0 := time.Now()
		resp, err := n.invoke(ctx, fn)
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if resp.IsWarmStart {
			b.Fatalf("%s: the first invocation of a new function was reported warm", fn)
		}
		if i >= 0 {
			lat = append(lat, d)
			init = append(init, fromSeconds(resp.InitTime))
		}
	}
	return lat, init
}

// BenchmarkNodeIdleRSS reads the resident memory of an idle node (default
// stem cells, no functions) with the embedded etcd, and with an external
// etcd process so that etcd's memory is not counted.
func BenchmarkNodeIdleRSS(b *testing.B) {
	env := newRuntimeEnv(b)
	bin := buildNode(b)
	ctx := benchCtx(b, 3*time.Minute)
	measure := func(kind string, etcd []string) (rssKB int64, ready time.Duration) {
		n := startNode(b, env, bin, nodeOpts{kind: kind, stemCells: "python:1", etcd: etcd})
		defer n.stop(b)
		if err := n.waitStemCell(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(nodeIdleSettle)
		rss, err := n.rssKB()
		if err != nil {
			b.Fatal(err)
		}
		return rss, n.ready
	}
	embRSS, embReady := measure("rss-emb", nil)
	extRSS, extReady := measure("rss-ext", registrytest.StartExternalEtcd(b))

	b.ReportMetric(float64(embRSS)/1024, "embedded-etcd-MB")
	b.ReportMetric(float64(extRSS)/1024, "external-etcd-MB")
	b.ReportMetric(0, "ns/op")
	mb := func(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
	nodeResults.set(b, "IdleRSS", nodeTable(
		[]string{
			fmt.Sprintf("VmRSS of an idle node (no functions, one python stem cell ready) %s after the stem cell is ready", nodeIdleSettle),
			"start to ready = exec until GET /status answers 200",
		},
		[][]string{
			{"registry", "VmRSS", "start to ready"},
			{"external etcd (not counted)", mb(extRSS), ms(extReady)},
			{"embedded etcd (in the node)", mb(embRSS), ms(embReady)},
		}))
}

// BenchmarkNodeShutdown prewarms 32 containers of a small function (plus
// the default stem cell), sends SIGTERM and measures the time until the
// process exits, then checks that none of the node's containers remain.
func BenchmarkNodeShutdown(b *testing.B) {
	env := newRuntimeEnv(b)
	bin := buildNode(b)
	ctx := benchCtx(b, 5*time.Minute)

	n := startNode(b, env, bin, nodeOpts{kind: "shutdown", stemCells: "python:1", extra: []string{"--container.pool.memory", nodePoolMemory}})
	if err := n.createNoop(ctx, b, nodeNoopFn, 64); err != nil {
		b.Fatal(err)
	}
	idle, err := n.prewarm(ctx, nodeNoopFn, nodeBurst, 8)
	if err != nil {
		b.Fatalf("prewarm: %v", err)
	}
	if err := n.waitStemCell(ctx); err != nil {
		b.Fatal(err)
	}
	before, err := nodeContainers(ctx, env, n.name)
	if err != nil {
		b.Fatal(err)
	}
	took := n.stop(b)
	after, err := nodeContainers(ctx, env, n.name)
	if err != nil {
		b.Fatal(err)
	}
	if after > 0 {
		b.Errorf("%d containers of node %s remain after it exited", after, n.name)
	}
	b.ReportMetric(msf(took), "sigterm-to-exit-ms")
	b.ReportMetric(float64(before), "containers")
	b.ReportMetric(float64(after), "left-behind")
	b.ReportMetric(0, "ns/op")
	nodeResults.set(b, "Shutdown", nodeTable(
		[]string{
			fmt.Sprintf("%d prewarmed containers of a 64 MB python no-op (%d idle) plus one stem cell; SIGTERM until the process exits", nodeBurst, idle),
			"shutdown.timeout is the default (10s)",
		},
		[][]string{
			{"containers before", "SIGTERM to exit", "containers left after exit"},
			{strconv.Itoa(before), ms(took), strconv.Itoa(after)},
		}))
}
