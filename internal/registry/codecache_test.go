package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
)

// countingRegistry counts the code reads that reach the registry.
type countingRegistry struct {
	registry.Registry
	reads atomic.Int64
}

func (r *countingRegistry) GetCode(ctx context.Context, name, version string) ([]byte, error) {
	r.reads.Add(1)
	return r.Registry.GetCode(ctx, name, version)
}

// randomCode returns n random bytes, so that no layer can compress them.
func randomCode(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// createFunctions creates n functions of size bytes of code each in r and
// returns their definitions and code.
func createFunctions(t *testing.T, r registry.Registry, n, size int) ([]*function.Function, []string) {
	t.Helper()
	fns := make([]*function.Function, n)
	codes := make([]string, n)
	for i := range fns {
		codes[i] = randomCode(t, size)
		fns[i] = registrytest.NewFunction(t, fmt.Sprintf("f%d", i), codes[i])
		if err := r.CreateFunction(t.Context(), fns[i]); err != nil {
			t.Fatalf("create: %v", err)
		}
	}
	return fns, codes
}

func getCode(t *testing.T, c *registry.CodeCache, f *function.Function, want string) {
	t.Helper()
	code, err := c.Get(t.Context(), f)
	if err != nil {
		t.Fatalf("get code of %s: %v", f.Name, err)
	}
	if string(code) != want {
		t.Fatalf("code of %s: got %d bytes, want its %d bytes", f.Name, len(code), len(want))
	}
}

func TestCodeCacheEvictsByBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range registries {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := &countingRegistry{Registry: tc.open(t)}
			const size = 400 << 10
			fns, codes := createFunctions(t, reg, 3, size)
			cache, err := registry.NewCodeCache(reg, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range fns {
				getCode(t, cache, f, codes[i])
			}
			if cache.Len() != 2 || cache.Bytes() != 2*size {
				t.Errorf("after three %d-byte reads into a 1 MiB cache: %d archives, %d bytes; want 2 archives, %d bytes",
					size, cache.Len(), cache.Bytes(), 2*size)
			}
			reads := reg.reads.Load()
			getCode(t, cache, fns[2], codes[2])
			getCode(t, cache, fns[1], codes[1])
			if got := reg.reads.Load() - reads; got != 0 {
				t.Errorf("reads of the two most recent archives went %d times to the registry, want 0", got)
			}
			getCode(t, cache, fns[0], codes[0])
			if got := reg.reads.Load() - reads; got != 1 {
				t.Errorf("the evicted least recently used archive was read %d times from the registry, want 1", got)
			}
			if cache.Bytes() > 1<<20 {
				t.Errorf("cache holds %d bytes, over its 1 MiB budget", cache.Bytes())
			}
		})
	}
}

func TestCodeCacheSkipsCodeOverBudget(t *testing.T) {
	t.Parallel()
	reg := &countingRegistry{Registry: registries[2].open(t)}
	fns, codes := createFunctions(t, reg, 1, 2<<20)
	cache, err := registry.NewCodeCache(reg, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	getCode(t, cache, fns[0], codes[0])
	getCode(t, cache, fns[0], codes[0])
	if cache.Len() != 0 || cache.Bytes() != 0 || reg.reads.Load() != 2 {
		t.Errorf("code over the budget: cache holds %d archives, %d bytes, %d registry reads; want none kept and 2 reads",
			cache.Len(), cache.Bytes(), reg.reads.Load())
	}
	disabled, err := registry.NewCodeCache(reg, 0)
	if err != nil {
		t.Fatal(err)
	}
	getCode(t, disabled, fns[0], codes[0])
	if disabled.Len() != 0 {
		t.Errorf("a cache of 0 bytes holds %d archives", disabled.Len())
	}
}

// TestCodeCacheByVersion checks that the code of an updated function is
// read for the new version, never served from the cached old one, and that
// the old version's code is gone from the registry.
func TestCodeCacheByVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range registries {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := tc.open(t)
			fns, codes := createFunctions(t, reg, 1, 1000)
			cache, err := registry.NewCodeCache(reg, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			getCode(t, cache, fns[0], codes[0])
			newCode := randomCode(t, 2000)
			v2 := registrytest.NewFunction(t, "f0", newCode)
			if err := reg.UpdateFunction(t.Context(), v2); err != nil {
				t.Fatal(err)
			}
			getCode(t, cache, v2, newCode)
			cache.Forget("f0", v2.Version)
			if cache.Len() != 1 || cache.Bytes() != 2000 {
				t.Errorf("after Forget: %d archives, %d bytes; want only the new version's 2000 bytes", cache.Len(), cache.Bytes())
			}
			if _, err := cache.Get(t.Context(), fns[0]); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("get code of the replaced version: %v, want ErrNotFound", err)
			}
			if err := reg.DeleteFunction(t.Context(), "f0"); err != nil {
				t.Fatal(err)
			}
			cache.Forget("f0", "")
			if cache.Len() != 0 {
				t.Errorf("after a delete the cache holds %d archives", cache.Len())
			}
		})
	}
}

// TestCodeCacheSharesReads starts many cold starts of one function at once:
// the registry is read once.
func TestCodeCacheSharesReads(t *testing.T) {
	t.Parallel()
	reg := &countingRegistry{Registry: registries[0].open(t)}
	fns, codes := createFunctions(t, reg, 1, 3<<20)
	cache, err := registry.NewCodeCache(reg, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			code, err := cache.Get(t.Context(), fns[0])
			if err == nil && !bytes.Equal(code, []byte(codes[0])) {
				err = errors.New("wrong code")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("get: %v", err)
		}
	}
	if n := reg.reads.Load(); n != 1 {
		t.Errorf("16 concurrent reads of one archive went %d times to the registry, want 1", n)
	}
}
