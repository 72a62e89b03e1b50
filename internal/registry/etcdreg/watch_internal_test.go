package etcdreg

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
)

// TestWatchResyncsAfterCompaction resumes a watch from a revision etcd has
// compacted away, as happens to a consumer that fell far behind: the watcher
// must report the current state, then go on with later changes.
func TestWatchResyncsAfterCompaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, err := New(ctx, Config{Endpoints: registrytest.StartEmbeddedEtcd(t), Prefix: registrytest.UniquePrefix(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })

	for _, name := range []string{"gone", "changed"} {
		if err := r.CreateFunction(ctx, registrytest.NewFunction(t, name, "v1")); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	resp, err := r.cli.Get(ctx, "revision")
	if err != nil {
		t.Fatalf("get revision: %v", err)
	}
	seen := resp.Header.Revision
	changed := registrytest.NewFunction(t, "changed", "v2")
	added := registrytest.NewFunction(t, "added", registrytest.LargeCode(2<<20))
	if err := r.DeleteFunction(ctx, "gone"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := r.UpdateFunction(ctx, changed); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := r.CreateFunction(ctx, added); err != nil {
		t.Fatalf("create: %v", err)
	}
	resp, err = r.cli.Get(ctx, "revision")
	if err != nil {
		t.Fatalf("get revision: %v", err)
	}
	if _, err := r.cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}

	wctx, cancel := context.WithCancel(ctx)
	ch := make(chan registry.FunctionEvent, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.watch(wctx, ch, seen+1, map[string]bool{"gone": true, "changed": true})
	}()
	t.Cleanup(func() { cancel(); <-done })

	later := registrytest.NewFunction(t, "later", "v1")
	def := func(f *function.Function) *function.Function {
		d := f.WithoutCode()
		return &d
	}
	want := []registry.FunctionEvent{
		{Type: registry.FunctionDeleted, Name: "gone"},
		{Type: registry.FunctionPut, Name: "added", Function: def(added)},
		{Type: registry.FunctionPut, Name: "changed", Function: def(changed)},
		{Type: registry.FunctionPut, Name: "later", Function: def(later)},
	}
	for i, w := range want {
		if i == len(want)-1 {
			if err := r.CreateFunction(ctx, later); err != nil {
				t.Fatalf("create after resync: %v", err)
			}
		}
		select {
		case got := <-ch:
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("event %d: got %v %s, want %v %s", i+1, got.Type, got.Name, w.Type, w.Name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (%v %s) not delivered", i+1, w.Type, w.Name)
		}
	}
}
