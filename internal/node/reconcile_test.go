package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
)

// idleContainer cold-starts a container of f, invokes and releases it, and
// returns its ID.
func idleContainer(t *testing.T, p *Pool, f *function.Function) string {
	t.Helper()
	c, _, err := p.Acquire(t.Context(), f)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if _, err := c.Invoke(t.Context(), container.InvokeRequest{}); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	p.Release(c, true)
	return c.ID()
}

func TestIdleContainerKilledLeavesThePoolOnItsEvent(t *testing.T) {
	e := newEnv(t, Config{JanitorInterval: time.Hour})
	e.start(t)
	f := testFunc("f", "v1", 128, "echo")
	id := idleContainer(t, e.pool, f)
	if err := e.fake.Kill(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed container to leave the pool", func() bool {
		st := e.pool.Stats()
		return st.Idle["f"] == 0 && st.Vanished == 1
	})
	if st := e.pool.Stats(); st.FreeMemoryMB != st.TotalMemoryMB {
		t.Errorf("FreeMemoryMB = %d after the only container died, want %d", st.FreeMemoryMB, st.TotalMemoryMB)
	}
	waitFor(t, "the dead container to be removed", func() bool { return !e.exists(id) })
	c, warm := e.acquire(t, f)
	if warm || c.ID() == id {
		t.Fatalf("Acquire after the death: warm=%v id=%s, want a new container", warm, c.ID())
	}
	if res, err := c.Invoke(t.Context(), container.InvokeRequest{}); err != nil || !res.Success {
		t.Errorf("Invoke = %+v, %v", res, err)
	}
	e.pool.Release(c, true)
}

