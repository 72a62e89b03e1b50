// Package docker implements container.Runtime on the Docker Engine API.
//
// Every container gets a private host directory (under Options.RunDir)
// bind-mounted at executor.SocketDir, a read-only root file system with
// size-bounded tmpfs mounts at TmpPath and executor.CodeDir, and keeps only
// the capabilities its executor needs to run the function as an
// unprivileged user (docs/executor.md, "Container contract"). Before the container starts, the
// runtime creates the FIFO executor.ReadyFIFO in it; Start returns once the
// executor has written "ready\n" into the FIFO, so readiness is an event, not
// a polling loop. The runtime then talks to the executor over the unix socket
// executor.SocketName in the same directory, with one keep-alive client per
// container.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/codearchive"
	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/executor"
)

// Defaults for Options fields left at their zero value.
const (
	// DefaultRunDir is the host directory holding the per-container socket directories.
	DefaultRunDir = "/tmp/serverledge-run"
	// DefaultNetwork is the network mode of function containers.
	DefaultNetwork = "bridge"
	// DefaultStartTimeout bounds Start: Docker start plus the executor becoming ready.
	DefaultStartTimeout = 30 * time.Second
	// DefaultCallTimeout bounds every single Docker API call.
	DefaultCallTimeout = 30 * time.Second
	// PidsLimit caps the number of processes in a function container.
	PidsLimit = 256
	// DefaultTmpSizeMB is the size of a container's /tmp tmpfs when neither
	// the Spec nor Options give one.
	DefaultTmpSizeMB = 64
	// TmpPath is the function's only writable scratch directory.
	TmpPath = "/tmp"
)

// CodeSizeBytes is the size of the tmpfs at executor.CodeDir: room for the
// largest archive the executor unpacks, plus file system overhead.
const CodeSizeBytes = codearchive.MaxTotalBytes + 16<<20

// Capabilities is what the executor keeps of root's capabilities: switching
// the worker to its unprivileged user (SETUID, SETGID) and signalling it
// (KILL). The worker itself runs with none.
var Capabilities = []string{"SETUID", "SETGID", "KILL"}

// ErrUnsafeRunDir means Options.RunDir (the container.rundir key) exists with
// permissions that expose the executor sockets to other users.
var ErrUnsafeRunDir = errors.New("unsafe run dir")

// maxSocketPath is the longest unix socket path the kernel accepts (sun_path
// is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// invokeGrace is how long the runtime waits beyond an invocation's timeout
// for the executor's own 504 before it gives up on the executor.
const invokeGrace = 5 * time.Second

// validName is Docker's rule for container names; it also keeps the name
// safe to use as a directory name.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Options configure a Runtime.
type Options struct {
	// RunDir is the host directory holding one socket directory per
	// container; default DefaultRunDir. Keep it short: the socket path
	// RunDir/<name>/executor.sock must fit in 107 bytes (longer names are
	// replaced by a hash).
	RunDir string
	// Network is the Docker network mode ("bridge", "none", or a network
	// name); default DefaultNetwork. No ports are ever published.
	Network string
	// StartTimeout bounds Start; default DefaultStartTimeout.
	StartTimeout time.Duration
	// CallTimeout bounds each Docker API call; default DefaultCallTimeout.
	CallTimeout time.Duration
	// TmpSizeMB is the size of the /tmp tmpfs of a container whose Spec
	// gives none; default DefaultTmpSizeMB.
	TmpSizeMB int64
	// Logger receives debug timings and warnings; default slog.Default().
	Logger *slog.Logger
}

// Runtime is a container.Runtime backed by the Docker daemon. It is safe for
// concurrent use.
type Runtime struct {
	cli  *client.Client
	opts Options
	log  *slog.Logger
	// hostMemory (bytes) and hostCPUs stand for "no limit" in Resize:
	// Docker cannot lift a limit once set.
	hostMemory int64
	hostCPUs   int

	mu         sync.RWMutex
	containers map[string]*entry // by container ID
}

var _ container.Runtime = (*Runtime)(nil)

// entry is what the runtime knows about a container it created.
type entry struct {
	id   string
	name string
	dir  string

	// startMu serializes Start.
	startMu sync.Mutex

	mu       sync.Mutex
	started  bool
	exec     *executor.Client
	memoryMB int64
	// retired is non-nil once the container must not serve again; it says why.
	retired error
}

