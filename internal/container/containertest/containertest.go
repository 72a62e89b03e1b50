// Package containertest is the conformance suite every container.Runtime
// must pass. A backend's test calls Run with a Setup holding the runtime and
// its fixtures (function code and handler for each behaviour the suite
// needs); the Docker backend and the in-process fake run the same suite.
//
// Decisions the suite pins down:
//   - a refused archive (ErrBadCode) leaves the container unspecialized: a
//     later Load with good code succeeds and serves;
//   - a handler that cannot be loaded (missing module or file) is refused
//     with ErrBadCode too; the backend may then retire the container, since
//     the function's own module code may have run (the Docker executor
//     does): the next Load either succeeds and serves, or returns
//     ErrUnusable;
//   - after a timeout (ErrTimeout) or a crash (ErrCrashed) every later
//     Invoke returns ErrUnusable;
//   - a function error is not a container error: Success false, nil error,
//     and the container keeps serving;
//   - a container loaded with LoadRequest.Concurrency n runs n invocations
//     at the same time;
//   - Remove of a missing container is not an error; Invoke on a removed
//     container returns ErrNotFound;
//   - Invoke on a container that died while idle returns ErrUnavailable
//     (the function never got its input), and Watch reports the death and
//     the removal of the containers carrying the watched labels only.
package containertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// Markers the fixtures must produce.
const (
	// OutputMarker is what the Print fixture writes to its standard output.
	OutputMarker = "containertest-output-7d1f"
	// ErrorMarker appears in the message of the error the Raise fixture raises.
	ErrorMarker = "containertest-error-3b9c"
)

// LabelRun is set on every container the suite creates, with a value unique
// to the run; the suite removes whatever carries it when it ends.
const LabelRun = "serverledge.containertest"

// MeetCount is how many invocations of the Meet fixture must run at once.
const MeetCount = 3

// MissingImage is an image name no backend has.
const MissingImage = "serverledge/containertest-missing:never"

// Fixture is a function for the backend under test.
type Fixture struct {
	// Handler is the entry point (python module.function, or a fake func name).
	Handler string
	// Code is the tar archive to load.
	Code []byte
}

// Setup is what a backend hands to the suite.
type Setup struct {
	// Runtime is the backend under test.
	Runtime container.Runtime
	// Image is the runtime image the fixtures run on.
	Image string
	// Echo returns its parameters unchanged.
	Echo Fixture
	// Print writes OutputMarker to its standard output and returns.
	Print Fixture
	// Raise fails with an error whose message contains ErrorMarker.
	Raise Fixture
	// Loop never returns.
	Loop Fixture
	// Hog allocates and touches far more than 64 MB of memory.
	Hog Fixture
	// Meet returns "met" only once MeetCount invocations of it run at the
	// same time in one container (a barrier), and fails otherwise.
	Meet Fixture
	// Limits reports the memory limit (MB) and CPU cap the backend applied
	// to a container, as the backend itself sees them (e.g. Docker inspect).
	Limits func(ctx context.Context, id string) (memoryMB int64, cpus float64, err error)
	// Kill kills a container's main process behind the runtime's back, as
	// an operator or the kernel would (e.g. docker kill).
	Kill func(ctx context.Context, id string) error
	// SkipMemory, when not empty, says why the backend cannot run the
	// memory-limit test; the test is skipped with that reason.
	SkipMemory string
	// Timeout bounds each test; default 2 minutes.
	Timeout time.Duration
}

// suite carries one run's state.
type suite struct {
	Setup
	run string
	mu  sync.Mutex
	seq int
}

