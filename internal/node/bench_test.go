package node

import (
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/container/fake"
)

// BenchmarkWarmAcquireRelease measures the pool's own overhead of a warm
// request: Acquire of an idle container, one fake invocation, Release.
func BenchmarkWarmAcquireRelease(b *testing.B) {
	rt := fake.New(fake.Options{})
	p, err := New(rt, Config{NodeID: "bench-warm", MemoryMB: 1024})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Shutdown(b.Context()) }()
	f := testFunc("f", "v1", 128, "echo")
	for b.Loop() {
		c, _, err := p.Acquire(b.Context(), f)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Invoke(b.Context(), container.InvokeRequest{}); err != nil {
			b.Fatal(err)
		}
		p.Release(c, true)
	}
}

// BenchmarkColdAcquireWithEviction measures a cold start that must evict an
// idle container whose removal takes 300 ms: the removal runs in the
// background, so Acquire should take far less than 300 ms.
func BenchmarkColdAcquireWithEviction(b *testing.B) {
	rt := fake.New(fake.Options{Latency: map[fake.Op]time.Duration{fake.OpRemove: 300 * time.Millisecond}})
	p, err := New(rt, Config{NodeID: "bench-evict", MemoryMB: 128})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Shutdown(b.Context()) }()
	fs := []string{"a", "b"}
	i := 0
	for b.Loop() {
		c, warm, err := p.Acquire(b.Context(), testFunc(fs[i%2], "v1", 128, "echo"))
		if err != nil || warm {
			b.Fatalf("Acquire = warm %v, %v", warm, err)
		}
		p.Release(c, true)
		i++
	}
}
