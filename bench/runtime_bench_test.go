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
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
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

// runtimeBenchImage is the python runtime image, tagged SERVERLEDGE_IMAGE_TAG
// (as scripts/build-images.sh tags it) or latest.
var runtimeBenchImage = "serverledge/runtime-python:" + cmp.Or(os.Getenv("SERVERLEDGE_IMAGE_TAG"), "latest")

const (
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
	header := "# Serverledge runtime layer — go test -run '^$' -bench Runtime -timeout 30m ./bench/\n" +
		fmt.Sprintf("# %s, %s/%s, %d CPUs, Docker API %s, image %s, memory limit %d MB\n",
			time.Now().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
			env.cli.ClientVersion(), runtimeBenchImage, coldMemoryMB) +
		fmt.Sprintf("# %d cold starts per variant (variants interleaved, one unmeasured warm-up each), %d warm invocations after %d warm-up;\n",
			ColdRuns, WarmRuns, warmup) +
		"# percentiles are nearest-rank; times are wall-clock on a shared host\n"
	runtimeResults.header = func() string { return header }
	b.Run("Cold", func(b *testing.B) { benchCold(b, env) })
	b.Run("Specialize", func(b *testing.B) { benchSpecialize(b, env) })
	b.Run("WarmBackend", func(b *testing.B) { benchWarm(b, env, false) })
	b.Run("WarmExecutorDirect", func(b *testing.B) { benchWarm(b, env, true) })
	b.Run("WarmBackendParallel", func(b *testing.B) { benchWarmParallel(b, env) })
}

// bareVariant is a host configuration for a bare cold start.
type bareVariant int

const (
	// bareFull is the backend's host config: limits, capabilities, read-only root with tmpfs /tmp and /code, PID limit, bridge.
	bareFull bareVariant = iota
	// bareMinimal is only the bind mount, on the bridge network.
	bareMinimal
	// bareNoNetwork is the backend's host config without a network.
	bareNoNetwork
	bareVariants
)

func (v bareVariant) String() string {
	return [...]string{"BareDocker", "BareDockerMinimal", "BareDockerNoNetwork"}[v]
}

func (v bareVariant) describe() string {
	return [...]string{
		"bare docker (raw SDK + ready FIFO), the backend's host config: 128 MB no swap, cap drop ALL + the executor's SETUID/SETGID/KILL, read-only root, tmpfs /tmp and /code, no-new-privileges, pids 256, bridge",
		"bare docker (raw SDK + ready FIFO), minimal host config: bind mount only, bridge",
		"bare docker (raw SDK + ready FIFO), the backend's host config but network none",
	}[v]
}

// coldPhases splits cold starts into phases, by phase name.
type coldPhases struct {
	create, start, ready, total runtimeSample
	// load and invoke are only measured through the backend.
	load, invoke runtimeSample
}

// coldSet holds every cold-start measurement, taken interleaved so that a
// drifting host load affects every variant alike.
type coldSet struct {
	bare    [bareVariants]coldPhases
	backend coldPhases
}

// measureCold runs ColdRuns rounds; each round does one cold start of every
// bare variant and one through the backend, in a rotating order.
func measureCold(b *testing.B, env *runtimeEnv) (coldSet, error) {
	{
		ctx := benchCtx(b, 20*time.Minute)
		var set coldSet
		steps := int(bareVariants) + 1
		for round := -1; round < ColdRuns; round++ { // round -1 is an unmeasured warm-up
			for k := range steps {
				step := (k + max(round, 0)) % steps
				if step == int(bareVariants) {
					c, s, l, inv, err := backendColdStart(ctx, env, b)
					if err != nil {
						return set, err
					}
					if round >= 0 {
						p := &set.backend
						p.create = append(p.create, c)
						p.start = append(p.start, s)
						p.ready = append(p.ready, c+s)
						p.load = append(p.load, l)
						p.invoke = append(p.invoke, inv)
						p.total = append(p.total, c+s+l+inv)
					}
					continue
				}
				c, s, r, err := bareColdStart(ctx, env, bareVariant(step))
				if err != nil {
					return set, err
				}
				if round >= 0 {
					p := &set.bare[step]
					p.create = append(p.create, c)
					p.start = append(p.start, s)
					p.ready = append(p.ready, r)
					p.total = append(p.total, c+s+r)
				}
			}
		}
		return set, nil
	}
}

