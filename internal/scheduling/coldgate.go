package scheduling

import (
	"runtime"
	"slices"
	"sync"
	"time"
)

// coldStartsPerFunction bounds the concurrent cold starts of one function.
// Docker serializes much of container start-up, so starting more at once
// only makes every one of them slower.
var coldStartsPerFunction = max(2, runtime.NumCPU())

// coldGate bounds concurrent cold starts per function. A request that finds
// the bound reached waits for whichever comes first: a container of its
// function released warm, or a free cold-start slot. A burst for one
// function is thus served by the first containers to start, instead of each
// request paying its own cold start behind all the others.
//
// A container of a function with MaxConcurrency N serves N requests at
// once, so a cold start in flight offers N-1 seats beyond its own request:
// a request that takes a seat waits for that start instead of starting
// another container.
//
// A warm release wakes one waiter, the longest waiting, since one idle
// container serves one request: waking every waiter of a busy function on
// each release made each of them race for the container and go back to
// sleep, which cost the node more CPU per request than the request itself.
// A freed cold-start slot wakes every waiter.
type coldGate struct {
	limit int

	mu  sync.Mutex
	fns map[string]*fnGate
}

type fnGate struct {
	inflight int
	// seats are the free slots of the containers being cold-started.
	seats int
	// lastRelease is when a container of the function was last released
	// warm while the gate existed; zero when never.
	lastRelease time.Time
	// waiters are the watching requests, longest waiting first.
	waiters []*gateWaiter
}

// gateWaiter is one request watching a function's events. Its channel
// holds at most one pending wake-up.
type gateWaiter struct {
	wake chan struct{}
	// queued is true while the waiter is in its fnGate's waiters; guarded by coldGate.mu.
	queued bool
}

func newGateWaiter() *gateWaiter {
	return &gateWaiter{wake: make(chan struct{}, 1)}
}

func newColdGate(limit int) *coldGate {
	return &coldGate{limit: limit, fns: map[string]*fnGate{}}
}

func (g *coldGate) get(name string) *fnGate {
	fg := g.fns[name]
	if fg == nil {
		fg = &fnGate{}
		g.fns[name] = fg
	}
	return fg
}

// watch queues w for the function's next event, keeping its place if it
// is queued already, and returns the channel that receives the wake-up.
// Call it before looking for a warm container so that no release is
// missed, and call unwatch once w stops waiting.
func (g *coldGate) watch(name string, w *gateWaiter) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !w.queued {
		fg := g.get(name)
		fg.waiters = append(fg.waiters, w)
		w.queued = true
	}
	return w.wake
}

// unwatch takes w out of the function's waiters. A wake-up w received and
// did not consume goes to the next waiter, so that the event it stands for
// (an idle container) is not lost.
func (g *coldGate) unwatch(name string, w *gateWaiter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.fns[name]
	if w.queued && fg != nil {
		fg.waiters = slices.DeleteFunc(fg.waiters, func(q *gateWaiter) bool { return q == w })
		w.queued = false
	}
	select {
	case <-w.wake:
		if fg != nil {
			g.wakeOneLocked(fg)
		}
	default:
	}
	if fg != nil {
		g.dropIdleLocked(name, fg)
	}
}

// tryEnter takes a cold-start slot for the function, whose containers
// serve slots requests at once, if one is free and no seat is left in the
// containers being started. Taking a seat sets *seated and returns false:
// the caller waits for that start; a seated caller takes no further seat
// while a start is in flight.
func (g *coldGate) tryEnter(name string, slots int, seated *bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.get(name)
	if *seated && fg.inflight > 0 {
		return false
	}
	*seated = false
	if fg.seats > 0 {
		fg.seats--
		*seated = true
		return false
	}
	if fg.inflight >= g.limit {
		g.dropIdleLocked(name, fg)
		return false
	}
	fg.inflight++
	fg.seats += max(slots, 1) - 1
	return true
}

// leave frees a cold-start slot, drops the seats of the finished start that
// nobody took, and wakes all the function's waiters.
func (g *coldGate) leave(name string, slots int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.get(name)
	fg.inflight--
	fg.seats = min(fg.seats, fg.inflight*(max(slots, 1)-1))
	for len(fg.waiters) > 0 {
		g.wakeOneLocked(fg)
	}
	g.dropIdleLocked(name, fg)
}

// released wakes the function's longest-waiting waiter: one of its
// containers is idle.
func (g *coldGate) released(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if fg := g.fns[name]; fg != nil {
		fg.lastRelease = time.Now()
		g.wakeOneLocked(fg)
		g.dropIdleLocked(name, fg)
	}
}

// sinceRelease returns the time since the function's last warm release
// seen by its waiters, or an hour when there was none.
func (g *coldGate) sinceRelease(name string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.fns[name]
	if fg == nil || fg.lastRelease.IsZero() {
		return time.Hour
	}
	return time.Since(fg.lastRelease)
}

// wakeOneLocked dequeues the first waiter and gives it a wake-up.
func (g *coldGate) wakeOneLocked(fg *fnGate) {
	if len(fg.waiters) == 0 {
		return
	}
	w := fg.waiters[0]
	fg.waiters[0] = nil
	fg.waiters = fg.waiters[1:]
	w.queued = false
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// dropIdleLocked forgets a function with no cold start and no waiter.
func (g *coldGate) dropIdleLocked(name string, fg *fnGate) {
	if fg.inflight == 0 && len(fg.waiters) == 0 {
		delete(g.fns, name)
	}
}
