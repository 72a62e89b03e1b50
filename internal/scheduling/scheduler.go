// Package scheduling decides where each request runs: warm or cold on this
// node, queued, offloaded, or rejected, according to its QoS class.
//
// The request path reads top-down: the API hands a Request to the
// Scheduler, which takes a container from the node's pool, invokes it and
// gives it back. When the pool has no capacity the request waits in a
// bounded FIFO queue; a queued request whose deadline can no longer be met,
// or that waited longer than the configured maximum, leaves with ErrRejected.
package scheduling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/wire"
)

// Sentinel errors the API maps onto status codes.
var (
	// ErrRejected means the request was refused for load (429).
	ErrRejected = errors.New("request rejected")
	// ErrTimeout means the function exceeded its timeout (504).
	ErrTimeout = errors.New("function timed out")
	// ErrFunctionFailed means the function raised an error (500); the response is still returned.
	ErrFunctionFailed = errors.New("function failed")
	// ErrContainer means the container could not be started or crashed (500).
	ErrContainer = errors.New("container failure")
)

// Pool is what the scheduler needs from the node's warm pool.
type Pool interface {
	Acquire(ctx context.Context, f *function.Function) (*node.Container, bool, error)
	TryWarm(f *function.Function) (*node.Container, bool)
	Release(c *node.Container, reusable bool)
	CheckFits(f *function.Function) error
	Busy(name string) int
}

// Config configures a Scheduler.
type Config struct {
	// QueueCapacity bounds the FIFO queue; 0 disables queueing.
	QueueCapacity int
	// QueueMaxWait bounds the time a request may wait in the queue.
	QueueMaxWait time.Duration
	// NodeURL is reported in responses.
	NodeURL string
	// NodeID and Area are reported in responses as ExecutionNode and
	// ExecutionArea.
	NodeID string
	Area   string
	// Logger receives scheduling events.
	Logger *slog.Logger
}

// Request is one invocation to schedule.
type Request struct {
	// ID is the globally unique request id.
	ID string
	// Function is the definition to run.
	Function *function.Function
	// Params are the function's parameters.
	Params map[string]any
	// Class is the QoS class (wire.Class*).
	Class int
	// MaxRespT is the deadline relative to Arrival; 0 means none.
	MaxRespT time.Duration
	// CanOffload allows the request to run on another node.
	CanOffload bool
	// ReturnOutput asks for the function's output.
	ReturnOutput bool
	// Arrival is when the request reached this node.
	Arrival time.Time

	// queued is the time the request spent in the queue, waiting for the
	// dispatcher to hand it a container or its turn to start one.
	queued time.Duration
}

// Scheduler schedules requests on the local pool.
type Scheduler struct {
	cfg  Config
	pool Pool
	log  *slog.Logger
	est  *estimator
	gate *coldGate

	mu    sync.Mutex
	queue []*waiter
	// turnOut is true while a dequeued request cold-starts a container.
	turnOut bool
	// stopped is set by drain: nothing is queued any more.
	stopped bool
	kick    chan struct{}

	drops atomic.Int64
	hooks atomic.Pointer[hooksBox]
	done  chan struct{}
}

type waiter struct {
	req   *Request
	ready chan grant
}

type grant struct {
	c    *node.Container
	warm bool
	err  error
	// turn lets the waiter cold-start a container itself.
	turn bool
}

