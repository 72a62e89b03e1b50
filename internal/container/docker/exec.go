package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/moby/moby/client"

	"github.com/serverledge/serverledge/internal/container"
	"github.com/serverledge/serverledge/internal/executor"
)

// Load sends the code archive and handler to the container's executor, which
// unpacks and checks it inside the container. Both failures are ErrBadCode:
// a refused archive leaves the container unspecialized (a later Load with
// good code succeeds), while a handler that fails to import makes the
// executor retire the container, since the module's code may have run
// (later calls return ErrUnusable).
func (r *Runtime) Load(ctx context.Context, id string, req container.LoadRequest) error {
	e, err := r.lookup(id)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	exec, memoryMB, err := e.executor()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	sent := time.Now()
	// Beyond executor.MaxConcurrency, requests wait in the executor for a slot.
	err = exec.LoadWith(ctx, req.Handler, req.Code, executor.LoadOptions{
		Concurrency: min(max(req.Concurrency, 1), executor.MaxConcurrency),
		Env:         req.Env,
	})
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, executor.ErrRefused):
		return fmt.Errorf("load %s: %w: %w", e.name, container.ErrBadCode, err)
	case errors.Is(err, executor.ErrAlreadyLoaded):
		return fmt.Errorf("load %s: %w: %w", e.name, container.ErrAlreadyLoaded, err)
	}
	return r.executorFailure(ctx, e, "load", memoryMB, sent, err)
}

// Invoke runs the loaded function once. A function that raised an error
// yields Success false and a nil error. A timeout yields ErrTimeout, a dead
// function process ErrCrashed (saying "out of memory" when the memory limit
// killed it); both retire the container, and every later call returns
// ErrUnusable. A caller that cancels ctx mid-call also retires the container,
// since the function may still be running in it.
func (r *Runtime) Invoke(ctx context.Context, id string, req container.InvokeRequest) (container.InvokeResult, error) {
	e, err := r.lookup(id)
	if err != nil {
		return container.InvokeResult{}, fmt.Errorf("invoke: %w", err)
	}
	exec, memoryMB, err := e.executor()
	if err != nil {
		return container.InvokeResult{}, fmt.Errorf("invoke: %w", err)
	}
	in := executor.InvokeRequest{
		Params:       req.Params,
		ReturnOutput: req.ReturnOutput,
	}
	if req.Timeout > 0 {
		in.TimeoutMillis = max(req.Timeout.Milliseconds(), 1)
		// The executor enforces the timeout and answers 504; the grace
		// period only covers an executor that cannot answer at all.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout+invokeGrace)
		defer cancel()
	}
	if req.RequestID != "" {
		in.Context = map[string]any{"RequestID": req.RequestID}
	}
	sent := time.Now()
	out, err := exec.Invoke(ctx, in)
	if err != nil {
		return container.InvokeResult{}, r.executorFailure(ctx, e, "invoke", memoryMB, sent, err)
	}
	res := container.InvokeResult{
		Success:  out.Success,
		Result:   out.Result,
		Error:    out.Error,
		Duration: out.Duration(),
	}
	if req.ReturnOutput {
		res.Output = out.Output
	}
	return res, nil
}