func line(label string, s runtimeSample) string {
	return fmt.Sprintf("%-20s p50 %s  p99 %s  mean %s", label, ms(s.percentile(50)), ms(s.percentile(99)), ms(s.mean()))
}

// reportBare writes the results of one bare variant.
func reportBare(b *testing.B, v bareVariant, t coldPhases) {
	runtimeResults.setLines(b, v.String(),
		v.describe(),
		line("create+start+ready", t.total),
		line("docker create", t.create),
		line("docker start (API)", t.start),
		line("ready after start", t.ready),
	)
}

// bareColdStart does one bare cold start and removes the container (untimed).
func bareColdStart(ctx context.Context, env *runtimeEnv, v bareVariant) (create, start, ready time.Duration, err error) {
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
	if v != bareMinimal {
		pids := int64(docker.PidsLimit)
		hc.CapDrop = []string{"ALL"}
		hc.CapAdd = docker.Capabilities
		hc.ReadonlyRootfs = true
		hc.Mounts = append(hc.Mounts,
			mount.Mount{Type: mount.TypeTmpfs, Target: docker.TmpPath, TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20, Mode: 0o1777}},
			mount.Mount{Type: mount.TypeTmpfs, Target: executor.CodeDir, TmpfsOptions: &mount.TmpfsOptions{SizeBytes: docker.CodeSizeBytes, Mode: 0o755}})
		hc.SecurityOpt = []string{"no-new-privileges"}
		hc.Resources = dcontainer.Resources{Memory: coldMemoryMB << 20, MemorySwap: coldMemoryMB << 20, PidsLimit: &pids}
	}
	if v == bareNoNetwork {
		hc.NetworkMode = "none"
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

// benchCold measures cold starts: bare Docker (raw SDK create + start +
// ready FIFO, three host configurations) and the backend's Create + Start +
// Load + first Invoke, interleaved.
func benchCold(b *testing.B, env *runtimeEnv) {
	set, err := measureCold(b, env)
	if err != nil {
		b.Fatal(err)
	}
	for v := range bareVariants {
		reportBare(b, v, set.bare[v])
	}
	t, bare := set.backend, set.bare[bareFull]
	total := float64(t.total.percentile(50)) / float64(bare.total.percentile(50))
	ready := float64(t.ready.percentile(50)) / float64(bare.total.percentile(50))
	b.ReportMetric(msf(bare.total.percentile(50)), "bare-p50-ms")
	b.ReportMetric(msf(bare.create.percentile(50)), "bare-create-p50-ms")
	b.ReportMetric(msf(bare.start.percentile(50)), "bare-start-p50-ms")
	b.ReportMetric(msf(bare.ready.percentile(50)), "bare-ready-after-start-p50-ms")
	b.ReportMetric(msf(set.bare[bareNoNetwork].total.percentile(50)), "bare-nonet-p50-ms")
	b.ReportMetric(msf(t.total.percentile(50)), "cold-p50-ms")
	b.ReportMetric(msf(t.total.percentile(99)), "cold-p99-ms")
	b.ReportMetric(msf(t.ready.percentile(50)), "create+start-p50-ms")
	b.ReportMetric(msf(t.load.percentile(50)), "load-p50-ms")
	b.ReportMetric(total, "cold/bare")
	b.ReportMetric(ready, "create+start/bare")
	b.ReportMetric(0, "ns/op")
	runtimeResults.setLines(b, "ColdBackend",
		"cold start through the backend: Create + Start (until ready) + Load + first Invoke of a no-op",
		line("total", t.total),
		line("Create", t.create),
		line("Start (to ready)", t.start),
		line("Create+Start", t.ready),
		line("Load", t.load),
		line("first Invoke", t.invoke),
		fmt.Sprintf("cold total   / bare create+start+ready (p50): %.3f", total),
		fmt.Sprintf("Create+Start / bare create+start+ready (p50): %.3f", ready),
	)
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

// benchSpecialize measures Load + first Invoke on an already-running,
// function-agnostic container that has idled for stemSettle.
func benchSpecialize(b *testing.B, env *runtimeEnv) {
	t, err := func() (specTimes, error) {
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
	}()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(msf(t.total.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.total.percentile(99)), "p99-ms")
	b.ReportMetric(msf(t.load.percentile(50)), "load-p50-ms")
	b.ReportMetric(msf(t.invoke.percentile(50)), "first-invoke-p50-ms")
	b.ReportMetric(0, "ns/op")
	runtimeResults.setLines(b, "Specialize",
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

// benchWarm measures WarmRuns sequential invocations of a no-op over one
// keep-alive connection, through the backend or directly on an executor client.
func benchWarm(b *testing.B, env *runtimeEnv, direct bool) {
	key, what := "WarmBackend", "warm no-op invocations through the backend (Runtime.Invoke), sequential, keep-alive"
	if direct {
		key, what = "WarmExecutorDirect", "warm no-op invocations directly on executor.Client, sequential, keep-alive"
	}
	t, err := func() (warmTimes, error) {
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
	}()
	if err != nil {
		b.Fatal(err)
	}
	rps := float64(len(t.lat)) / t.elapsed.Seconds()
	b.ReportMetric(msf(t.lat.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.lat.percentile(99)), "p99-ms")
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(float64(t.lat.percentile(50).Nanoseconds()), "ns/op")
	runtimeResults.setLines(b, key,
		what,
		line("latency", t.lat),
		line("in-handler Duration", t.inDocker),
		fmt.Sprintf("throughput           %.0f req/s (one client, one container)", rps),
	)
}

// benchWarmParallel measures throughput with one keep-alive client per
// container and as many containers as CPUs (an executor serves one
// invocation at a time), WarmRuns invocations in total.
func benchWarmParallel(b *testing.B, env *runtimeEnv) {
	p := runtime.NumCPU()
	t, err := func() (warmTimes, error) {
		ctx := benchCtx(b, 10*time.Minute)
		ids := make([]string, 0, p)
		defer func() {
			for _, id := range ids {
				_ = env.rt.Remove(context.WithoutCancel(ctx), id)
			}
		}()
		for range p {
			id, err := env.rt.Create(ctx, container.Spec{Name: env.name("par"), Image: runtimeBenchImage, MemoryMB: coldMemoryMB, Labels: env.labels()})
			if err != nil {
				return warmTimes{}, err
			}
			ids = append(ids, id)
			if err := env.rt.Start(ctx, id); err != nil {
				return warmTimes{}, err
			}
			if err := env.rt.Load(ctx, id, container.LoadRequest{Handler: noopHandler, Code: noop(b)}); err != nil {
				return warmTimes{}, err
			}
			for range warmup {
				if _, err := env.rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}}); err != nil {
					return warmTimes{}, err
				}
			}
		}
		lats := make([]runtimeSample, p)
		errs := make([]error, p)
		var wg sync.WaitGroup
		start := time.Now()
		for i, id := range ids {
			wg.Go(func() {
				for range WarmRuns / p {
					t0 := time.Now()
					res, err := env.rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}})
					if err == nil && !res.Success {
						err = fmt.Errorf("no-op failed: %s", res.Error)
					}
					if err != nil {
						errs[i] = err
						return
					}
					lats[i] = append(lats[i], time.Since(t0))
				}
			})
		}
		wg.Wait()
		t := warmTimes{elapsed: time.Since(start)}
		for i := range ids {
			if errs[i] != nil {
				return t, errs[i]
			}
			t.lat = append(t.lat, lats[i]...)
		}
		return t, nil
	}()
	if err != nil {
		b.Fatal(err)
	}
	rps := float64(len(t.lat)) / t.elapsed.Seconds()
	b.ReportMetric(msf(t.lat.percentile(50)), "p50-ms")
	b.ReportMetric(msf(t.lat.percentile(99)), "p99-ms")
	b.ReportMetric(rps, "req/s")
	b.ReportMetric(0, "ns/op")
	runtimeResults.setLines(b, "WarmBackendParallel",
		fmt.Sprintf("warm no-op invocations through the backend, %d containers, one keep-alive client each", p),
		line("latency", t.lat),
		fmt.Sprintf("throughput           %.0f req/s (all clients)", rps),
	)
}