// Run runs the conformance suite against s.
func Run(t *testing.T, s Setup) {
	if s.Timeout <= 0 {
		s.Timeout = 2 * time.Minute
	}
	st := &suite{Setup: s, run: randomHex(4)}
	t.Cleanup(func() { st.sweep(t) })

	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"EchoReturnsParams", testEcho},
		{"OutputCapturedOnlyWhenAsked", testOutput},
		{"FunctionErrorIsNotContainerError", testFunctionError},
		{"TimeoutRetiresContainer", testTimeout},
		{"MemoryLimitCrashesCleanly", testMemory},
		{"RefusedCodeLeavesContainerUnspecialized", testRefusedCode},
		{"RefusedHandler", testRefusedHandler},
		{"SecondLoadRefused", testAlreadyLoaded},
		{"InvokeBeforeLoad", testNotLoaded},
		{"StemCellSpecializedAfterStart", testStemCell},
		{"LabelsAndList", testLabelsAndList},
		{"Resize", testResize},
		{"Images", testImages},
		{"RemovedContainer", testRemoved},
		{"ParallelContainers", testParallel},
		{"ConcurrentInvocations", testConcurrent},
		{"WatchReportsDeathAndRemoval", testWatch},
		{"DeadContainerUnavailable", testDeadUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, st) })
	}
}

// sweep removes every container of this run, including ones a failed test left.
func (s *suite) sweep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	left, err := s.Runtime.List(ctx, map[string]string{LabelRun: s.run})
	if err != nil {
		t.Errorf("sweep: list: %v", err)
		return
	}
	for _, c := range left {
		if err := s.Runtime.Remove(ctx, c.ID); err != nil {
			t.Errorf("sweep: remove %s: %v", c.Name, err)
		}
	}
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// spec returns a container spec with the suite's labels.
func (s *suite) spec(function string, memoryMB int64, cpus float64) container.Spec {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	return container.Spec{
		Name:     fmt.Sprintf("sl-ct-%s-%d", s.run, n),
		Image:    s.Image,
		MemoryMB: memoryMB,
		CPUs:     cpus,
		Labels: map[string]string{
			container.LabelNode:     "containertest",
			container.LabelFunction: function,
			container.LabelRuntime:  "containertest",
			LabelRun:                s.run,
		},
	}
}

// create creates a container and removes it when the test ends.
func (s *suite) create(t *testing.T, ctx context.Context, spec container.Spec) string {
	t.Helper()
	id, err := s.Runtime.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Runtime.Remove(rctx, id); err != nil {
			t.Errorf("Remove %s: %v", spec.Name, err)
		}
	})
	return id
}

// started creates and starts a container for function.
func (s *suite) started(t *testing.T, ctx context.Context, function string, memoryMB int64) string {
	t.Helper()
	id := s.create(t, ctx, s.spec(function, memoryMB, 0))
	if err := s.Runtime.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return id
}

// loaded creates, starts and loads a container with f.
func (s *suite) loaded(t *testing.T, ctx context.Context, name string, f Fixture, memoryMB int64) string {
	t.Helper()
	id := s.started(t, ctx, name, memoryMB)
	if err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: f.Handler, Code: f.Code}); err != nil {
		t.Fatalf("Load %s: %v", f.Handler, err)
	}
	return id
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// params are the parameters the echo tests send.
func params() map[string]any {
	return map[string]any{
		"name":   "world",
		"n":      42,
		"pi":     3.5,
		"ok":     true,
		"none":   nil,
		"list":   []any{1, "two", 3.0},
		"nested": map[string]any{"a": map[string]any{"b": "c"}},
		"utf8":   "héllo ✓",
	}
}

// sameJSON reports whether result (JSON text) encodes the same value as want.
func sameJSON(t *testing.T, result string, want any) {
	t.Helper()
	var got any
	if err := json.Unmarshal([]byte(result), &got); err != nil {
		t.Fatalf("Result %q is not JSON: %v", result, err)
	}
	raw, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var norm any
	if err := json.Unmarshal(raw, &norm); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, norm) {
		t.Fatalf("Result = %s, want %s", result, raw)
	}
}

