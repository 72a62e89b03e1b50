// Package container turns "run this function" into a running container.
//
// A Runtime creates containers from runtime images, starts them (returning
// once the executor inside is ready), loads function code into a running
// container, invokes it, and removes it. The Docker implementation lives in
// package container/docker, an in-process fake in container/fake, and the
// conformance suite both must pass in container/containertest.
package container

import (
	"context"
	"errors"
	"time"
)

// Label keys set on every container a node creates.
const (
	// LabelManaged marks a container as created by Serverledge ("true").
	LabelManaged = "serverledge.managed"
	// LabelNode names the node that owns the container.
	LabelNode = "serverledge.node"
	// LabelFunction names the function the container serves ("" for a stem cell).
	LabelFunction = "serverledge.function"
	// LabelRuntime names the runtime of the container.
	LabelRuntime = "serverledge.runtime"
)

// Sentinel errors callers branch on. Implementations wrap them with %w.
var (
	// ErrNotFound means the container does not exist (or was removed).
	ErrNotFound = errors.New("container not found")
	// ErrImageNotFound means the image is not present locally.
	ErrImageNotFound = errors.New("image not found")
	// ErrBadCode means the code archive was refused (escaping entries, bad handler, import error).
	ErrBadCode = errors.New("function code refused")
	// ErrAlreadyLoaded means code was already loaded into the container.
	ErrAlreadyLoaded = errors.New("container already specialized")
	// ErrNotLoaded means Invoke was called before Load.
	ErrNotLoaded = errors.New("no function loaded")
	// ErrTimeout means the invocation exceeded its timeout; the container is not reusable.
	ErrTimeout = errors.New("function timed out")
	// ErrCrashed means the function process died (e.g. out of memory) after
	// it received its input; the container is not reusable.
	ErrCrashed = errors.New("function process crashed")
	// ErrUnavailable means the container could not be reached before the
	// function received its input (connection refused, socket gone,
	// container not running): the request may be retried elsewhere, the
	// container is not reusable.
	ErrUnavailable = errors.New("container unavailable")
	// ErrUnusable means the container was retired after a timeout or crash.
	ErrUnusable = errors.New("container is not reusable")
)

// Spec describes a container to create.
type Spec struct {
	// Name is a unique container name chosen by the caller.
	Name string
	// Image is the local image to create the container from.
	Image string
	// MemoryMB is the memory limit; 0 means none.
	MemoryMB int64
	// CPUs is the CPU cap in cores; ≤0 means none.
	CPUs float64
	// Labels are set on the container (see the Label* keys).
	Labels map[string]string
	// Env holds extra KEY=value variables.
	Env []string
	// TmpSizeMB is the size of the function's writable /tmp; 0 means the
	// backend's default.
	TmpSizeMB int64
}

// LoadRequest specializes a started container with function code.
type LoadRequest struct {
	// Handler is the runtime-specific entry point (python module.function, nodejs file.js).
	Handler string
	// Code is a tar archive; it is unpacked inside the container.
	Code []byte
	// Concurrency is how many invocations the container serves at once
	// (the function's MaxConcurrency); ≤ 1 means one at a time.
	Concurrency int
	// Env holds the function's environment variables, set in the
	// function's process before its code is imported (validated with
	// function.ValidateEnv).
	Env map[string]string
}

// InvokeRequest is one invocation.
type InvokeRequest struct {
	// Params are the function's parameters.
	Params map[string]any
	// ReturnOutput asks for the function's stdout/stderr.
	ReturnOutput bool
	// Timeout bounds the execution; 0 means the executor's default.
	Timeout time.Duration
	// RequestID is passed to the function in its context.
	RequestID string
}

// InvokeResult is the outcome of an invocation that reached the function.
// A function that raised an exception yields Success false and Error set,
// with a nil error from Invoke.
type InvokeResult struct {
	// Success is false when the function raised an error.
	Success bool
	// Result is the function's return value, JSON-encoded.
	Result string
	// Output is the captured stdout/stderr when requested.
	Output string
	// Error is the function's error message when Success is false.
	Error string
	// Duration is the execution time inside the container.
	Duration time.Duration
}

// Info describes an existing container, as listed by label.
type Info struct {
	ID     string
	Name   string
	Labels map[string]string
	// Running is true when the container's main process runs.
	Running bool
}

// EventKind names a change of a container's state reported by Watch.
type EventKind string

// Event kinds reported by Watch.
const (
	// EventDied means the container's main process exited or was killed.
	EventDied EventKind = "die"
	// EventOOM means the kernel's OOM killer struck a process of the container.
	EventOOM EventKind = "oom"
	// EventRemoved means the container was removed.
	EventRemoved EventKind = "destroy"
)

// Event is a change of a container's state. After any of the kinds above a
// container no longer serves.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// ID and Name identify the container.
	ID, Name string
	// Time is when the runtime recorded the event.
	Time time.Time
}

// WatchOptions select the events Watch reports.
type WatchOptions struct {
	// Labels are the labels a container must all carry.
	Labels map[string]string
	// Since replays the events recorded at or after it, when not zero, so
	// that a watcher reconnecting after a failure misses nothing.
	Since time.Time
}

// Runtime is a container backend.
type Runtime interface {
	// Create creates (but does not start) a container and returns its ID.
	Create(ctx context.Context, spec Spec) (string, error)
	// Start starts a created container and returns once its executor is ready.
	Start(ctx context.Context, id string) error
	// Resize changes the memory limit (MB, 0 = none) and CPU cap (cores, ≤0 = none)
	// of a running container; a node uses it to specialize a stem cell.
	Resize(ctx context.Context, id string, memoryMB int64, cpus float64) error
	// Load unpacks code inside the running container and prepares the handler.
	Load(ctx context.Context, id string, req LoadRequest) error
	// Invoke runs the loaded function once.
	Invoke(ctx context.Context, id string, req InvokeRequest) (InvokeResult, error)
	// Remove stops and removes the container; removing a missing container is not an error.
	Remove(ctx context.Context, id string) error
	// List returns the containers carrying all the given labels.
	List(ctx context.Context, labels map[string]string) ([]Info, error)
	// ImageExists reports whether an image is present locally.
	ImageExists(ctx context.Context, image string) (bool, error)
	// Watch calls fn, in order and on the caller's goroutine, for every
	// event of a container carrying all of opts.Labels, until ctx ends
	// (it then returns ctx's error) or the event stream fails. Events of
	// opts.Since and later are replayed first.
	Watch(ctx context.Context, opts WatchOptions, fn func(Event)) error
}
