package node

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/serverledge/serverledge/internal/container"
)

// Container is one container of the pool. Acquire hands it out busy; the
// caller invokes it once and gives it back with Release. A container of a
// function with MaxConcurrency N serves up to N acquisitions at once.
type Container struct {
	pool    *Pool
	name    string
	id      string
	runtime string
	image   string

	// Guarded by pool.mu.
	function string
	version  string
	memoryMB int64
	cpus     float64
	state    state
	lastUsed time.Time
	// slots is how many requests the container serves at once (the
	// function's Concurrency); inflight how many it serves now. A busy
	// container has inflight ≥ 1, an idle one 0.
	slots    int
	inflight int
	// limitMB and limitCPUs are the limits the runtime enforces now; a stem
	// cell whose limits already match a function is not resized.
	limitMB   int64
	limitCPUs float64

	broken atomic.Bool
}

// ID returns the container's ID in the container runtime.
func (c *Container) ID() string { return c.id }

// Name returns the container's name.
func (c *Container) Name() string { return c.name }

// Function returns the name of the function loaded in the container.
func (c *Container) Function() string { return c.function }

// Version returns the version of the function loaded in the container.
func (c *Container) Version() string { return c.version }

// Runtime returns the canonical runtime name of the container.
func (c *Container) Runtime() string { return c.runtime }

// MemoryMB returns the container's memory limit.
func (c *Container) MemoryMB() int64 { return c.memoryMB }

// Invoke runs the loaded function once. When the runtime reports a timeout,
// a crash, a retired or a vanished container, or ctx ends during the call
// (the function may still be running), the container is marked unusable and
// Release removes it even if asked to keep it.
func (c *Container) Invoke(ctx context.Context, req container.InvokeRequest) (container.InvokeResult, error) {
	res, err := c.pool.rt.Invoke(ctx, c.id, req)
	if err != nil && unusable(err) {
		c.broken.Store(true)
	}
	return res, err
}

// unusable reports whether an Invoke error leaves the container unusable.
func unusable(err error) bool {
	return errors.Is(err, container.ErrTimeout) ||
		errors.Is(err, container.ErrCrashed) ||
		errors.Is(err, container.ErrUnavailable) ||
		errors.Is(err, container.ErrUnusable) ||
		errors.Is(err, container.ErrNotFound) ||
		errors.Is(err, container.ErrNotLoaded) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}
