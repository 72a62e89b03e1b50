package memreg

import (
	"context"
	"sync"

	"github.com/serverledge/serverledge/internal/registry"
)

// watcher queues events for one watch, so that writers never wait for a
// slow consumer and every consumer sees events in the order of the writes.
type watcher struct {
	mu     sync.Mutex
	queue  []registry.FunctionEvent
	closed bool
	// wake has a token when the queue changed.
	wake chan struct{}
}

func newWatcher() *watcher {
	return &watcher{wake: make(chan struct{}, 1)}
}

func (w *watcher) push(e registry.FunctionEvent) {
	w.mu.Lock()
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run delivers queued events to out until ctx ends or the watcher is closed.
func (w *watcher) run(ctx context.Context, out chan<- registry.FunctionEvent) {
	for {
		w.mu.Lock()
		batch, closed := w.queue, w.closed
		w.queue = nil
		w.mu.Unlock()
		for _, e := range batch {
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
		if closed {
			return
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
	}
}
