package registry_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/etcdreg"
	"github.com/serverledge/serverledge/internal/registry/memreg"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
	"github.com/serverledge/serverledge/internal/testutil"
)

// registries are the registries the cache tests run against: real etcd
// (embedded and external) and the in-memory one.
var registries = []struct {
	name string
	open func(t *testing.T) registry.Registry
}{
	{"embedded-etcd", func(t *testing.T) registry.Registry { return openEtcd(t, registrytest.StartEmbeddedEtcd(t)) }},
	{"external-etcd", func(t *testing.T) registry.Registry { return openEtcd(t, registrytest.StartExternalEtcd(t)) }},
	{"memreg", func(t *testing.T) registry.Registry {
		r := memreg.New()
		t.Cleanup(func() { r.Close() })
		return r
	}},
}

func openEtcd(t *testing.T, endpoints []string) registry.Registry {
	t.Helper()
	r, err := etcdreg.New(t.Context(), etcdreg.Config{Endpoints: endpoints, Prefix: registrytest.UniquePrefix(t)})
	if err != nil {
		t.Fatalf("etcd registry: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestCacheHoldsNoCode fills the cache by watch events and by reads and
// checks what it stores: definitions, never code.
func TestCacheHoldsNoCode(t *testing.T) {
	t.Parallel()
	for _, tc := range registries {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.open(t)
			ctx := t.Context()
			cache, err := registry.NewCache(r, 16)
			if err != nil {
				t.Fatal(err)
			}
			wctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			events := make(chan registry.FunctionEvent, 16)
			go func() {
				defer close(done)
				cache.Watch(wctx, slog.New(slog.DiscardHandler), func(ev registry.FunctionEvent) { events <- ev })
			}()
			t.Cleanup(func() { stop(); <-done })

			waitWatching(t, r, cache)

			large := registrytest.NewFunction(t, "large", registrytest.LargeCode(2<<20))
			small := registrytest.NewFunction(t, "small", "print(1)")
			for _, f := range []*function.Function{large, small} {
				if err := r.CreateFunction(ctx, f); err != nil {
					t.Fatalf("create %s: %v", f.Name, err)
				}
			}
			updated := registrytest.NewFunction(t, "large", registrytest.LargeCode(3<<20))
			if err := r.UpdateFunction(ctx, updated); err != nil {
				t.Fatalf("update: %v", err)
			}
			testutil.WaitUntil(t, 10*time.Second, "the watch applies the changes", func() bool {
				l, okL := cache.Peek("large")
				_, okS := cache.Peek("small")
				return okL && okS && l.Version == updated.Version
			})
			for _, name := range []string{"probe", "large", "small"} {
				f, _ := cache.Peek(name)
				if f.TarFunctionCode != "" {
					t.Errorf("after watch events the cache holds %d bytes of code of %s, want none", len(f.TarFunctionCode), name)
				}
			}
			for len(events) > 0 {
				if ev := <-events; ev.Function != nil && ev.Function.TarFunctionCode != "" {
					t.Errorf("watch event of %s carries %d bytes of code", ev.Name, len(ev.Function.TarFunctionCode))
				}
			}

			// A read-through fill stores no code either.
			cache.Invalidate("large")
			if _, err := cache.Get(ctx, "large"); err != nil {
				t.Fatalf("get: %v", err)
			}
			if f, ok := cache.Peek("large"); !ok || f.TarFunctionCode != "" || f.Version != updated.Version {
				t.Errorf("after a read the cache holds %+v, want the definition of version %s without code", f, updated.Version)
			}
		})
	}
}

// waitWatching returns once cache's watch reports changes: it writes a probe
// function until the cache holds it, which only a watch event does.
func waitWatching(t *testing.T, r registry.Registry, cache *registry.Cache) {
	t.Helper()
	probe := registrytest.NewFunction(t, "probe", "p")
	if err := r.CreateFunction(t.Context(), probe); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 10*time.Second, "the watch reports the probe", func() bool {
		if _, ok := cache.Peek("probe"); ok {
			return true
		}
		if err := r.UpdateFunction(t.Context(), probe); err != nil {
			t.Fatalf("update probe: %v", err)
		}
		return false
	})
}