// New returns a Scheduler; call Run to start its queue dispatcher, and wire
// the pool's OnFree to Notify so queued requests wake on every release.
func New(pool Pool, cfg Config) *Scheduler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueMaxWait <= 0 {
		cfg.QueueMaxWait = 30 * time.Second
	}
	return &Scheduler{
		cfg:  cfg,
		pool: pool,
		log:  cfg.Logger,
		est:  newEstimator(),
		gate: newColdGate(coldStartsPerFunction),
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// Notify tells the scheduler that pool capacity was freed. It never blocks.
func (s *Scheduler) Notify() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// DropCount returns how many requests were rejected for load.
func (s *Scheduler) DropCount() int64 { return s.drops.Load() }

// QueueLength returns the number of queued requests.
func (s *Scheduler) QueueLength() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Invoke runs the request locally, waiting in the queue if needed, and
// returns the response. A function error returns the response together
// with ErrFunctionFailed. A request whose container failed before the
// function received its input (container.ErrUnavailable: it died while
// idle) is run once more, on another container.
func (s *Scheduler) Invoke(ctx context.Context, r *Request) (*wire.InvocationResponse, error) {
	f := r.Function
	if r.Class == wire.ClassPerformance && r.MaxRespT > 0 {
		if est := s.est.expected(f, false); est > r.MaxRespT {
			return nil, s.rejectFor(ReasonDeadline, "expected response time %v exceeds the deadline %v", est.Round(time.Millisecond), r.MaxRespT)
		}
	}
	c, warm, err := s.acquire(ctx, r)
	if err != nil {
		return nil, err
	}
	resp, err := s.run(ctx, r, c, warm)
	if !errors.Is(err, container.ErrUnavailable) || ctx.Err() != nil {
		return resp, err
	}
	s.log.Warn("container unavailable before the function got its input, retrying on another one",
		"function", f.Name, "request", r.ID, "err", err)
	if c, warm, err = s.acquire(ctx, r); err != nil {
		return nil, err
	}
	return s.run(ctx, r, c, warm)
}

func (s *Scheduler) acquire(ctx context.Context, r *Request) (*node.Container, bool, error) {
	f := r.Function
	if c, ok := s.pool.TryWarm(f); ok {
		return c, true, nil
	}
	if err := s.pool.CheckFits(f); err != nil {
		return nil, false, s.rejectFor(ReasonTooLarge, "%v", err)
	}
	slots := f.Concurrency()
	seated := false
	w := newGateWaiter()
	defer s.gate.unwatch(f.Name, w)
	for {
		wake := s.gate.watch(f.Name, w)
		if c, ok := s.pool.TryWarm(f); ok {
			return c, true, nil
		}
		if patience := s.warmPatience(r); patience > 0 {
			woken, err := s.awaitRelease(ctx, f.Name, wake, patience)
			if err != nil {
				return nil, false, err
			}
			if woken {
				continue
			}
		}
		if s.gate.tryEnter(f.Name, slots, &seated) {
			s.gate.unwatch(f.Name, w)
			return s.coldStart(ctx, r)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// awaitRelease waits for wake until patience has passed since the later of
// now and the function's last warm release: a release that woke another
// waiter still shows that the function's containers are turning over, as
// it did when every release woke every waiter. It reports whether wake
// came, or ctx's error.
func (s *Scheduler) awaitRelease(ctx context.Context, name string, wake <-chan struct{}, patience time.Duration) (bool, error) {
	t := time.NewTimer(patience)
	defer t.Stop()
	for {
		select {
		case <-wake:
			return true, nil
		case <-t.C:
			rest := patience - s.gate.sinceRelease(name)
			if rest <= 0 {
				return false, nil
			}
			t.Reset(rest)
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// warmPatience is how long r should wait for a busy container of its
// function rather than start a new one: while the function is known to run
// faster than a cold start of its runtime takes, a container that is busy
// now is expected to be free before a new one would be ready, so r waits up
// to one cold-start time for a release to wake it (releases wake waiters
// one at a time, in arrival order). While the function's
// execution time is still unknown, it waits a tenth of a cold start. A
// container serving up to N requests at once (MaxConcurrency) frees a slot
// every exec/N on average once full, so that is what is compared.
func (s *Scheduler) warmPatience(r *Request) time.Duration {
	exec, cold := s.est.estimates(r.Function)
	if cold == 0 || exec/time.Duration(r.Function.Concurrency()) >= cold {
		return 0
	}
	if s.pool.Busy(r.Function.Name) == 0 {
		return 0
	}
	if exec == 0 {
		// The function's first invocations are still running: give them
		// a tenth of a cold start to finish before starting another.
		return cold / 10
	}
	return cold
}

// coldStart starts a container for r, holding one of the function's
// cold-start slots, or queues r when the pool has no capacity.
func (s *Scheduler) coldStart(ctx context.Context, r *Request) (*node.Container, bool, error) {
	if s.QueueLength() > 0 {
		s.gate.leave(r.Function.Name, r.Function.Concurrency())
		return s.wait(ctx, r)
	}
	c, warm, err := s.pool.Acquire(ctx, r.Function)
	if err == nil && !warm {
		s.est.observeCold(r.Function, time.Since(r.Arrival))
	}
	s.gate.leave(r.Function.Name, r.Function.Concurrency())
	if err == nil {
		return c, warm, nil
	}
	if errors.Is(err, node.ErrTooLarge) || !errors.Is(err, node.ErrNoCapacity) {
		return nil, false, s.acquireError(r, err)
	}
	return s.wait(ctx, r)
}

func (s *Scheduler) acquireError(r *Request, err error) error {
	if errors.Is(err, node.ErrTooLarge) {
		return s.rejectFor(ReasonTooLarge, "%v", err)
	}
	if errors.Is(err, node.ErrNoCapacity) {
		return s.rejectFor(ReasonNoCapacity, "no capacity for %s", r.Function.Name)
	}
	if errors.Is(err, container.ErrBadCode) {
		return fmt.Errorf("%w: loading %s: %w", ErrContainer, r.Function.Name, err)
	}
	return fmt.Errorf("%w: starting %s: %w", ErrContainer, r.Function.Name, err)
}

// wait queues the request until the dispatcher hands it an idle container
// or its turn to cold-start one. A request whose turn finds no capacity goes
// back to the front of the queue.
func (s *Scheduler) wait(ctx context.Context, r *Request) (*node.Container, bool, error) {
	w := &waiter{req: r, ready: make(chan grant, 1)}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, false, s.rejectFor(ReasonShutdown, "node is shutting down")
	}
	if len(s.queue) >= s.cfg.QueueCapacity {
		s.mu.Unlock()
		if s.cfg.QueueCapacity == 0 {
			return nil, false, s.rejectFor(ReasonNoCapacity, "no capacity for %s", r.Function.Name)
		}
		return nil, false, s.rejectFor(ReasonQueueFull, "no capacity for %s and the queue is full (%d)", r.Function.Name, s.cfg.QueueCapacity)
	}
	s.queue = append(s.queue, w)
	s.mu.Unlock()
	s.Notify()
	queued, waited := time.Now(), time.Duration(0)
	defer func() { s.dequeued(waited) }()

	for {
		var g grant
		select {
		case g = <-w.ready:
			// Queueing time runs until the dispatcher answers; a cold
			// start the request then makes on its turn is not queueing.
			waited += time.Since(queued)
			r.queued = waited
		case <-ctx.Done():
			waited += time.Since(queued)
			if s.remove(w) {
				return nil, false, ctx.Err()
			}
			// The dispatcher answered already: give back what it handed over.
			g = <-w.ready
			if g.turn {
				s.endTurn()
			} else if g.c != nil {
				s.pool.Release(g.c, true)
			}
			return nil, false, ctx.Err()
		}
		if !g.turn {
			return g.c, g.warm, g.err
		}
		c, warm, err := s.pool.Acquire(ctx, r.Function)
		if err != nil && errors.Is(err, node.ErrNoCapacity) && !errors.Is(err, node.ErrTooLarge) {
			if !s.requeueFront(w) {
				return nil, false, s.rejectFor(ReasonShutdown, "node is shutting down")
			}
			queued = time.Now()
			continue
		}
		s.endTurn()
		if err != nil {
			return nil, false, s.acquireError(r, err)
		}
		return c, warm, nil
	}
}

// endTurn lets the dispatcher hand out the next cold-start turn.
func (s *Scheduler) endTurn() {
	s.mu.Lock()
	s.turnOut = false
	s.mu.Unlock()
	s.Notify()
}

// requeueFront puts back a waiter whose turn found no capacity; it is served
// first once capacity frees. It reports false, queueing nothing, once the
// scheduler has stopped.
func (s *Scheduler) requeueFront(w *waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.turnOut = false
	if s.stopped {
		return false
	}
	s.queue = append([]*waiter{w}, s.queue...)
	return true
}

func (s *Scheduler) remove(w *waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.queue {
		if q == w {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return true
		}
	}
	return false
}

// Run dispatches queued requests until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.drain()
			return
		case <-s.kick:
		case <-tick.C:
		}
		s.dispatch()
	}
}

// drain rejects everything still queued at shutdown.
func (s *Scheduler) drain() {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.stopped = true
	s.mu.Unlock()
	for _, w := range q {
		w.ready <- grant{err: s.rejectFor(ReasonShutdown, "node is shutting down")}
	}
}

// dispatch never blocks on a cold start: it drops expired requests, hands
// idle containers to any queued request of their function, wherever it
// stands in the queue, then gives the head its turn to cold-start, which
// the waiting request's own goroutine carries out.
func (s *Scheduler) dispatch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	kept := s.queue[:0]
	for _, w := range s.queue {
		if c, ok := s.pool.TryWarm(w.req.Function); ok {
			w.ready <- grant{c: c, warm: true}
			continue
		}
		kept = append(kept, w)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	if s.turnOut || len(s.queue) == 0 {
		return
	}
	w := s.queue[0]
	s.queue = s.queue[1:]
	s.turnOut = true
	w.ready <- grant{turn: true}
}

// expire removes queued requests that waited too long or can no longer
// meet their deadline. The caller holds s.mu.
func (s *Scheduler) expire() {
	now := time.Now()
	kept := s.queue[:0]
	for _, w := range s.queue {
		waited := now.Sub(w.req.Arrival)
		switch {
		case waited > s.cfg.QueueMaxWait:
			w.ready <- grant{err: s.rejectFor(ReasonQueueTimeout, "waited %v in the queue without capacity for %s", waited.Round(time.Millisecond), w.req.Function.Name)}
		case w.req.MaxRespT > 0 && waited+s.est.expected(w.req.Function, false) > w.req.MaxRespT:
			w.ready <- grant{err: s.rejectFor(ReasonQueueDeadline, "deadline %v can no longer be met for %s (queued %v)", w.req.MaxRespT, w.req.Function.Name, waited.Round(time.Millisecond))}
		default:
			kept = append(kept, w)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// run invokes the function in c and builds the response.
func (s *Scheduler) run(ctx context.Context, r *Request, c *node.Container, warm bool) (*wire.InvocationResponse, error) {
	f := r.Function
	started := time.Now()
	initTime := started.Sub(r.Arrival)
	timeout := time.Duration(f.Timeout() * float64(time.Second))
	// The invocation outlives a client that goes away: the container must
	// finish (or time out) before it can serve again.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+10*time.Second)
	res, err := c.Invoke(ictx, container.InvokeRequest{
		Params:       r.Params,
		ReturnOutput: r.ReturnOutput,
		Timeout:      timeout,
		RequestID:    r.ID,
	})
	cancel()
	s.pool.Release(c, err == nil)
	if err == nil {
		s.gate.released(f.Name)
	}
	if err != nil {
		if errors.Is(err, container.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s exceeded its timeout of %v", ErrTimeout, f.Name, timeout)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrContainer, f.Name, err)
	}
	s.est.observeExec(f, res.Duration)
	resp := &wire.InvocationResponse{
		Success:       res.Success,
		Result:        res.Result,
		IsWarmStart:   warm,
		InitTime:      initTime.Seconds(),
		Duration:      res.Duration.Seconds(),
		ResponseTime:  time.Since(r.Arrival).Seconds(),
		SchedAction:   wire.ActionLocal,
		Output:        res.Output,
		ReqID:         r.ID,
		Error:         res.Error,
		NodeURL:       s.cfg.NodeURL,
		QueueingTime:  r.queued.Seconds(),
		ExecutionNode: s.cfg.NodeID,
		ExecutionArea: s.cfg.Area,
	}
	if !res.Success {
		return resp, fmt.Errorf("%w: %s: %s", ErrFunctionFailed, f.Name, res.Error)
	}
	return resp, nil
}
