package api

import (
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/serverledge/serverledge/internal/node"
	"github.com/serverledge/serverledge/internal/wire"
)

// hostSampleEvery bounds how often host figures are re-read.
const hostSampleEvery = 500 * time.Millisecond

// headerRefreshEvery bounds how often the figures in the invoke reply
// headers are re-read from the pool.
const headerRefreshEvery = 250 * time.Millisecond

// hostSampler reads host memory, CPU use and load average with gopsutil,
// at most every hostSampleEvery, so a busy /status does not cost a syscall
// storm.
type hostSampler struct {
	mu       sync.Mutex
	at       time.Time
	totalMB  int64
	freeMB   int64
	cpuUsage float64
	loadAvg  []float64
}

func newHostSampler() *hostSampler {
	return &hostSampler{loadAvg: []float64{-1, -1, -1}}
}

func (h *hostSampler) fill(out *wire.StatusResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.at) > hostSampleEvery {
		h.at = time.Now()
		if vm, err := mem.VirtualMemory(); err == nil {
			h.totalMB = int64(vm.Total >> 20)
			h.freeMB = int64(vm.Available >> 20)
		}
		if pct, err := cpu.Percent(0, false); err == nil && len(pct) == 1 {
			h.cpuUsage = pct[0]
		}
		if avg, err := load.Avg(); err == nil {
			h.loadAvg = []float64{avg.Load1, avg.Load5, avg.Load15}
		}
	}
	out.HostMemTotalMB = h.totalMB
	out.HostMemFreeMB = h.freeMB
	out.HostCPUPercent = h.cpuUsage
	out.LoadAvg = append([]float64(nil), h.loadAvg...)
}

// fillResources sets the newest upstream release's resource fields of out
// from the pool's figures taken at the given time.
func fillResources(out *wire.StatusResponse, st node.Stats, at time.Time) {
	out.TotalMemory = st.TotalMemoryMB
	out.FreeMemory = max(st.FreeMemoryMB, 0)
	out.AvailableMemory = max(st.TotalMemoryMB-st.BusyMemoryMB, 0)
	out.TotalCPU = st.TotalCPUs
	out.UsedCPU = max(st.TotalCPUs-st.FreeCPUs, 0)
	out.LastUpdateTime = at.Unix()
}

// nodeHeaders holds the invoke reply headers, formatted once per refresh.
type nodeHeaders struct {
	at     time.Time
	values [5][]string
}

// headerKeys are the canonical names of the values in nodeHeaders.
var headerKeys = [5]string{
	http.CanonicalHeaderKey(wire.HeaderNodeName),
	http.CanonicalHeaderKey(wire.HeaderFreeMem),
	http.CanonicalHeaderKey(wire.HeaderFreeCPU),
	http.CanonicalHeaderKey(wire.HeaderTimestamp),
	http.CanonicalHeaderKey(wire.HeaderNodeArch),
}

// headerCache serves the invoke reply headers from figures at most
// headerRefreshEvery old; one caller at a time refreshes them while the
// others use the previous ones, so a request never waits for the pool.
type headerCache struct {
	cur        atomic.Pointer[nodeHeaders]
	refreshing atomic.Bool
	// now reads the clock; nil means time.Now (tests set it).
	now func() time.Time
}

func (c *headerCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// set writes the headers into h, refreshing them from stats when stale.
func (c *headerCache) set(h http.Header, nodeID string, stats func() node.Stats) {
	cur := c.cur.Load()
	if (cur == nil || c.clock().Sub(cur.at) > headerRefreshEvery) && c.refreshing.CompareAndSwap(false, true) {
		cur = c.refresh(nodeID, stats())
		c.refreshing.Store(false)
	}
	if cur == nil {
		return
	}
	for i, k := range headerKeys {
		h[k] = cur.values[i]
	}
}

func (c *headerCache) refresh(nodeID string, st node.Stats) *nodeHeaders {
	now := c.clock()
	var r wire.StatusResponse
	fillResources(&r, st, now)
	nh := &nodeHeaders{at: now}
	nh.values = [5][]string{
		{nodeID},
		{strconv.FormatInt(r.AvailableMemory, 10)},
		{strconv.FormatFloat(r.TotalCPU-r.UsedCPU, 'f', -1, 64)},
		{strconv.FormatInt(now.Unix(), 10)},
		{runtime.GOARCH},
	}
	c.cur.Store(nh)
	return nh
}
