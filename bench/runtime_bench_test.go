package bench

// Runtime-layer benchmarks: where a cold start's time goes, what the Docker
// backend adds on top of bare Docker, stem-cell specialization, and warm
// invocation latency. Run with
//
//	go test -run '^$' -bench Runtime -timeout 30m ./bench/
//
// Every benchmark does a fixed amount of work (ColdRuns cold starts,
// WarmRuns warm invocations), computes its percentiles itself, reports them
// with b.ReportMetric and writes them to bench/results/runtime.txt. Nothing
// fails on a threshold. Containers carry the label runtimeBenchLabel and are
// removed at the end, even on failure.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/containertest"
	"github.com/serverledge/serverledge/internal/container/docker"
	"github.com/serverledge/serverledge/internal/executor"
)

const (
	runtimeBenchImage = "serverledge/runtime-python:latest"
	// runtimeBenchLabel marks every container these benchmarks create.
	runtimeBenchLabel = "serverledge.bench"
	// ColdRuns is the number of measured cold starts per benchmark.
	ColdRuns = 20
	// WarmRuns is the number of measured warm invocations per benchmark.
	WarmRuns = 2000
	// warmup invocations precede every warm measurement.
	warmup = 200
	// stemSettle is how long a stem cell idles after Start before it is
	// specialized, as it would in a pool.
	stemSettle = 300 * time.Millisecond
	// coldMemoryMB is the memory limit of the benchmark containers.
	coldMemoryMB = 128
)

// noopHandler is the python function of the warm and specialization benchmarks.
const noopHandler = "main.handler"

var noopCode = []byte(nil)

func noop(b *testing.B) []byte {
	if noopCode == nil {
		noopCode = containertest.Files(b, map[string]string{"main.py": "def handler(params, context):\n    return None\n"})
	}
	return noopCode
}

// runtimeEnv is the shared state of the runtime benchmarks.
type runtimeEnv struct {
	rt     *docker.Runtime
	cli    *client.Client
	runDir string
	run    string
	seq    int
}

func (e *runtimeEnv) name(kind string) string {
	e.seq++
	return fmt.Sprintf("sl-bench-%s-%s-%d", e.run, kind, e.seq)
}

func (e *runtimeEnv) labels() map[string]string {
	return map[string]string{
		container.LabelManaged:  "true",
		container.LabelNode:     "bench",
		container.LabelFunction: "",
		container.LabelRuntime:  "python",
		runtimeBenchLabel:       e.run,
	}
}

