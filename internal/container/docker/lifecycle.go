package docker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	dcontainer "github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/executor"
)

// logTail is how many container log lines an early-exit error quotes.
const logTail = 20

// Create prepares the container's run directory and ready FIFO, then creates
// the container: memory limit without swap, CPU cap, labels (LabelManaged is
// always set), a read-only root file system, the run directory bind-mounted
// at executor.SocketDir (group-accessible to the executor only), tmpfs
// mounts at TmpPath (Spec.TmpSizeMB or Options.TmpSizeMB, mode 1777) and
// executor.CodeDir (CodeSizeBytes, mode 0755), all capabilities dropped but
// Capabilities, no-new-privileges, a PID limit, no restart policy and no
// published ports.
func (r *Runtime) Create(ctx context.Context, spec container.Spec) (string, error) {
	if !validName.MatchString(spec.Name) {
		return "", fmt.Errorf("create container: invalid name %q", spec.Name)
	}
	if spec.Image == "" {
		return "", fmt.Errorf("create container %s: no image", spec.Name)
	}
	if spec.MemoryMB < 0 {
		return "", fmt.Errorf("create container %s: negative memory limit", spec.Name)
	}
	if spec.TmpSizeMB < 0 {
		return "", fmt.Errorf("create container %s: negative /tmp size", spec.Name)
	}
	tmpMB := spec.TmpSizeMB
	if tmpMB == 0 {
		tmpMB = r.opts.TmpSizeMB
	}
	dir, gid, err := r.makeRunDir(ctx, spec.Name)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}

	labels := make(map[string]string, len(spec.Labels)+1)
	maps.Copy(labels, spec.Labels)
	labels[container.LabelManaged] = "true"
	pids := int64(PidsLimit)
	hostConfig := &dcontainer.HostConfig{
		Mounts: []mount.Mount{{
			Type:   mount.TypeBind,
			Source: dir,
			Target: executor.SocketDir,
		}, {
			Type:         mount.TypeTmpfs,
			Target:       TmpPath,
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: tmpMB << 20, Mode: 0o1777},
		}, {
			Type:         mount.TypeTmpfs,
			Target:       executor.CodeDir,
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: CodeSizeBytes, Mode: 0o755},
		}},
		ReadonlyRootfs: true,
		NetworkMode:    dcontainer.NetworkMode(r.opts.Network),
		CapDrop:        []string{"ALL"},
		CapAdd:         Capabilities,
		// The executor reaches its run directory (mode 0770) through the
		// directory's group; the worker has no supplementary groups.
		GroupAdd:    []string{strconv.FormatUint(uint64(gid), 10)},
		SecurityOpt: []string{"no-new-privileges"},
		Resources:   resources(spec.MemoryMB, spec.CPUs),
	}
	hostConfig.PidsLimit = &pids

	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	start := time.Now()
	res, err := r.cli.ContainerCreate(cctx, client.ContainerCreateOptions{
		Name: spec.Name,
		Config: &dcontainer.Config{
			Image:  spec.Image,
			Labels: labels,
			Env:    spec.Env,
		},
		HostConfig: hostConfig,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("create container %s: %w: %s", spec.Name, container.ErrImageNotFound, spec.Image)
		}
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	r.log.Debug("container created", "name", spec.Name, "id", shortID(res.ID), "took", time.Since(start))
	e := &entry{id: res.ID, name: spec.Name, dir: dir, memoryMB: spec.MemoryMB}
	r.mu.Lock()
	r.containers[res.ID] = e
	r.mu.Unlock()
	return res.ID, nil
}

// resources turns the backend-neutral limits into Docker resources: memory
// without swap, and a CPU cap (none when cpus ≤ 0).
func resources(memoryMB int64, cpus float64) dcontainer.Resources {
	var res dcontainer.Resources
	if memoryMB > 0 {
		res.Memory = memoryMB << 20
		res.MemorySwap = res.Memory
	}
	if cpus > 0 {
		res.NanoCPUs = int64(cpus * 1e9)
	}
	return res
}

