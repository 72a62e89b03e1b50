package scheduling_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container/fake"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/scheduling"
	"github.com/serverledge/serverledge/internal/wire"
)

// recorder is a scheduling.Hooks that remembers what it was told.
type recorder struct {
	mu       sync.Mutex
	rejected map[scheduling.RejectReason]int
	dequeued []time.Duration
}

func (r *recorder) Rejected(reason scheduling.RejectReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected[reason]++
}

func (r *recorder) Dequeued(waited time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dequeued = append(r.dequeued, waited)
}

func (r *recorder) counts() (map[scheduling.RejectReason]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[scheduling.RejectReason]int{}
	for k, v := range r.rejected {
		out[k] = v
	}
	return out, len(r.dequeued)
}

// hookNode is a scheduler over a one-container pool on the fake runtime
// whose function "f.block" runs until release is closed when called with
// {"block": true}, and returns at once otherwise.
type hookNode struct {
	pool    *node.Pool
	sched   *scheduling.Scheduler
	rec     *recorder
	release chan struct{}
	once    sync.Once
	stop    context.CancelFunc
}

// unblock lets every blocking invocation return.
func (h *hookNode) unblock() { h.once.Do(func() { close(h.release) }) }

func newHookNode(t *testing.T, queue int, maxWait time.Duration) *hookNode {
	t.Helper()
	h := &hookNode{rec: &recorder{rejected: map[scheduling.RejectReason]int{}}, release: make(chan struct{})}
	rt := fake.New(fake.Options{Funcs: map[string]fake.Func{
		"f.block": func(ctx context.Context, c *fake.Call) (any, error) {
			if c.Params["block"] == true {
				select {
				case <-h.release:
				case <-ctx.Done():
				}
			}
			return "ok", nil
		},
	}})
	var err error
	h.pool, err = node.New(rt, node.Config{NodeID: "hooks-test", MemoryMB: 128, CPUs: 2,
		OnFree: func() { h.sched.Notify() }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h.sched = scheduling.New(h.pool, scheduling.Config{QueueCapacity: queue, QueueMaxWait: maxWait, Logger: slog.New(slog.DiscardHandler)})
	h.sched.SetHooks(h.rec)
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	if err := h.pool.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go h.sched.Run(ctx)
	t.Cleanup(func() {
		h.unblock()
		cancel()
		_ = h.pool.Shutdown(context.Background())
	})
	return h
}

func blockFn(name string, memoryMB int64) *function.Function {
	return &function.Function{Name: name, Runtime: "python", Handler: "f.block", MemoryMB: memoryMB, Version: name + "-v1"}
}

func blockReq(f *function.Function, block bool) *scheduling.Request {
	return &scheduling.Request{ID: f.Name + "-req", Function: f, Params: map[string]any{"block": block}, Arrival: time.Now()}
}

// waitCond polls cond until it holds, failing after 10 s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// hold starts a blocking invocation of f that takes the only container and
// returns its result channel once the container is busy.
func (h *hookNode) hold(t *testing.T, f *function.Function) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := h.sched.Invoke(context.Background(), blockReq(f, true))
		done <- err
	}()
	waitCond(t, "the pool's only container to be busy", func() bool { return h.pool.Busy(f.Name) == 1 })
	return done
}

// enqueue starts an invocation and returns its result channel once it is
// in the queue.
func (h *hookNode) enqueue(t *testing.T, r *scheduling.Request) <-chan error {
	t.Helper()
	before := h.sched.QueueLength()
	done := make(chan error, 1)
	go func() {
		_, err := h.sched.Invoke(context.Background(), r)
		done <- err
	}()
	waitCond(t, "the request to queue", func() bool { return h.sched.QueueLength() == before+1 })
	return done
}

func wantRejected(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, scheduling.ErrRejected) {
		t.Fatalf("%s: %v, want ErrRejected", what, err)
	}
}

