package fake_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/containertest"
	"github.com/serverledge/serverledge/internal/container/fake"
)

const image = "serverledge/runtime-python:latest"

// newSetup wires the fake into the conformance suite: each fixture is a Go
// func registered under its own handler, with a valid code archive.
func newSetup(t *testing.T) (*fake.Runtime, containertest.Setup) {
	rt := fake.New(fake.Options{Funcs: map[string]fake.Func{
		"ct.echo": fake.Echo,
		"ct.print": func(_ context.Context, call *fake.Call) (any, error) {
			fmt.Fprintln(call.Stdout, containertest.OutputMarker)
			return "printed", nil
		},
		"ct.raise": func(context.Context, *fake.Call) (any, error) {
			return nil, errors.New("RuntimeError: " + containertest.ErrorMarker)
		},
		"ct.loop": fake.Loop,
		"ct.hog":  fake.Hog(1024),
		"ct.meet": meet(containertest.MeetCount),
	}})
	code := containertest.Files(t, map[string]string{"main.py": "def handler(params, context):\n    return params\n"})
	fixture := func(h string) containertest.Fixture { return containertest.Fixture{Handler: h, Code: code} }
	return rt, containertest.Setup{
		Runtime: rt,
		Image:   image,
		Echo:    fixture("ct.echo"),
		Print:   fixture("ct.print"),
		Raise:   fixture("ct.raise"),
		Loop:    fixture("ct.loop"),
		Hog:     fixture("ct.hog"),
		Meet:    fixture("ct.meet"),
		Limits: func(_ context.Context, id string) (int64, float64, error) {
			return rt.Limits(id)
		},
		Kill: func(_ context.Context, id string) error {
			return rt.Kill(id)
		},
		Timeout: 30 * time.Second,
	}
}

func TestConformance(t *testing.T) {
	rt, setup := newSetup(t)
	containertest.Run(t, setup)
	t.Cleanup(func() {
		if live := rt.Stats().Live; live != 0 {
			t.Errorf("%d containers left after the suite", live)
		}
	})
}

// lifecycle creates, starts and loads a container running handler.
func lifecycle(t *testing.T, rt *fake.Runtime, name, handler string, memoryMB int64) string {
	t.Helper()
	ctx := context.Background()
	id, err := rt.Create(ctx, container.Spec{Name: name, Image: image, MemoryMB: memoryMB})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	code := containertest.Files(t, map[string]string{"f": "x"})
	if err := rt.Load(ctx, id, container.LoadRequest{Handler: handler, Code: code}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return id
}

func TestCountersTrackLifecycle(t *testing.T) {
	rt := fake.New(fake.Options{})
	ctx := context.Background()
	a := lifecycle(t, rt, "a", "echo", 128)
	lifecycle(t, rt, "b", "echo", 256)
	if _, err := rt.Invoke(ctx, a, container.InvokeRequest{}); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if err := rt.Resize(ctx, a, 64, 1); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	got := rt.Stats()
	want := fake.Stats{Creates: 2, Starts: 2, Resizes: 1, Loads: 2, Invokes: 1, Live: 2, Running: 2, MemoryMB: 64 + 256}
	if got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if err := rt.Remove(ctx, a); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	got = rt.Stats()
	if got.Removes != 1 || got.Live != 1 || got.MemoryMB != 256 {
		t.Errorf("after Remove: Stats = %+v, want 1 remove, 1 live, 256 MB", got)
	}
}

func TestInjectedLatencyHonoursContext(t *testing.T) {
	rt := fake.New(fake.Options{Latency: map[fake.Op]time.Duration{fake.OpStart: time.Hour}})
	id, err := rt.Create(context.Background(), container.Spec{Name: "slow", Image: image})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := rt.Start(ctx, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start with an hour of latency: error %v, want DeadlineExceeded", err)
	}
	rt.SetLatency(fake.OpStart, 0)
	if err := rt.Start(context.Background(), id); err != nil {
		t.Fatalf("Start without latency: %v", err)
	}
	if got := rt.Stats().Running; got != 1 {
		t.Errorf("Running = %d, want 1", got)
	}
}

func TestInjectedLatencyDelays(t *testing.T) {
	const delay = 30 * time.Millisecond
	rt := fake.New(fake.Options{Latency: map[fake.Op]time.Duration{fake.OpCreate: delay}})
	start := time.Now()
	if _, err := rt.Create(context.Background(), container.Spec{Name: "c", Image: image}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("Create took %v, want at least the injected %v", took, delay)
	}
}

func TestFailNext(t *testing.T) {
	boom := errors.New("daemon on fire")
	tests := []struct {
		name    string
		inject  error
		wantErr error
	}{
		{"given error", boom, boom},
		{"default error", nil, fake.ErrInjected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := fake.New(fake.Options{})
			rt.FailNext(fake.OpCreate, tc.inject)
			_, err := rt.Create(context.Background(), container.Spec{Name: "c", Image: image})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("first Create: error %v, want %v", err, tc.wantErr)
			}
			if _, err := rt.Create(context.Background(), container.Spec{Name: "c", Image: image}); err != nil {
				t.Fatalf("second Create: %v, want success (failure was one-shot)", err)
			}
			if got := rt.Stats().Creates; got != 1 {
				t.Errorf("Creates = %d, want 1", got)
			}
		})
	}
}

