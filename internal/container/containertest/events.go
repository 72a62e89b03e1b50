package containertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// kill kills container id through Setup.Kill.
func (s *suite) kill(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	if s.Kill == nil {
		t.Fatal("Setup.Kill is not set")
	}
	if err := s.Kill(ctx, id); err != nil {
		t.Fatalf("Kill: %v", err)
	}
}

// watchUntil watches the events of the containers carrying labels since
// since, and returns those seen until one for which done holds.
func (s *suite) watchUntil(t *testing.T, ctx context.Context, labels map[string]string, since time.Time, done func(container.Event) bool) []container.Event {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var seen []container.Event
	err := s.Runtime.Watch(wctx, container.WatchOptions{Labels: labels, Since: since}, func(ev container.Event) {
		seen = append(seen, ev)
		if done(ev) {
			cancel()
		}
	})
	if wctx.Err() == nil || ctx.Err() != nil {
		t.Fatalf("Watch ended before the awaited event (seen %+v): %v", seen, err)
	}
	return seen
}

func testWatch(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	since := time.Now().Add(-time.Second)
	watched := s.loaded(t, ctx, "watched", s.Echo, 128)
	other := s.loaded(t, ctx, "unwatched", s.Echo, 128)
	s.kill(t, ctx, other)
	s.kill(t, ctx, watched)
	if err := s.Runtime.Remove(ctx, watched); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	labels := map[string]string{LabelRun: s.run, container.LabelFunction: "watched"}
	seen := s.watchUntil(t, ctx, labels, since, func(ev container.Event) bool {
		return ev.ID == watched && ev.Kind == container.EventRemoved
	})
	died := false
	for _, ev := range seen {
		if ev.ID != watched {
			t.Errorf("event %+v of a container without the watched labels", ev)
		}
		if ev.Kind == container.EventDied {
			died = true
		}
		if ev.Time.IsZero() {
			t.Errorf("event %+v has no time", ev)
		}
	}
	if !died {
		t.Errorf("no die event for the killed container, seen %+v", seen)
	}
	for _, ev := range seen {
		if ev.Name == "" {
			t.Errorf("event %+v lacks the container name", ev)
		}
	}
}

func testDeadUnavailable(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	id := s.loaded(t, ctx, "dead", s.Echo, 128)
	if _, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()}); err != nil {
		t.Fatalf("Invoke before the kill: %v", err)
	}
	since := time.Now().Add(-time.Second)
	s.kill(t, ctx, id)
	// Wait for the death to be recorded before invoking.
	s.watchUntil(t, ctx, map[string]string{LabelRun: s.run, container.LabelFunction: "dead"}, since, func(ev container.Event) bool {
		return ev.ID == id && ev.Kind == container.EventDied
	})
	_, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()})
	if !errors.Is(err, container.ErrUnavailable) {
		t.Fatalf("Invoke of a container killed while idle: error %v, want ErrUnavailable", err)
	}
	if errors.Is(err, container.ErrCrashed) {
		t.Errorf("Invoke of a container killed while idle: %v claims the function received its input", err)
	}
	if _, err := s.Runtime.Invoke(ctx, id, container.InvokeRequest{Params: params()}); err == nil {
		t.Errorf("second Invoke of a dead container succeeded")
	}
	list, err := s.Runtime.List(ctx, map[string]string{LabelRun: s.run, container.LabelFunction: "dead"})
	if err != nil || len(list) != 1 || list[0].Running {
		t.Errorf("List after the kill = %+v, %v, want one container not running", list, err)
	}
}