// runDirFor returns the host directory of the container called name: the
// name itself when the socket path fits, a hash of it otherwise.
func (r *Runtime) runDirFor(name string) string {
	dir := filepath.Join(r.opts.RunDir, name)
	if len(dir)+1+len(executor.SocketName) <= maxSocketPath {
		return dir
	}
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(r.opts.RunDir, "h-"+hex.EncodeToString(sum[:])[:16])
}

// makeRunDir creates the container's run directory with the ready FIFO and
// returns it with its group. A directory left behind by a container that no
// longer exists is replaced. The directory is mode 0770: the node (owner)
// and the container's executor (through the group, see Create) may create
// files in it, the function's unprivileged user may not even enter it.
func (r *Runtime) makeRunDir(ctx context.Context, name string) (string, uint32, error) {
	dir := r.runDirFor(name)
	err := os.Mkdir(dir, 0o770)
	if errors.Is(err, fs.ErrExist) {
		exists, ierr := r.containerExists(ctx, name)
		if ierr != nil {
			return "", 0, ierr
		}
		if exists {
			return "", 0, fmt.Errorf("a container named %s already exists", name)
		}
		if err := os.RemoveAll(dir); err != nil {
			return "", 0, fmt.Errorf("remove stale run dir: %w", err)
		}
		err = os.Mkdir(dir, 0o770)
	}
	if err != nil {
		return "", 0, fmt.Errorf("run dir: %w", err)
	}
	fail := func(what string, err error) (string, uint32, error) {
		_ = os.RemoveAll(dir)
		return "", 0, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Chmod(dir, 0o770); err != nil { // the umask may have cleared group bits
		return fail("run dir", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fail("run dir", err)
	}
	gid := uint32(os.Getegid())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid = st.Gid
	}
	fifo := filepath.Join(dir, executor.ReadyFIFO)
	if err := syscall.Mkfifo(fifo, 0o660); err != nil {
		return fail("ready fifo", err)
	}
	if err := os.Chmod(fifo, 0o660); err != nil {
		return fail("ready fifo", err)
	}
	return dir, gid, nil
}

func (r *Runtime) containerExists(ctx context.Context, nameOrID string) (bool, error) {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	_, err := r.cli.ContainerInspect(cctx, nameOrID, client.ContainerInspectOptions{})
	return found(err, "container "+nameOrID)
}

// found turns the error of inspecting what into whether it exists: a
// not-found error means it does not, any other error is returned.
func found(err error, what string) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("inspect %s: %w", what, err)
	}
}