// New connects to the Docker daemon named by the environment (DOCKER_HOST,
// default the local unix socket), negotiates the API version and prepares
// RunDir.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.RunDir == "" {
		opts.RunDir = DefaultRunDir
	}
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.TmpSizeMB <= 0 {
		opts.TmpSizeMB = DefaultTmpSizeMB
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	runDir, err := filepath.Abs(opts.RunDir)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: run dir: %w", err)
	}
	opts.RunDir = runDir
	if len(opts.RunDir)+1+8+1+len(executor.SocketName) > maxSocketPath {
		return nil, fmt.Errorf("docker runtime: run dir %q is too long for unix socket paths", opts.RunDir)
	}
	if err := prepareRunDir(opts.RunDir); err != nil {
		return nil, fmt.Errorf("docker runtime: %w", err)
	}

	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: client: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
	defer cancel()
	if _, err := cli.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("docker runtime: cannot reach the Docker daemon: %w", err)
	}
	infoCtx, cancelInfo := context.WithTimeout(ctx, opts.CallTimeout)
	defer cancelInfo()
	info, err := cli.Info(infoCtx, client.InfoOptions{})
	if err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("docker runtime: daemon info: %w", err)
	}
	r := &Runtime{
		cli:        cli,
		opts:       opts,
		log:        opts.Logger,
		hostMemory: info.Info.MemTotal,
		hostCPUs:   info.Info.NCPU,
		containers: make(map[string]*entry),
	}
	r.log.Debug("docker runtime ready", "api", cli.ClientVersion(), "run_dir", opts.RunDir, "network", opts.Network,
		"host_memory", info.Info.MemTotal, "host_cpus", info.Info.NCPU)
	return r, nil
}

// prepareRunDir creates dir with mode 0700, or checks that an existing one
// is a directory owned by this process's user that no one else may write
// to: the per-container directories inside hold the executor sockets.
func prepareRunDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("run dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: container.rundir %s is not a directory (%s)", ErrUnsafeRunDir, dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: container.rundir %s is owned by uid %d, not by this node's uid %d; remove it or choose another container.rundir",
			ErrUnsafeRunDir, dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%w: container.rundir %s has mode %04o, writable by group or others; make it 0700 (chmod 700 %s) or choose another container.rundir",
			ErrUnsafeRunDir, dir, perm, dir)
	}
	return nil
}

// Close releases the executor clients and the Docker client. It does not
// remove containers.
func (r *Runtime) Close() error {
	r.mu.Lock()
	for _, e := range r.containers {
		e.closeClient()
	}
	r.containers = make(map[string]*entry)
	r.mu.Unlock()
	return r.cli.Close()
}

// Client returns the underlying Docker client, for callers that need an API
// call the Runtime does not offer (benchmarks, diagnostics).
func (r *Runtime) Client() *client.Client {
	return r.cli
}

// RunDir returns the host directory holding the per-container directories.
func (r *Runtime) RunDir() string {
	return r.opts.RunDir
}

// callCtx bounds one Docker API call.
func (r *Runtime) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.CallTimeout)
}

func (r *Runtime) lookup(id string) (*entry, error) {
	r.mu.RLock()
	e, ok := r.containers[id]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("container %s: %w (not created by this runtime)", shortID(id), container.ErrNotFound)
	}
	return e, nil
}

func (r *Runtime) forget(id string) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.containers[id]
	delete(r.containers, id)
	return e
}

// ImageExists reports whether image is present locally. It never pulls.
func (r *Runtime) ImageExists(ctx context.Context, image string) (bool, error) {
	if image == "" {
		return false, nil
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	_, err := r.cli.ImageInspect(cctx, image)
	return found(err, "image "+image)
}

func (e *entry) closeClient() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.exec != nil {
		e.exec.Close()
		e.exec = nil
	}
}

// retire marks the container as not reusable and returns err.
func (e *entry) retire(err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.retired == nil {
		e.retired = err
	}
	return err
}

// executor returns the container's executor client, or why it cannot serve.
func (e *entry) executor() (*executor.Client, int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.retired != nil {
		return nil, 0, fmt.Errorf("container %s: %w (%v)", shortID(e.id), container.ErrUnusable, e.retired)
	}
	if !e.started || e.exec == nil {
		return nil, 0, fmt.Errorf("container %s: %w: container not started", shortID(e.id), container.ErrNotLoaded)
	}
	return e.exec, e.memoryMB, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// errorsIsContext reports whether err comes from a cancelled or expired context.
func errorsIsContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
