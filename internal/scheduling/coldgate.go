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
type coldGate struct {
	limit int

	mu  sync.Mutex
	fns map[string]*fnGate
}

type fnGate struct {
	inflight int
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

// tryEnter takes a cold-start slot for the function if one is free.
func (g *coldGate) tryEnter(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.get(name)
	if fg.inflight >= g.limit {
		return false
	}
	fg.inflight++
	return true
}

// leave frees a cold-start slot and wakes the function's waiters.
func (g *coldGate) leave(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fg := g.get(name)
	fg.inflight--
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
