package fake

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// recorded is an event with the labels of its container, for filtering.
type recorded struct {
	event  container.Event
	labels map[string]string
}

// emitLocked records an event of c and wakes the watchers; r.mu must be held.
func (r *Runtime) emitLocked(c *fakeContainer, kind container.EventKind) {
	r.events = append(r.events, recorded{
		event:  container.Event{Kind: kind, ID: c.id, Name: c.spec.Name, Time: time.Now()},
		labels: maps.Clone(c.spec.Labels),
	})
	r.eventSeq++
	if len(r.events) > maxEvents {
		r.events = append(r.events[:0:0], r.events[len(r.events)-maxEvents:]...)
	}
	for w := range r.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Watch reports the die, oom and destroy events of the containers carrying
// all of opts.Labels; the fake keeps the last 1,024 events for opts.Since.
// An error injected with FailNext(OpWatch, …) makes Watch fail at once.
func (r *Runtime) Watch(ctx context.Context, opts container.WatchOptions, fn func(container.Event)) error {
	if err := r.enter(ctx, OpWatch); err != nil {
		return fmt.Errorf("watch events: %w", err)
	}
	wake := make(chan struct{}, 1)
	r.mu.Lock()
	r.watchers[wake] = struct{}{}
	// Events are numbered by r.eventSeq: the history holds numbers
	// eventSeq-len(events) to eventSeq-1, and next is the first one this
	// watcher has not seen.
	start := r.eventSeq
	if !opts.Since.IsZero() {
		start = r.eventSeq - len(r.events)
		for _, e := range r.events {
			if !e.event.Time.Before(opts.Since) {
				break
			}
			start++
		}
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.watchers, wake)
		r.mu.Unlock()
	}()
	next := start
	for {
		r.mu.Lock()
		total := r.eventSeq
		first := total - len(r.events)
		next = max(next, first)
		batch := make([]recorded, 0, total-next)
		batch = append(batch, r.events[next-first:]...)
		next = total
		r.mu.Unlock()
		for _, e := range batch {
			if hasLabels(e.labels, opts.Labels) {
				fn(e.event)
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
