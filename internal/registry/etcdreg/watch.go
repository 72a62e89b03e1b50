package etcdreg

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/serverledge/serverledge/internal/registry"
)

// rewatchDelay is the pause before a broken watch is opened again.
const rewatchDelay = 200 * time.Millisecond

// WatchFunctions delivers every change made after it returns, in order,
// until ctx ends or the registry is closed; the channel is closed then.
// Only the function records are watched: code chunks live outside the
// watched prefix, and events carry definitions without code.
//
// A broken watch is resumed where it stopped. When etcd has compacted the
// history the watch still needed (a consumer that fell far behind), the
// registry resynchronizes: it delivers FunctionDeleted for every function it
// had reported that no longer exists and FunctionPut for every function that
// does, so consumers must treat a FunctionPut of an unchanged Version as a
// no-op.
func (r *Registry) WatchFunctions(ctx context.Context) (<-chan registry.FunctionEvent, error) {
	rctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	prefix := r.functionsPrefix()
	resp, err := r.cli.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("etcd registry: watch functions: %w", err)
	}
	known := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		known[strings.TrimPrefix(string(kv.Key), prefix)] = true
	}
	ch := make(chan registry.FunctionEvent, 16)
	wctx, stop := context.WithCancel(ctx)
	unlink := context.AfterFunc(r.ctx, stop)
	err = r.goroutine(func() {
		defer close(ch)
		defer unlink()
		defer stop()
		r.watch(wctx, ch, resp.Header.Revision+1, known)
	})
	if err != nil {
		unlink()
		stop()
		return nil, err
	}
	return ch, nil
}

// watch delivers function events from revision rev on until ctx ends.
// known holds the names of the functions that exist as of rev-1.
func (r *Registry) watch(ctx context.Context, ch chan<- registry.FunctionEvent, rev int64, known map[string]bool) {
	for ctx.Err() == nil {
		next, err := r.watchOnce(ctx, ch, rev, known)
		rev = next
		if err != nil && ctx.Err() == nil {
			r.log.Warn("function watch interrupted; resuming", "revision", rev, "error", err)
		}
		if !sleep(ctx, rewatchDelay) {
			return
		}
	}
}

// watchOnce runs one etcd watch from rev and returns the revision to resume from.
func (r *Registry) watchOnce(ctx context.Context, ch chan<- registry.FunctionEvent, rev int64, known map[string]bool) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	prefix := r.functionsPrefix()
	for resp := range r.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if resp.CompactRevision != 0 {
			return r.resync(ctx, ch, rev, known)
		}
		if err := resp.Err(); err != nil {
			return rev, err
		}
		for _, ev := range resp.Events {
			e, ok := r.event(ev, prefix)
			if ok && !send(ctx, ch, e) {
				return rev, ctx.Err()
			}
			rev = ev.Kv.ModRevision + 1
			if ok {
				known[e.Name] = e.Type == registry.FunctionPut
			}
		}
	}
	return rev, ctx.Err()
}

// event converts an etcd event; ok is false for a record that cannot be
// decoded (logged and skipped). Only the definition is decoded: code is
// never read.
func (r *Registry) event(ev *clientv3.Event, prefix string) (registry.FunctionEvent, bool) {
	name := strings.TrimPrefix(string(ev.Kv.Key), prefix)
	if ev.Type == mvccpb.DELETE {
		return registry.FunctionEvent{Type: registry.FunctionDeleted, Name: name}, true
	}
	f, _, err := decodeDefinition(ev.Kv.Value)
	if err != nil {
		r.log.Warn("skipping undecodable function record", "function", name, "revision", ev.Kv.ModRevision, "error", err)
		return registry.FunctionEvent{}, false
	}
	return registry.FunctionEvent{Type: registry.FunctionPut, Name: name, Function: f}, true
}

// resync reports the current state after history was lost and returns the
// revision to resume from; on failure it returns rev to try again later.
func (r *Registry) resync(ctx context.Context, ch chan<- registry.FunctionEvent, rev int64, known map[string]bool) (int64, error) {
	rctx, cancel, err := r.reqCtx(ctx)
	if err != nil {
		return rev, err
	}
	defer cancel()
	prefix := r.functionsPrefix()
	resp, err := r.cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return rev, fmt.Errorf("resync after compaction: %w", err)
	}
	current := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		current[strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	var events []registry.FunctionEvent
	for name, exists := range known {
		if _, ok := current[name]; exists && !ok {
			events = append(events, registry.FunctionEvent{Type: registry.FunctionDeleted, Name: name})
		}
	}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), prefix)
		f, _, err := decodeDefinition(kv.Value)
		if err != nil {
			r.log.Warn("skipping undecodable function record", "function", name, "error", err)
			continue
		}
		events = append(events, registry.FunctionEvent{Type: registry.FunctionPut, Name: name, Function: f})
	}
	clear(known)
	for name := range current {
		known[name] = true
	}
	for _, e := range events {
		if !send(ctx, ch, e) {
			return resp.Header.Revision + 1, ctx.Err()
		}
	}
	return resp.Header.Revision + 1, nil
}

func send(ctx context.Context, ch chan<- registry.FunctionEvent, e registry.FunctionEvent) bool {
	select {
	case ch <- e:
		return true
	case <-ctx.Done():
		return false
	}
}
