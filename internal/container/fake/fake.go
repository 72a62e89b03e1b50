// Package fake is an in-process container.Runtime for fast tests of the pool
// and the scheduler.
//
// Its "functions" are Go funcs registered by handler name; a container runs
// the func registered under the handler it was loaded with. Everything else
// follows the Docker backend's contract: code archives are checked with the
// same rules (package codearchive), timeouts yield ErrTimeout and retire the
// container, memory limits are tracked (a func that allocates past its
// container's limit through Call.Alloc crashes with "out of memory"), and
// labels, List, Resize, Remove and Watch behave alike. A container serves
// up to LoadRequest.Concurrency invocations at once. Latency and failures
// can be injected per operation, and counters tell tests what happened.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/serverledge/serverledge/internal/codearchive"
	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/function"
)

// DefaultTimeout is the execution timeout when an invocation sets none, as in
// the executor.
const DefaultTimeout = 60 * time.Second

// Op names a Runtime operation, for latency and failure injection.
type Op string

// Operations of the Runtime.
const (
	OpCreate Op = "create"
	OpStart  Op = "start"
	OpResize Op = "resize"
	OpLoad   Op = "load"
	OpInvoke Op = "invoke"
	OpRemove Op = "remove"
	OpList   Op = "list"
	OpWatch  Op = "watch"
)

// maxEvents bounds the events kept for Watch's replay.
const maxEvents = 1024

// ErrInjected is the error injected failures wrap unless the test gives its own.
var ErrInjected = errors.New("injected failure")

// Options configure a Runtime.
type Options struct {
	// Images are the images that exist; default the built-in runtime images.
	Images []string
	// Funcs are registered in addition to the built-in ones (see New).
	Funcs map[string]Func
	// Latency delays operations (e.g. OpCreate and OpStart to simulate cold
	// starts). A delay honours the caller's context.
	Latency map[Op]time.Duration
}

// Stats counts what the Runtime did.
type Stats struct {
	Creates, Starts, Resizes, Loads, Invokes, Removes int64
	// Live is the number of containers that exist; Running those started.
	Live, Running int
	// MemoryMB is the sum of the memory limits of the live containers.
	MemoryMB int64
}

// Runtime is the fake container.Runtime. It is safe for concurrent use.
type Runtime struct {
	mu         sync.Mutex
	funcs      map[string]Func
	images     map[string]bool
	latency    map[Op]time.Duration
	failures   map[Op][]error
	containers map[string]*fakeContainer
	seq        int
	// events is the recent history Watch replays; watchers are the live
	// subscriptions, woken through their channel when an event is added.
	events   []recorded
	eventSeq int // number of events ever recorded
	watchers map[chan struct{}]struct{}

	creates, starts, resizes, loads, invokes, removes atomic.Int64
}

var _ container.Runtime = (*Runtime)(nil)

// fakeContainer is the state of one container; fields are guarded by Runtime.mu.
type fakeContainer struct {
	id      string
	spec    container.Spec
	running bool
	handler string
	fn      Func
	env     map[string]string
	retired error
	// killed is set by Kill: the container does not run any more.
	killed   bool
	memoryMB int64
	cpus     float64
	// slots holds one token per invocation in flight; its capacity is the
	// concurrency given at Load (1 before).
	slots chan struct{}
	// stop is closed when the container is removed or killed.
	stop chan struct{}
}

// New returns a fake runtime. The built-in funcs (see Builtins) are
// registered, then opts.Funcs.
func New(opts Options) *Runtime {
	r := &Runtime{
		funcs:      Builtins(),
		images:     make(map[string]bool),
		latency:    make(map[Op]time.Duration),
		failures:   make(map[Op][]error),
		containers: make(map[string]*fakeContainer),
		watchers:   make(map[chan struct{}]struct{}),
	}
	maps.Copy(r.funcs, opts.Funcs)
	maps.Copy(r.latency, opts.Latency)
	images := opts.Images
	if images == nil {
		for _, rt := range function.BuiltinRuntimes() {
			images = append(images, rt.Image)
		}
	}
	for _, img := range images {
		r.images[img] = true
	}
	return r
}

// Register makes fn the function run for handler.
func (r *Runtime) Register(handler string, fn Func) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.funcs[handler] = fn
}

// AddImage makes image exist.
func (r *Runtime) AddImage(image string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[image] = true
}

// SetLatency delays every later call of op by d (0 removes the delay).
func (r *Runtime) SetLatency(op Op, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latency[op] = d
}