// newRuntimeEnv connects to Docker or skips when the daemon or the image is missing.
func newRuntimeEnv(b *testing.B) *runtimeEnv {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runDir := filepath.Join(os.TempDir(), "sl-bench")
	rt, err := docker.New(ctx, docker.Options{
		RunDir: runDir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Skipf("no Docker daemon: %v", err)
	}
	ok, err := rt.ImageExists(ctx, runtimeBenchImage)
	if err != nil || !ok {
		_ = rt.Close()
		b.Skipf("image %s missing (run `make images`): %v", runtimeBenchImage, err)
	}
	env := &runtimeEnv{rt: rt, cli: rt.Client(), runDir: rt.RunDir(), run: fmt.Sprintf("%d", os.Getpid())}
	b.Cleanup(func() {
		env.sweep(b)
		_ = rt.Close()
	})
	return env
}

// sweep removes every container of this benchmark run.
func (e *runtimeEnv) sweep(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	left, err := e.rt.List(ctx, map[string]string{runtimeBenchLabel: e.run})
	if err != nil {
		b.Errorf("sweep: %v", err)
		return
	}
	for _, c := range left {
		if err := e.rt.Remove(ctx, c.ID); err != nil {
			b.Errorf("sweep: remove %s: %v", c.Name, err)
		}
	}
}

func BenchmarkRuntime(b *testing.B) {
	env := newRuntimeEnv(b)
	runtimeResults.header = []string{
		"# Serverledge runtime layer — go test -run '^$' -bench Runtime ./bench/",
		fmt.Sprintf("# %s, %s/%s, %d CPUs, Docker API %s, image %s, network %s, memory limit %d MB",
			time.Now().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
			env.cli.ClientVersion(), runtimeBenchImage, docker.DefaultNetwork, coldMemoryMB),
		fmt.Sprintf("# %d cold starts, %d warm invocations (after %d warm-up) per line; percentiles are nearest-rank", ColdRuns, WarmRuns, warmup),
	}
	b.Run("BareDocker", func(b *testing.B) { benchBare(b, env, true) })
	b.Run("BareDockerMinimal", func(b *testing.B) { benchBare(b, env, false) })
	b.Run("ColdBackend", func(b *testing.B) { benchCold(b, env) })
	b.Run("Specialize", func(b *testing.B) { benchSpecialize(b, env) })
	b.Run("WarmBackend", func(b *testing.B) { benchWarm(b, env, false) })
	b.Run("WarmExecutorDirect", func(b *testing.B) { benchWarm(b, env, true) })
}

// bareTimes splits one bare cold start.
type bareTimes struct {
	create, start, ready runtimeSample
	total                runtimeSample
}

var bareFull, bareMinimal measured[bareTimes]

// benchBare measures raw SDK create + start + the ready FIFO, without the
// backend. full applies the same host configuration as the backend (limits,
// capabilities, PID limit); otherwise only the bind mount and the network.
func benchBare(b *testing.B, env *runtimeEnv, full bool) {
	m, name := &bareMinimal, "bare docker, minimal config (bind mount + network only)"
	if full {
		m, name = &bareFull, "bare docker, backend's host config (limits, cap drop, pids), raw SDK + ready FIFO"
	}
	t, err := m.get(func() (bareTimes, error) {
		ctx := benchCtx(b, 10*time.Minute)
		var t bareTimes
		for i := -1; i < ColdRuns; i++ { // i = -1 is an unmeasured warm-up
			c, s, r, err := bareColdStart(ctx, env, full)
			if err != nil {
				return t, err
			}
			if i >= 0 {
				t.create = append(t.create, c)
				t.start = append(t.start, s)
				t.ready = append(t.ready, r)
				t.total = append(t.total, c+s+r)
			}
		}
		return t, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(msf(t.total.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.total.percentile(99)), "p99-ms")
	b.ReportMetric(msf(t.create.percentile(50)), "create-p50-ms")
	b.ReportMetric(msf(t.start.percentile(50)), "start-p50-ms")
	b.ReportMetric(msf(t.ready.percentile(50)), "ready-after-start-p50-ms")
	b.ReportMetric(0, "ns/op")
	key := "BareDockerMinimal"
	if full {
		key = "BareDocker"
	}
	runtimeResults.set(b, key,
		name,
		fmt.Sprintf("create+start+ready  p50 %s  p99 %s  mean %s", ms(t.total.percentile(50)), ms(t.total.percentile(99)), ms(t.total.mean())),
		fmt.Sprintf("docker create       p50 %s  p99 %s", ms(t.create.percentile(50)), ms(t.create.percentile(99))),
		fmt.Sprintf("docker start (API)  p50 %s  p99 %s", ms(t.start.percentile(50)), ms(t.start.percentile(99))),
		fmt.Sprintf("ready after start   p50 %s  p99 %s", ms(t.ready.percentile(50)), ms(t.ready.percentile(99))),
	)
}

// bareColdStart does one bare cold start and removes the container (untimed).
func bareColdStart(ctx context.Context, env *runtimeEnv, full bool) (create, start, ready time.Duration, err error) {
	name := env.name("bare")
	dir := filepath.Join(env.runDir, name)
	if err := os.Mkdir(dir, 0o777); err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		return 0, 0, 0, err
	}
	fifoPath := filepath.Join(dir, executor.ReadyFIFO)
	if err := syscall.Mkfifo(fifoPath, 0o666); err != nil {
		return 0, 0, 0, err
	}
	fifo, err := os.OpenFile(fifoPath, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	defer fifo.Close()
	if err := fifo.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		return 0, 0, 0, err
	}

	hc := &dcontainer.HostConfig{
		Mounts:      []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: executor.SocketDir}},
		NetworkMode: dcontainer.NetworkMode(docker.DefaultNetwork),
	}
	if full {
		pids := int64(docker.PidsLimit)
		hc.CapDrop = []string{"ALL"}
		hc.SecurityOpt = []string{"no-new-privileges"}
		hc.Resources = dcontainer.Resources{Memory: coldMemoryMB << 20, MemorySwap: coldMemoryMB << 20, PidsLimit: &pids}
	}
	t0 := time.Now()
	res, err := env.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       name,
		Config:     &dcontainer.Config{Image: runtimeBenchImage, Labels: env.labels()},
		HostConfig: hc,
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bare create: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = env.cli.ContainerRemove(rctx, res.ID, client.ContainerRemoveOptions{Force: true})
	}()
	t1 := time.Now()
	if _, err := env.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return 0, 0, 0, fmt.Errorf("bare start: %w", err)
	}
	t2 := time.Now()
	buf := make([]byte, 16)
	var got []byte
	for !bytes.Contains(got, []byte("\n")) {
		n, err := fifo.Read(buf)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("bare ready: %w", err)
		}
		got = append(got, buf[:n]...)
	}
	t3 := time.Now()
	if string(got) != "ready\n" {
		return 0, 0, 0, fmt.Errorf("bare ready: read %q", got)
	}
	return t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), nil
}

