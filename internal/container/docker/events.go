package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
)

// Watch streams the daemon's die, oom and destroy events of the containers
// carrying all of opts.Labels (and LabelManaged), replaying those since
// opts.Since. It returns ctx's error when ctx ends, and a wrapped error
// when the daemon closes the stream or cannot be reached.
func (r *Runtime) Watch(ctx context.Context, opts container.WatchOptions, fn func(container.Event)) error {
	filters := make(client.Filters)
	filters.Add("type", string(events.ContainerEventType))
	filters.Add("event", string(events.ActionDie), string(events.ActionOOM), string(events.ActionDestroy))
	filters.Add("label", container.LabelManaged+"=true")
	for k, v := range opts.Labels {
		filters.Add("label", k+"="+v)
	}
	list := client.EventsListOptions{Filters: filters}
	if !opts.Since.IsZero() {
		list.Since = fmt.Sprintf("%d.%09d", opts.Since.Unix(), opts.Since.Nanosecond())
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := r.cli.Events(wctx, list)
	for {
		select {
		case m := <-res.Messages:
			if ev, ok := toEvent(m); ok {
				fn(ev)
			}
		case err := <-res.Err:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil || errors.Is(err, io.EOF) {
				return errors.New("watch events: the daemon closed the stream")
			}
			return fmt.Errorf("watch events: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// toEvent converts a daemon event; ok is false for an action Watch does
// not report.
func toEvent(m events.Message) (container.Event, bool) {
	var kind container.EventKind
	switch m.Action {
	case events.ActionDie:
		kind = container.EventDied
	case events.ActionOOM:
		kind = container.EventOOM
	case events.ActionDestroy:
		kind = container.EventRemoved
	default:
		return container.Event{}, false
	}
	t := time.Unix(0, m.TimeNano)
	if m.TimeNano == 0 {
		t = time.Unix(m.Time, 0)
	}
	return container.Event{Kind: kind, ID: m.Actor.ID, Name: m.Actor.Attributes["name"], Time: t}, true
}
