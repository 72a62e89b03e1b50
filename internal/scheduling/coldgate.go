package scheduling

import (
	"runtime"
	"sync"
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
type coldGate struct {
	limit int

	mu  sync.Mutex
	fns map[string]*fnGate
}

type fnGate struct {
	inflight int
	// seats are the free slots of the containers being cold-started.
	seats int
	// wake is closed, and replaced, on the first event after watched is set.
	wake    chan struct{}
	watched bool
}

func newColdGate(limit int) *coldGate {
	return &coldGate{limit: limit, fns: map[string]*fnGate{}}
}

func (g *coldGate) get(name string) *fnGate {
	fg := g.fns[name]
	if fg == nil {
		fg = &fnGate{wake: make(chan struct{})}
		g.fns[name] = fg
	}
	return fg
}

// watch returns a channel closed at the next event for the function. Call it
// before looking for a warm container so that no release is missed.
func (g *coldGate) watch(name string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.get(name)
	fg.watched = true
	return fg.wake
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
		return false
	}
	fg.inflight++
	fg.seats += max(slots, 1) - 1
	return true
}

// leave frees a cold-start slot, drops the seats of the finished start that
// nobody took, and wakes the function's waiters.
func (g *coldGate) leave(name string, slots int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.get(name)
	fg.inflight--
	fg.seats = min(fg.seats, fg.inflight*(max(slots, 1)-1))
	g.signalLocked(name, fg)
}

// released wakes the function's waiters: one of its containers is idle.
func (g *coldGate) released(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if fg := g.fns[name]; fg != nil {
		g.signalLocked(name, fg)
	}
}

func (g *coldGate) signalLocked(name string, fg *fnGate) {
	if fg.watched {
		close(fg.wake)
		fg.wake = make(chan struct{})
		fg.watched = false
	}
	if fg.inflight == 0 {
		delete(g.fns, name)
	}
}