// Start starts the container and returns once its executor has written
// "ready" into the ready FIFO, within Options.StartTimeout. If the container
// exits first, the error quotes the tail of its logs. A container whose Start
// failed is left for the caller to Remove. Starting a container this runtime
// already started is a no-op.
func (r *Runtime) Start(ctx context.Context, id string) error {
	e, err := r.lookup(id)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	e.startMu.Lock()
	defer e.startMu.Unlock()
	e.mu.Lock()
	started := e.started
	e.mu.Unlock()
	if started {
		return nil
	}

	// O_RDWR: opening never blocks waiting for a writer, and the FIFO never
	// reports EOF while we hold it. Go registers FIFOs with its poller, so
	// the read below honours deadlines.
	fifo, err := os.OpenFile(filepath.Join(e.dir, executor.ReadyFIFO), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("start %s: open ready fifo: %w", e.name, err)
	}
	defer fifo.Close()

	sctx, cancel := context.WithTimeout(ctx, r.opts.StartTimeout)
	defer cancel()
	if deadline, ok := sctx.Deadline(); ok {
		if err := fifo.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("start %s: ready fifo deadline: %w", e.name, err)
		}
	}

	t0 := time.Now()
	// Register for the container's exit before starting it, so an executor
	// that dies before it is ready is reported at once.
	wait := r.cli.ContainerWait(sctx, id, client.ContainerWaitOptions{Condition: dcontainer.WaitConditionNextExit})
	t1 := time.Now()
	cctx, ccancel := r.callCtx(sctx)
	_, err = r.cli.ContainerStart(cctx, id, client.ContainerStartOptions{})
	ccancel()
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("start %s: %w", e.name, container.ErrNotFound)
		}
		return fmt.Errorf("start %s: %w", e.name, err)
	}
	t2 := time.Now()

	ready := make(chan error, 1)
	go func() { ready <- readReady(fifo) }()
	waitErr := wait.Error
	for {
		select {
		case err := <-ready:
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return r.startFailure(ctx, e, fmt.Sprintf("executor not ready after %s", r.opts.StartTimeout), context.DeadlineExceeded)
				}
				return r.startFailure(ctx, e, "reading the ready fifo", err)
			}
			t3 := time.Now()
			r.log.Debug("container started", "name", e.name, "id", shortID(id),
				"wait_register", t1.Sub(t0), "docker_start", t2.Sub(t1), "ready_after_start", t3.Sub(t2))
			e.mu.Lock()
			e.started = true
			e.exec = executor.NewClient(filepath.Join(e.dir, executor.SocketName))
			e.mu.Unlock()
			return nil
		case res := <-wait.Result:
			return r.startFailure(ctx, e, fmt.Sprintf("container exited with code %d before its executor was ready", res.StatusCode), nil)
		case err := <-waitErr:
			if sctx.Err() != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("start %s: %w", e.name, ctx.Err())
				}
				return r.startFailure(ctx, e, fmt.Sprintf("executor not ready after %s", r.opts.StartTimeout), context.DeadlineExceeded)
			}
			// Waiting for the exit failed; the ready FIFO and its deadline still bound Start.
			r.log.Warn("cannot watch container exit during start", "name", e.name, "err", err)
			waitErr = nil
		case <-sctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("start %s: %w", e.name, ctx.Err())
			}
			return r.startFailure(ctx, e, fmt.Sprintf("executor not ready after %s", r.opts.StartTimeout), context.DeadlineExceeded)
		}
	}
}

// readReady reads the executor's readiness line from the FIFO.
func readReady(f *os.File) error {
	var line []byte
	buf := make([]byte, 64)
	for len(line) < 256 {
		n, err := f.Read(buf)
		line = append(line, buf[:n]...)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			if got := string(line[:i]); got != "ready" {
				return fmt.Errorf("unexpected line %q in the ready fifo", got)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("unexpected content %q in the ready fifo", line)
}

// startFailure builds the error of a failed Start, quoting the container's
// exit code and log tail.
func (r *Runtime) startFailure(ctx context.Context, e *entry, what string, cause error) error {
	ctx = context.WithoutCancel(ctx)
	var b strings.Builder
	fmt.Fprintf(&b, "start %s: %s", e.name, what)
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	if info, err := r.cli.ContainerInspect(cctx, e.id, client.ContainerInspectOptions{}); err == nil && info.Container.State != nil {
		st := info.Container.State
		if !st.Running {
			fmt.Fprintf(&b, " (state %s, exit code %d", st.Status, st.ExitCode)
			if st.OOMKilled {
				b.WriteString(", out of memory")
			}
			if st.Error != "" {
				fmt.Fprintf(&b, ", %s", st.Error)
			}
			b.WriteString(")")
		}
	}
	if tail := r.logTail(ctx, e.id); tail != "" {
		fmt.Fprintf(&b, "; last log lines:\n%s", tail)
	}
	if cause != nil {
		return fmt.Errorf("%s: %w", b.String(), cause)
	}
	return errors.New(b.String())
}

// logTail returns the last lines of the container's stdout and stderr.
func (r *Runtime) logTail(ctx context.Context, id string) string {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	rc, err := r.cli.ContainerLogs(cctx, id, client.ContainerLogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Tail:       fmt.Sprint(logTail),
	})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out bytes.Buffer
	lw := &limitedWriter{w: &out, n: 8 << 10}
	if _, err := stdcopy.StdCopy(lw, lw, rc); err != nil && out.Len() == 0 {
		return ""
	}
	return strings.TrimSpace(out.String())
}

// limitedWriter keeps at most n bytes and discards the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	keep := p
	if len(keep) > l.n {
		keep = keep[:l.n]
	}
	n, err := l.w.Write(keep)
	l.n -= n
	if err != nil {
		return n, err
	}
	return len(p), nil
}

