package api

import (
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/serverledge/serverledge/internal/wire"
)

// hostSampleEvery bounds how often host figures are re-read.
const hostSampleEvery = 500 * time.Millisecond

// hostSampler reads host memory and CPU use with gopsutil, at most every
// hostSampleEvery, so a busy /status does not cost a syscall storm.
type hostSampler struct {
	mu       sync.Mutex
	at       time.Time
	totalMB  int64
	freeMB   int64
	cpuUsage float64
}

func newHostSampler() *hostSampler { return &hostSampler{} }

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
	}
	out.HostMemTotalMB = h.totalMB
	out.HostMemFreeMB = h.freeMB
	out.HostCPUPercent = h.cpuUsage
}