// coldTimes splits one cold start through the backend.
type coldTimes struct {
	create, start, load, invoke runtimeSample
	ready, total                runtimeSample // ready = create+start
}

var coldResult measured[coldTimes]

// benchCold measures Create + Start + Load + the first Invoke through the backend.
func benchCold(b *testing.B, env *runtimeEnv) {
	t, err := coldResult.get(func() (coldTimes, error) {
		ctx := benchCtx(b, 10*time.Minute)
		var t coldTimes
		for i := -1; i < ColdRuns; i++ {
			c, s, l, inv, err := backendColdStart(ctx, env, b)
			if err != nil {
				return t, err
			}
			if i >= 0 {
				t.create = append(t.create, c)
				t.start = append(t.start, s)
				t.load = append(t.load, l)
				t.invoke = append(t.invoke, inv)
				t.ready = append(t.ready, c+s)
				t.total = append(t.total, c+s+l+inv)
			}
		}
		return t, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(msf(t.total.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.total.percentile(99)), "p99-ms")
	b.ReportMetric(msf(t.ready.percentile(50)), "create+start-p50-ms")
	b.ReportMetric(msf(t.create.percentile(50)), "create-p50-ms")
	b.ReportMetric(msf(t.start.percentile(50)), "start-p50-ms")
	b.ReportMetric(msf(t.load.percentile(50)+t.invoke.percentile(50)), "load+invoke-p50-ms")
	b.ReportMetric(0, "ns/op")
	lines := []string{
		"cold start through the backend: Create + Start (ready) + Load + first Invoke of a no-op",
		fmt.Sprintf("total               p50 %s  p99 %s  mean %s", ms(t.total.percentile(50)), ms(t.total.percentile(99)), ms(t.total.mean())),
		fmt.Sprintf("Create              p50 %s  p99 %s", ms(t.create.percentile(50)), ms(t.create.percentile(99))),
		fmt.Sprintf("Start (to ready)    p50 %s  p99 %s", ms(t.start.percentile(50)), ms(t.start.percentile(99))),
		fmt.Sprintf("Create+Start        p50 %s  p99 %s", ms(t.ready.percentile(50)), ms(t.ready.percentile(99))),
		fmt.Sprintf("Load                p50 %s  p99 %s", ms(t.load.percentile(50)), ms(t.load.percentile(99))),
		fmt.Sprintf("first Invoke        p50 %s  p99 %s", ms(t.invoke.percentile(50)), ms(t.invoke.percentile(99))),
	}
	if bare, err := bareFull.get(func() (bareTimes, error) { return bareTimes{}, errors.New("not measured") }); err == nil && len(bare.total) > 0 {
		total := float64(t.total.percentile(50)) / float64(bare.total.percentile(50))
		ready := float64(t.ready.percentile(50)) / float64(bare.total.percentile(50))
		b.ReportMetric(total, "cold/bare")
		b.ReportMetric(ready, "create+start/bare")
		lines = append(lines,
			fmt.Sprintf("cold total / bare create+start+ready (p50): %.3f", total),
			fmt.Sprintf("Create+Start / bare create+start+ready (p50): %.3f", ready))
	}
	runtimeResults.set(b, "ColdBackend", lines...)
}

// backendColdStart does one cold start through the backend and removes the container (untimed).
func backendColdStart(ctx context.Context, env *runtimeEnv, b *testing.B) (create, start, load, invoke time.Duration, err error) {
	t0 := time.Now()
	id, err := env.rt.Create(ctx, container.Spec{Name: env.name("cold"), Image: runtimeBenchImage, MemoryMB: coldMemoryMB, Labels: env.labels()})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer func() { _ = env.rt.Remove(context.WithoutCancel(ctx), id) }()
	t1 := time.Now()
	if err := env.rt.Start(ctx, id); err != nil {
		return 0, 0, 0, 0, err
	}
	t2 := time.Now()
	if err := env.rt.Load(ctx, id, container.LoadRequest{Handler: noopHandler, Code: noop(b)}); err != nil {
		return 0, 0, 0, 0, err
	}
	t3 := time.Now()
	res, err := env.rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if !res.Success {
		return 0, 0, 0, 0, fmt.Errorf("no-op failed: %s", res.Error)
	}
	t4 := time.Now()
	return t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), nil
}

// specTimes splits one specialization of a running stem cell.
type specTimes struct {
	load, invoke, total runtimeSample
}

var specResult measured[specTimes]

// benchSpecialize measures Load + first Invoke on an already-running,
// function-agnostic container that has idled for stemSettle.
func benchSpecialize(b *testing.B, env *runtimeEnv) {
	t, err := specResult.get(func() (specTimes, error) {
		ctx := benchCtx(b, 10*time.Minute)
		var t specTimes
		for i := -1; i < ColdRuns; i++ {
			l, inv, err := specializeOnce(ctx, env, b)
			if err != nil {
				return t, err
			}
			if i >= 0 {
				t.load = append(t.load, l)
				t.invoke = append(t.invoke, inv)
				t.total = append(t.total, l+inv)
			}
		}
		return t, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(msf(t.total.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.total.percentile(99)), "p99-ms")
	b.ReportMetric(msf(t.load.percentile(50)), "load-p50-ms")
	b.ReportMetric(msf(t.invoke.percentile(50)), "first-invoke-p50-ms")
	b.ReportMetric(0, "ns/op")
	runtimeResults.set(b, "Specialize",
		fmt.Sprintf("stem-cell specialization: Load + first Invoke of a no-op into a running container idle for %s", stemSettle),
		fmt.Sprintf("Load+Invoke         p50 %s  p99 %s  mean %s", ms(t.total.percentile(50)), ms(t.total.percentile(99)), ms(t.total.mean())),
		fmt.Sprintf("Load                p50 %s  p99 %s", ms(t.load.percentile(50)), ms(t.load.percentile(99))),
		fmt.Sprintf("first Invoke        p50 %s  p99 %s", ms(t.invoke.percentile(50)), ms(t.invoke.percentile(99))),
	)
}

func specializeOnce(ctx context.Context, env *runtimeEnv, b *testing.B) (load, invoke time.Duration, err error) {
	id, err := env.rt.Create(ctx, container.Spec{Name: env.name("stem"), Image: runtimeBenchImage, MemoryMB: coldMemoryMB, Labels: env.labels()})
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = env.rt.Remove(context.WithoutCancel(ctx), id) }()
	if err := env.rt.Start(ctx, id); err != nil {
		return 0, 0, err
	}
	time.Sleep(stemSettle)
	t0 := time.Now()
	if err := env.rt.Load(ctx, id, container.LoadRequest{Handler: noopHandler, Code: noop(b)}); err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	res, err := env.rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}})
	if err != nil {
		return 0, 0, err
	}
	if !res.Success {
		return 0, 0, fmt.Errorf("no-op failed: %s", res.Error)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// warmTimes are the latencies of sequential warm invocations and their rate.
type warmTimes struct {
	lat      runtimeSample
	elapsed  time.Duration
	inDocker runtimeSample // Duration reported by the executor
}

var warmBackend, warmDirect measured[warmTimes]

// benchWarm measures WarmRuns sequential invocations of a no-op over one
// keep-alive connection, through the backend or directly on an executor client.
func benchWarm(b *testing.B, env *runtimeEnv, direct bool) {
	m, key, what := &warmBackend, "WarmBackend", "warm no-op invocations through the backend (Runtime.Invoke), sequential, keep-alive"
	if direct {
		m, key, what = &warmDirect, "WarmExecutorDirect", "warm no-op invocations directly on executor.Client, sequential, keep-alive"
	}
	t, err := m.get(func() (warmTimes, error) {
		ctx := benchCtx(b, 10*time.Minute)
		id, err := env.rt.Create(ctx, container.Spec{Name: env.name("warm"), Image: runtimeBenchImage, MemoryMB: coldMemoryMB, Labels: env.labels()})
		if err != nil {
			return warmTimes{}, err
		}
		defer func() { _ = env.rt.Remove(context.WithoutCancel(ctx), id) }()
		if err := env.rt.Start(ctx, id); err != nil {
			return warmTimes{}, err
		}
		if err := env.rt.Load(ctx, id, container.LoadRequest{Handler: noopHandler, Code: noop(b)}); err != nil {
			return warmTimes{}, err
		}
		invoke := func() (time.Duration, error) {
			res, err := env.rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}})
			if err == nil && !res.Success {
				err = fmt.Errorf("no-op failed: %s", res.Error)
			}
			return res.Duration, err
		}
		if direct {
			info, err := env.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			if err != nil {
				return warmTimes{}, err
			}
			sock := ""
			for _, mp := range info.Container.Mounts {
				if mp.Destination == executor.SocketDir {
					sock = filepath.Join(mp.Source, executor.SocketName)
				}
			}
			ec := executor.NewClient(sock)
			defer ec.Close()
			invoke = func() (time.Duration, error) {
				res, err := ec.Invoke(ctx, executor.InvokeRequest{Params: map[string]any{}})
				if err == nil && !res.Success {
					err = fmt.Errorf("no-op failed: %s", res.Error)
				}
				return res.Duration(), err
			}
		}
		for range warmup {
			if _, err := invoke(); err != nil {
				return warmTimes{}, err
			}
		}
		t := warmTimes{lat: make(runtimeSample, 0, WarmRuns), inDocker: make(runtimeSample, 0, WarmRuns)}
		start := time.Now()
		for range WarmRuns {
			t0 := time.Now()
			d, err := invoke()
			if err != nil {
				return warmTimes{}, err
			}
			t.lat = append(t.lat, time.Since(t0))
			t.inDocker = append(t.inDocker, d)
		}
		t.elapsed = time.Since(start)
		return t, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	rps := float64(len(t.lat)) / t.elapsed.Seconds()
	b.ReportMetric(msf(t.lat.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.lat.percentile(99)), "p99-ms")
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(float64(t.lat.percentile(50).Nanoseconds()), "ns/op")
	runtimeResults.set(b, key,
		what,
		fmt.Sprintf("latency             p50 %s  p99 %s  mean %s", ms(t.lat.percentile(50)), ms(t.lat.percentile(99)), ms(t.lat.mean())),
		fmt.Sprintf("throughput          %.0f req/s (one client, one container)", rps),
		fmt.Sprintf("in-handler Duration p50 %s", ms(t.inDocker.percentile(50))),
	)
}