// Resize changes the memory limit (swap stays disabled) and the CPU cap of a
// container. Docker cannot lift a limit once set, so "none" (memoryMB 0,
// cpus ≤ 0) becomes a limit equal to the host's memory or CPU count.
func (r *Runtime) Resize(ctx context.Context, id string, memoryMB int64, cpus float64) error {
	if memoryMB < 0 {
		return fmt.Errorf("resize %s: negative memory limit", shortID(id))
	}
	res := resources(memoryMB, cpus)
	if memoryMB == 0 && r.hostMemory > 0 {
		res.Memory = r.hostMemory
		res.MemorySwap = r.hostMemory
	}
	if cpus <= 0 && r.hostCPUs > 0 {
		res.NanoCPUs = int64(r.hostCPUs) * 1e9
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	if _, err := r.cli.ContainerUpdate(cctx, id, client.ContainerUpdateOptions{Resources: &res}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("resize %s: %w", shortID(id), container.ErrNotFound)
		}
		return fmt.Errorf("resize %s: %w", shortID(id), err)
	}
	r.mu.RLock()
	e := r.containers[id]
	r.mu.RUnlock()
	if e != nil {
		e.mu.Lock()
		e.memoryMB = memoryMB
		e.mu.Unlock()
	}
	return nil
}

// Remove kills and removes the container and its run directory. Removing a
// container that does not exist is not an error. Containers left behind by
// an earlier process are found through their bind mount.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	dir := ""
	if e := r.forget(id); e != nil {
		e.closeClient()
		dir = e.dir
	} else {
		cctx, cancel := r.callCtx(ctx)
		info, err := r.cli.ContainerInspect(cctx, id, client.ContainerInspectOptions{})
		cancel()
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remove %s: %w", shortID(id), err)
		}
		dir = r.mountedRunDir(info.Container.Mounts)
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	_, err := r.cli.ContainerRemove(cctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", shortID(id), err)
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			r.log.Warn("cannot remove container run dir", "dir", dir, "err", err)
		}
	}
	return nil
}

// mountedRunDir returns the host directory mounted at executor.SocketDir if
// it lies inside this runtime's RunDir, "" otherwise.
func (r *Runtime) mountedRunDir(mounts []dcontainer.MountPoint) string {
	for _, m := range mounts {
		if m.Destination != executor.SocketDir {
			continue
		}
		rel, err := filepath.Rel(r.opts.RunDir, m.Source)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || strings.Contains(rel, string(filepath.Separator)) {
			return ""
		}
		return m.Source
	}
	return ""
}

// List returns every container (in any state) that carries all the given
// labels. Only containers with LabelManaged are ever listed.
func (r *Runtime) List(ctx context.Context, labels map[string]string) ([]container.Info, error) {
	filters := make(client.Filters)
	filters.Add("label", container.LabelManaged+"=true")
	for k, v := range labels {
		filters.Add("label", k+"="+v)
	}
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	res, err := r.cli.ContainerList(cctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]container.Info, 0, len(res.Items))
	for _, c := range res.Items {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, container.Info{
			ID:      c.ID,
			Name:    name,
			Labels:  c.Labels,
			Running: c.State == dcontainer.StateRunning,
		})
	}
	return out, nil
}