// FailNext makes the next call of op fail with err (ErrInjected when nil).
// Calls queue up: FailNext twice fails the next two calls.
func (r *Runtime) FailNext(op Op, err error) {
	if err == nil {
		err = fmt.Errorf("%w: %s", ErrInjected, op)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[op] = append(r.failures[op], err)
}

// Kill simulates the container's main process dying: it stops running and
// a die event is reported. An invocation in flight fails with ErrCrashed;
// every later Load or Invoke with ErrUnavailable, as the function never
// gets its input.
func (r *Runtime) Kill(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return fmt.Errorf("kill %s: %w", id, container.ErrNotFound)
	}
	c.killed = true
	wasRunning := c.running
	r.stopLocked(c, fmt.Errorf("%w: container killed", container.ErrUnavailable))
	if wasRunning {
		r.emitLocked(c, container.EventDied)
	}
	return nil
}

// Limits returns the memory limit (MB) and CPU cap of a container.
func (r *Runtime) Limits(id string) (memoryMB int64, cpus float64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return 0, 0, fmt.Errorf("limits %s: %w", id, container.ErrNotFound)
	}
	return c.memoryMB, c.cpus, nil
}

// Handler returns the handler loaded into a container ("" when none).
func (r *Runtime) Handler(id string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return "", fmt.Errorf("handler %s: %w", id, container.ErrNotFound)
	}
	return c.handler, nil
}

// Stats returns the counters.
func (r *Runtime) Stats() Stats {
	s := Stats{
		Creates: r.creates.Load(),
		Starts:  r.starts.Load(),
		Resizes: r.resizes.Load(),
		Loads:   r.loads.Load(),
		Invokes: r.invokes.Load(),
		Removes: r.removes.Load(),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Live = len(r.containers)
	for _, c := range r.containers {
		if c.running {
			s.Running++
		}
		s.MemoryMB += c.memoryMB
	}
	return s
}

// enter applies the injected latency and failure of op.
func (r *Runtime) enter(ctx context.Context, op Op) error {
	r.mu.Lock()
	d := r.latency[op]
	var injected error
	if q := r.failures[op]; len(q) > 0 {
		injected = q[0]
		r.failures[op] = q[1:]
	}
	r.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", op, ctx.Err())
		}
	}
	return injected
}

// get returns the container or ErrNotFound; r.mu must be held.
func (r *Runtime) getLocked(id string) (*fakeContainer, error) {
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, container.ErrNotFound)
	}
	return c, nil
}

// stopLocked retires and stops c; r.mu must be held.
func (r *Runtime) stopLocked(c *fakeContainer, why error) {
	if c.retired == nil {
		c.retired = why
	}
	if c.running {
		c.running = false
		close(c.stop)
	}
}