func TestKillRetiresContainer(t *testing.T) {
	rt := fake.New(fake.Options{})
	ctx := context.Background()
	id := lifecycle(t, rt, "k", "sleep", 128)
	done := make(chan error, 1)
	go func() {
		_, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{"ms": 60000.0}})
		done <- err
	}()
	// Kill once the invocation is in flight.
	deadline := time.Now().Add(5 * time.Second)
	for rt.Stats().Invokes == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := rt.Kill(id); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := <-done; !errors.Is(err, container.ErrCrashed) {
		t.Errorf("in-flight Invoke: error %v, want ErrCrashed", err)
	}
	if _, err := rt.Invoke(ctx, id, container.InvokeRequest{}); !errors.Is(err, container.ErrUnavailable) {
		t.Errorf("Invoke after Kill: error %v, want ErrUnavailable", err)
	}
	list, err := rt.List(ctx, nil)
	if err != nil || len(list) != 1 || list[0].Running {
		t.Errorf("List after Kill = %+v, %v, want one container not running", list, err)
	}
}

func TestCallerCancelRetiresContainer(t *testing.T) {
	rt := fake.New(fake.Options{})
	id := lifecycle(t, rt, "c", "loop", 128)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := rt.Invoke(ctx, id, container.InvokeRequest{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Invoke with an expiring context: error %v, want DeadlineExceeded", err)
	}
	if _, err := rt.Invoke(context.Background(), id, container.InvokeRequest{}); !errors.Is(err, container.ErrUnusable) {
		t.Errorf("next Invoke: error %v, want ErrUnusable", err)
	}
}

func TestPanickingFuncCrashes(t *testing.T) {
	rt := fake.New(fake.Options{})
	rt.Register("panic", func(context.Context, *fake.Call) (any, error) { panic("kaboom") })
	id := lifecycle(t, rt, "p", "panic", 128)
	_, err := rt.Invoke(context.Background(), id, container.InvokeRequest{})
	if !errors.Is(err, container.ErrCrashed) || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("Invoke of a panicking func: error %v, want ErrCrashed mentioning the panic", err)
	}
}