// executorFailure maps an executor error that is not a refusal onto the
// container sentinels and retires the container when it cannot serve again.
// A request sent at sent whose executor could not even be dialled, in a
// container that had not died while the request was under way, never
// reached the function: that is ErrUnavailable, and the caller may retry it
// elsewhere.
func (r *Runtime) executorFailure(ctx context.Context, e *entry, op string, memoryMB int64, sent time.Time, err error) error {
	switch {
	case errors.Is(err, executor.ErrNotLoaded):
		return fmt.Errorf("%s %s: %w: %w", op, e.name, container.ErrNotLoaded, err)
	case errors.Is(err, executor.ErrRetired):
		return e.retire(fmt.Errorf("%s %s: %w: %w", op, e.name, container.ErrUnusable, err))
	case errors.Is(err, executor.ErrTimeout):
		return e.retire(fmt.Errorf("%s %s: %w: %w", op, e.name, container.ErrTimeout, err))
	case errors.Is(err, executor.ErrCrashed):
		return e.retire(fmt.Errorf("%s %s: %w%s: %w", op, e.name, container.ErrCrashed, r.crashReason(ctx, e, memoryMB), err))
	}
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && op == "invoke" {
			// Either the caller's deadline or the grace period after the
			// function's own timeout expired while the function ran.
			return e.retire(fmt.Errorf("%s %s: %w: no answer from the executor: %w", op, e.name, container.ErrTimeout, ctx.Err()))
		}
		e.retire(fmt.Errorf("%s interrupted: %w", op, ctx.Err()))
		return fmt.Errorf("%s %s: %w", op, e.name, ctx.Err())
	}
	// The executor itself is gone or broken (connection refused or reset).
	if unreachable(err) && !r.diedSince(context.WithoutCancel(ctx), e.id, sent) {
		if exists, ierr := r.containerExists(context.WithoutCancel(ctx), e.id); ierr == nil && !exists {
			return fmt.Errorf("%s %s: %w: %w: %w", op, e.name, container.ErrUnavailable, container.ErrNotFound, err)
		}
		return e.retire(fmt.Errorf("%s %s: %w: executor unreachable: %w", op, e.name, container.ErrUnavailable, err))
	}
	if exists, ierr := r.containerExists(context.WithoutCancel(ctx), e.id); ierr == nil && !exists {
		return fmt.Errorf("%s %s: %w: %w", op, e.name, container.ErrNotFound, err)
	}
	return e.retire(fmt.Errorf("%s %s: %w: executor unreachable%s: %w", op, e.name, container.ErrCrashed, r.crashReason(ctx, e, memoryMB), err))
}

// unreachable reports whether err says the executor's socket could not be
// dialled (connection refused, socket gone): nothing was sent to it.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// diedSince reports whether the container stopped at or after t, so that a
// request sent at t may have reached the function before it died. The
// executor client sends a request again on a new connection when a reused
// one fails before any reply, so a container killed mid-request also ends
// in a dial error.
func (r *Runtime) diedSince(ctx context.Context, id string, t time.Time) bool {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	info, err := r.cli.ContainerInspect(cctx, id, client.ContainerInspectOptions{})
	if err != nil || info.Container.State == nil || info.Container.State.Running {
		return false
	}
	finished, err := time.Parse(time.RFC3339Nano, info.Container.State.FinishedAt)
	return err == nil && !finished.Before(t)
}

// crashReason says why the function process died when Docker knows: the
// memory limit. It returns "" otherwise.
func (r *Runtime) crashReason(ctx context.Context, e *entry, memoryMB int64) string {
	if r.oomKilled(context.WithoutCancel(ctx), e.id) {
		if memoryMB > 0 {
			return fmt.Sprintf(": out of memory (limit %d MB)", memoryMB)
		}
		return ": out of memory"
	}
	return ""
}

// oomKilled reports whether the kernel's OOM killer struck in the container:
// Docker flags the container when its main process was killed, and logs an
// "oom" event when any process in it was.
func (r *Runtime) oomKilled(ctx context.Context, id string) bool {
	cctx, cancel := r.callCtx(ctx)
	defer cancel()
	info, err := r.cli.ContainerInspect(cctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return false
	}
	if info.Container.State != nil && info.Container.State.OOMKilled {
		return true
	}
	since := info.Container.Created
	if st := info.Container.State; st != nil && st.StartedAt != "" {
		since = st.StartedAt
	}
	filters := make(client.Filters)
	filters.Add("container", id)
	filters.Add("event", "oom")
	filters.Add("type", "container")
	ev := r.cli.Events(cctx, client.EventsListOptions{
		Since:   sinceArg(since),
		Until:   fmt.Sprint(time.Now().Add(time.Second).Unix()),
		Filters: filters,
	})
	for {
		select {
		case <-ev.Messages:
			return true
		case <-ev.Err:
			return false
		case <-cctx.Done():
			return false
		}
	}
}

// sinceArg turns an RFC 3339 timestamp into the events API's "since"
// argument (Unix seconds), falling back to the last minute.
func sinceArg(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || t.IsZero() {
		t = time.Now().Add(-time.Minute)
	}
	return fmt.Sprint(t.Unix())
}