func testEcho(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "echo", s.Echo, 128)
	for i := range 2 {
		res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params(), RequestID: fmt.Sprintf("req-%d", i)})
		if err != nil {
			t.Fatalf("Invoke #%d: %v", i+1, err)
		}
		if !res.Success {
			t.Fatalf("Invoke #%d: Success false, Error %q", i+1, res.Error)
		}
		sameJSON(t, res.Result, params())
		if res.Output != "" {
			t.Errorf("Output = %q without ReturnOutput, want empty", res.Output)
		}
		if res.Duration < 0 {
			t.Errorf("Duration = %v, want ≥ 0", res.Duration)
		}
	}
	res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{})
	if err != nil || !res.Success {
		t.Fatalf("Invoke without params: %+v, %v", res, err)
	}
	sameJSON(t, res.Result, map[string]any{})
}

func testOutput(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "print", s.Print, 128)
	for _, tc := range []struct {
		name         string
		returnOutput bool
	}{
		{"asked", true},
		{"not asked", false},
		{"asked again", true},
	} {
		res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{ReturnOutput: tc.returnOutput, Params: map[string]any{}})
		if err != nil {
			t.Fatalf("%s: Invoke: %v", tc.name, err)
		}
		if !res.Success {
			t.Fatalf("%s: Success false, Error %q", tc.name, res.Error)
		}
		has := strings.Contains(res.Output, OutputMarker)
		if tc.returnOutput && !has {
			t.Errorf("%s: Output = %q, want it to contain %q", tc.name, res.Output, OutputMarker)
		}
		if !tc.returnOutput && res.Output != "" {
			t.Errorf("%s: Output = %q, want empty", tc.name, res.Output)
		}
		if tc.returnOutput && strings.Count(res.Output, OutputMarker) != 1 {
			t.Errorf("%s: Output = %q, want exactly this invocation's output", tc.name, res.Output)
		}
	}
}

func testFunctionError(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "raise", s.Raise, 128)
	for i := range 2 {
		res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}})
		if err != nil {
			t.Fatalf("Invoke #%d: error %v, want a result with Success false", i+1, err)
		}
		if res.Success {
			t.Fatalf("Invoke #%d: Success true, want false", i+1)
		}
		if !strings.Contains(res.Error, ErrorMarker) {
			t.Errorf("Invoke #%d: Error = %q, want it to contain %q", i+1, res.Error, ErrorMarker)
		}
	}
}

// assertRetired checks that the container refuses further invocations.
func assertRetired(t *testing.T, s *suite, ctx context.Context, id string) {
	t.Helper()
	_, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}, Timeout: 5 * time.Second})
	if !errors.Is(err, container.ErrUnusable) {
		t.Errorf("next Invoke: error %v, want ErrUnusable", err)
	}
}

func testTimeout(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "loop", s.Loop, 128)
	_, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}, Timeout: 500 * time.Millisecond})
	if !errors.Is(err, container.ErrTimeout) {
		t.Fatalf("Invoke of an infinite loop: error %v, want ErrTimeout", err)
	}
	assertRetired(t, s, ctx, id)
}

func testMemory(t *testing.T, s *suite) {
	if s.SkipMemory != "" {
		t.Skip(s.SkipMemory)
	}
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "hog", s.Hog, 64)
	res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{}, Timeout: time.Minute})
	if !errors.Is(err, container.ErrCrashed) {
		t.Fatalf("Invoke of a memory hog under 64 MB: result %+v, error %v, want ErrCrashed", res, err)
	}
	t.Logf("memory hog: %v", err)
	if msg := strings.ToLower(err.Error()); !strings.Contains(msg, "memory") {
		t.Errorf("error %q does not mention memory", err)
	}
	assertRetired(t, s, ctx, id)
}

