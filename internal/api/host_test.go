package api

import (
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/wire"
)

// TestNodeHeadersAreCached checks the invoke reply headers read the pool at
// most once per headerRefreshEvery, however many requests set them.
func TestNodeHeadersAreCached(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var c headerCache
	c.now = func() time.Time { return now }
	reads := 0
	st := node.Stats{TotalMemoryMB: 1000, FreeMemoryMB: 300, BusyMemoryMB: 200, TotalCPUs: 4, FreeCPUs: 2.5}
	stats := func() node.Stats { reads++; return st }
	for range 1000 {
		c.set(http.Header{}, "n1", stats)
	}
	if reads != 1 {
		t.Fatalf("1000 requests read the pool %d times, want 1", reads)
	}
	h := http.Header{}
	c.set(h, "n1", stats)
	want := map[string]string{
		wire.HeaderNodeName:  "n1",
		wire.HeaderFreeMem:   "800",
		wire.HeaderFreeCPU:   "2.5",
		wire.HeaderTimestamp: "1700000000",
		wire.HeaderNodeArch:  runtime.GOARCH,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	now = now.Add(headerRefreshEvery + time.Millisecond)
	st.BusyMemoryMB = 600
	c.set(h, "n1", stats)
	if reads != 2 || h.Get(wire.HeaderFreeMem) != "400" || h.Get(wire.HeaderTimestamp) != "1700000000" {
		t.Errorf("after %v: %d reads, Free-Mem %s, Timestamp %s; want a refresh to 400", headerRefreshEvery, reads, h.Get(wire.HeaderFreeMem), h.Get(wire.HeaderTimestamp))
	}
}

func BenchmarkNodeHeaders(b *testing.B) {
	var c headerCache
	stats := func() node.Stats { return node.Stats{TotalMemoryMB: 1000, TotalCPUs: 4, FreeCPUs: 4} }
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		c.set(h, "n1", stats)
	}
}