func TestBuiltins(t *testing.T) {
	rt := fake.New(fake.Options{})
	ctx := context.Background()
	tests := []struct {
		handler     string
		params      map[string]any
		wantSuccess bool
		wantResult  string
		wantOutput  string
		wantError   string
	}{
		{"echo", map[string]any{"a": "b"}, true, `{"a":"b"}`, "", ""},
		{"print", map[string]any{"text": "hi"}, true, `"ok"`, "hi\n", ""},
		{"sleep", map[string]any{"ms": 1.0}, true, `{"ms":1}`, "", ""},
		{"fail", map[string]any{"message": "nope"}, false, "", "", "nope"},
		{"hog", map[string]any{"mb": 3.0}, true, "3", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.handler, func(t *testing.T) {
			id := lifecycle(t, rt, "b-"+tc.handler, tc.handler, 128)
			res, err := rt.Invoke(ctx, id, container.InvokeRequest{Params: tc.params, ReturnOutput: true})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if res.Success != tc.wantSuccess || res.Result != tc.wantResult || res.Output != tc.wantOutput || res.Error != tc.wantError {
				t.Errorf("Invoke = %+v, want Success %v Result %q Output %q Error %q",
					res, tc.wantSuccess, tc.wantResult, tc.wantOutput, tc.wantError)
			}
		})
	}
}

func TestInvocationsOfOneContainerAreSerialized(t *testing.T) {
	rt := fake.New(fake.Options{})
	var mu sync.Mutex
	active, peak := 0, 0
	rt.Register("track", func(ctx context.Context, _ *fake.Call) (any, error) {
		mu.Lock()
		active++
		peak = max(peak, active)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		active--
		mu.Unlock()
		return nil, nil
	})
	id := lifecycle(t, rt, "s", "track", 128)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := rt.Invoke(context.Background(), id, container.InvokeRequest{}); err != nil {
				t.Errorf("Invoke: %v", err)
			}
		})
	}
	wg.Wait()
	if peak != 1 {
		t.Errorf("peak concurrent invocations in one container = %d, want 1", peak)
	}
	if got := rt.Stats().Invokes; got != 8 {
		t.Errorf("Invokes = %d, want 8", got)
	}
}

func TestDuplicateNameRefused(t *testing.T) {
	rt := fake.New(fake.Options{})
	ctx := context.Background()
	if _, err := rt.Create(ctx, container.Spec{Name: "dup", Image: image}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := rt.Create(ctx, container.Spec{Name: "dup", Image: image}); err == nil {
		t.Fatal("second Create with the same name succeeded")
	}
}

func TestLoadedConcurrencyBoundsParallelInvocations(t *testing.T) {
	rt := fake.New(fake.Options{})
	const n = 3
	var (
		mu           sync.Mutex
		active, peak int
		once         sync.Once
		all          = make(chan struct{})
	)
	rt.Register("meet", func(ctx context.Context, _ *fake.Call) (any, error) {
		mu.Lock()
		active++
		peak = max(peak, active)
		if active == n {
			once.Do(func() { close(all) })
		}
		mu.Unlock()
		select {
		case <-all:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		mu.Lock()
		active--
		mu.Unlock()
		return nil, nil
	})
	ctx := context.Background()
	id, err := rt.Create(ctx, container.Spec{Name: "conc", Image: image, MemoryMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	code := containertest.Files(t, map[string]string{"f": "x"})
	if err := rt.Load(ctx, id, container.LoadRequest{Handler: "meet", Code: code, Concurrency: n}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 * n {
		wg.Go(func() {
			ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := rt.Invoke(ictx, id, container.InvokeRequest{}); err != nil {
				t.Errorf("Invoke: %v", err)
			}
		})
	}
	wg.Wait()
	if peak != n {
		t.Errorf("peak concurrent invocations = %d, want %d", peak, n)
	}
}

// meet returns a func that returns "met" once n calls of it are under way
// at the same time, for the suite's Meet fixture; calls arriving in later
// groups of n meet again.
func meet(n int) fake.Func {
	var (
		mu      sync.Mutex
		waiting int
		group   = make(chan struct{})
	)
	return func(ctx context.Context, _ *fake.Call) (any, error) {
		mu.Lock()
		mine := group
		waiting++
		if waiting == n {
			close(group)
			group, waiting = make(chan struct{}), 0
		}
		mu.Unlock()
		select {
		case <-mine:
			return "met", nil
		case <-ctx.Done():
			return nil, fmt.Errorf("TimeoutError: fewer than %d calls met: %w", n, ctx.Err())
		}
	}
}