func testRefusedCode(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.started(t, ctx, "refused", 128)
	good := "main.py"
	bad := []struct {
		name    string
		handler string
		code    []byte
	}{
		{"parent path", s.Echo.Handler, Tar(t, Entry{Name: good, Body: "x = 1\n"}, Entry{Name: "../x", Body: "escaped"})},
		{"absolute path", s.Echo.Handler, Tar(t, Entry{Name: "/etc/x", Body: "escaped"})},
		{"symlink escaping", s.Echo.Handler, Tar(t, Entry{Name: "lnk", Type: '2', Linkname: "../../etc/passwd"})},
		{"absolute symlink", s.Echo.Handler, Tar(t, Entry{Name: "lnk", Type: '2', Linkname: "/etc/passwd"})},
		{"write through symlink", s.Echo.Handler, Tar(t,
			Entry{Name: "dir", Type: '2', Linkname: "."},
			Entry{Name: "dir/x", Body: "through the link"})},
		{"hard link outside", s.Echo.Handler, Tar(t, Entry{Name: "hl", Type: '1', Linkname: "../etc/passwd"})},
		{"not a tar", s.Echo.Handler, []byte("this is not a tar archive, not even close; it is long enough to fill a header block? no.")},
	}
	for _, tc := range bad {
		err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: tc.handler, Code: tc.code})
		if !errors.Is(err, container.ErrBadCode) {
			t.Errorf("%s: Load error %v, want ErrBadCode", tc.name, err)
		}
	}
	if err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: s.Echo.Handler, Code: s.Echo.Code}); err != nil {
		t.Fatalf("good Load after refused ones: %v", err)
	}
	res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()})
	if err != nil || !res.Success {
		t.Fatalf("Invoke after refused loads: %+v, %v", res, err)
	}
	sameJSON(t, res.Result, params())
}

func testRefusedHandler(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.started(t, ctx, "badhandler", 128)
	err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: "containertest_missing.handler", Code: s.Echo.Code})
	if !errors.Is(err, container.ErrBadCode) {
		t.Fatalf("Load with a missing handler: error %v, want ErrBadCode", err)
	}
	err = s.Runtime.Load(ctx, id, container.LoadRequest{Handler: s.Echo.Handler, Code: s.Echo.Code})
	if errors.Is(err, container.ErrUnusable) {
		return // retired: allowed, see the package documentation
	}
	if err != nil {
		t.Fatalf("Load after a refused handler: error %v, want success or ErrUnusable", err)
	}
	res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()})
	if err != nil || !res.Success {
		t.Fatalf("Invoke after a refused handler and a good Load: %+v, %v", res, err)
	}
	sameJSON(t, res.Result, params())
}

func testAlreadyLoaded(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "twice", s.Echo, 128)
	err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: s.Print.Handler, Code: s.Print.Code})
	if !errors.Is(err, container.ErrAlreadyLoaded) {
		t.Fatalf("second Load: error %v, want ErrAlreadyLoaded", err)
	}
	res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()})
	if err != nil || !res.Success {
		t.Fatalf("Invoke after refused second Load: %+v, %v", res, err)
	}
	sameJSON(t, res.Result, params())
}

func testNotLoaded(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.started(t, ctx, "", 128)
	_, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()})
	if !errors.Is(err, container.ErrNotLoaded) {
		t.Fatalf("Invoke before Load: error %v, want ErrNotLoaded", err)
	}
}

func testStemCell(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	// A function-agnostic container, started before any code exists.
	id := s.started(t, ctx, "", 128)
	if err := s.Runtime.Resize(ctx, id, 192, 0.5); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	if err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: s.Echo.Handler, Code: s.Echo.Code}); err != nil {
		t.Fatalf("Load into a started stem cell: %v", err)
	}
	res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()})
	if err != nil || !res.Success {
		t.Fatalf("first Invoke after specialization: %+v, %v", res, err)
	}
	sameJSON(t, res.Result, params())
}