// TestHooksSeeEveryRejectionReason provokes each reason a request can be
// rejected for and checks the hooks were told each one, that their sum is
// DropCount, and that every queued request reported its wait once.
func TestHooksSeeEveryRejectionReason(t *testing.T) {
	h := newHookNode(t, 1, 200*time.Millisecond)
	f := blockFn("f", 128)
	// A first quick run gives the scheduler an execution-time estimate.
	if _, err := h.sched.Invoke(context.Background(), blockReq(f, false)); err != nil {
		t.Fatal(err)
	}
	r := blockReq(f, false)
	r.Class, r.MaxRespT = wire.ClassPerformance, time.Nanosecond
	_, err := h.sched.Invoke(context.Background(), r)
	wantRejected(t, "a deadline below the expected time", err)
	_, err = h.sched.Invoke(context.Background(), blockReq(blockFn("huge", 4096), false))
	wantRejected(t, "a function larger than the pool", err)

	held := h.hold(t, f)
	timedOut := h.enqueue(t, blockReq(f, false))
	_, err = h.sched.Invoke(context.Background(), blockReq(f, false))
	wantRejected(t, "a full queue", err)
	wantRejected(t, "a request queued past scheduler.queue.maxwait", <-timedOut)

	late := blockReq(f, false)
	late.MaxRespT = time.Millisecond
	// It leaves the queue as soon as the dispatcher sees it.
	_, err = h.sched.Invoke(context.Background(), late)
	wantRejected(t, "a queued request past its deadline", err)

	atShutdown := h.enqueue(t, blockReq(f, false))
	h.stop()
	wantRejected(t, "a request queued at shutdown", <-atShutdown)
	h.unblock()
	if err := <-held; err != nil {
		t.Fatalf("the blocking request: %v", err)
	}

	got, dequeued := h.rec.counts()
	want := map[scheduling.RejectReason]int{
		scheduling.ReasonDeadline:      1,
		scheduling.ReasonTooLarge:      1,
		scheduling.ReasonQueueFull:     1,
		scheduling.ReasonQueueTimeout:  1,
		scheduling.ReasonQueueDeadline: 1,
		scheduling.ReasonShutdown:      1,
	}
	total := 0
	for reason, n := range got {
		total += n
		if want[reason] != n {
			t.Errorf("%s rejections: %d, want %d", reason, n, want[reason])
		}
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("%s rejections: %d, want %d", reason, got[reason], n)
		}
	}
	if int64(total) != h.sched.DropCount() {
		t.Errorf("hooks saw %d rejections, DropCount is %d", total, h.sched.DropCount())
	}
	if dequeued != 3 {
		t.Errorf("Dequeued called %d times, want 3 (one per queued request)", dequeued)
	}
}

// TestHooksNoCapacityWithoutQueue checks the reason of a rejection when
// queueing is off, and that a request served from the queue reports its
// wait.
func TestHooksNoCapacityWithoutQueue(t *testing.T) {
	h := newHookNode(t, 0, time.Minute)
	f := blockFn("f", 128)
	held := h.hold(t, f)
	_, err := h.sched.Invoke(context.Background(), blockReq(f, false))
	wantRejected(t, "a full pool without a queue", err)
	h.unblock()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	got, dequeued := h.rec.counts()
	if got[scheduling.ReasonNoCapacity] != 1 || len(got) != 1 || dequeued != 0 {
		t.Errorf("rejections %v, dequeued %d; want one no_capacity and no queue wait", got, dequeued)
	}
}

// TestHooksQueuedRequestServed checks that a request that waited in the
// queue and then ran reports its wait once.
func TestHooksQueuedRequestServed(t *testing.T) {
	h := newHookNode(t, 4, time.Minute)
	f := blockFn("f", 128)
	held := h.hold(t, f)
	queued := h.enqueue(t, blockReq(f, false))
	h.unblock()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("queued request: %v", err)
	}
	got, dequeued := h.rec.counts()
	if len(got) != 0 || dequeued != 1 {
		t.Errorf("rejections %v, dequeued %d; want none and one", got, dequeued)
	}
}

// turnPool is a scheduling.Pool that never has capacity; its second Acquire
// (a queued request's turn to cold-start) waits until proceed is closed.
type turnPool struct {
	mu       sync.Mutex
	acquires int
	inTurn   chan struct{}
	proceed  chan struct{}
}

func (p *turnPool) Acquire(context.Context, *function.Function) (*node.Container, bool, error) {
	p.mu.Lock()
	p.acquires++
	n := p.acquires
	p.mu.Unlock()
	if n == 2 {
		close(p.inTurn)
		<-p.proceed
	}
	return nil, false, node.ErrNoCapacity
}

func (p *turnPool) TryWarm(*function.Function) (*node.Container, bool) { return nil, false }
func (p *turnPool) Release(*node.Container, bool)                      {}
func (p *turnPool) CheckFits(*function.Function) error                 { return nil }
func (p *turnPool) Busy(string) int                                    { return 0 }

// TestShutdownDuringATurnRejects stops the scheduler while a queued request
// holds its turn to cold-start, out of the queue: when the turn finds no
// capacity, the request must be rejected, not put back in a queue nobody
// dispatches any more (it used to wait forever).
func TestShutdownDuringATurnRejects(t *testing.T) {
	pool := &turnPool{inTurn: make(chan struct{}), proceed: make(chan struct{})}
	rec := &recorder{rejected: map[scheduling.RejectReason]int{}}
	s := scheduling.New(pool, scheduling.Config{QueueCapacity: 4, QueueMaxWait: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	s.SetHooks(rec)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ran := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(ran)
	}()
	result := make(chan error, 1)
	go func() {
		_, err := s.Invoke(context.Background(), blockReq(blockFn("f", 128), false))
		result <- err
	}()
	<-pool.inTurn
	stop()
	<-ran
	close(pool.proceed)
	select {
	case err := <-result:
		wantRejected(t, "a request whose turn ended after shutdown", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request is still waiting 10 s after the scheduler stopped")
	}
	if got, dequeued := rec.counts(); got[scheduling.ReasonShutdown] != 1 || dequeued != 1 {
		t.Errorf("rejections %v, dequeued %d; want one shutdown and one queue wait", got, dequeued)
	}
	_, err := s.Invoke(context.Background(), blockReq(blockFn("g", 128), false))
	wantRejected(t, "a request after shutdown", err)
}