// Create creates a container. The image must exist.
func (r *Runtime) Create(ctx context.Context, spec container.Spec) (string, error) {
	if err := r.enter(ctx, OpCreate); err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	if spec.Name == "" {
		return "", fmt.Errorf("create container: empty name")
	}
	if spec.MemoryMB < 0 {
		return "", fmt.Errorf("create container %s: negative memory limit", spec.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.images[spec.Image] {
		return "", fmt.Errorf("create container %s: %w: %s", spec.Name, container.ErrImageNotFound, spec.Image)
	}
	for _, c := range r.containers {
		if c.spec.Name == spec.Name {
			return "", fmt.Errorf("create container %s: a container with this name exists", spec.Name)
		}
	}
	r.seq++
	id := fmt.Sprintf("fake%012d", r.seq)
	spec.Labels = maps.Clone(spec.Labels)
	if spec.Labels == nil {
		spec.Labels = make(map[string]string)
	}
	spec.Labels[container.LabelManaged] = "true"
	r.containers[id] = &fakeContainer{
		id:       id,
		spec:     spec,
		memoryMB: spec.MemoryMB,
		cpus:     max(spec.CPUs, 0),
		slots:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	r.creates.Add(1)
	return id, nil
}

// Start starts a created container; starting a running one is a no-op.
func (r *Runtime) Start(ctx context.Context, id string) error {
	if err := r.enter(ctx, OpStart); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.getLocked(id)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if c.retired != nil {
		return fmt.Errorf("start %s: container exited: %w", id, c.retired)
	}
	if !c.running {
		c.running = true
		r.starts.Add(1)
	}
	return nil
}

// Resize changes the memory limit (0 = none) and CPU cap (≤0 = none).
func (r *Runtime) Resize(ctx context.Context, id string, memoryMB int64, cpus float64) error {
	if err := r.enter(ctx, OpResize); err != nil {
		return fmt.Errorf("resize %s: %w", id, err)
	}
	if memoryMB < 0 {
		return fmt.Errorf("resize %s: negative memory limit", id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.getLocked(id)
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	c.memoryMB = memoryMB
	c.cpus = max(cpus, 0)
	r.resizes.Add(1)
	return nil
}

// Load checks the archive with the codearchive rules and binds the
// container to the func registered under req.Handler. A refused load
// (ErrBadCode) leaves the container unspecialized.
func (r *Runtime) Load(ctx context.Context, id string, req container.LoadRequest) error {
	if err := r.enter(ctx, OpLoad); err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.getLocked(id)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	switch {
	case c.killed:
		return fmt.Errorf("load %s: %w: container not running", id, container.ErrUnavailable)
	case c.retired != nil:
		return fmt.Errorf("load %s: %w (%v)", id, container.ErrUnusable, c.retired)
	case !c.running:
		return fmt.Errorf("load %s: container not started", id)
	case c.fn != nil:
		return fmt.Errorf("load %s: %w: handler %s", id, container.ErrAlreadyLoaded, c.handler)
	}
	if err := codearchive.Check(ctx, req.Code); err != nil {
		return fmt.Errorf("load %s: %w: %w", id, container.ErrBadCode, err)
	}
	fn, ok := r.funcs[req.Handler]
	if !ok {
		return fmt.Errorf("load %s: %w: no function registered for handler %q", id, container.ErrBadCode, req.Handler)
	}
	c.handler = req.Handler
	c.fn = fn
	c.slots = make(chan struct{}, max(1, req.Concurrency))
	c.env = maps.Clone(req.Env)
	r.loads.Add(1)
	return nil
}

// Invoke runs the container's func once, within req.Timeout (DefaultTimeout
// when 0). See the package documentation for how failures map.
func (r *Runtime) Invoke(ctx context.Context, id string, req container.InvokeRequest) (container.InvokeResult, error) {
	if err := r.enter(ctx, OpInvoke); err != nil {
		return container.InvokeResult{}, fmt.Errorf("invoke %s: %w", id, err)
	}
	r.mu.Lock()
	c, err := r.getLocked(id)
	var slots chan struct{}
	if err == nil {
		err = c.usableLocked()
		slots = c.slots
	}
	r.mu.Unlock()
	if err != nil {
		return container.InvokeResult{}, fmt.Errorf("invoke: %w", err)
	}

	// At most the loaded concurrency of invocations at a time.
	select {
	case slots <- struct{}{}:
	case <-c.stop:
		return container.InvokeResult{}, r.stoppedErr(c, false)
	case <-ctx.Done():
		return container.InvokeResult{}, fmt.Errorf("invoke %s: %w", id, ctx.Err())
	}
	defer func() { <-slots }()

	r.mu.Lock()
	err = c.usableLocked()
	fn, memoryMB := c.fn, c.memoryMB
	r.mu.Unlock()
	if err != nil {
		return container.InvokeResult{}, fmt.Errorf("invoke: %w", err)
	}
	r.invokes.Add(1)
	return r.run(ctx, c, fn, memoryMB, req)
}

// usableLocked says why c cannot serve an invocation; r.mu must be held.
func (c *fakeContainer) usableLocked() error {
	switch {
	case c.killed:
		return fmt.Errorf("container %s: %w: container not running", c.id, container.ErrUnavailable)
	case c.retired != nil:
		return fmt.Errorf("container %s: %w (%v)", c.id, container.ErrUnusable, c.retired)
	case !c.running:
		return fmt.Errorf("container %s: %w: container not started", c.id, container.ErrNotLoaded)
	case c.fn == nil:
		return fmt.Errorf("container %s: %w", c.id, container.ErrNotLoaded)
	}
	return nil
}

// stoppedErr is the error of an invocation whose container was killed or
// removed; started tells whether the function had received its input.
func (r *Runtime) stoppedErr(c *fakeContainer, started bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.containers[c.id]; !ok {
		return fmt.Errorf("invoke %s: %w: removed during the call", c.id, container.ErrNotFound)
	}
	if c.killed && started {
		return fmt.Errorf("invoke %s: %w: container killed", c.id, container.ErrCrashed)
	}
	return fmt.Errorf("invoke %s: %w", c.id, c.retired)
}

// Remove removes a container; removing a missing one is not an error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	if err := r.enter(ctx, OpRemove); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil
	}
	if c.running {
		r.emitLocked(c, container.EventDied)
	}
	r.stopLocked(c, fmt.Errorf("%w: container removed", container.ErrNotFound))
	delete(r.containers, id)
	r.removes.Add(1)
	r.emitLocked(c, container.EventRemoved)
	return nil
}

// List returns the containers carrying all the given labels (only
// containers with LabelManaged exist in the fake).
func (r *Runtime) List(ctx context.Context, labels map[string]string) ([]container.Info, error) {
	if err := r.enter(ctx, OpList); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []container.Info
	for _, c := range r.containers {
		if !hasLabels(c.spec.Labels, labels) {
			continue
		}
		out = append(out, container.Info{
			ID:      c.id,
			Name:    c.spec.Name,
			Labels:  maps.Clone(c.spec.Labels),
			Running: c.running,
		})
	}
	return out, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ImageExists reports whether image was given in Options.Images or AddImage.
func (r *Runtime) ImageExists(ctx context.Context, image string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.images[image], nil
}