func testLabelsAndList(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	fnA := "list-a-" + randomHex(3)
	fnB := "list-b-" + randomHex(3)
	specA := s.spec(fnA, 64, 0)
	specA.Labels[LabelRun+".case"] = "list"
	specB := s.spec(fnB, 64, 0)
	specB.Labels[LabelRun+".case"] = "list"
	idA := s.create(t, ctx, specA)
	idB := s.create(t, ctx, specB)
	if err := s.Runtime.Start(ctx, idB); err != nil {
		t.Fatalf("Start: %v", err)
	}

	byCase := map[string]string{LabelRun: s.run, LabelRun + ".case": "list"}
	all, err := s.Runtime.List(ctx, byCase)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got := ids(all); !slices.Equal(got, sorted(idA, idB)) {
		t.Fatalf("List(case) = %v, want %v", got, sorted(idA, idB))
	}
	for _, c := range all {
		want := specA
		if c.ID == idB {
			want = specB
		}
		if c.Name != want.Name {
			t.Errorf("container %s: Name %q, want %q", c.ID, c.Name, want.Name)
		}
		for k, v := range want.Labels {
			if c.Labels[k] != v {
				t.Errorf("container %s: label %s = %q, want %q", want.Name, k, c.Labels[k], v)
			}
		}
		if c.Labels[container.LabelManaged] != "true" {
			t.Errorf("container %s: label %s = %q, want \"true\"", want.Name, container.LabelManaged, c.Labels[container.LabelManaged])
		}
		if wantRunning := c.ID == idB; c.Running != wantRunning {
			t.Errorf("container %s: Running %v, want %v", want.Name, c.Running, wantRunning)
		}
	}

	onlyA, err := s.Runtime.List(ctx, map[string]string{LabelRun: s.run, container.LabelFunction: fnA})
	if err != nil {
		t.Fatalf("List(function A): %v", err)
	}
	if got := ids(onlyA); !slices.Equal(got, []string{idA}) {
		t.Errorf("List(function A) = %v, want [%s]", got, idA)
	}
	none, err := s.Runtime.List(ctx, map[string]string{LabelRun: s.run, container.LabelFunction: "no-such-function"})
	if err != nil || len(none) != 0 {
		t.Errorf("List(no such function) = %v, %v, want nothing", ids(none), err)
	}

	if err := s.Runtime.Remove(ctx, idA); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	after, err := s.Runtime.List(ctx, byCase)
	if err != nil {
		t.Fatalf("List after Remove: %v", err)
	}
	if got := ids(after); !slices.Equal(got, []string{idB}) {
		t.Errorf("List after Remove = %v, want [%s]", got, idB)
	}
}