func TestJanitorDropsContainersTheRuntimeNoLongerRuns(t *testing.T) {
	rt := fake.New(fake.Options{})
	p, err := New(deaf{rt}, Config{NodeID: "janitor-dead", MemoryMB: 1024, JanitorInterval: 20 * time.Millisecond,
		StemCells: map[string]int{"python": 1}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	id := idleContainer(t, p, testFunc("f", "v1", 128, "echo"))
	busy, _, err := p.Acquire(t.Context(), testFunc("g", "v1", 128, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a stem cell", func() bool { return p.Stats().StemCells["python"] == 1 })
	p.mu.Lock()
	stem := p.stems["python"][0].id
	p.mu.Unlock()
	for _, kill := range []string{id, stem, busy.ID()} {
		if err := rt.Kill(kill); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the janitor to drop the dead containers", func() bool {
		st := p.Stats()
		return st.Idle["f"] == 0 && st.Vanished == 3
	})
	if st := p.Stats(); st.Busy["g"] != 1 {
		t.Errorf("Busy[g] = %d, want the dead busy container counted until its release", st.Busy["g"])
	}
	// The busy one takes no new request, and is removed once released.
	if _, ok := p.TryWarm(testFunc("g", "v1", 128, "echo")); ok {
		t.Error("TryWarm handed out a dead container")
	}
	if _, err := busy.Invoke(t.Context(), container.InvokeRequest{}); !errors.Is(err, container.ErrUnavailable) {
		t.Errorf("Invoke of the dead busy container: %v, want ErrUnavailable", err)
	}
	p.Release(busy, true)
	waitFor(t, "the dead containers to be removed and the stem cell refilled", func() bool {
		infos, err := rt.List(t.Context(), nil)
		if err != nil {
			return false
		}
		for _, info := range infos {
			if !info.Running {
				return false
			}
		}
		return p.Stats().StemCells["python"] == 1
	})
}

func TestStemCellLoadFailureFallsBackToNewContainer(t *testing.T) {
	e := newEnv(t, Config{StemCells: map[string]int{"python": 1}, JanitorInterval: time.Hour})
	e.start(t)
	waitFor(t, "a stem cell", func() bool { return e.pool.Stats().StemCells["python"] == 1 })
	e.fake.FailNext(fake.OpLoad, nil)
	c, warm, err := e.pool.Acquire(t.Context(), testFunc("f", "v1", 128, "echo"))
	if err != nil || warm {
		t.Fatalf("Acquire with a failing stem-cell load = warm %v, %v; want a cold start on a new container", warm, err)
	}
	if res, err := c.Invoke(t.Context(), container.InvokeRequest{}); err != nil || !res.Success {
		t.Errorf("Invoke = %+v, %v", res, err)
	}
	if st := e.pool.Stats(); st.StemCellStarts != 0 || st.ColdStarts != 1 {
		t.Errorf("Stats = %+v, want one cold start not counted as a stem-cell start", st)
	}
	e.pool.Release(c, true)
}

func TestStemCellBadCodeDoesNotFallBack(t *testing.T) {
	e := newEnv(t, Config{StemCells: map[string]int{"python": 1}, JanitorInterval: time.Hour})
	e.start(t)
	waitFor(t, "a stem cell", func() bool { return e.pool.Stats().StemCells["python"] == 1 })
	creates := e.fake.Stats().Creates
	_, _, err := e.pool.Acquire(t.Context(), testFunc("f", "v1", 128, "no-such-handler"))
	if !errors.Is(err, container.ErrBadCode) {
		t.Fatalf("Acquire of bad code: %v, want ErrBadCode", err)
	}
	// The refiller may create a new stem cell, but no function container
	// is created for code that was refused.
	infos, err := e.fake.List(t.Context(), map[string]string{container.LabelFunction: "f"})
	if err != nil || len(infos) != 0 {
		t.Errorf("function containers after refused code = %v, %v (creates %d before)", infos, err, creates)
	}
}

func TestConcurrencySharesOneContainer(t *testing.T) {
	e := newEnv(t, Config{MemoryMB: 512, CPUs: 1})
	f := testFunc("f", "v1", 128, "echo")
	f.MaxConcurrency = 3
	f.CPUDemand = 1

	var held []*Container
	for i := range 3 {
		c, warm := e.acquire(t, f)
		if (i > 0) != warm {
			t.Fatalf("Acquire %d: warm=%v", i, warm)
		}
		if i > 0 && c != held[0] {
			t.Fatalf("Acquire %d got another container while the first had free slots", i)
		}
		held = append(held, c)
	}
	st := e.pool.Stats()
	if st.Busy["f"] != 1 || st.InFlight["f"] != 3 || st.FreeCPUs != 0 {
		t.Errorf("Stats with 3 requests in one container = busy %d, in flight %d, free CPUs %.2f; want 1, 3, 0", st.Busy["f"], st.InFlight["f"], st.FreeCPUs)
	}
	// A fourth request needs a second container, whose CPU demand does not fit.
	if _, ok := e.pool.TryWarm(f); ok {
		t.Error("TryWarm beyond MaxConcurrency succeeded")
	}
	if _, _, err := e.pool.Acquire(t.Context(), f); !isNoCapacity(err) {
		t.Errorf("Acquire beyond MaxConcurrency with the CPU budget taken: %v, want ErrNoCapacity", err)
	}
	// A busy container is never evicted, even with few requests in flight.
	e.pool.Release(held[2], true)
	e.pool.Release(held[1], true)
	other := testFunc("g", "v1", 512, "echo")
	if _, _, err := e.pool.Acquire(t.Context(), other); !isNoCapacity(err) {
		t.Errorf("Acquire needing the memory of a container with one request in flight: %v, want ErrNoCapacity", err)
	}
	// A freed slot takes a request again.
	c, warm := e.acquire(t, f)
	if !warm || c != held[0] {
		t.Errorf("Acquire after a slot freed: warm=%v, same container %v", warm, c == held[0])
	}
	e.pool.Release(c, true)
	e.pool.Release(held[0], true)
	if st := e.pool.Stats(); st.Idle["f"] != 1 || st.Busy["f"] != 0 || st.FreeCPUs != 1 {
		t.Errorf("Stats after every release = %+v, want one idle container and the CPU free", st)
	}
	if e.fake.Stats().Creates != 1 {
		t.Errorf("containers created = %d, want 1", e.fake.Stats().Creates)
	}
}

func TestConcurrencyRunsInvocationsAtOnce(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 4
	var (
		mu      sync.Mutex
		running int
		all     = make(chan struct{})
	)
	e.fake.Register("meet", func(ctx context.Context, _ *fake.Call) (any, error) {
		mu.Lock()
		running++
		if running == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return "met", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	f := testFunc("f", "v1", 128, "meet")
	f.MaxConcurrency = n
	var wg sync.WaitGroup
	for range n {
		c, _ := e.acquire(t, f)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := c.Invoke(ctx, container.InvokeRequest{})
			if err != nil || res.Result != `"met"` {
				t.Errorf("Invoke = %+v, %v; want all %d invocations to run at once in one container", res, err, n)
			}
			e.pool.Release(c, err == nil)
		})
	}
	wg.Wait()
	if got := e.fake.Stats().Creates; got != 1 {
		t.Errorf("containers created = %d, want 1", got)
	}
	if st := e.pool.Stats(); st.Idle["f"] != 1 {
		t.Errorf("Idle[f] = %d after all releases, want 1", st.Idle["f"])
	}
}

func TestUnavailableRetiresContainerAfterItsLastRequest(t *testing.T) {
	e := newEnv(t, Config{})
	f := testFunc("f", "v1", 128, "echo")
	f.MaxConcurrency = 2
	a, _ := e.acquire(t, f)
	b, _ := e.acquire(t, f)
	if a != b {
		t.Fatal("two requests of a concurrency-2 function got two containers")
	}
	e.fake.FailNext(fake.OpInvoke, container.ErrUnavailable)
	if _, err := a.Invoke(t.Context(), container.InvokeRequest{}); !errors.Is(err, container.ErrUnavailable) {
		t.Fatalf("Invoke: %v", err)
	}
	e.pool.Release(a, false)
	if _, ok := e.pool.TryWarm(f); ok {
		t.Error("TryWarm handed out a slot of a container that failed")
	}
	if !e.exists(b.ID()) {
		t.Fatal("the container was removed while a request still ran in it")
	}
	e.pool.Release(b, true)
	waitFor(t, "the failed container to be removed", func() bool { return !e.exists(b.ID()) })
}