func ids(infos []container.Info) []string {
	out := make([]string, 0, len(infos))
	for _, c := range infos {
		out = append(out, c.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

func testResize(t *testing.T, s *suite) {
	if s.Limits == nil {
		t.Skip("backend reports no limits")
	}
	ctx := s.ctx(t)
	id := s.create(t, ctx, s.spec("resize", 128, 1))
	mem, cpus, err := s.Limits(ctx, id)
	if err != nil {
		t.Fatalf("Limits: %v", err)
	}
	if mem != 128 || !near(cpus, 1) {
		t.Errorf("limits after Create = %d MB, %.2f CPUs, want 128 MB, 1 CPU", mem, cpus)
	}
	if err := s.Runtime.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	for _, tc := range []struct {
		memoryMB int64
		cpus     float64
	}{
		{256, 0.5},
		{96, 1.5},
	} {
		if err := s.Runtime.Resize(ctx, id, tc.memoryMB, tc.cpus); err != nil {
			t.Fatalf("Resize(%d MB, %.2f): %v", tc.memoryMB, tc.cpus, err)
		}
		mem, cpus, err := s.Limits(ctx, id)
		if err != nil {
			t.Fatalf("Limits: %v", err)
		}
		if mem != tc.memoryMB || !near(cpus, tc.cpus) {
			t.Errorf("limits after Resize = %d MB, %.2f CPUs, want %d MB, %.2f", mem, cpus, tc.memoryMB, tc.cpus)
		}
	}
	if err := s.Runtime.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := s.Runtime.Resize(ctx, id, 128, 1); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("Resize of a removed container: error %v, want ErrNotFound", err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func testImages(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	ok, err := s.Runtime.ImageExists(ctx, s.Image)
	if err != nil || !ok {
		t.Errorf("ImageExists(%s) = %v, %v, want true", s.Image, ok, err)
	}
	ok, err = s.Runtime.ImageExists(ctx, MissingImage)
	if err != nil || ok {
		t.Errorf("ImageExists(%s) = %v, %v, want false", MissingImage, ok, err)
	}
	spec := s.spec("noimage", 64, 0)
	spec.Image = MissingImage
	id, err := s.Runtime.Create(ctx, spec)
	if !errors.Is(err, container.ErrImageNotFound) {
		t.Errorf("Create with a missing image: id %q, error %v, want ErrImageNotFound", id, err)
	}
	if id != "" {
		_ = s.Runtime.Remove(ctx, id)
	}
}

func testRemoved(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "removed", s.Echo, 128)
	if err := s.Runtime.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()}); !errors.Is(err, container.ErrNotFound) {
		t.Errorf("Invoke after Remove: error %v, want ErrNotFound", err)
	}
	if err := s.Runtime.Remove(ctx, id); err != nil {
		t.Errorf("second Remove: %v, want nil", err)
	}
	if err := s.Runtime.Remove(ctx, "0123456789abcdef-no-such-container"); err != nil {
		t.Errorf("Remove of an unknown id: %v, want nil", err)
	}
	left, err := s.Runtime.List(ctx, map[string]string{LabelRun: s.run, container.LabelFunction: "removed"})
	if err != nil || len(left) != 0 {
		t.Errorf("List after Remove = %v, %v, want nothing", ids(left), err)
	}
}

func testParallel(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	const n = 3
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			spec := s.spec("parallel", 128, 0)
			id, err := s.Runtime.Create(ctx, spec)
			if err != nil {
				errs <- fmt.Errorf("create: %w", err)
				return
			}
			defer func() {
				if err := s.Runtime.Remove(context.WithoutCancel(ctx), id); err != nil {
					errs <- fmt.Errorf("remove: %w", err)
				}
			}()
			if err := s.Runtime.Start(ctx, id); err != nil {
				errs <- fmt.Errorf("start: %w", err)
				return
			}
			if err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: s.Echo.Handler, Code: s.Echo.Code}); err != nil {
				errs <- fmt.Errorf("load: %w", err)
				return
			}
			p := map[string]any{"worker": float64(i)}
			for range 5 {
				res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: p})
				if err != nil {
					errs <- fmt.Errorf("invoke: %w", err)
					return
				}
				var got map[string]any
				if err := json.Unmarshal([]byte(res.Result), &got); err != nil || got["worker"] != float64(i) {
					errs <- fmt.Errorf("container %d answered %q", i, res.Result)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testConcurrent loads a container with concurrency MeetCount and checks
// that MeetCount invocations run in it at the same time: the Meet fixture
// returns only when they all have arrived.
func testConcurrent(t *testing.T, s *suite) {
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	id := s.started(t, ctx, "conc", 128)
	if err := s.Runtime.Load(ctx, id, container.LoadRequest{Handler: s.Meet.Handler, Code: s.Meet.Code, Concurrency: MeetCount}); err != nil {
		t.Fatalf("Load with concurrency %d: %v", MeetCount, err)
	}
	var wg sync.WaitGroup
	results := make([]container.InvokeResult, MeetCount)
	errs := make([]error, MeetCount)
	for i := range MeetCount {
		wg.Go(func() {
			results[i], errs[i] = s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: map[string]any{"i": i}})
		})
	}
	wg.Wait()
	for i := range MeetCount {
		if errs[i] != nil {
			t.Fatalf("invocation %d: %v", i, errs[i])
		}
		if !results[i].Success || results[i].Result != `"met"` {
			t.Errorf("invocation %d = %+v, want Success and \"met\": the %d invocations did not run at once", i, results[i], MeetCount)
		}
	}
	// The container keeps serving after the concurrent burst.
	for range MeetCount {
		wg.Go(func() {
			if res, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{}); err != nil || !res.Success {
				t.Errorf("second burst: %+v, %v", res, err)
			}
		})
	}
	wg.Wait()
}
